"""Where the question's names are, relative to the answer: a breakdown that makes the
topic-sentence failure measurable on any gold set.

    >>> pattern("Who runs the library in Sotillo?", [["Escudero"]],
    ...         ["The library of Sotillo turns fifty.", "Today Ramón Escudero runs it."])
    'names_elsewhere'

* ``names_in_answer``: a sentence that holds a gold answer also holds one of the question's names
  or numbers (``index.text.names``), so word overlap points at it;
* ``names_elsewhere``: no answer sentence does, but another sentence of the same source does (the
  article names its subject once, and the answer refers back to it: "It opened in 1921."). The
  sentence naming the subject is the tempting wrong quote;
* ``other``: unanswerable, no names in the question, or no source sentence holds a gold answer.

Read from the store's own sentences of each gold source, so it works for any format and language.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from eval.gold import GoldItem
from index.text import names

PATTERNS = ("names_in_answer", "names_elsewhere", "other")


def pattern(question: str, answers: Sequence[Sequence[str]], sentences: Sequence[str]) -> str:
    """The pattern of one answerable question over its sources' ``sentences``."""
    asked = names(question)
    wanted = [a.casefold() for group in answers for a in group if a.strip()]
    holding = [s for s in sentences if any(a in s.casefold() for a in wanted)]
    if not asked or not holding:
        return "other"
    if any(asked & names(s) for s in holding):
        return "names_in_answer"
    return "names_elsewhere" if any(asked & names(s) for s in sentences if s not in holding) else "other"


def patterns(store: Any, items: Sequence[GoldItem]) -> dict[str, str]:
    """``pattern`` of every item (``other`` for unanswerable ones), by id, read from ``store``."""
    out: dict[str, str] = {}
    for item in items:
        if not item.answerable or not item.sources:
            out[item.id] = "other"
            continue
        got = store.sentences_of(list(item.sources))
        out[item.id] = pattern(item.question, item.answers, got["documents"])
    return out
