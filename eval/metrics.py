"""Scoring: one answer against its gold item, then per-run / per-language / per-kind metrics.

    >>> row = score_answer(item, qa.ask(item.question))          # one JSON-ready result row
    >>> rows = add_retrieval([row, ...])                          # ranx: hit@k, recall@k, MRR, nDCG
    >>> aggregate(rows)["overall"]["answer_accuracy"]
    {'value': 0.8, 'ci95': [0.7, 0.89], 'n': 75}

Every metric is a ratio of per-question sums (a mean over a population, or e.g. F1 =
2TP / (2TP+FP+FN)), so one percentile bootstrap over questions (1000 resamples, fixed seed)
gives its 95% interval. Definitions are in docs/EVAL.md.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

import numpy as np

from eval.gold import GoldItem
from eval.match import answer_correct, answer_f1, group_matched, matched_groups

LANGS = ("en", "pt", "es", "de")
# Our name -> ranx metric name. The corpus is small (5 documents), so @5/@10 saturate; @1 is telling.
RETRIEVAL = {"hit@1": "hit_rate@1", "hit@3": "hit_rate@3", "recall@5": "recall@5",
             "recall@10": "recall@10", "mrr": "mrr", "ndcg@10": "ndcg@10"}
HEADLINE = ("answer_accuracy", "answer_accuracy_answerable", "answer_f1", "hit@1", "recall@5", "mrr", "citation_precision",
            "citation_sentence_precision", "citation_support", "abstention_f1", "false_abstention_rate",
            "language_match", "conflict_surfaced", "false_conflict_rate", "verified_share")
STAGES = ("embed", "dense", "bm25", "fuse", "evidence", "generate", "retrieve", "total")
SEED, RESAMPLES = 0, 1000
_QUOTE = re.compile(r"“.*”", re.DOTALL)
_MARK = re.compile(r"\[\d+\]")


def answer_body(text: str) -> str:
    """The answer itself: the text before any notice the chain appends (from "⚠" on)."""
    return text.split("\n\n⚠", 1)[0]


def answer_language(text: str) -> str:
    """Language of the words the reader gets, among en/pt/es/de ("und" when there are none).

    The whole answer body counts, quote included (citation marks dropped): a Spanish quote behind
    a Portuguese "De uma fonte em espanhol:" is mostly Spanish to a Portuguese reader.

    >>> answer_language('De uma fonte em inglês: “Nvidia joins as advisor.” [1]')
    'en'
    """
    from index.language import detect_language

    own = _MARK.sub(" ", answer_body(text)).replace("“", " ").replace("”", " ")
    if not any(ch.isalpha() for ch in own):
        return "und"
    return detect_language(own, LANGS).code


def doc_ranking(retrieved: Sequence[dict]) -> list[str]:
    """Document ids in the order their first chunk was retrieved (fused rank), duplicates dropped."""
    out: list[str] = []
    for hit in sorted(retrieved, key=lambda h: h["rank"]):
        if hit["doc_id"] not in out:
            out.append(hit["doc_id"])
    return out


def score_answer(item: GoldItem, answer: Any | None, error: str = "") -> dict[str, Any]:
    """One results.jsonl row: the answer, what it cited and retrieved, its scores and why it failed.

    >>> score_answer(item, qa.ask(item.question))["verdict"]
    'correct'
    """
    row: dict[str, Any] = {"id": item.id, "lang": item.lang, "kind": item.kind, "subkind": item.subkind or item.kind,
                           "fold": "none" if item.fold is None else str(item.fold), "question": item.question,
                           "answerable": item.answerable, "gold_answers": item.answers,
                           "gold_sources": item.sources, "gold_conflict": item.conflict}
    if answer is None:
        row.update(answer="", mode="", abstained=False, error=error, citations=[], conflicts=[], retrieved=[],
                   doc_ranking=[], timings={}, verdict="error", why=[f"error: {error}"],
                   scores={"correct": False, "retrieval": {}})
        return row
    d = answer.to_dict()
    cits = [{k: c[k] for k in ("n", "doc_id", "chunk_id", "language", "quote", "char_start", "char_end", "score")}
            for c in d["citations"]]
    retrieved = [{k: h[k] for k in ("rank", "doc_id", "chunk_id", "score", "dense_rank", "bm25_rank") if k in h}
                 for h in d["retrieved"]]
    row.update(answer=answer.text, mode=answer.mode, abstained=answer.abstained, verified=answer.verified,
               withheld=getattr(answer, "withheld", False),
               verification=answer.verification, fallback=answer.fallback, error="",
               question_language=answer.language, check=getattr(answer, "check", None),
               p_answerable=getattr(answer, "p_answerable", None),
               citations=cits, conflicts=d["conflicts"],
               retrieved=retrieved, doc_ranking=doc_ranking(retrieved), timings=dict(answer.timings))
    answered = item.answerable and not answer.abstained
    body = answer_body(answer.text)
    groups = matched_groups(body, item.answers) if item.answers else []
    correct = (not item.answerable) if answer.abstained else answer_correct(body, item.answers)
    # SQuAD 2.0's F1: token overlap with the best alias (citation marks dropped); an abstention
    # scores 1 on an unanswerable question and 0 on an answerable one.
    if answer.abstained or not item.answerable:
        f1 = float(answer.abstained and not item.answerable)
    else:
        f1 = answer_f1(_MARK.sub(" ", body), item.answers)
    cited_docs = list(dict.fromkeys(c["doc_id"] for c in cits))
    precision = support = partial = has_cit = sentence_precision = None
    if answered:
        has_cit = bool(cits)
        if cits:
            precision = sum(doc in item.sources for doc in cited_docs) / len(cited_docs)
            per_group = [any(group_matched(c["quote"], g) for c in cits) for g in item.answers]
            support, partial = all(per_group), any(per_group)
            sentence_precision = sum(answer_correct(c["quote"], item.answers) for c in cits) / len(cits)
    false_conflict = None if answer.abstained or item.conflict or item.kind == "conflict" else bool(answer.conflicts)
    lang = answer_language(answer.text)
    conflict = None
    if item.kind == "conflict" or item.conflict:
        conflict = bool(answer.conflicts) or (bool(item.conflict) and answer_correct(answer.text, item.conflict))
    row["answer_language"] = lang
    # The model's own draft, judged as if it had been shown: a verified wrong draft passed the check
    # (the worst outcome), a correct draft that was not shown was rejected by it.
    draft = getattr(answer, "draft", "") or ""
    drafted = bool(draft)
    draft_ok = bool(item.answerable and draft and answer_correct(draft, item.answers))
    row["draft"] = draft
    row["scores"] = {"correct": correct, "f1": round(f1, 4), "groups_matched": groups, "citation_precision": precision,
                     "citation_sentence_precision": sentence_precision, "false_conflict": false_conflict,
                     "verified": None if answer.abstained else bool(answer.verified),
                     "citation_supported": support, "citation_supported_partial": partial,
                     "has_citation": has_cit, "language_match": lang == item.lang,
                     "question_language_match": answer.language == item.lang,
                     "conflict_surfaced": conflict, "retrieval": {},
                     "wrong_passed": bool(answer.verified and not correct) if drafted else None,
                     "correct_rejected": bool(not answer.verified and draft_ok)
                     if drafted else None}
    why: list[str] = []
    if item.answerable and answer.abstained:
        why.append("abstained on answerable")
    if not item.answerable and not answer.abstained:
        why.append("answered unanswerable")
    if answered:
        why += [f"missing group {g}" for g, ok in zip(item.answers, groups) if not ok]
        why += [f"cited non-gold doc {doc}" for doc in cited_docs if doc not in item.sources]
        if not cits:
            why.append("no citation")
        elif not support:
            why.append("citations do not contain the answer")
    if lang != item.lang:
        why.append(f"answer in '{lang}', question in '{item.lang}'")
    if conflict is False:
        why.append("conflict not surfaced")
    if answer.fallback:
        why.append(f"LLM fell back: {answer.fallback}")
    row["verdict"], row["why"] = ("correct" if correct else "wrong"), why
    return row


def add_retrieval(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Fill ``scores.retrieval`` of answerable rows with ranx metrics over the gold sources.

    qrels: every gold source of an answerable question is relevant (1); run: the row's document
    ranking, scored 1/position. Unanswerable rows keep an empty dict.

    >>> add_retrieval(rows)[0]["scores"]["retrieval"]["mrr"]
    0.5
    """
    from ranx import Qrels, Run, evaluate

    for r in rows:
        if r["answerable"] and r["gold_sources"] and not r["doc_ranking"]:
            r["scores"]["retrieval"] = dict.fromkeys(RETRIEVAL, 0.0)  # nothing retrieved (or an error)
    target = [r for r in rows if r["answerable"] and r["gold_sources"] and r["doc_ranking"]]
    if not target:
        return rows
    qrels = Qrels.from_dict({r["id"]: {doc: 1 for doc in r["gold_sources"]} for r in target})
    run = Run.from_dict({r["id"]: {doc: 1.0 / pos for pos, doc in enumerate(r["doc_ranking"], 1)}
                         for r in target})
    got = evaluate(qrels, run, list(RETRIEVAL.values()), return_mean=False, make_comparable=True)
    order = {qid: i for i, qid in enumerate(qrels.keys())}
    for r in target:
        i = order[r["id"]]
        r["scores"]["retrieval"] = {ours: round(float(got[theirs][i]), 6) for ours, theirs in RETRIEVAL.items()}
        if r["scores"]["retrieval"]["recall@10"] == 0 and "no gold source retrieved" not in r["why"]:
            r["why"].append("no gold source retrieved")
    return rows


