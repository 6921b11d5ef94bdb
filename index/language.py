"""Offline language identification for documents, chunks and questions (lingua, bundled models).

    >>> detect_language("Quem assessora a AIP?").code
    'pt'

Lingua only chooses among the configured Latin-script languages, so text written mostly in
another script is labelled by script first (zh, ja, ko, ar, ru, el, he, hi, th) and never forced
into a European language it is not.
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass
from functools import lru_cache

DEFAULT_LANGUAGES = ("en", "pt", "es", "de", "fr", "it", "nl")
UNKNOWN = "und"

_SCRIPTS = (
    ("CJK", "zh"), ("HIRAGANA", "ja"), ("KATAKANA", "ja"), ("HANGUL", "ko"), ("ARABIC", "ar"),
    ("CYRILLIC", "ru"), ("GREEK", "el"), ("HEBREW", "he"), ("DEVANAGARI", "hi"), ("THAI", "th"),
)


@dataclass(frozen=True)
class Detected:
    code: str  # ISO 639-1, or "und"
    confidence: float


@lru_cache(maxsize=8)
def _detector(languages: tuple[str, ...]):
    from lingua import IsoCode639_1, LanguageDetectorBuilder

    isos = [getattr(IsoCode639_1, code.upper()) for code in languages]
    return LanguageDetectorBuilder.from_iso_codes_639_1(*isos).with_preloaded_language_models().build()


def _script_language(text: str) -> str | None:
    letters = [ch for ch in text if ch.isalpha()]
    if not letters:
        return UNKNOWN
    latin = sum(1 for ch in letters if "LATIN" in unicodedata.name(ch, ""))
    if latin >= 0.5 * len(letters):
        return None
    counts: dict[str, int] = {}
    for ch in letters:
        name = unicodedata.name(ch, "")
        for marker, code in _SCRIPTS:
            if marker in name:
                counts[code] = counts.get(code, 0) + 1
                break
    return max(counts, key=counts.__getitem__) if counts else UNKNOWN


def detect_language(text: str, languages: tuple[str, ...] = DEFAULT_LANGUAGES) -> Detected:
    """Most likely language of ``text`` among ``languages`` (or by script), with confidence 0..1."""
    by_script = _script_language(text[:5000])
    if by_script is not None:
        return Detected(by_script, 1.0 if by_script != UNKNOWN else 0.0)
    values = _detector(tuple(languages)).compute_language_confidence_values(text[:5000])
    if not values:
        return Detected(UNKNOWN, 0.0)
    best = values[0]
    return Detected(best.language.iso_code_639_1.name.lower(), float(best.value))


def without_names(text: str) -> str:
    """``text`` without the words that are the same in every language: numbers, acronyms and
    capitalised words after the first ("Quem é o CEO da BlackRock?" -> "Quem é o da")."""
    kept = []
    for i, tok in enumerate(text.split()):
        word = tok.strip("¿¡?!.,;:\"'()[]«»“”")
        capitals = sum(c.isupper() for c in word)
        if word and not any(c.isdigit() for c in word) and capitals <= 1 and not (capitals and i > 0):
            kept.append(tok)
    return " ".join(kept)


def detect_question_language(
    question: str, supported: tuple[str, ...] = ("en", "pt", "es", "de"), default: str = "en"
) -> str:
    """A question's language among ``supported``; short or ambiguous ones fall back to ``default``.

    Names, acronyms and numbers say nothing about the language (and lingua reads "CEO" and
    "BlackRock" as English), so the question is also read without them (when two other words
    remain) and the more confident reading wins. Inverted punctuation settles short Spanish ones.
    """
    by_script = _script_language(question)
    if by_script is not None:
        return by_script if by_script != UNKNOWN else default
    if "¿" in question or "¡" in question:
        return "es" if "es" in supported else default
    rest = without_names(question)
    best = None
    for text in (question, rest) if len(rest.split()) >= 2 else (question,):
        found = detect_language(text, tuple(dict.fromkeys((*supported, *DEFAULT_LANGUAGES))))
        if found.code in supported and found.confidence >= 0.3 and (best is None or found.confidence > best.confidence):
            best = found
    if best is not None:
        return best.code
    return default
