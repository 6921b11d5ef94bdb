"""Two runs side by side (what changed, per metric and per question), and the CI gate.

    >>> print(compare(Path("runs/a"), Path("runs/b")).text())
    >>> gate(Path("runs/b")).ok
    True

The gate reads ``eval/ci_floors.json``: per CLI mode (extractive, llm, auto) a floor for answer
accuracy, citation precision and abstention F1, set from measured values minus a margin.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from eval.metrics import HEADLINE, RESAMPLES, SEED
from eval.report import fmt
from eval.run import EvalError, read_rows

FLOORS = Path(__file__).resolve().parent / "ci_floors.json"
GATED = ("answer_accuracy", "answer_accuracy_answerable", "citation_precision", "citation_sentence_precision",
         "abstention_f1", "false_abstention_rate")


def load_run(run_dir: Path) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """metrics.json and results.jsonl of a run directory (EvalError names what is missing)."""
    run_dir = Path(run_dir)
    for name in ("metrics.json", "results.jsonl"):
        if not (run_dir / name).is_file():
            raise EvalError(f"{run_dir / name} does not exist: is {run_dir} the --out of `python -m eval run`?")
    return json.loads((run_dir / "metrics.json").read_text(encoding="utf-8")), read_rows(run_dir / "results.jsonl")


@dataclass
class Comparison:
    """Differences between run A and run B; ``text()`` renders them, ``to_dict()`` for --json."""

    a: str
    b: str
    setup: list[tuple[str, Any, Any]] = field(default_factory=list)
    metrics: list[tuple[str, dict | None, dict | None]] = field(default_factory=list)
    paired: list[dict[str, Any]] = field(default_factory=list)
    questions: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"a": self.a, "b": self.b, "setup": [{"key": k, "a": x, "b": y} for k, x, y in self.setup],
                "metrics": [{"metric": k, "a": x, "b": y} for k, x, y in self.metrics], "paired": self.paired,
                "questions": self.questions}

    def text(self) -> str:
        lines = [f"A = {self.a}", f"B = {self.b}", ""]
        if self.setup:
            lines.append("setup differences:")
            lines += [f"  {k}: {x!r} -> {y!r}" for k, x, y in self.setup]
            lines.append("")
        lines.append(f"{'metric':<28}{'A':<22}{'B':<22}delta")
        for key, x, y in self.metrics:
            va, vb = (x or {}).get("value"), (y or {}).get("value")
            delta = f"{vb - va:+.3f}" if va is not None and vb is not None else ""
            overlap = _overlap(x, y)
            mark = "" if not delta or float(delta) == 0 else ("  (CIs overlap)" if overlap else "  (CIs disjoint)")
            lines.append(f"{key:<28}{fmt(x):<22}{fmt(y):<22}{delta}{mark}")
        lines.append("")
        if self.paired:
            lines.append(f"paired on the {self.paired[0]['n']} questions of both runs (B - A, 95% bootstrap over questions):")
            lines += [f"  {p['metric']:<26}{p['delta']:+.3f} [{p['ci95'][0]:+.3f}, {p['ci95'][1]:+.3f}]"
                      + ("" if p["ci95"][0] <= 0 <= p["ci95"][1] else "  (0 outside: a real difference)")
                      for p in self.paired]
            lines.append("")
        only = {side: [q["id"] for q in self.questions if q["status"] == f"only in {side}"] for side in "AB"}
        both = [q for q in self.questions if not q["status"].startswith("only in")]
        if only["A"] or only["B"]:
            lines.append("WARNING: the runs cover different questions, so their metrics are not comparable")
            lines += [f"  only in {side} ({len(ids)}): {', '.join(ids)}" for side, ids in only.items() if ids]
        changed = sorted((q for q in both if q["changes"]), key=lambda q: (_RANK.get(q["status"], 2), q["id"]))
        lines.append(f"questions changed: {len(changed)} of {len(both)} in both runs "
                     f"({sum(q['status'] == 'FIXED' for q in both)} fixed, "
                     f"{sum(q['status'] == 'REGRESSED' for q in both)} regressed)")
        for q in changed:
            lines.append(f"  {q['id']} [{q['lang']}/{q['kind']}] {q['status']}: " + "; ".join(q["changes"]))
        return "\n".join(lines)


_RANK = {"REGRESSED": 0, "FIXED": 1}


def _overlap(x: dict | None, y: dict | None) -> bool:
    if not x or not y or not x.get("ci95") or not y.get("ci95"):
        return True
    return not (x["ci95"][1] < y["ci95"][0] or y["ci95"][1] < x["ci95"][0])


def _question_changes(ra: dict[str, Any] | None, rb: dict[str, Any] | None) -> dict[str, Any]:
    r = rb or ra
    assert r is not None
    out: dict[str, Any] = {"id": r["id"], "lang": r["lang"], "kind": r["kind"], "changes": []}
    if ra is None or rb is None:
        out["status"] = "only in B" if ra is None else "only in A"
        out["changes"].append(out["status"])
        return out
    va, vb = ra["verdict"], rb["verdict"]
    out["status"] = {("correct", "correct"): "still correct", ("correct", "wrong"): "REGRESSED",
                     ("wrong", "correct"): "FIXED"}.get((va, vb), f"{va} -> {vb}")
    ch = out["changes"]
    if va != vb:
        ch.append(f"verdict {va} -> {vb}")
    if ra["abstained"] != rb["abstained"]:
        ch.append("now abstains" if rb["abstained"] else "no longer abstains")
    if ra["answer"] != rb["answer"]:
        ch.append(f"answer changed: {rb['answer'][:90]!r}")
    ca, cb = [c["doc_id"] for c in ra["citations"]], [c["doc_id"] for c in rb["citations"]]
    if ca != cb:
        ch.append(f"cited {ca} -> {cb}")
    for key in ("mrr", "hit@1"):
        xa, xb = ra["scores"]["retrieval"].get(key), rb["scores"]["retrieval"].get(key)
        if xa != xb:
            ch.append(f"{key} {xa} -> {xb}")
    gone, new = sorted(set(ra["why"]) - set(rb["why"])), sorted(set(rb["why"]) - set(ra["why"]))
    if new:
        ch.append(f"new issues: {new}")
    if gone:
        ch.append(f"resolved: {gone}")
    return out


PAIRED = {"answer_accuracy": lambda r: float(r["scores"]["correct"]),
          "answer_f1": lambda r: r["scores"].get("f1"),
          "language_match": lambda r: float(r["scores"]["language_match"])}


def paired(rows_a: list[dict[str, Any]], rows_b: list[dict[str, Any]], seed: int = SEED,
           resamples: int = RESAMPLES) -> list[dict[str, Any]]:
    """B - A per question on the questions both runs answered, with a percentile bootstrap
    interval over questions: the same question in both runs, so much tighter than comparing two
    separate intervals. A metric a run did not record (``f1`` before it existed) is left out."""
    by_a = {r["id"]: r for r in rows_a if r["verdict"] != "error"}
    ids = [r["id"] for r in rows_b if r["id"] in by_a and r["verdict"] != "error"]
    by_b = {r["id"]: r for r in rows_b}
    if not ids:
        return []
    idx = np.random.default_rng(seed).integers(0, len(ids), size=(resamples, len(ids)))
    out = []
    for name, value in PAIRED.items():
        xa, xb = [value(by_a[i]) for i in ids], [value(by_b[i]) for i in ids]
        if None in xa or None in xb:
            continue
        d = np.asarray(xb, float) - np.asarray(xa, float)
        low, high = np.percentile(d[idx].mean(axis=1), [2.5, 97.5])
        out.append({"metric": name, "n": len(ids), "a": round(float(np.mean(xa)), 4), "b": round(float(np.mean(xb)), 4),
                    "delta": round(float(d.mean()), 4), "ci95": [round(float(low), 4), round(float(high), 4)]})
    return out


def compare(run_a: Path, run_b: Path) -> Comparison:
    """What changed from run A to run B: setup, every overall metric, every question."""
    (ma, rows_a), (mb, rows_b) = load_run(run_a), load_run(run_b)
    cmp = Comparison(a=str(run_a), b=str(run_b))
    meta_a, meta_b = ma["meta"], mb["meta"]
    flat_a = {**{f"settings.{k}": v for k, v in meta_a["settings"].items()},
              **{k: meta_a.get(k) for k in ("gold_sha256", "questions", "answer_mode")},
              "corpus": meta_a["corpus"]["fingerprint"], "commit": meta_a["git"]["commit"]}
    flat_b = {**{f"settings.{k}": v for k, v in meta_b["settings"].items()},
              **{k: meta_b.get(k) for k in ("gold_sha256", "questions", "answer_mode")},
              "corpus": meta_b["corpus"]["fingerprint"], "commit": meta_b["git"]["commit"]}
    cmp.setup = [(k, flat_a.get(k), flat_b.get(k)) for k in sorted(set(flat_a) | set(flat_b))
                 if flat_a.get(k) != flat_b.get(k)]
    keys = list(HEADLINE) + [k for k in ma["overall"] if k not in HEADLINE]
    cmp.metrics = [(k, ma["overall"].get(k), mb["overall"].get(k)) for k in keys]
    cmp.paired = paired(rows_a, rows_b)
    by_a, by_b = {r["id"]: r for r in rows_a}, {r["id"]: r for r in rows_b}
    cmp.questions = [_question_changes(by_a.get(i), by_b.get(i)) for i in sorted(set(by_a) | set(by_b))]
    return cmp


@dataclass
class GateResult:
    """Outcome of the gate: ``ok`` and one line per gated metric."""

    ok: bool
    lines: list[str]


def floors_for(metrics: dict[str, Any], floors_path: Path = FLOORS) -> tuple[str, dict[str, float]]:
    """The floors section matching the run's CLI mode (extractive / llm / auto)."""
    if not Path(floors_path).is_file():
        raise EvalError(f"floors file {floors_path} does not exist")
    table = json.loads(Path(floors_path).read_text(encoding="utf-8"))
    mode = metrics["meta"].get("mode", "extractive")
    if metrics["meta"].get("benchmark"):
        mode = f"{mode}:{metrics['meta']['benchmark']}"
    if mode not in table:
        raise EvalError(f"{floors_path} has no floors for mode '{mode}' (has: {', '.join(sorted(table))})")
    return mode, {**table[mode]["floors"], **{f"max:{k}": v for k, v in table[mode].get("ceilings", {}).items()}}