# ---------------------------------------------------------------------------- aggregation
def _arrays(rows: list[dict[str, Any]]) -> dict[str, tuple[np.ndarray, np.ndarray, int, np.ndarray | None]]:
    """metric -> (numerator, denominator per question, population size, required per question or None).

    A metric with a ``required`` array is undefined on a sample where it sums to 0 (recall and F1
    of abstention need at least one unanswerable question).
    """
    s = [r["scores"] for r in rows]
    ok = np.array([r["verdict"] != "error" for r in rows], float)
    ans = np.array([r["answerable"] for r in rows], float)
    abst = np.array([r["abstained"] for r in rows], float)
    correct = np.array([x["correct"] for x in s], float)

    def opt(key: str) -> tuple[np.ndarray, np.ndarray]:
        vals = [x.get(key) for x in s]
        return (np.array([float(v or 0) for v in vals]), np.array([v is not None for v in vals], float))

    tp, fp, fn = abst * (1 - ans), abst * ans, (1 - abst) * (1 - ans)
    out: dict[str, tuple[np.ndarray, np.ndarray, int, np.ndarray | None]] = {
        "answer_accuracy": (correct, np.ones(len(rows)), len(rows), None),
        "answer_accuracy_answerable": (correct * ans, ans, int(ans.sum()), None)}
    f1 = np.array([x.get("f1", 0.0) for x in s], float)  # rows of runs before the metric: 0
    out["answer_f1"] = (f1, np.ones(len(rows)), len(rows), None)
    out["answer_f1_answerable"] = (f1 * ans, ans, int(ans.sum()), None)
    for name in RETRIEVAL:
        vals = np.array([x["retrieval"].get(name, 0.0) for x in s])
        out[name] = (vals * ans, ans, int(ans.sum()), None)
    for name, key in (("citation_precision", "citation_precision"),
                      ("citation_sentence_precision", "citation_sentence_precision"),
                      ("false_conflict_rate", "false_conflict"), ("verified_share", "verified"),
                      ("citation_support", "citation_supported"),
                      ("citation_support_partial", "citation_supported_partial"), ("cited_share", "has_citation"),
                      ("conflict_surfaced", "conflict_surfaced"), ("language_match", "language_match"),
                      ("question_language_match", "question_language_match"),
                      ("wrong_passed_share", "wrong_passed"), ("correct_rejected_share", "correct_rejected")):
        num, den = opt(key)
        out[name] = (num, den * ok, int((den * ok).sum()), None)
    out["abstention_precision"] = (tp, tp + fp, len(rows), None)
    out["abstention_recall"] = (tp, tp + fn, len(rows), 1 - ans)
    out["abstention_f1"] = (2 * tp, 2 * tp + fp + fn, len(rows), 1 - ans)
    out["false_abstention_rate"] = (fp, ans, int(ans.sum()), None)
    return out


