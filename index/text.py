"""Text analysis shared by every stage: one tokeniser, one stemmer, one stopword source, one
number parser.

    >>> words("O Bündnis investiu 1.580 milhões.")
    ['O', 'Bündnis', 'investiu', '1.580', 'milhões']
    >>> sorted(terms("Who advises the museum?", "en"))
    ['advis', 'museum']
    >>> number_value("1.580")
    1580.0

* tokens: runs of letters (with inner apostrophes/hyphens) and numbers (``1,580``, ``3.5``);
* folding: NFKC, lower case, accents removed (``Índia`` -> ``india``);
* stemming: the Snowball stemmers of PyStemmer, per language;
* stopwords: the stopwords-iso collection (``stopwordsiso`` package), per language;
* numbers: thousands separators and decimal commas normalised (``1,580`` = ``1.580`` = ``1580``;
  ``3,5`` = ``3.5``).

Used by the BM25 side index, evidence scoring, abstention, verification and conflict detection,
so a word means the same thing to all of them.
"""

from __future__ import annotations

import re
import unicodedata
from functools import lru_cache

_TOKEN = re.compile(r"\d+(?:[.,]\d+)*|[^\W\d_]+(?:['’-][^\W\d_]+)*", re.UNICODE)
_THOUSANDS = re.compile(r"\d{1,3}(?:([.,])\d{3})(?:\1\d{3})*")
STEMMERS = {"en": "english", "pt": "portuguese", "es": "spanish", "de": "german", "fr": "french",
            "it": "italian", "nl": "dutch"}


def fold(text: str) -> str:
    """Lower-case, accents removed, NFKC: what two spellings of one word have in common."""
    text = unicodedata.normalize("NFKD", unicodedata.normalize("NFKC", text).lower())
    return "".join(c for c in text if not unicodedata.combining(c))


def words(text: str) -> list[str]:
    """Word and number tokens of ``text``, as written."""
    return _TOKEN.findall(text)


def is_number(token: str) -> bool:
    return token[:1].isdigit()


def norm_number(token: str) -> str:
    """A number token in one canonical spelling: ``1,580`` / ``1.580`` -> ``1580``, ``3,5`` -> ``3.5``."""
    if _THOUSANDS.fullmatch(token):
        return re.sub(r"[.,]", "", token)
    return token.replace(",", ".")


def number_value(token: str) -> float | None:
    try:
        return float(norm_number(token))
    except ValueError:
        return None


@lru_cache(maxsize=16)
def _stemmer(lang: str):
    import Stemmer

    return Stemmer.Stemmer(STEMMERS[lang]) if lang in STEMMERS else None


@lru_cache(maxsize=16)
def stopwords(lang: str) -> frozenset[str]:
    """Folded stopwords of ``lang`` from stopwords-iso (empty for an unknown language)."""
    import stopwordsiso

    try:
        return frozenset(fold(w) for w in stopwordsiso.stopwords(lang))
    except (KeyError, ValueError):
        return frozenset()


@lru_cache(maxsize=200_000)
def stem(word: str, lang: str) -> str:
    """Folded Snowball stem of ``word`` in ``lang`` (the folded word itself when no stemmer)."""
    low = word.lower()
    s = _stemmer(lang)
    return fold(s.stemWord(low) if s else low)


def token_key(token: str, lang: str) -> str:
    """What a token is matched by: a canonical number, else its stem."""
    return norm_number(token) if is_number(token) else stem(token, lang)


def stems_related(a: str, b: str, min_len: int = 5) -> bool:
    """Equal stems, or one a prefix of the other when it has ``min_len``+ letters: Snowball
    stems inflection, not derivation (advises -> "advis", advisor -> "advisor"). Out-of-fold on
    the benchmark this gained 0.3 points of answer-sentence accuracy and lost on no fold."""
    if a == b:
        return True
    short, long_ = (a, b) if len(a) <= len(b) else (b, a)
    return len(short) >= min_len and long_.startswith(short) and not short[0].isdigit()


@lru_cache(maxsize=200_000)
def _is_stopword(token: str, lang: str) -> bool:
    return fold(token) in stopwords(lang)


