"""Answer matching for the gold set: does an answer text contain an expected alias?

Both the text and the alias go through :func:`normalize`, and the alias must then appear in the
text as a whole run of tokens. Normalisation is

* Unicode NFKC (full-width forms, ligatures, NFD input all end up the same), case folding
  (``ß`` -> ``ss``) and accent stripping (``Índia`` -> ``india``, ``bilhões`` -> ``bilhoes``);
* tokenisation: words (letters), numbers and currency / percent signs are kept, everything else
  (punctuation, typographic quotes and dashes, emoji) becomes a separator, and tokens are joined
  by single spaces. Digits and letters are split apart (``30bn`` -> ``30 bn``), as are hyphenated
  words (``Mensch-Maschine-Kooperation`` -> ``mensch maschine kooperation``);
* numbers: any Unicode decimal digit becomes ASCII; a digit group ``\\d{1,3}([.,]\\d{3})+`` (one
  separator used throughout) is a thousands-separated integer, optionally followed by the other
  separator and 1-2 decimals (``1,580`` = ``1.580`` = ``1580``; ``1.234,5`` = ``1,234.5`` =
  ``1234.5``); otherwise one ``,`` or ``.`` followed by 1-2 digits is a decimal point
  (``1,5`` = ``1.5``; ``1,50`` = ``1.5``; ``2,0`` = ``2``); any other run (dates ``05.03.2024``,
  ``3.14159``) is split into its digit groups. Groups separated by no-break or thin spaces
  (``1 580`` in French/German typography) are joined.

Consequences worth knowing when writing aliases:

* matching is on token boundaries: ``30`` does not match ``300`` or ``1.30``, ``AI`` does not
  match ``said``, and ``investor`` does not match ``investors`` (list plural forms separately);
* German compounds are single tokens: ``Berater`` does not match ``Technologieberater``;
* ``1.580`` is always read as one thousand five hundred and eighty, never as 1.58.

    >>> normalize("US $ 13 bilhões")
    'us $ 13 bilhoes'
    >>> matches("consumo excederá 1.580 horas terawatt", "1,580")
    True
    >>> matches("up to $300 billion", "30 billion")
    False
    >>> answer_correct("GE Vernova and NextEra Energy", [["NextEra"], ["Vernova"]])
    True
"""

from __future__ import annotations

import re
import unicodedata
from collections import Counter
from collections.abc import Iterable, Sequence
from functools import lru_cache

__all__ = ["normalize", "matches", "group_matched", "answer_correct", "matched_groups", "token_f1", "answer_f1"]

# A digit run with ``.``/``,`` between digit groups, taken as one unit and then interpreted.
_TOKEN = re.compile(r"(?P<num>[0-9]+(?:[.,][0-9]+)*)|(?P<word>[^\W\d_]+)|(?P<other>[^\w\s])")
_THOUSANDS = re.compile(r"([0-9]{1,3})((?P<sep>[.,])[0-9]{3}(?:(?P=sep)[0-9]{3})*)(?:[.,]([0-9]{1,2}))?")
_DECIMAL = re.compile(r"([0-9]+)[.,]([0-9]{1,2})")
# 1 580 / 1 580 / 1 580 (no-break, narrow no-break and thin space as group separators).
_SPACED_THOUSANDS = re.compile(r"(?<![0-9])[0-9]{1,3}(?:[\u00a0\u202f\u2009][0-9]{3})+(?![0-9])")
_SPACES = re.compile(r"[\u00a0\u202f\u2009]")


def _number(run: str) -> list[str]:
    """Canonical token(s) for a run of digits with ``.``/``,`` separators."""
    m = _THOUSANDS.fullmatch(run)
    if m and (m.group(4) is None or run[-len(m.group(4)) - 1] != m.group("sep")):
        integer = m.group(1) + m.group(2).replace(m.group("sep"), "")
        return [_decimal(integer, m.group(4) or "")]
    m = _DECIMAL.fullmatch(run)
    if m:
        return [_decimal(m.group(1), m.group(2))]
    return re.split(r"[.,]", run)


