"""What the model reads: evidence sentences with their neighbours, within a tiktoken budget."""

from __future__ import annotations

import pytest

from index.chunking import count_tokens
from rag.context import build_context
from rag.llm import build_messages, parse_found
from rag.types import Evidence

PASSAGE = ("The fund was set up in 2021. It is managed by Ana Ruiz. Its office is in Porto. "
           "It invests in ports and railways. Nothing else is known.")


def _ev(n: int, sentence: str, chunk: str = "c1", passage: str = PASSAGE, start: int = 100) -> Evidence:
    at = passage.index(sentence)
    return Evidence(n=n, doc_id=f"d-{chunk}", source=f"{chunk}.txt", title=chunk, chunk_id=chunk, language="en",
                    text=sentence, char_start=start + at, char_end=start + at + len(sentence), score=1.0 / n,
                    passage=passage, passage_start=start)


def test_neighbours_come_with_exact_offsets_and_new_numbers():
    ev = [_ev(1, "It is managed by Ana Ruiz.")]
    ctx = build_context(ev, budget=200)
    (passage,) = ctx.passages
    assert [s.text for s in passage] == ["The fund was set up in 2021.", "It is managed by Ana Ruiz.",
                                         "Its office is in Porto."]
    assert [s.n for s in passage] == [2, 1, 3]  # evidence keeps its number; neighbours come after
    for s in passage:
        assert PASSAGE[s.char_start - 100 : s.char_end - 100] == s.text


@pytest.mark.parametrize("budget", [0, 12, 20, 40, 400])
def test_budget_is_kept_and_evidence_is_never_dropped(budget):
    ev = [_ev(1, "Its office is in Porto."), _ev(2, "It is managed by Ana Ruiz.")]
    ctx = build_context(ev, budget=budget, window=2)
    assert {1, 2} <= {s.n for s in ctx.sentences}
    assert ctx.tokens == sum(count_tokens(s.text) for s in ctx.sentences)
    assert ctx.tokens <= max(budget, sum(count_tokens(e.text) for e in ev))
    assert len({(s.doc_id, s.char_start) for s in ctx.sentences}) == len(ctx.sentences)  # no sentence twice


def test_passages_are_kept_apart_in_the_prompt():
    other = "Atlas Energy is led by Paul Brandt."
    ev = [_ev(1, "It is managed by Ana Ruiz."), _ev(2, other, chunk="c2", passage=other, start=0)]
    user = build_messages("Who manages the fund?", "pt", build_context(ev, budget=200))[1]["content"]
    assert "Passage 1" in user and "Passage 2" in user
    assert user.index("Ana Ruiz") < user.index("Passage 2") < user.index("Paul Brandt")


def test_the_model_can_say_the_documents_do_not_answer():
    assert parse_found('{"found": false, "answer": "Os documentos não dizem.", "evidence": []}') is False
    assert parse_found('{"found": true, "answer": "Ana Ruiz.", "evidence": [1]}') is True
    assert parse_found('{"answer": "Ana Ruiz.", "evidence": [1]}') is True  # no flag: verified as usual
