"""eval: gold errors stop the CLI, runs write every documented output, compare/gate/calibrate work,
and the ranx-based retrieval metrics equal hand-computed values."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

from eval.__main__ import main
from eval.gold import DEFAULT_GOLD, load_gold
from eval.metrics import RETRIEVAL, add_retrieval, aggregate, answer_language, score_answer
from eval.patterns import PATTERNS, pattern
from rag.types import Answer, Citation, Hit

ROOT = Path(__file__).resolve().parents[1]
TINY_IDS = ("q001", "q006", "q020", "q021", "q030", "q046", "q056", "q062", "q075")
# metrics.json keys documented in docs/EVAL.md
TOP_KEYS = {"schema", "meta", "overall", "by_language", "by_kind", "by_subkind", "by_fold", "by_pattern", "latency", "counts",
            "baselines"}
META_KEYS = {"date", "command", "gold", "gold_sha256", "questions", "limit", "ids", "mode", "answer_mode",
             "workers", "seed", "resamples", "settings", "models", "corpus", "git", "versions", "systems",
             "duration_seconds"}
OVERALL_KEYS = {"answer_accuracy", "answer_accuracy_answerable", "answer_f1", "answer_f1_answerable", *RETRIEVAL, "citation_precision",
                "citation_sentence_precision", "false_conflict_rate", "verified_share", "wrong_passed_share",
                "correct_rejected_share",
                "citation_support", "citation_support_partial", "cited_share", "abstention_precision",
                "abstention_recall", "abstention_f1", "false_abstention_rate", "language_match",
                "question_language_match", "conflict_surfaced"}
ROW_KEYS = {"id", "lang", "kind", "question", "answerable", "gold_answers", "gold_sources", "answer", "mode",
            "abstained", "citations", "retrieved", "doc_ranking", "scores", "verdict", "why", "timings",
            "answer_language"}


# ------------------------------------------------------------------ helpers
def _hit(doc: str, rank: int) -> Hit:
    return Hit(chunk_id=f"{doc}-c{rank}", doc_id=doc, source=f"{doc}.txt", title="", language="en", text="t",
               char_start=0, char_end=1, score=1.0 / rank, rank=rank)


def _answer(text: str, docs: list[str], cited: list[tuple[str, str]] = (), abstained: bool = False,
            lang: str = "en") -> Answer:
    cits = [Citation(n=i, doc_id=d, source=f"{d}.txt", chunk_id=f"{d}-c", language="en", quote=q, char_start=0,
                     char_end=len(q), score=1.0) for i, (d, q) in enumerate(cited, 1)]
    return Answer(question="q", text=text, language=lang, mode="extractive", abstained=abstained, citations=cits,
                  retrieved=[_hit(d, r) for r, d in enumerate(docs, 1)], timings={"total": 0.1})


def _item(qid: str, answers: list[list[str]], sources: list[str], kind: str = "lookup"):
    from eval.gold import GoldItem

    return GoldItem(id=qid, lang="en", question=f"question {qid}?", answers=answers, sources=sources,
                    answerable=bool(answers), kind=kind if answers else "unanswerable")


def _write_run(path: Path, values: dict[str, float], mode: str = "extractive") -> Path:
    path.mkdir(parents=True)
    meta = {"mode": mode, "questions": 75}
    overall = {k: {"value": v, "ci95": [v, v], "n": 75} for k, v in values.items()}
    (path / "metrics.json").write_text(json.dumps({"meta": meta, "overall": overall}))
    (path / "results.jsonl").write_text("")
    return path


# ------------------------------------------------------------------ fast tests
def test_malformed_gold_is_refused_with_line_and_field(tmp_path: Path) -> None:
    good = DEFAULT_GOLD.read_text(encoding="utf-8").splitlines()[0]
    bad = json.loads(good)
    del bad["answerable"]
    path = tmp_path / "bad.jsonl"
    path.write_text("\n".join([good, json.dumps(bad), "{not json"]) + "\n", encoding="utf-8")
    proc = subprocess.run([sys.executable, "-m", "eval", "run", "--gold", str(path), "--data-dir",
                           str(tmp_path / "data"), "--out", str(tmp_path / "out")],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2, proc.stderr
    assert f"{path}:2: field 'answerable': missing required field" in proc.stderr
    assert f"{path}:3: field '<json>'" in proc.stderr
    assert not (tmp_path / "out").exists() and not (tmp_path / "data").exists()  # nothing started


def test_main_reports_gold_error_and_bad_set(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text('{"id": "x", "lang": "english"}\n', encoding="utf-8")
    assert main(["calibrate", "--gold", str(path), "--data-dir", str(tmp_path / "d")]) == 2
    assert ":1: field 'lang'" in capsys.readouterr().err
    assert main(["run", "--gold", str(DEFAULT_GOLD), "--set", "top_k", "--data-dir", str(tmp_path / "d")]) == 2
    assert "--set expects key=value" in capsys.readouterr().err
    assert main(["run", "--gold", str(DEFAULT_GOLD), "--set", "bm25_top=21", "--data-dir", str(tmp_path / "d")]) == 2
    assert "bm25_top must be within [0, bm25_k=20], got 21" in capsys.readouterr().err
    assert not (tmp_path / "d").exists()  # refused before anything was indexed


def test_patterns_say_where_the_questions_names_are() -> None:
    topic, answer = "The museum of Arroyo Claro stands on the old harbour.", "It opened in 1921."
    assert pattern("When did the Arroyo Claro museum open?", [["1921"]], [topic, answer]) == "names_elsewhere"
    assert pattern("When did the Arroyo Claro museum open?", [["1921"]], [topic, "The Arroyo Claro museum opened in 1921."]) \
        == "names_in_answer"
    assert pattern("When did the museum open?", [["1921"]], [topic, answer]) == "other"  # no names asked
    assert pattern("When did the Arroyo Claro museum open?", [["1850"]], [topic, answer]) == "other"  # no answer sentence
    assert pattern("When did the Arroyo Claro museum open?", [["1921"]], [answer]) == "other"  # names nowhere


@pytest.mark.slow
def test_run_keeps_its_answers_when_the_pattern_breakdown_fails(tiny: dict[str, Path], monkeypatch,
                                                                  capsys: pytest.CaptureFixture) -> None:
    import eval.run

    def broken(store, items):
        raise RuntimeError("store went away")

    monkeypatch.setattr(eval.run, "patterns", broken)
    out = tiny["root"] / "run-no-pattern"
    assert _run(tiny, out) == 0
    assert "no breakdown by pattern (eval/patterns.py): RuntimeError: store went away" in capsys.readouterr().err
    m = json.loads((out / "metrics.json").read_text())
    assert m["by_pattern"] == {} and m["overall"]["answer_accuracy"]["n"] == len(TINY_IDS)
    assert len((out / "results.jsonl").read_text().splitlines()) == len(TINY_IDS)


def test_ranx_retrieval_metrics_match_hand_computed() -> None:
    # q1: the only gold doc comes second (after two chunks of one wrong doc): MRR 1/2, nDCG 1/log2(3).
    # q2: gold docs at ranks 1 and 3 of the deduplicated ranking.
    rows = [score_answer(_item("q1", [["Nvidia"]], ["g"]), _answer("Nvidia", ["x", "x", "g"])),
            score_answer(_item("q2", [["A"]], ["g1", "g2"]), _answer("A", ["g1", "y", "g2"])),
            score_answer(_item("q3", [], []), _answer("Not found.", ["x"], abstained=True))]
    assert rows[0]["doc_ranking"] == ["x", "g"]
    r1, r2 = (r["scores"]["retrieval"] for r in add_retrieval(rows)[:2])
    assert r1["mrr"] == pytest.approx(0.5) and r1["hit@1"] == 0 and r1["hit@3"] == 1
    assert r1["recall@5"] == 1 and r1["ndcg@10"] == pytest.approx(1 / math.log2(3), abs=1e-6)
    assert r2["mrr"] == 1 and r2["recall@5"] == 1
    assert r2["ndcg@10"] == pytest.approx((1 + 1 / math.log2(4)) / (1 + 1 / math.log2(3)), abs=1e-6)
    assert rows[2]["scores"]["retrieval"] == {}  # unanswerable: no qrels
    overall = aggregate(rows)["overall"]
    assert overall["mrr"]["value"] == pytest.approx(0.75) and overall["mrr"]["n"] == 2


def test_subkinds_break_down_a_kind_and_a_bad_one_names_its_line(tmp_path: Path) -> None:
    """``subkind`` (optional gold field, or the shipped benchmark's ``meta.jsonl``): metrics by it
    when some question has one, every question counted once; none given, no breakdown; a subkind
    that is not a string is refused with its line and field."""
    import dataclasses

    from eval.gold import benchmark, with_subkinds
    from rag.errors import GoldFileError

    bench = benchmark("xquad-dev")
    items = with_subkinds(load_gold(bench.gold), bench.subkinds())
    by = {}
    for i in items:
        by[(i.kind, i.subkind)] = by.get((i.kind, i.subkind), 0) + 1
    assert by == {("lookup", "lookup"): 911, ("crosslingual", "crosslingual"): 447,
                  ("unanswerable", "near_miss"): 155, ("unanswerable", "absent_article"): 127}  # its README's counts

    unanswerable = _item("u1", [], [])
    rows = [score_answer(dataclasses.replace(unanswerable, subkind="near_miss"), _answer("Something [1]", ["g"], cited=[("g", "x")])),
            score_answer(dataclasses.replace(unanswerable, id="u2", subkind="absent_article"),
                         _answer("Not found in the documents.", [], abstained=True)),
            score_answer(_item("a1", [["A"]], ["g"]), _answer("A [1]", ["g"], cited=[("g", "A")]))]
    m = aggregate(rows)
    assert set(m["by_subkind"]) == {"near_miss", "absent_article", rows[2]["kind"]}
    assert sum(g["answer_accuracy"]["n"] for g in m["by_subkind"].values()) == len(rows)
    assert m["by_subkind"]["near_miss"]["answer_accuracy"]["value"] == 0
    assert m["by_subkind"]["absent_article"]["answer_accuracy"]["value"] == 1
    assert aggregate([rows[2]])["by_subkind"] == {}

    good = json.loads(DEFAULT_GOLD.read_text(encoding="utf-8").splitlines()[0])
    path = tmp_path / "g.jsonl"
    path.write_text(json.dumps({**good, "subkind": 3}) + "\n", encoding="utf-8")
    with pytest.raises(GoldFileError, match=r"g\.jsonl:1: field 'subkind': must be a string"):
        load_gold(path)
    path.write_text(json.dumps({**good, "subkind": "near_miss"}) + "\n", encoding="utf-8")
    assert load_gold(path)[0].subkind == "near_miss"


def test_answer_scores_and_abstention_counts() -> None:
    item = _item("q1", [["NextEra"], ["Vernova"]], ["g"])
    partial = score_answer(item, _answer("NextEra [1]", ["g"], cited=[("x", "NextEra joins.")]))
    assert not partial["scores"]["correct"]
    assert "missing group ['Vernova']" in partial["why"] and "cited non-gold doc x" in partial["why"]
    assert partial["scores"]["citation_precision"] == 0 and partial["scores"]["citation_supported"] is False
    assert partial["scores"]["citation_supported_partial"] is True
    both = score_answer(item, _answer("The partners are NextEra and Vernova [1][2]", ["g"],
                                      cited=[("g", "NextEra signs."), ("g", "GE Vernova too.")]))
    assert both["scores"]["correct"] and both["scores"]["citation_supported"] and both["why"] == []
    rows = [score_answer(_item("u1", [], []), _answer("Not found in the documents.", [], abstained=True)),
            score_answer(_item("u2", [], []), _answer("Something [1]", ["g"], cited=[("g", "x")])),
            score_answer(_item("a1", [["A"]], ["g"]), _answer("Not found in the documents.", [], abstained=True)),
            both]
    assert rows[2]["why"][0] == "abstained on answerable" and rows[1]["why"][0] == "answered unanswerable"
    o = aggregate(add_retrieval(rows))["overall"]
    # tp=1 (u1), fp=1 (a1), fn=1 (u2): P = R = F1 = 0.5; accuracy: u1 and the last answer are right.
    assert (o["abstention_precision"]["value"], o["abstention_recall"]["value"]) == (0.5, 0.5)
    assert o["abstention_f1"]["value"] == 0.5 and o["answer_accuracy"]["value"] == 0.5
    assert o["false_abstention_rate"]["value"] == 0.5
    # SQuAD 2.0 F1: u1 1 (abstained, unanswerable), u2 0, a1 0 (abstained, answerable), and the last
    # answer: per group the best alias F1 (1 of 6 tokens matched, marks dropped): 2/7 each
    assert [r["scores"]["f1"] for r in rows] == [1.0, 0.0, 0.0, round(2 / 7, 4)]
    assert o["answer_f1"]["value"] == pytest.approx((1 + 2 / 7) / 4, abs=1e-3)
    assert o["answer_f1_answerable"]["value"] == pytest.approx((2 / 7) / 2, abs=1e-3)
    for m in o.values():
        if m["value"] is not None:
            assert m["ci95"][0] <= m["value"] <= m["ci95"][1]


def test_answer_language_rule() -> None:
    assert answer_language("Según una fuente en inglés: “Nvidia will remain a technology advisor.” [1]") == "es"
    assert answer_language("“A Nvidia continuará como consultora técnica do consórcio.” [2]") == "pt"
    assert answer_language("In den Dokumenten nicht gefunden.") == "de"
    assert answer_language("“Up to $100 billion.” [1]\n\n⚠ Las fuentes no coinciden: 1 billón [2]") == "en"


def test_gate_fails_below_floors_and_passes_above(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    floors = json.loads((ROOT / "eval" / "ci_floors.json").read_text())["extractive"]["floors"]
    low = _write_run(tmp_path / "low", {k: max(0.0, v - 0.1) for k, v in floors.items()})
    assert main(["gate", str(low)]) == 1
    out = capsys.readouterr().out
    assert "FAIL answer_accuracy" in out and "0.100 below" in out and "FAIL abstention_f1" in out
    high = _write_run(tmp_path / "high", {k: min(1.0, v + 0.01) for k, v in floors.items()})
    assert main(["gate", str(high)]) == 0
    assert "FAIL" not in capsys.readouterr().out
    assert main(["gate", str(tmp_path / "missing")]) == 2


# ------------------------------------------------------------------ real index, real runs
@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory, model_dir: Path) -> dict[str, Path]:
    """A real index of the corpus (built once) and a 9-question gold file: en/pt/es/de, answerable,
    unanswerable, crosslingual and conflict items."""
    from rag import Assistant, Settings

    root = tmp_path_factory.mktemp("eval")
    lines = [ln for ln in DEFAULT_GOLD.read_text(encoding="utf-8").splitlines()
             if ln.strip() and json.loads(ln)["id"] in TINY_IDS]
    (root / "tiny.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    qa = Assistant(Settings.load(data_dir=root / "data", model_dir=model_dir, mode="extractive"))
    assert not qa.index([ROOT / "corpus"]).failed
    return {"root": root, "gold": root / "tiny.jsonl", "data": root / "data", "model_dir": model_dir}


def _run(tiny: dict[str, Path], out: Path, *extra: str) -> int:
    return main(["run", "--gold", str(tiny["gold"]), "--data-dir", str(tiny["data"]), "--out", str(out),
                 "--set", f"model_dir={tiny['model_dir']}", "--no-progress", *extra])


@pytest.mark.slow
def test_run_writes_documented_outputs(tiny: dict[str, Path], capsys: pytest.CaptureFixture) -> None:
    out = tiny["root"] / "run-a"
    assert _run(tiny, out, "--baselines") == 0
    summary = capsys.readouterr().out
    assert "answer_accuracy" in summary and "quickstart" in summary
    for name in ("metrics.json", "results.jsonl", "report.md", "accuracy_by_language.png", "accuracy_by_kind.png",
                 "latency.png", "baselines/dense.jsonl", "baselines/bm25.jsonl", "baselines/quickstart.jsonl"):
        assert (out / name).is_file(), name
    assert (out / "latency.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    m = json.loads((out / "metrics.json").read_text())
    assert set(m) == TOP_KEYS and META_KEYS <= set(m["meta"])
    assert set(m["baselines"]) == {"dense", "bm25", "quickstart", "quickstart_sentence"}
    assert len(m["meta"]["corpus"]["fingerprint"]) == 64 and m["meta"]["settings"]["llm_api_key"] in ("", "***")
    assert set(m["by_language"]) == {"en", "pt", "es", "de"}
    assert set(m["by_pattern"]) <= set(PATTERNS) and "names_in_answer" in m["by_pattern"]
    assert m["by_subkind"] == {}  # the demo gold file gives no subkinds
    assert sum(g["answer_accuracy"]["n"] for g in m["by_pattern"].values()) == m["overall"]["answer_accuracy"]["n"]
    for system in (m, *m["baselines"].values()):
        assert set(system["overall"]) == OVERALL_KEYS
        for group in (system["overall"], *system["by_language"].values(), *system["by_kind"].values()):
            for key, metric in group.items():
                if metric["value"] is None:
                    continue
                assert 0 <= metric["value"] <= 1, key
                lo, hi = metric["ci95"]
                assert 0 <= lo <= metric["value"] <= hi <= 1, (key, metric)
    assert {"embed", "evidence", "total"} <= set(m["latency"])
    assert m["latency"]["total"]["p50"] <= m["latency"]["total"]["p95"]
    rows = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    assert [r["id"] for r in rows] == sorted(TINY_IDS)
    assert all(ROW_KEYS <= set(r) for r in rows)
    assert all(r["verdict"] in ("correct", "wrong", "error") for r in rows)
    assert m["counts"]["errors"] == 0 and m["counts"]["unanswerable"] == 3
    assert m["baselines"]["quickstart"]["counts"]["abstained"] == 0
    report = (out / "report.md").read_text()
    assert "| metric | full | dense | bm25 | quickstart | quickstart_sentence |" in report and "![latency.png](latency.png)" in report


@pytest.mark.slow
def test_compare_prints_per_question_changes(tiny: dict[str, Path], capsys: pytest.CaptureFixture) -> None:
    a, b = tiny["root"] / "cmp-a", tiny["root"] / "cmp-b"
    assert _run(tiny, a) == 0
    # P(answerable) is always < 1: abstains on everything
    assert _run(tiny, b, "--set", "abstain_threshold=1.0", "--workers", "2") == 0
    capsys.readouterr()
    assert main(["compare", str(a), str(b)]) == 0
    text = capsys.readouterr().out
    assert "settings.abstain_threshold: -1.0 -> 1.0" in text
    assert "answer_accuracy" in text and "abstention_recall" in text
    assert "now abstains" in text and "questions changed:" in text
    rows_b = [json.loads(line) for line in (b / "results.jsonl").read_text().splitlines()]
    assert [r["id"] for r in rows_b] == sorted(TINY_IDS) and all(r["abstained"] for r in rows_b)
    assert main(["compare", str(a), str(b), "--json"]) == 0
    changed = {q["id"] for q in json.loads(capsys.readouterr().out)["questions"] if q["changes"]}
    rows_a = [json.loads(line) for line in (a / "results.jsonl").read_text().splitlines()]
    assert changed == {r["id"] for r in rows_a if not r["abstained"]} != set()
    # paired differences: B - A per question, on the questions of both runs
    acc = {r["id"]: float(r["scores"]["correct"]) for r in rows_a}
    want = sum(float(r["scores"]["correct"]) - acc[r["id"]] for r in rows_b) / len(rows_b)
    assert main(["compare", str(a), str(b), "--json"]) == 0
    got = {p["metric"]: p for p in json.loads(capsys.readouterr().out)["paired"]}
    assert set(got) == {"answer_accuracy", "answer_f1", "language_match"}
    assert got["answer_accuracy"]["delta"] == pytest.approx(want, abs=1e-4) and got["answer_accuracy"]["n"] == len(rows_b)
    assert all(p["ci95"][0] <= p["delta"] <= p["ci95"][1] for p in got.values())


def test_paired_differences_skip_errors_and_metrics_a_run_did_not_record() -> None:
    from eval.compare import paired

    def row(i: str, correct: bool, f1: float | None = None, verdict: str = "") -> dict:
        scores = {"correct": correct, "language_match": True, **({} if f1 is None else {"f1": f1})}
        return {"id": i, "verdict": verdict or ("correct" if correct else "wrong"), "scores": scores}

    a = [row("q1", False, 0.0), row("q2", True, 1.0), row("q3", True, 1.0, verdict="error"), row("q4", True, 1.0)]
    b = [row("q1", True, 0.5), row("q2", True, 1.0), row("q3", False, 0.0), row("q5", False, 0.0)]
    got = {p["metric"]: p for p in paired(a, b)}
    assert got["answer_accuracy"]["n"] == 2 and got["answer_accuracy"]["delta"] == 0.5  # q1 fixed, q2 kept
    assert got["answer_f1"]["delta"] == 0.25 and got["language_match"]["delta"] == 0.0
    old = [row("q1", False), row("q2", True)]  # a run from before answer_f1
    assert {p["metric"] for p in paired(old, b)} == {"answer_accuracy", "language_match"}
    assert paired(a, [row("q9", True)]) == []


@pytest.mark.slow
def test_calibrate_writes_a_ranker_that_the_chain_uses_per_fold(tiny: dict[str, Path],
                                                                 capsys: pytest.CaptureFixture) -> None:
    ranker = tiny["root"] / "ranker.json"
    assert main(["calibrate", "--gold", str(tiny["gold"]), "--data-dir", str(tiny["data"]), "--set",
                 f"model_dir={tiny['model_dir']}", "--no-progress", "--json", "--write", str(ranker)]) == 0
    rep = json.loads(capsys.readouterr().out)
    assert rep["out_of_fold"]["questions"] == len(TINY_IDS)
    for part in [rep["out_of_fold"], *rep["by_kind"].values(), *rep["by_fold"].values()]:
        if part["top_sentence_correct"] is not None:  # the ceiling: top 1 <= top 3 <= any candidate
            assert part["top_sentence_correct"] <= part["answer_in_top3"] <= part["answer_in_candidates"] <= 1
    assert rep["out_of_fold"]["answer_in_candidates"] > 0
    # every question asked again of each other language's documents alone (the corpus has four)
    from index.language import detect_question_language
    from rag import Assistant, Settings

    qa = Assistant(Settings.load(data_dir=tiny["data"], model_dir=tiny["model_dir"], mode="extractive"))
    langs = {d.language for d in qa.documents()}
    asked = [detect_question_language(i.question) for i in load_gold(tiny["gold"])]
    assert len(langs) > 1 and rep["foreign_corpus"]["questions"] == sum(len(langs - {q}) for q in asked)
    assert rep["foreign_corpus"]["false_abstention_rate"] is not None  # some are answerable there
    data = json.loads(ranker.read_text())
    from eval.calibrate import fold_of
    from rag.ranker import Ranker

    folds = {str(fold_of(i)) for i in load_gold(tiny["gold"])}
    assert set(data["folds"]) == folds and Ranker.load(ranker).fitted_on.endswith("all folds")
    for f in folds:  # each fold's weights exist and differ from the all-folds ones
        assert Ranker.load(ranker, int(f)).sentence.coef != Ranker.load(ranker).sentence.coef
    out = tiny["root"] / "cal-run"
    assert _run(tiny, out, "--set", f"ranker_path={ranker}") == 0
    assert json.loads((out / "metrics.json").read_text())["meta"]["cross_fitted"] is True
    assert sorted(p.name for p in tiny["gold"].parent.iterdir() if p.suffix == ".jsonl") == ["tiny.jsonl"]


def test_wrong_answers_passed_and_correct_answers_rejected() -> None:
    """A verified wrong model answer counts as passed-wrong; a correct draft that was not shown
    (verification failed and the quote stayed, or the chain abstained) counts as rejected-correct;
    quotes count as neither."""
    from dataclasses import replace

    item = _item("q1", [["Nvidia"]], ["g"])
    cited = [("g", "Nvidia advises AIP.")]
    passed_wrong = replace(_answer("Intel advises AIP [1]", ["g"], cited=cited), mode="local", verified=True,
                           draft="Intel advises AIP")
    rejected_right = replace(_answer("“Nvidia advises AIP.” [1]", ["g"], cited=cited), draft="Nvidia advises AIP",
                             fallback="verification failed: x")
    quote = _answer("“Nvidia advises AIP.” [1]", ["g"], cited=cited)
    withheld_right = replace(_answer("The documents do not answer this clearly.", [], cited=[]), mode="local",
                             abstained=True, draft="Nvidia advises AIP")  # abstained: readings disagreed
    rows = [score_answer(item, a) for a in (passed_wrong, rejected_right, quote, withheld_right)]
    assert [r["scores"]["wrong_passed"] for r in rows] == [True, False, None, False]
    assert [r["scores"]["correct_rejected"] for r in rows] == [False, True, None, True]
    counts = aggregate(add_retrieval(rows))["counts"]
    assert (counts["drafted"], counts["wrong_answers_passed"], counts["correct_answers_rejected"]) == (3, 1, 2)


@pytest.mark.parametrize("how", ["--data-dir", "--set data_dir", "--data-dir of a bench store"])
def test_bench_never_indexes_into_the_users_own_store(tmp_path: Path, how: str,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """``--bench`` with the user's data directory puts the benchmark in ``<data_dir>/bench/NAME``
    (the user's store stays as it was) and reads the converted models from the user's directory,
    however the directory is given; applying it twice changes nothing."""
    from eval.run import RunOptions, apply_bench, load_settings

    monkeypatch.delenv("RAG_MODEL_DIR", raising=False)  # set by the session's model fixture

    user = tmp_path / "mine"
    store = user / "bench" / "xquad-dev"
    if how == "--data-dir":
        opts = RunOptions(gold=DEFAULT_GOLD, bench="xquad-dev", data_dir=str(user))
    elif how == "--set data_dir":
        opts = RunOptions(gold=DEFAULT_GOLD, bench="xquad-dev", overrides={"data_dir": str(user)})
    else:
        opts = RunOptions(gold=DEFAULT_GOLD, bench="xquad-dev", data_dir=str(store))
    applied = apply_bench(opts)
    settings = load_settings(applied)
    assert Path(settings.data_dir) == store
    assert Path(settings.model_root) == user
    assert applied.gold == ROOT / "eval" / "benchmarks" / "xquad-dev" / "gold.jsonl"
    assert applied.index == [str(ROOT / "eval" / "benchmarks" / "xquad-dev" / "corpus")]
    assert apply_bench(applied) == applied