def content_words(text: str, lang: str) -> list[str]:
    """Tokens that carry content: numbers, and words of 2+ letters that are not stopwords of ``lang``."""
    return [t for t in words(text) if is_number(t) or (len(t) > 1 and not _is_stopword(t, lang))]


def terms(text: str, lang: str) -> set[str]:
    """Matching keys (stems, canonical numbers) of the content words of ``text``."""
    return {token_key(t, lang) for t in content_words(text, lang)}


@lru_cache(maxsize=1)
def _function_words() -> frozenset[str]:
    """Stopwords of the four answer languages: a capitalised one opens a sentence, it is no name."""
    return frozenset().union(*(stopwords(lang) for lang in ("en", "pt", "es", "de")))


def names(text: str) -> set[str]:
    """Folded capitalised words that are not stopwords (of en/pt/es/de), and numbers: the names
    and figures a claim states (language-neutral: names are written alike across languages)."""
    out: set[str] = set()
    for m in _TOKEN.finditer(text):
        tok = m.group()
        if is_number(tok):
            out.add(norm_number(tok))
            continue
        if len(tok) > 1 and any(c.isupper() for c in tok) and fold(tok) not in _function_words():
            out.add(fold(tok))
    return out


# ---------------------------------------------------------------------------- amounts
# Scale words by language (folded): the same word can mean different powers of ten ("billion" is
# 10^9 in English and 10^12 in German; Spanish "billón" is 10^12, "mil millones" 10^9).
SCALES: dict[str, dict[str, float]] = {
    "en": {"thousand": 1e3, "million": 1e6, "millions": 1e6, "billion": 1e9, "billions": 1e9, "bn": 1e9,
           "trillion": 1e12, "trillions": 1e12},
    "pt": {"mil": 1e3, "milhao": 1e6, "milhoes": 1e6, "mil milhoes": 1e9, "bilhao": 1e9, "bilhoes": 1e9,
           "trilhao": 1e12, "trilhoes": 1e12},
    "es": {"mil": 1e3, "millon": 1e6, "millones": 1e6, "mil millones": 1e9, "billon": 1e12, "billones": 1e12},
    "de": {"tausend": 1e3, "million": 1e6, "millionen": 1e6, "mio": 1e6, "milliarde": 1e9, "milliarden": 1e9,
           "mrd": 1e9, "billion": 1e12, "billionen": 1e12},
}
_CURRENCY = r"(?:[$€£¥]|\b(?:US\$|USD|EUR|GBP|d[oó]lares|dollars?|US-Dollar|Dollar|euros?|libras?|pfund)\b)"
_ACCENTS = {"a": "[aáàâã]", "e": "[eéèê]", "i": "[iíì]", "o": "[oóòôõ]", "u": "[uúùü]", "c": "[cç]", "n": "[nñ]"}
_SCALE_WORDS = sorted({w for table in SCALES.values() for w in table}, key=len, reverse=True)
_SCALE_RE = "|".join("".join(_ACCENTS.get(ch, re.escape(ch)) for ch in w) for w in _SCALE_WORDS)
_AMOUNT = re.compile(
    rf"(?P<cur1>{_CURRENCY}\s?)?(?P<num>\d+(?:[.,]\d+)*)\s*(?P<scale>(?:{_SCALE_RE})\b)?"
    rf"(?:\s*(?:de\s+)?(?P<cur2>{_CURRENCY}))?", re.IGNORECASE)


def amounts(text: str, lang: str) -> list[tuple[float, str]]:
    """Money amounts and scaled figures in ``text`` as (value, text as written): a number with a
    scale word of ``lang`` ("1 billón de dólares" = 1e12 in Spanish) and/or a currency.

    >>> amounts("hasta 1 billón de dólares", "es")
    [(1000000000000.0, '1 billón de dólares')]
    """
    table = SCALES.get(lang, SCALES["en"])
    out = []
    for m in _AMOUNT.finditer(text):
        scale_word = fold(m.group("scale") or "")
        if not (scale_word or m.group("cur1") or m.group("cur2")):
            continue
        value = number_value(m.group("num"))
        if value is None:
            continue
        out.append((value * table.get(scale_word, SCALES["en"].get(scale_word, 1.0)), m.group(0).strip()))
    return out


