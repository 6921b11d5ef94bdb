"""Conflict detection: sentences from different documents that state different figures for one fact.

    >>> money("recaudar 300.000 millones de dólares ... hasta 1 billón de dólares")
    [(300000000000.0, '300.000 millones de dólares'), (1000000000000.0, '1 billón de dólares')]

Two evidence sentences conflict when they come from different documents, say nearly the same
thing (sentence vectors close) and carry money figures with no value in common. The answer then
shows both, each with its citation, instead of picking one.
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


def find_conflicts(evidence: list, vectors: list, same_fact: float = 0.86, window: float = 0.06) -> list[tuple[int, int]]:
    """Pairs (i, j) of evidence indexes that give different figures for the same fact.

    ``evidence`` items need ``.text``, ``.doc_id`` and ``.score``; ``vectors`` are their sentence
    embeddings. Only sentences scoring within ``window`` of the best are considered.
    """
    if len(evidence) < 2:
        return []
    top = max(e.score for e in evidence)
    figures = [{round(v, -6) for v, _ in money(e.text)} for e in evidence]
    pairs = []
    for i, a in enumerate(evidence):
        for j in range(i + 1, len(evidence)):
            b = evidence[j]
            if a.doc_id == b.doc_id or not figures[i] or not figures[j] or figures[i] & figures[j]:
                continue
            if min(a.score, b.score) < top - window:
                continue
            va, vb = np.asarray(vectors[i]), np.asarray(vectors[j])
            if float(va @ vb / (np.linalg.norm(va) * np.linalg.norm(vb) + 1e-9)) >= same_fact:
                pairs.append((i, j))
    return pairs