def _decimal(integer: str, fraction: str) -> str:
    fraction = fraction.rstrip("0")
    return f"{integer}.{fraction}" if fraction else integer


def _ascii_digits(text: str) -> str:
    if text.isascii():
        return text
    return "".join(str(unicodedata.decimal(ch)) if ch.isdecimal() else ch for ch in text)


def _strip_marks(text: str) -> str:
    decomposed = unicodedata.normalize("NFD", text)
    return unicodedata.normalize("NFC", "".join(ch for ch in decomposed if unicodedata.category(ch) != "Mn"))


def _once(text: str) -> str:
    text = _SPACED_THOUSANDS.sub(lambda m: _SPACES.sub("", m.group(0)), text)
    text = unicodedata.normalize("NFKC", text).casefold()
    text = _ascii_digits(_strip_marks(text))
    tokens: list[str] = []
    for m in _TOKEN.finditer(text):
        if m.group("num"):
            tokens.extend(_number(m.group("num")))
        elif m.group("word"):
            tokens.append(m.group("word"))
        elif m.group("other") == "%" or unicodedata.category(m.group("other")) == "Sc":
            tokens.append(m.group("other"))
        # any other character (punctuation, quotes, dashes, symbols, emoji, "_") separates tokens
    return " ".join(tokens)


def normalize(text: str) -> str:
    """Canonical, space-separated token form of ``text`` (idempotent; see the module docstring)."""
    out = _once(text)
    for _ in range(8):  # NFKC / casefold / mark stripping can expose new forms; settle them
        again = _once(out)
        if again == out:
            break
        out = again
    return out


@lru_cache(maxsize=8192)
def _norm_cached(text: str) -> str:
    return normalize(text)


def _contains(norm_text: str, alias: str) -> bool:
    norm_alias = _norm_cached(alias)
    return bool(norm_alias) and f" {norm_alias} " in f" {norm_text} "


def matches(text: str, alias: str) -> bool:
    """True when ``alias`` occurs in ``text`` as whole tokens, after normalisation.

    An alias that normalises to nothing (empty, punctuation only) never matches.
    """
    return _contains(normalize(text), alias)


def group_matched(text: str, group: Iterable[str]) -> bool:
    """True when at least one alias of ``group`` matches ``text``."""
    norm_text = normalize(text)
    return any(_contains(norm_text, alias) for alias in group)


def matched_groups(text: str, groups: Sequence[Iterable[str]]) -> list[bool]:
    """For each alias group, whether ``text`` matches it."""
    norm_text = normalize(text)
    return [any(_contains(norm_text, alias) for alias in group) for group in groups]


def answer_correct(text: str, groups: Sequence[Iterable[str]]) -> bool:
    """True when every alias group is matched; an empty list of groups is never correct."""
    return bool(groups) and all(matched_groups(text, groups))


def token_f1(text: str, alias: str) -> float:
    """SQuAD's token F1 between ``text`` and ``alias`` (bags of normalised tokens): partial credit
    for a partial answer, and a long answer pays for its extra words.

    >>> round(token_f1("extremely high pressure", "extremely high"), 2)
    0.8
    """
    got, want = normalize(text).split(), normalize(alias).split()
    common = sum((Counter(got) & Counter(want)).values())
    if not common:
        return 0.0
    precision, recall = common / len(got), common / len(want)
    return 2 * precision * recall / (precision + recall)


def answer_f1(text: str, groups: Sequence[Iterable[str]]) -> float:
    """Mean over alias groups of the best alias's token F1 (SQuAD takes the best alias of its one
    group); 0.0 for no groups."""
    scores = [max((token_f1(text, alias) for alias in group), default=0.0) for group in groups]
    return sum(scores) / len(scores) if scores else 0.0
