"""Sentence spans with exact offsets, for evidence selection and citation highlighting.

    >>> [s.text for s in split_sentences("Nvidia joins. It advises AIP.\\nNext line")]
    ['Nvidia joins.', 'It advises AIP.', 'Next line']

A rule-based splitter (end punctuation, then a capital, digit, quote or opening mark; or a line
break), with an abbreviation list for the four corpus languages. In languages that write ordinal
numbers with a period (German "am 1. März", "im 19. Jahrhundert"; also the Scandinavian, Finnic,
Baltic, West and South Slavic languages, Hungarian and Turkish), a period right after a number of
one to three digits is the ordinal's, not a sentence end, unless the number follows a capitalised
word inside the sentence ("State Route 99. Sie ist ...": a label, not an ordinal). It never
changes the text: each span is ``text[char_start:char_end]``.
"""

from __future__ import annotations

import re

from index.chunking import Span

_ABBREV = {
    "inc", "corp", "co", "ltd", "mr", "mrs", "ms", "dr", "prof", "st", "vs", "etc", "e.g", "i.e", "u.s",
    "u.k", "sr", "sra", "dra", "av", "nº", "no", "z.b", "bzw", "ca", "nr", "dt", "usw", "vgl", "s.a", "jr",
}
# ISO 639-1 codes of languages whose orthography marks ordinals with a period after the digits.
ORDINAL_PERIOD_LANGUAGES = frozenset({"de", "da", "nb", "nn", "no", "is", "fi", "et", "lv", "lt", "cs", "sk", "pl",
                                      "sl", "hr", "sr", "bs", "hu", "tr"})
_ORDINAL = re.compile(r"(?:^|[\s(\[])\d{1,3}$")
_END = re.compile(r"[.!?…。！？]+[\"'”’»)\]]*(?=\s+)")
_START = re.compile(r"\s+[\"'“‘«(\[¿¡]*[\w\d]")


def split_sentences(text: str, start: int = 0, end: int | None = None, language: str = "") -> list[Span]:
    """Sentences of ``text[start:end]`` as spans with offsets into ``text`` (``language``: the
    text's ISO 639-1 code, for ordinals; "" = none of the ordinal-period languages)."""
    end = len(text) if end is None else end
    ordinals = language in ORDINAL_PERIOD_LANGUAGES
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
            if ordinals and m.group() == "." and _is_ordinal(segment[cut : m.start()]):
                continue  # an ordinal: "ab dem 1. März"
            _push(spans, text, base + cut, base + m.end())
            cut = m.end()
        _push(spans, text, base + cut, base + len(segment))
    return spans


def _is_ordinal(before: str) -> bool:
    """``before`` (the sentence so far) ends in a number that reads as an ordinal: it follows a
    determiner, preposition or adjective ("am 5.", "im 19.", "des 17."), or starts the sentence;
    not a capitalised noun or name inside it ("Route 99.", "Platz 3."): that is a label, and its
    period may end the sentence (in German every noun is capitalised)."""
    if not _ORDINAL.search(before):
        return False
    words = before.split()[:-1]
    return len(words) <= 1 or not words[-1][:1].isupper()


def _push(spans: list[Span], text: str, a: int, b: int) -> None:
    while a < b and text[a].isspace():
        a += 1
    while b > a and text[b - 1].isspace():
        b -= 1
    if b > a:
        spans.append(Span(text[a:b], a, b))