def gate(run_dir: Path, floors_path: Path = FLOORS) -> GateResult:
    """Fail when a gated metric of the run is below its floor.

    >>> gate(Path("runs/full-extractive")).lines[1]
    'PASS answer_accuracy 0.627 >= floor 0.576 (+0.051)'
    """
    metrics, _ = load_run(run_dir)
    mode, floors = floors_for(metrics, floors_path)
    ok, lines = True, [f"gate: {run_dir} (mode {mode}, {metrics['meta']['questions']} questions) "
                       f"against {floors_path}"]
    for key in GATED:
        if f"max:{key}" in floors:
            value = (metrics["overall"].get(key) or {}).get("value")
            cap = floors[f"max:{key}"]
            if value is not None:
                ok = ok and value <= cap
                lines.append(f"{'PASS' if value <= cap else 'FAIL'} {key} {value:.3f} {'<=' if value <= cap else '>'} "
                             f"ceiling {cap:.3f}")
            continue
        if key not in floors:
            continue
        value = (metrics["overall"].get(key) or {}).get("value")
        if value is None:
            lines.append(f"SKIP {key}: undefined on this run (e.g. no unanswerable question in the subset)")
            continue
        diff = value - floors[key]
        if diff < 0:
            ok = False
            lines.append(f"FAIL {key} {value:.3f} < floor {floors[key]:.3f} ({diff:+.3f}: {-diff:.3f} below)")
        else:
            lines.append(f"PASS {key} {value:.3f} >= floor {floors[key]:.3f} ({diff:+.3f})")
    return GateResult(ok, lines)
