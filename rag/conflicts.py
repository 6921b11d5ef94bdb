"""Conflict detection: sentences from different documents that state different figures for one fact.

    >>> money("recaudar 300.000 millones de dólares ... hasta 1 billón de dólares")
    [(300000000000.0, '300.000 millones de dólares'), (1000000000000.0, '1 billón de dólares')]

When the question asks for an amount, an evidence sentence from another document that says
nearly the same thing as the answer's sentence (vectors close) but carries money figures with no
value in common is a disagreement: the answer shows both, each with its citation.
"""

from __future__ import annotations

import re

import numpy as np

from rag.terms import norm_number

_SCALE = {
    "thousand": 1e3, "million": 1e6, "millions": 1e6, "billion": 1e9, "billions": 1e9, "bn": 1e9,
    "trillion": 1e12, "trillions": 1e12, "mil": 1e3, "milhão": 1e6, "milhões": 1e6, "bilhão": 1e9,
    "bilhões": 1e9, "trilhão": 1e12, "trilhões": 1e12, "millón": 1e6, "millones": 1e6,
    "mil millones": 1e9, "billón": 1e12, "billones": 1e12, "millionen": 1e6, "million ": 1e6,
    "milliarde": 1e9, "milliarden": 1e9, "billion_de": 1e12, "billionen": 1e12, "mrd": 1e9,
}
_UNITS = "|".join(sorted((re.escape(k) for k in _SCALE if "_" not in k and not k.endswith(" ")), key=len, reverse=True))
_CURRENCY = r"(?:US\s?\$|\$|USD|€|EUR|dólares|dolares|dollars?|US-Dollar|Dollar|Euro)"
_MONEY = re.compile(
    rf"(?:{_CURRENCY}\s?)?(\d+(?:[.,]\d+)*)\s*({_UNITS})\b(?:\s*(?:de\s+)?{_CURRENCY})?", re.IGNORECASE
)


def money(text: str) -> list[tuple[float, str]]:
    """Money amounts with a scale word in ``text``: (value in units, text as written)."""
    out = []
    for m in _MONEY.finditer(text):
        whole = m.group(0)
        if not re.search(_CURRENCY, whole, re.IGNORECASE):
            continue
        unit = m.group(2).lower()
        scale = _SCALE.get(unit, 1.0)
        if unit == "billion" and "US-Dollar" in whole:
            scale = 1e12  # German "Billion" is 10^12
        number = norm_number(m.group(1))
        try:
            out.append((float(number) * scale, whole.strip()))
        except ValueError:
            continue
    return out


_AMOUNT = re.compile(
    r"how (much|many)|amount|worth|value|figure|quant[oa]s?|valor|montante|cu[aá]nt[oa]s?|monto|cifra|"
    r"wie (viel|viele|hoch)|wieviel|h[oö]he|betrag|summe|\$|€|billion|bilh|mill[oó]n|millones|milliard",
    re.IGNORECASE,
)


def asks_amount(question: str) -> bool:
    """Does the question ask for a figure (the only kind of disagreement we detect)?"""
    return bool(_AMOUNT.search(question))


def find_conflicts(evidence: list, vectors: list, primary: int, same_fact: float = 0.82,
                   window: float = 0.15) -> list[int]:
    """Indexes of evidence sentences that give other figures than ``evidence[primary]`` for the
    same fact: another document, a close score, a similar sentence, and no figure in common.

    ``evidence`` items need ``.text``, ``.doc_id`` and ``.score``; ``vectors`` are their
    sentence embeddings.
    """
    base = evidence[primary]
    base_figures = {round(v, -6) for v, _ in money(base.text)}
    if not base_figures:
        return []
    top = max(e.score for e in evidence)
    vb = np.asarray(vectors[primary])
    out, seen_docs = [], {base.doc_id}
    for i, e in enumerate(evidence):
        figures = {round(v, -6) for v, _ in money(e.text)}
        if e.doc_id in seen_docs or not figures or figures & base_figures or e.score < top - window:
            continue
        va = np.asarray(vectors[i])
        if float(va @ vb / (np.linalg.norm(va) * np.linalg.norm(vb) + 1e-9)) >= same_fact:
            out.append(i)
            seen_docs.add(e.doc_id)
    return out
