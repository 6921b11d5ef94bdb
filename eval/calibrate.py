"""Grid search for the abstention thresholds (``abstain_threshold``, ``min_term_coverage``,
``abstain_confident``; see rag/abstain.py), by abstention F1 on a gold file. Prints; never writes.

    >>> feats = collect_features(qa, items)          # one pass: features + the extractive answer
    >>> best = grid_search(feats)[0]
    >>> best.threshold, best.f1, best.false_abstentions

Per question, computed once with the gate open: the top evidence score, the share of the
question's content words found in the documents (the gate's two signals), and whether the
extractive answer is correct. The gate abstains when ``top < threshold`` or
(``coverage < min_term_coverage`` and ``top < confident``); every grid point is then a few numpy
operations. Ranking: F1 on unanswerable questions, ties broken by fewer false abstentions, then
higher accuracy, then the point closest to the current settings.
"""

from __future__ import annotations

import dataclasses
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from eval.gold import GoldItem
from eval.match import answer_correct

THRESHOLDS = np.round(np.arange(0.50, 1.2001, 0.01), 2)  # evidence scores reach ~1.4
COVERAGES = np.round(np.arange(0.0, 1.0001, 0.05), 2)
CONFIDENTS = np.round(np.arange(0.80, 1.4001, 0.01), 2)


@dataclass(frozen=True)
class Features:
    """The gate's inputs for one question, and whether answering it would be right."""

    id: str
    answerable: bool
    top_score: float
    coverage: float
    correct_if_answered: bool


@dataclass(frozen=True)
class GridPoint:
    """One setting of the three thresholds and what it scores on the gold file."""

    threshold: float
    min_term_coverage: float
    confident: float
    f1: float
    precision: float
    recall: float
    false_abstentions: int
    answerable: int
    abstained: int
    accuracy: float


def collect_features(qa: Any, items: Sequence[GoldItem], progress: bool = True) -> list[Features]:
    """Ask every item once with the gate open (extractive mode); keep the gate's two signals.

    ``qa`` is an Assistant; it is rebuilt with abstain_threshold = min_term_coverage = 0.
    """
    from tqdm import tqdm

    from rag.abstain import AbstentionGate
    from rag.assistant import Assistant
    from rag.terms import vocabulary_of

    open_qa = Assistant(dataclasses.replace(qa.settings, abstain_threshold=0.0, min_term_coverage=0.0,
                                            mode="extractive"))
    vocab = vocabulary_of(t for _, texts, _ in open_qa.store.iter_chunks() for t in texts)
    probe = AbstentionGate(0.0, 0.0, 0.0)
    out = []
    for item in tqdm(items, desc="features", unit="q", file=sys.stderr, disable=not progress):
        evidence, answer = [], None
        for event in open_qa.stream(item.question, mode="extractive"):
            if event.type == "evidence":
                evidence = event.payload
            elif event.type == "answer":
                answer = event.payload
        d = probe.decide(item.question, evidence, vocab)
        correct = bool(item.answerable and answer is not None and not answer.abstained
                       and answer_correct(answer.text, item.answers))
        out.append(Features(item.id, item.answerable, d.top_score, d.vocabulary_coverage, correct))
    return out


def evaluate_grid(feats: Sequence[Features], thresholds: Sequence[float] = THRESHOLDS,
                  coverages: Sequence[float] = COVERAGES,
                  confidents: Sequence[float] = CONFIDENTS) -> list[GridPoint]:
    """Every grid point's abstention precision/recall/F1, false abstentions and accuracy."""
    top = np.array([f.top_score for f in feats])[None, :]
    cov = np.array([f.coverage for f in feats])[None, :]
    ans = np.array([f.answerable for f in feats])
    right = np.array([f.correct_if_answered for f in feats])
    th, mc, cf = (a.reshape(-1) for a in np.meshgrid(thresholds, coverages, confidents, indexing="ij"))
    abstain = (top < th[:, None]) | ((cov < mc[:, None]) & (top < cf[:, None]))
    tp = (abstain & ~ans).sum(1)
    fp = (abstain & ans).sum(1)
    fn = (~abstain & ~ans).sum(1)
    with np.errstate(divide="ignore", invalid="ignore"):
        f1 = np.where(2 * tp + fp + fn > 0, 2 * tp / (2 * tp + fp + fn), 0.0)
        prec = np.where(tp + fp > 0, tp / (tp + fp), 0.0)
        rec = np.where(tp + fn > 0, tp / (tp + fn), 0.0)
    acc = np.where(abstain, ~ans, right).mean(1)
    return [GridPoint(float(th[i]), float(mc[i]), float(cf[i]), float(f1[i]), float(prec[i]), float(rec[i]),
                      int(fp[i]), int(ans.sum()), int(abstain[i].sum()), float(acc[i])) for i in range(len(th))]


def grid_search(feats: Sequence[Features], current: tuple[float, float, float] = (0.80, 0.70, 0.98),
                **grids: Any) -> list[GridPoint]:
    """Grid points best first (F1, then fewer false abstentions, accuracy, closeness to ``current``).

    >>> grid_search(feats, current=(0.8, 0.7, 0.98))[0].f1
    0.6875
    """
    def key(p: GridPoint) -> tuple:
        dist = abs(p.threshold - current[0]) + abs(p.min_term_coverage - current[1]) + abs(p.confident - current[2])
        return (-round(p.f1, 9), p.false_abstentions, -round(p.accuracy, 9), round(dist, 9))

    return sorted(evaluate_grid(feats, **grids), key=key)


def report(feats: Sequence[Features], current: tuple[float, float, float], top: int = 10) -> dict[str, Any]:
    """The best points, and what the current settings score, as a JSON-ready dict."""
    ranked = grid_search(feats, current)
    now = evaluate_grid(feats, [current[0]], [current[1]], [current[2]])[0]
    return {"questions": len(feats), "answerable": sum(f.answerable for f in feats),
            "best": dataclasses.asdict(ranked[0]), "top": [dataclasses.asdict(p) for p in ranked[:top]],
            "current": dataclasses.asdict(now),
            "grid": {"abstain_threshold": [float(THRESHOLDS[0]), float(THRESHOLDS[-1]), 0.01],
                     "min_term_coverage": [float(COVERAGES[0]), float(COVERAGES[-1]), 0.05],
                     "abstain_confident": [float(CONFIDENTS[0]), float(CONFIDENTS[-1]), 0.01]},
            "features": [dataclasses.asdict(f) for f in feats]}


def render(rep: dict[str, Any]) -> str:
    """Human-readable version of :func:`report`."""
    def line(p: dict[str, Any]) -> str:
        return (f"threshold={p['threshold']:.2f} min_term_coverage={p['min_term_coverage']:.2f} "
                f"confident={p['confident']:.2f}  F1={p['f1']:.3f} P={p['precision']:.3f} R={p['recall']:.3f} "
                f"false abstentions={p['false_abstentions']}/{p['answerable']} accuracy={p['accuracy']:.3f}")

    b = rep["best"]
    out = [f"calibrated on {rep['questions']} questions ({rep['answerable']} answerable); nothing was written",
           f"current: {line(rep['current'])}", f"best:    {line(b)}", "",
           f"set them with: RAG_ABSTAIN_THRESHOLD={b['threshold']:.2f} RAG_MIN_TERM_COVERAGE="
           f"{b['min_term_coverage']:.2f} RAG_ABSTAIN_CONFIDENT={b['confident']:.2f} (or rag.toml)", "",
           "top grid points:"]
    out += [f"  {line(p)}" for p in rep["top"]]
    return "\n".join(out)
