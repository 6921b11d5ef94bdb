"""Names, numbers and money figures in text: the facts answers and evidence must share.

    >>> sorted(key_terms("Who advises AIP in 2034?"))
    ['2034', 'aip']
    >>> fold("Bündnis")
    'bundnis'
"""

from __future__ import annotations

import bisect
import re
import unicodedata
from functools import lru_cache

_DOUBLE = re.compile(r"(\D)\1+")
_TOKEN = re.compile(r"\d+(?:[.,]\d+)*|[^\W\d_][\w'’-]*", re.UNICODE)


def fold(text: str) -> str:
    """Lower-case, accents removed, NFKC: what two spellings of one name have in common."""
    text = unicodedata.normalize("NFKD", unicodedata.normalize("NFKC", text).lower())
    return "".join(c for c in text if not unicodedata.combining(c))


def norm_number(token: str) -> str:
    if re.fullmatch(r"\d{1,3}(?:[.,]\d{3})+", token):
        return re.sub(r"[.,]", "", token)
    return token.replace(",", ".")


@lru_cache(maxsize=1)
def _stopwords() -> frozenset[str]:
    import bm25s.stopwords as sw

    words: set[str] = set()
    for name in ("STOPWORDS_EN", "STOPWORDS_PORTUGUESE", "STOPWORDS_SPANISH", "STOPWORDS_GERMAN"):
        words.update(fold(w) for w in getattr(sw, name))
    words.update({"who", "what", "which", "how", "where", "when", "why", "quem", "qual", "quais", "quanto",
                  "onde", "quando", "quien", "cual", "cuales", "cuanto", "cuantos", "donde", "wer", "was",
                  "welche", "welcher", "wie", "wo", "wann", "warum", "wieviel", "and", "the", "does", "much",
                  "many", "viele", "viel", "hoch", "mes", "according", "segun", "laut", "segundo", "name",
                  "nome", "nombre", "stand", "steht", "apart", "tell", "diz", "dice", "sagt", "say", "says"})
    return frozenset(words)


def tokens(text: str) -> list[str]:
    return _TOKEN.findall(text)


def key_terms(text: str) -> set[str]:
    """Proper names (words with a capital letter that are not question/stop words) and numbers."""
    out: set[str] = set()
    for tok in tokens(text):
        if tok[0].isdigit():
            out.add(norm_number(tok))
        elif any(c.isupper() for c in tok) and fold(tok) not in _stopwords() and len(tok) > 1:
            out.add(fold(tok))
    return out


def content_terms(text: str) -> set[str]:
    """Every non-stopword token, folded (numbers normalised)."""
    return {norm_number(t) if t[0].isdigit() else fold(t) for t in tokens(text)
            if t[0].isdigit() or (fold(t) not in _stopwords() and len(t) > 2)}


def _single(word: str) -> str:
    """Doubled letters collapsed: Portuguese/English spellings meet Spanish ones
    (assessora -> asesora ~ asesor, commission -> comision)."""
    return _DOUBLE.sub(r"\1", word)


def present(term: str, text_terms: set[str], folded_text: str) -> bool:
    """A key term is present as a token, or as a prefix of one (xAI's, Nvidia's, Bündnisses)."""
    if term in text_terms:
        return True
    return re.search(rf"(?<!\w){re.escape(term)}", folded_text) is not None


def coverage(terms: set[str], text: str) -> float:
    """Share of ``terms`` found in ``text``; 1.0 when there are no terms to find."""
    if not terms:
        return 1.0
    folded = fold(text)
    have = content_terms(text) | key_terms(text)
    return sum(present(t, have, folded) for t in terms) / len(terms)


def stems(text: str, size: int = 5) -> set[str]:
    """Content words cut to their first ``size`` letters: a stemmer that works across the four
    languages well enough to match advises/advisor, asesora/asesor, Bündnis/Bündnisses."""
    return {t if t[0].isdigit() else _single(t)[:size] for t in content_terms(text)}


def shared_stems(question_stems: set[str], text: str) -> set[str]:
    """Question stems found in ``text``: as a word prefix, or inside a long compound word
    (German "berät" -> "berat" in "Technologieberater")."""
    words = {_single(w) for w in content_terms(text)}
    found = set()
    for stem in question_stems:
        if any(w.startswith(stem) or (len(stem) >= 5 and len(w) >= 9 and stem in w) for w in words):
            found.add(stem)
    return found


class Vocabulary(frozenset):
    """The content words of a corpus, with fast prefix and inside-a-compound lookups (a plain
    scan of 50k words took ~40 ms per question at 100k chunks)."""

    def __new__(cls, words=()):
        self = super().__new__(cls, words)
        self._sorted = sorted(self)
        self._long = "\n".join(w for w in self._sorted if len(w) >= 9)  # compounds, newline-separated
        return self

    def has_stem(self, stem: str) -> bool:
        if stem in self:
            return True
        i = bisect.bisect_left(self._sorted, stem)
        if i < len(self._sorted) and self._sorted[i].startswith(stem):
            return True
        return len(stem) >= 5 and stem in self._long


def vocabulary_of(texts) -> Vocabulary:
    """Every content word of ``texts`` (folded), for ``in_vocabulary``."""
    vocab: set[str] = set()
    for text in texts:
        vocab |= {_single(w) for w in content_terms(text)}
    return Vocabulary(vocab)


def in_vocabulary(stem: str, vocab: set[str]) -> bool:
    """Does some document word start with ``stem`` (or hold it inside a long compound)?"""
    if not isinstance(vocab, Vocabulary):  # a plain set from a caller: index it (once per call site is better)
        vocab = Vocabulary(vocab)
    return vocab.has_stem(stem)