def _ratio(num: np.ndarray, den: np.ndarray) -> float | None:
    d = float(den.sum())
    return float(num.sum()) / d if d > 0 else None


def summarize(rows: list[dict[str, Any]], seed: int = SEED, resamples: int = RESAMPLES) -> dict[str, dict]:
    """metric -> {"value", "ci95": [low, high], "n"}: point estimate and percentile bootstrap interval."""
    if not rows:
        return {}
    idx = np.random.default_rng(seed).integers(0, len(rows), size=(resamples, len(rows)))
    out: dict[str, dict] = {}
    for name, (num, den, n, req) in _arrays(rows).items():
        value = _ratio(num, den) if req is None or req.sum() > 0 else None
        ci = None
        if value is not None:
            nums, dens = num[idx].sum(axis=1), den[idx].sum(axis=1)
            keep = (dens > 0) & (req[idx].sum(axis=1) > 0 if req is not None else True)
            vals = nums[keep] / dens[keep]
            ci = [round(float(v), 4) for v in np.percentile(vals, [2.5, 97.5])] if len(vals) else None
        out[name] = {"value": None if value is None else round(value, 4), "ci95": ci, "n": n}
    return out


def latency(rows: list[dict[str, Any]]) -> dict[str, dict[str, float]]:
    """stage -> p50/p95/mean/max seconds over the questions that ran the stage."""
    stages: dict[str, list[float]] = {}
    for r in rows:
        for k, v in r.get("timings", {}).items():
            stages.setdefault(k, []).append(float(v))
    order = [s for s in STAGES if s in stages] + sorted(set(stages) - set(STAGES))
    return {s: {"p50": round(float(np.percentile(stages[s], 50)), 4),
                "p95": round(float(np.percentile(stages[s], 95)), 4),
                "mean": round(float(np.mean(stages[s])), 4), "max": round(max(stages[s]), 4),
                "n": len(stages[s])} for s in order}


