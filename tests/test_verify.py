"""Post-generation verification with the real embedder, on evidence from the real index."""

from __future__ import annotations

import pytest

from rag.verify import Verifier

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def evidence(corpus_qa):
    ans = corpus_qa.ask("Who advises AIP?")
    q = "Who advises AIP?"
    ev, _, _ = corpus_qa.engine._evidence(q, ans.retrieved, corpus_qa.engine.embed_model.get_query_embedding(q), "en")
    return ev


@pytest.mark.parametrize("text", ["Nvidia advises AIP.", "Nvidia is the technical advisor of AIP."])
def test_supported_answers_pass_and_get_a_citation(corpus_qa, evidence, text):
    verdict = Verifier(corpus_qa.engine.embed_model).check(text, [], evidence)
    assert verdict.ok and verdict.cited
    assert any("nvidia" in e.text.lower() for e in evidence if e.n in verdict.cited)  # added when missing


@pytest.mark.parametrize("text,bad", [("Paris.", "paris"), ("Intel advises AIP.", "intel"),
                                      ("The alliance is headquartered in Paris.", "paris"),
                                      ("Nvidia will invest 42 billion dollars.", "42")])
def test_unsupported_names_and_numbers_are_rejected_and_named(corpus_qa, evidence, text, bad):
    verdict = Verifier(corpus_qa.engine.embed_model).check(text, [1], evidence)
    assert not verdict.ok and bad in verdict.reason


def test_empty_answer_is_rejected(corpus_qa, evidence):
    assert not Verifier(corpus_qa.engine.embed_model).check("  ", [1], evidence).ok
