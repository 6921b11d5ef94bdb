"""The abstention gate's question features and its use of the shipped answer model."""

from __future__ import annotations

from dataclasses import replace

import pytest

from rag.abstain import FEATURES, AbstentionGate, question_features
from rag.ranker import Logistic, Ranker
from rag.types import Evidence, Hit

SENTENCE = {"logit": 2.0, "share": 0.8, "cos": 0.86, "cos_gap": 0.0, "overlap": 0.5, "ctx_overlap": 0.6,
            "dense_rr": 0.5, "bm25_rr": 0.0}


def _evidence(text: str, language: str, n: int = 1, **features: float) -> Evidence:
    return Evidence(n=n, doc_id=f"d{n}", source=f"d{n}.txt", title="", chunk_id=f"c{n}", language=language,
                    text=text, char_start=0, char_end=len(text), score=0.9, features={**SENTENCE, **features})


HITS = [Hit(chunk_id="c1", doc_id="d1", source="d1.txt", title="", language="pt", text="", char_start=0, char_end=0,
            score=0.03, rank=1, dense_rank=1, bm25_rank=None, dense_score=0.85)]


def test_other_language_says_whether_the_best_sentence_is_in_another_language_than_the_question() -> None:
    pt = [_evidence("A cooperativa é dirigida por Maria Souza.", "pt"), _evidence("Outra frase.", "pt", 2)]
    en = [replace(pt[0], language="en"), pt[1]]
    unknown = [replace(pt[0], language=""), pt[1]]
    q = "Who runs the Vale Verde cooperative?"
    assert question_features(q, pt, HITS, "en")["other_language"] == 1.0
    assert question_features(q, en, HITS, "en")["other_language"] == 0.0
    assert question_features(q, unknown, HITS, "en")["other_language"] == 0.0  # no language tag: no claim
    assert set(question_features(q, pt, HITS, "en")) == set(FEATURES)


def test_shipped_answer_model_uses_every_feature_and_a_threshold_inside_0_1() -> None:
    ranker = Ranker.load()
    assert ranker.answer.features == FEATURES
    assert 0.0 < ranker.threshold < 1.0


def test_the_gate_reads_the_features_its_ranker_file_was_fitted_on() -> None:
    """A ranker file fitted before ``other_language`` existed (a user's own calibration) still
    works: the gate passes the model the features it knows, in its order."""
    old = FEATURES[:-1]
    model = Logistic(old, tuple(0.0 for _ in old), tuple(1.0 for _ in old),
                     tuple(1.0 if f == "chunk_cos" else 0.0 for f in old), -0.8)
    gate = AbstentionGate(Ranker(model, model, threshold=0.5))
    ev = [_evidence("A cooperativa é dirigida por Maria Souza.", "pt")]
    close = gate.decide("Who runs the Vale Verde cooperative?", ev, HITS, "en")
    far = gate.decide("Who runs the Vale Verde cooperative?", ev, [replace(HITS[0], dense_score=0.2)], "en")
    assert not close.abstain and far.abstain
    assert far.reason.startswith("P(answerable)") and close.answerable > far.answerable


@pytest.mark.parametrize("threshold", [-0.1, 1.5])
def test_a_threshold_outside_0_1_is_a_clear_error(threshold: float) -> None:
    with pytest.raises(ValueError, match="within"):
        AbstentionGate(Ranker.load(), threshold)