def counts(rows: list[dict[str, Any]]) -> dict[str, Any]:
    modes: dict[str, int] = {}
    for r in rows:
        modes[r.get("mode") or "none"] = modes.get(r.get("mode") or "none", 0) + 1
    return {"questions": len(rows), "answerable": sum(r["answerable"] for r in rows),
            "unanswerable": sum(not r["answerable"] for r in rows),
            "correct": sum(r["scores"]["correct"] for r in rows),
            "abstained": sum(r["abstained"] for r in rows),
            "false_abstentions": sum(r["abstained"] and r["answerable"] for r in rows),
            "answered_unanswerable": sum(not r["abstained"] and not r["answerable"] for r in rows),
            "errors": sum(r["verdict"] == "error" for r in rows),
            "fallbacks": sum(bool(r.get("fallback")) for r in rows), "answer_modes": dict(sorted(modes.items())),
            "drafted": sum(r["scores"].get("wrong_passed") is not None for r in rows),
            "wrong_answers_passed": sum(bool(r["scores"].get("wrong_passed")) for r in rows),
            "correct_answers_rejected": sum(bool(r["scores"].get("correct_rejected")) for r in rows)}


def aggregate(rows: list[dict[str, Any]], seed: int = SEED, resamples: int = RESAMPLES) -> dict[str, Any]:
    """overall / by_language / by_kind / by_subkind / by_fold / by_pattern (``eval.patterns``)
    metrics (with 95% intervals), latency and counts of one system. ``by_subkind`` only when some
    question has a subkind of its own (others are grouped by their kind)."""
    def by(key: str) -> dict[str, dict]:
        groups = sorted({r[key] for r in rows})
        return {g: summarize([r for r in rows if r[key] == g], seed, resamples) for g in groups}

    return {"overall": summarize(rows, seed, resamples), "by_language": by("lang"), "by_kind": by("kind"),
            "by_subkind": by("subkind") if any(r["subkind"] != r["kind"] for r in rows) else {},
            "by_fold": by("fold") if any(r.get("fold", "none") != "none" for r in rows) else {},
            "by_pattern": by("pattern") if rows and all("pattern" in r for r in rows) else {},
            "latency": latency(rows), "counts": counts(rows)}
