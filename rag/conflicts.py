"""Conflict detection: sentences from different documents that state different figures for one fact.

    >>> find_conflicts(evidence, vectors, primary=0)      # indexes of evidence that disagree with [0]
    [2]

When the question asks for a quantity and the sentence an answer quotes states an amount (a
number with a scale word or a currency, parsed per language by ``index.text.amounts``), an
evidence sentence from another document that says nearly the same thing (vectors close, score
close) but whose amounts have no value in common is a disagreement: the answer shows both, each
with its citation. A quantity question is one with a quantity interrogative of its language (a
closed grammatical class: "how much/many", "quanto", "cuánto", "wie viel") or an amount in it;
without that test, any two figures near a "who" answer raised the notice.
"""

from __future__ import annotations

import re

import numpy as np

from index.text import amounts, fold

_QUANTITY = re.compile(r"\b(?:how (?:much|many)|quant[oa]s?|cuant[oa]s?|wie ?viele?)\b")


def asks_quantity(question: str, lang: str) -> bool:
    """Does the question ask how much / how many (in en, pt, es or de), or name an amount?"""
    return bool(_QUANTITY.search(fold(question))) or bool(amounts(question, lang))


def figures(ev) -> list[tuple[float, str]]:
    """Amounts stated by an evidence sentence (value, as written), in its own language."""
    return amounts(ev.text, ev.language or "en")


def find_conflicts(evidence: list, vectors: list, primary: int, same_fact: float = 0.82,
                   window: float = 0.15) -> list[int]:
    """Indexes of evidence sentences that give other figures than ``evidence[primary]`` for the
    same fact: another document, a close score, a similar sentence, and no figure in common.

    ``evidence`` items need ``.text``, ``.language``, ``.doc_id`` and ``.score``; ``vectors`` are
    their sentence embeddings.
    """
    base = evidence[primary]
    base_figures = {round(v, -6) if v >= 1e6 else v for v, _ in figures(base)}
    if not base_figures:
        return []
    vb = np.asarray(vectors[primary])
    out, seen_docs = [], {base.doc_id}
    for i, e in enumerate(evidence):
        found = {round(v, -6) if v >= 1e6 else v for v, _ in figures(e)}
        if e.doc_id in seen_docs or not found or found & base_figures or e.score < base.score - window:
            continue
        va = np.asarray(vectors[i])
        if float(va @ vb / (np.linalg.norm(va) * np.linalg.norm(vb) + 1e-9)) >= same_fact:
            out.append(i)
            seen_docs.add(e.doc_id)
    return out
