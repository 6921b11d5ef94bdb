"""Fit the answer check's threshold (``rag/check.py``) on a run that recorded the model's P(yes).

    python -m eval run --bench xquad-dev --set answer_check=on --set answer_check_threshold=0 --out runs/check-p
    python -m eval check-fit runs/check-p --write rag/models/check.json

With threshold 0 the check never refuses, so the run records P(yes) (``check`` in each row) for
every answer the abstention gate let through, and its answers are the chain's without the check.
For each fold k, the threshold is chosen on the rows of the other folds: the best abstention F1
with false abstentions (the gate's and the check's together) at most ``MAX_FALSE_ABSTENTION`` of
the answerable questions, the lowest threshold on ties. The report applies each fold's threshold to
its own rows (out of fold) and scores them with the run's metrics; the threshold fitted on all
rows is the one the chain uses outside evaluation. Questions without a fold are split as
``eval.calibrate.fold_of`` splits them (a stable hash of the id).
"""

from __future__ import annotations

import copy
import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np

from eval.calibrate import MAX_FALSE_ABSTENTION, capped_f1, fold_for
from eval.metrics import summarize
from eval.run import EvalError, read_rows

REPO = Path(__file__).resolve().parents[1]
PROMPT = REPO / "rag" / "prompts" / "check.txt"  # what the model was asked
REPORTED = ("answer_accuracy", "answer_accuracy_answerable", "abstention_f1", "abstention_precision",
            "abstention_recall", "false_abstention_rate")
_ANSWERED_ONLY = ("citation_precision", "citation_sentence_precision", "citation_supported",
                  "citation_supported_partial", "has_citation")


def _fold(row: dict[str, Any]) -> str:
    """The row's fold, as ``eval.calibrate.fold_of`` gives it for its gold item."""
    return str(fold_for(row["id"], None if row["fold"] == "none" else row["fold"]))


def choose(rows: list[dict[str, Any]], max_fa: float = MAX_FALSE_ABSTENTION) -> float:
    """The threshold on P(yes) with the best abstention F1 over ``rows`` and false abstentions at
    most ``max_fa`` of their answerable questions (0.0, the check refusing nothing, if none is better)."""
    answerable = np.array([bool(r["answerable"]) for r in rows])
    gated = np.array([bool(r["abstained"]) for r in rows])
    p = np.array([np.inf if r.get("check") is None else float(r["check"]) for r in rows])
    best, best_t = -1.0, 0.0
    for t in [0.0, *np.unique(p[np.isfinite(p)] + 1e-9)]:
        f1 = capped_f1(gated | (p < t), answerable, max_fa)
        if f1 is not None and f1 > best + 1e-12:
            best, best_t = f1, float(t)
    return best_t


def vetoed(row: dict[str, Any], threshold: float) -> dict[str, Any]:
    """``row`` as the chain would have answered with the check at ``threshold``: an answer whose
    P(yes) is below it becomes an abstention (right on an unanswerable question, wrong otherwise)."""
    if row["abstained"] or row.get("check") is None or float(row["check"]) >= threshold:
        return row
    out = copy.deepcopy(row)
    out["abstained"] = True
    out["citations"] = []
    scores = out["scores"]
    scores["correct"] = not row["answerable"]
    scores["f1"] = float(not row["answerable"])
    for key in _ANSWERED_ONLY:
        scores[key] = None
    out["verdict"] = "correct" if scores["correct"] else "wrong"
    return out


