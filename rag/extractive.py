"""The extractive answer: no LLM, the best evidence sentence quoted with its citation.

    >>> text, cited = extractive_answer("en", evidence)
    >>> text
    '“... with Nvidia joining as a technology advisor.” [1]'

Instant and faithful by construction. When the best quote is in another language than the
question, the answer says which language it is quoted from.
"""

from __future__ import annotations

from rag.messages import language_name, message
from rag.types import Evidence


def pick_primary(question_lang: str, evidence: list[Evidence]) -> Evidence:
    """The sentence to quote: the best-scoring one, whatever its language (preferring the
    question's language cost accuracy on the gold set: see rag/evidence.py)."""
    return max(evidence, key=lambda e: e.score)


def quote(question_lang: str, ev: Evidence) -> str:
    text = f"“{ev.text}” [{ev.n}]"
    if ev.language != question_lang:
        lang = language_name(ev.language, question_lang)
        return f"{message(question_lang, 'quoted_from', language=lang)} {text}"
    return text


def extractive_answer(question_lang: str, evidence: list[Evidence]) -> tuple[str, list[int]]:
    """Answer text and the evidence numbers it cites."""
    primary = pick_primary(question_lang, evidence)
    return quote(question_lang, primary), [primary.n]
