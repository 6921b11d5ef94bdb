"""Abstention, decided before any generation, from the evidence alone, in every mode.

    >>> gate = AbstentionGate(Ranker.load())
    >>> gate.decide("Where is the museum?", evidence, hits, "en").abstain
    True

Signals that work whether or not the documents are in the question's language, combined by the
``answer`` logistic model of ``rag/ranker.py`` (fitted on benchmark folds):

* ``z1``, ``z_gap``, ``share1``: the best sentence's ranker score, its lead over the runner-up
  and its share of the softmax over all candidates (a clear winner vs. several lukewarm ones);
* ``cos1``, ``max_cos``, ``chunk_cos``: how close the best sentence, the closest sentence and the
  best chunk are to the question;
* ``overlap1``, ``ctx_overlap1``: the share of the question's words (IDF-weighted, stemmed per
  language) the best sentence and its neighbours cover;
* ``agree``: dense and BM25 retrieval both found the best sentence's chunk;
* ``name_cov``: the share of the question's names and numbers found in the best sentence (names
  are written alike across languages, so this works cross-lingually);
* ``other_language``: the best sentence is in another language than the question, where word
  overlap is lower for an answer too (only words the dictionaries translate, and names, match).

The model is fitted on two kinds of questions (``eval/calibrate.py``): the gold set over its
whole corpus, and the same questions over each other language's documents alone (an English
question over a Portuguese-only corpus; answerable only when its source is in that language).
The second kind is what teaches it that evidence in another language can be unanswerable too:
the benchmark alone has almost no such case, and fitted on it alone ``other_language`` would
simply mean "answer".

The chain abstains when P(answerable) < ``threshold``. A small LLM never gets the chance to
invent an answer the documents do not hold.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from index.text import fold, names, words
from rag.ranker import Ranker
from rag.types import Evidence, Hit

FEATURES = ("z1", "z_gap", "share1", "cos1", "max_cos", "chunk_cos", "overlap1", "ctx_overlap1", "name_cov",
            "agree", "other_language")


@dataclass(frozen=True)
class Decision:
    abstain: bool
    reason: str
    top_score: float  # the best evidence sentence's probability of holding the answer
    answerable: float  # P(the documents answer the question)


def question_features(question: str, evidence: list[Evidence], hits: list[Hit], language: str) -> dict[str, float]:
    """The answer model's inputs for one question in ``language`` (evidence best first)."""
    top = evidence[0]
    f = top.features
    z2 = evidence[1].features["logit"] if len(evidence) > 1 else f["logit"] - 5.0
    wanted = names(question)
    have = {fold(w) for w in words(top.text)} | names(top.text)
    return {"z1": f["logit"], "z_gap": f["logit"] - z2, "share1": f["share"], "cos1": f["cos"],
            "max_cos": f["cos"] - f["cos_gap"],
            "chunk_cos": max((h.dense_score or 0.0) for h in hits) if hits else 0.0,
            "overlap1": f["overlap"], "ctx_overlap1": f["ctx_overlap"],
            "name_cov": len(wanted & have) / len(wanted) if wanted else 1.0,
            "agree": float(f["dense_rr"] > 0 and f["bm25_rr"] > 0),
            "other_language": float(bool(top.language) and top.language != language)}


class AbstentionGate:
    """Says whether the evidence can answer the question at all."""

    def __init__(self, ranker: Ranker, threshold: float | None = None) -> None:
        self.ranker = ranker
        self.threshold = ranker.threshold if threshold is None else threshold
        if not 0.0 <= self.threshold <= 1.0:
            raise ValueError(f"abstain threshold must be within [0, 1], got {self.threshold}")

    def decide(self, question: str, evidence: list[Evidence], hits: list[Hit], language: str) -> Decision:
        if not evidence:
            return Decision(True, "no passage was retrieved", 0.0, 0.0)
        feats = question_features(question, evidence, hits, language)
        # the features the model was fitted on (a ranker file fitted before a feature was added still works)
        p = self.ranker.answerable(np.array([[feats[k] for k in self.ranker.answer.features]]))
        if p < self.threshold:
            return Decision(True, f"P(answerable) {p:.2f} < threshold {self.threshold:.2f} (best sentence "
                                  f"scores {evidence[0].score:.2f}, {feats['name_cov']:.0%} of the question's "
                                  "names found in it)", evidence[0].score, p)
        return Decision(False, "", evidence[0].score, p)
