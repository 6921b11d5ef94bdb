"""Abstention, decided before any generation, from the evidence alone, in every mode.

    >>> gate = AbstentionGate(threshold=0.80, min_term_coverage=0.70, confident=1.00)
    >>> gate.decide("Where is AIP headquartered?", evidence, vocabulary).abstain
    True

Two signals, thresholds calibrated on the gold set (``python -m eval calibrate``):
1. the best evidence sentence's score (cosine to the question + shared-word bonus);
2. the share of the question's content words that occur *anywhere* in the indexed documents,
   in any language. A question about what the documents never mention ("headquartered",
   "GPUs", "population") usually has such words; then only a very strong match may answer.
A small LLM never gets the chance to invent an answer the documents do not hold.
"""

from __future__ import annotations

from dataclasses import dataclass

from rag.terms import Vocabulary, in_vocabulary, stems


@dataclass(frozen=True)
class Decision:
    abstain: bool
    reason: str
    top_score: float
    vocabulary_coverage: float


class AbstentionGate:
    """Says whether the evidence can answer the question at all."""

    def __init__(self, threshold: float = 0.80, min_term_coverage: float = 0.70, confident: float = 1.00) -> None:
        for name, value in (("abstain_threshold", threshold), ("min_term_coverage", min_term_coverage)):
            if not 0.0 <= value <= 1.5:
                raise ValueError(f"{name} must be within [0, 1.5], got {value}")
        self.threshold, self.min_term_coverage, self.confident = threshold, min_term_coverage, confident

    def decide(self, question: str, evidence: list, vocabulary: set[str] | None = None) -> Decision:
        if not evidence:
            return Decision(True, "no passage was retrieved", 0.0, 0.0)
        top = max(e.score for e in evidence)
        words = stems(question)
        if vocabulary is not None and not isinstance(vocabulary, Vocabulary):
            vocabulary = Vocabulary(vocabulary)  # index a plain set once, not once per word
        known = {w for w in words if in_vocabulary(w, vocabulary)} if vocabulary is not None else words
        cov = len(known) / len(words) if words else 1.0
        if top < self.threshold:
            return Decision(True, f"best evidence score {top:.3f} < abstain_threshold {self.threshold:.3f}", top, cov)
        if cov < self.min_term_coverage and top < self.confident:
            missing = ", ".join(sorted(words - known)[:5])
            return Decision(True, f"{cov:.0%} of the question's words occur in the documents (missing: {missing}) "
                                  f"and the best evidence scores {top:.3f} < {self.confident:.3f}", top, cov)
        return Decision(False, "", top, cov)