def fit(run: Path, command: str = "") -> dict[str, Any]:
    """The check file's content (thresholds, the model, the out-of-fold report) for ``run``."""
    rows = read_rows(run / "results.jsonl")
    meta = json.loads((run / "metrics.json").read_text(encoding="utf-8"))["meta"]
    used = meta.get("settings", {})
    if used.get("answer_check") != "on" or float(used.get("answer_check_threshold", -1)) != 0.0:
        raise EvalError(f"{run} was not run with --set answer_check=on --set answer_check_threshold=0: "
                        "it did not record P(yes) for every answer the gate let through")
    if meta.get("answer_mode") != "extractive":
        raise EvalError(f"{run} is a {meta.get('answer_mode')} run; fit the check on an extractive run")
    if not any(r.get("check") is not None for r in rows):
        raise EvalError(f"{run}: no row has a P(yes) (was the model reachable? see the rows' 'verification')")
    folds = sorted({_fold(r) for r in rows})
    per_fold = {f: choose([r for r in rows if _fold(r) != f]) for f in folds} if len(folds) > 1 else {}
    overall = choose(rows)
    after = [vetoed(r, per_fold.get(_fold(r), overall)) for r in rows]
    before, now = summarize(rows), summarize(after)
    report = {"out_of_fold": bool(per_fold), "questions": len(rows),
              "checked": sum(r.get("check") is not None for r in rows),
              "vetoed": sum(a["abstained"] and not r["abstained"] for r, a in zip(rows, after)),
              "before": {k: before[k] for k in REPORTED}, "after": {k: now[k] for k in REPORTED}}
    by_subkind = {}
    for sk in sorted({r.get("subkind", r["kind"]) for r in rows}):
        group = [a for a in after if a.get("subkind", a["kind"]) == sk]
        by_subkind[sk] = {"n": len(group), "before": summarize([r for r in rows if r.get("subkind", r["kind"]) == sk])
                          ["answer_accuracy"]["value"], "after": summarize(group)["answer_accuracy"]["value"]}
    report["by_subkind"] = by_subkind
    return {"threshold": overall, "folds": per_fold, "model": checked_model(used),
            "prompt_sha256": hashlib.sha256(PROMPT.read_bytes()).hexdigest(),
            "fitted_on": {"run": _portable(run), "gold": _portable(meta.get("gold") or ""),
                          "gold_sha256": meta.get("gold_sha256"),
                          "git": meta.get("git")},
            "command": command, "max_false_abstention": MAX_FALSE_ABSTENTION, "report": report}


def _portable(path: str | Path) -> str:
    """``path`` relative to the repository when it is inside it (the file ships), else as given."""
    where = Path(path).resolve()
    return str(where.relative_to(REPO)) if where.is_relative_to(REPO) else str(path)


def checked_model(settings: dict[str, Any]) -> str:
    """The model that answered the check in a run with these (public) settings (``CitedQueryEngine._check``)."""
    if settings.get("llm_base_url"):
        return str(settings.get("llm_model") or "")
    path = str(settings.get("llm_model_path") or "")
    return Path(path).stem if path else str(settings.get("llm_bundled") or "")


def render(data: dict[str, Any]) -> str:
    r = data["report"]
    where = "out of fold (each fold's threshold fitted on the others)" if r["out_of_fold"] else "IN SAMPLE (one fold only)"
    lines = [f"answer check: threshold {data['threshold']:.3f} (all rows); per fold "
             + ", ".join(f"{k}: {v:.3f}" for k, v in data["folds"].items()),
             f"{r['checked']} of {r['questions']} answers checked, {r['vetoed']} turned into abstentions; {where}:",
             f"  {'metric':28s} {'before':>22s} {'after':>22s}"]
    def fmt(m: dict[str, Any]) -> str:
        return "n/a" if m["value"] is None else f"{m['value']:.3f} [{m['ci95'][0]:.2f}, {m['ci95'][1]:.2f}]"

    for k in REPORTED:
        lines.append(f"  {k:28s} {fmt(r['before'][k]):>22s} {fmt(r['after'][k]):>22s}")
    lines.append("  answer accuracy by subkind: " + "; ".join(
        f"{k} {v['before']:.3f} -> {v['after']:.3f} (n={v['n']})" for k, v in r["by_subkind"].items()))
    return "\n".join(lines)
