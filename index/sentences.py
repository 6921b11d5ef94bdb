"""Sentence spans with exact offsets, for evidence selection and citation highlighting.

    >>> [s.text for s in split_sentences("Nvidia joins. It advises AIP.\\nNext line")]
    ['Nvidia joins.', 'It advises AIP.', 'Next line']

A rule-based splitter (end punctuation, then a capital, digit, quote or opening mark; or a line
break), with an abbreviation list for the four corpus languages. It never changes the text:
each span is ``text[char_start:char_end]``.
"""

from __future__ import annotations

import re

from index.chunking import Span

_ABBREV = {
    "inc", "corp", "co", "ltd", "mr", "mrs", "ms", "dr", "prof", "st", "vs", "etc", "e.g", "i.e", "u.s",
    "u.k", "sr", "sra", "dra", "av", "nº", "no", "z.b", "bzw", "ca", "nr", "dt", "usw", "vgl", "s.a", "jr",
}
_END = re.compile(r"[.!?…。！？]+[\"'”’»)\]]*(?=\s+)")
_START = re.compile(r"\s+[\"'“‘«(\[¿¡]*[\w\d]")


def split_sentences(text: str, start: int = 0, end: int | None = None) -> list[Span]:
    """Sentences of ``text[start:end]`` as spans with offsets into ``text``."""
    end = len(text) if end is None else end
    spans: list[Span] = []
    for line in re.finditer(r"[^\n]+", text[start:end]):
        base = start + line.start()
        segment = line.group()
        cut = 0
        for m in _END.finditer(segment):
            nxt = _START.match(segment, m.end())
            if not nxt:
                continue
            word = re.search(r"([\w.]+)\.$", segment[cut : m.start() + 1])
            if m.group().startswith(".") and word and word.group(1).lower() in _ABBREV:
                continue
            if m.group() == "." and re.search(r"\b[A-Z]$", segment[: m.start()]):
                continue  # an initial: "Donald J. Trump"
            _push(spans, text, base + cut, base + m.end())
            cut = m.end()
        _push(spans, text, base + cut, base + len(segment))
    return spans


def _push(spans: list[Span], text: str, a: int, b: int) -> None:
    while a < b and text[a].isspace():
        a += 1
    while b > a and text[b - 1].isspace():
        b -= 1
    if b > a:
        spans.append(Span(text[a:b], a, b))