def scale_words(text: str) -> list[str]:
    """Scale words of any of our languages in ``text``, as written ("1 billion US-Dollar" -> ["billion"])."""
    return [m.group("scale") for m in _AMOUNT.finditer(text) if m.group("scale")]


def foreign_scale_words(text: str, lang: str) -> list[str]:
    """Scale words in ``text`` that are not number words of ``lang``: "billion" in a Portuguese or
    Spanish sentence is the English word; in German the nouns are capitalised, so a lower-case
    "billion"/"million" there is English too (and "Billion" would mean 10^12, not 10^9)."""
    table = SCALES.get(lang)
    if table is None:
        return []
    out = []
    for word in scale_words(text):
        folded = fold(word)
        native = folded in table and not (lang == "de" and word[0].islower() and folded not in ("mio", "mrd"))
        if not native:
            out.append(word)
    return out


# ---------------------------------------------------------------------------- foreign words
# Word frequencies from the wordfreq package (Zipf scale: log10 of occurrences per billion words;
# 3 = once per million). A word left untranslated is common in the source's language and all but
# absent from the target's: "recaudar" is 3.7 in Spanish and 0 in Portuguese, where "dólares" (5.0
# in both) and "capital" are words of both. The two limits were chosen on benchmark folds 0-2 and
# measured on folds 3-4 (`python -m eval.foreign`, docs/EVAL.md).
FOREIGN_MAX_ZIPF = 2.5   # at most this common in the target language ...
SOURCE_MIN_ZIPF = 3.0    # ... and at least this common in a source language


@lru_cache(maxsize=65536)
def zipf(word: str, lang: str) -> float:
    from wordfreq import zipf_frequency

    return zipf_frequency(word, lang)


def foreign_words(text: str, lang: str, sources, max_zipf: float = FOREIGN_MAX_ZIPF,
                  min_zipf: float = SOURCE_MIN_ZIPF) -> list[str]:
    """Lower-case words of ``text`` (written in ``lang``) that are words of one of the ``sources``
    languages and not of ``lang``: what a translation from those sources left untranslated.
    Capitalised words are names (or German nouns) and numbers are checked elsewhere, so neither
    is judged here; words of 1-2 letters are too ambiguous across languages to judge."""
    sources = [s for s in sources if s and s != lang and s in STEMMERS]
    if lang not in STEMMERS or not sources:
        return []
    return [w for w in words(text) if len(w) >= 3 and w.islower() and zipf(w, lang) < max_zipf
            and any(zipf(w, s) >= min_zipf for s in sources)]


# ---------------------------------------------------------------------------- negation
# Negators per language: the words that turn "X advises Y" into its opposite. stopwords-iso mixes
# them in with every other function word, so they are listed here (Portuguese "no" = "in the" is
# deliberately absent; Spanish and English "no" negate).
NEGATORS: dict[str, frozenset[str]] = {
    "en": frozenset({"not", "no", "never", "none", "neither", "nor", "nobody", "nothing", "cannot", "without"}),
    "pt": frozenset({"nao", "nunca", "jamais", "nem", "nenhum", "nenhuma", "ninguem", "nada", "sem"}),
    "es": frozenset({"no", "nunca", "jamas", "ni", "ningun", "ninguna", "ninguno", "nadie", "nada", "sin",
                     "tampoco"}),
    "de": frozenset({"nicht", "kein", "keine", "keinen", "keinem", "keiner", "keines", "nie", "niemals",
                     "weder", "nichts", "niemand", "ohne"}),
}


def negated(text: str, lang: str) -> bool:
    """True when ``text`` contains a negator of ``lang`` (English contractions "n't" included)."""
    negators = NEGATORS.get(lang, frozenset())
    return "n't" in text.lower() or "n’t" in text.lower() or any(fold(w) in negators for w in words(text))
