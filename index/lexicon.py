"""Bilingual dictionaries: which stems of one language translate a stem of another.

    >>> lex = Lexicon(Path("/usr/share/dictd"), cache_dir=Path(".rag/lexicon"))
    >>> sorted(lex.translations("presid", "en", "de"))[:3]       # stems, as ``index.text.stem`` makes them
    ['prasident', 'prasidentin', ...]

Dictionary-based term translation, the textbook way to match words across languages (cross-language
retrieval since Ballesteros & Croft, 1997): a question word and a sentence word match when a
bilingual dictionary lists one as a translation of the other. It lets the evidence features that
count the question's words in a sentence (``rag.evidence``, and through them abstention) work on
a sentence in another language, where e5's cosine alone is weakest.

The dictionaries are FreeDict's (freedict.org, GPL), as Debian packages them for dictd
(``make dicts``: ``dict-freedict-eng-spa`` ...; files ``freedict-<src>-<tgt>.index`` and
``.dict.dz`` in ``/usr/share/dictd``). Nothing here is fitted to any corpus: every entry of every
installed dictionary between two of ``LANGUAGES`` is read the same way.

* An entry counts when its headword is one content word (``index.text.content_words``); of its
  first ``MAX_SENSES`` senses, those that are one content word give the stems.
* Both directions are read (eng-deu and deu-eng) and merged, so a pair works when either
  dictionary is installed.
* Building a pair reads every entry (the English-German pair, ~1 million, takes ~20 s), so each
  pair's table is kept in ``cache_dir`` as JSON, rebuilt when a dictionary file changes.
* Missing dictionaries are no error: that pair has no translations, and matching stays within
  one language, as without this module.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import logging
import os
import re
import threading
from collections.abc import Iterator
from pathlib import Path

from index.text import content_words, stem

log = logging.getLogger(__name__)

# ISO 639-1 -> the ISO 639-3 codes in FreeDict's file names
CODES = {"en": "eng", "es": "spa", "de": "deu", "pt": "por"}
LANGUAGES = tuple(CODES)
MAX_SENSES = 4  # translations read per entry (the first senses are the common ones)
MAX_PER_STEM = 12  # stems kept per headword stem and direction
FORMAT = 1  # bump when the table's construction changes: old caches are rebuilt

_B64 = {c: i for i, c in enumerate("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/")}
# lines of an entry that are not translations
_NOT_SENSE = re.compile(r"^\s*(note|see|synonyms?|antonyms?|examples?|usage)\s*:", re.IGNORECASE)
# pronunciation, grammar, domain labels, cross-references, glosses
_MARKUP = re.compile(r"\[[^\]]*\]|<[^>]*>|\([^)]*\)|\{[^}]*\}|/[^/\n]*/")
_NUMBERED = re.compile(r"^\s*\d+\.\s*")


def _b64(text: str) -> int:
    """dictd's base-64 offsets and lengths."""
    n = 0
    for ch in text:
        n = n * 64 + _B64[ch]
    return n


def dictionary_files(directory: Path, src: str, tgt: str) -> tuple[Path, Path] | None:
    """The (index, data) files of the ``src``->``tgt`` FreeDict dictionary, if installed."""
    if src not in CODES or tgt not in CODES:
        return None
    base = Path(directory) / f"freedict-{CODES[src]}-{CODES[tgt]}"
    index, data = base.with_name(base.name + ".index"), base.with_name(base.name + ".dict.dz")
    return (index, data) if index.is_file() and data.is_file() else None


def read_entries(index: Path, data: Path) -> Iterator[tuple[str, list[str]]]:
    """(headword, translations) of a dictd dictionary, in index order; the data file may be
    dictzip (gzip) or plain."""
    raw = data.read_bytes()
    if raw[:2] == b"\x1f\x8b":
        raw = gzip.decompress(raw)
    with index.open(encoding="utf-8", errors="replace") as lines:
        for line in lines:
            parts = line.rstrip("\n").split("\t")
            if len(parts) < 3 or parts[0].startswith("00database") or parts[0].startswith("00-database"):
                continue
            try:
                start, size = _b64(parts[1]), _b64(parts[2])
            except KeyError:
                continue  # a malformed line: skip it, the rest of the dictionary still counts
            body = raw[start:start + size].decode("utf-8", errors="replace").split("\n")[1:]
            senses: list[str] = []
            for text in body:
                if not text.strip() or _NOT_SENSE.match(text):
                    continue
                text = _NUMBERED.sub("", _MARKUP.sub(" ", text))
                senses += [s.strip() for s in re.split(r"[,;]", text) if s.strip()]
            yield parts[0], senses


def build_table(directory: Path, a: str, b: str) -> dict[str, dict[str, list[str]]]:
    """Both directions of the a<->b pair from whichever of the two dictionaries are installed:
    ``{a: {a-stem: [b-stems]}, b: {b-stem: [a-stems]}}``."""
    out: dict[str, dict[str, set[str]]] = {a: {}, b: {}}
    for src, tgt in ((a, b), (b, a)):
        files = dictionary_files(directory, src, tgt)
        if not files:
            continue
        for head, senses in read_entries(*files):
            if len(head.split()) > 3:
                continue  # a phrase, not a word (most entries of the large dictionaries)
            words = content_words(head, src)
            if len(words) != 1 or words[0][:1].isdigit():
                continue
            key = stem(words[0], src)
            for sense in senses[:MAX_SENSES]:
                if len(sense.split()) > 3:
                    continue
                got = content_words(sense, tgt)
                if len(got) != 1 or len(got[0]) < 3 or got[0][:1].isdigit():
                    continue
                target = stem(got[0], tgt)
                ahead = out[src].setdefault(key, set())
                if len(ahead) < MAX_PER_STEM:
                    ahead.add(target)
                back = out[tgt].setdefault(target, set())
                if len(back) < MAX_PER_STEM:
                    back.add(key)
    return {lang: {k: sorted(v) for k, v in table.items()} for lang, table in out.items()}


class Lexicon:
    """Stem translations between ``LANGUAGES`` from the FreeDict dictionaries in ``directory``.

    Thread-safe; each pair is built (or read from ``cache_dir``) on first use, or all at once by
    ``prepare``. ``directory`` empty or missing = no translations at all."""

    def __init__(self, directory: Path | str | None, cache_dir: Path | None = None):
        self.directory = Path(directory) if directory and str(directory) not in ("", ".") else None
        self.cache_dir = Path(cache_dir) if cache_dir else None
        self._tables: dict[tuple[str, str], dict[str, dict[str, frozenset[str]]]] = {}
        self._lock = threading.Lock()

    def pairs(self) -> list[tuple[str, str]]:
        """The directed pairs (src, tgt) with an installed dictionary."""
        if self.directory is None:
            return []
        return [(a, b) for a in LANGUAGES for b in LANGUAGES if a != b and dictionary_files(self.directory, a, b)]

    def translations(self, key: str, src: str, tgt: str) -> frozenset[str]:
        """Stems of ``tgt`` that translate the stem ``key`` of ``src`` (empty when unknown)."""
        if src == tgt or src not in LANGUAGES or tgt not in LANGUAGES or self.directory is None:
            return frozenset()
        return self._table(src, tgt)[src].get(key, frozenset())

    def prepare(self, languages: tuple[str, ...] = LANGUAGES) -> None:
        """Build or load every pair among ``languages`` now (the first question then waits for none)."""
        if self.directory is None:
            return
        for i, a in enumerate(languages):
            for b in languages[i + 1:]:
                if a in LANGUAGES and b in LANGUAGES:
                    self._table(a, b)

    def _table(self, a: str, b: str) -> dict[str, dict[str, frozenset[str]]]:
        pair = tuple(sorted((a, b)))
        got = self._tables.get(pair)
        if got is None:
            with self._lock:
                got = self._tables.get(pair)
                if got is None:
                    got = self._load(*pair)
                    self._tables[pair] = got
        return got

    def _load(self, a: str, b: str) -> dict[str, dict[str, frozenset[str]]]:
        files = [f for s, t in ((a, b), (b, a)) for f in (dictionary_files(self.directory, s, t) or ())] \
            if self.directory else []
        if not files:
            return {a: {}, b: {}}
        stamp = hashlib.sha256(json.dumps([FORMAT, MAX_SENSES, MAX_PER_STEM] + [
            (f.name, f.stat().st_size, f.stat().st_mtime_ns) for f in files]).encode()).hexdigest()[:16]
        cache = self.cache_dir / f"{a}-{b}-{stamp}.json.gz" if self.cache_dir else None
        table = None
        if cache and cache.is_file():
            try:
                table = json.loads(gzip.decompress(cache.read_bytes()))
            except (OSError, ValueError) as exc:
                log.warning("lexicon cache %s unreadable (%s); rebuilding it", cache, exc)
        if table is None:
            table = build_table(self.directory, a, b)
            if cache:
                try:
                    cache.parent.mkdir(parents=True, exist_ok=True)
                    tmp = cache.with_name(f"{cache.name}.{os.getpid()}.tmp")
                    tmp.write_bytes(gzip.compress(json.dumps(table).encode(), compresslevel=3))
                    tmp.replace(cache)  # whole or not at all: a second process reads a complete file
                except OSError as exc:
                    log.warning("lexicon cache %s not written (%s); the pair is rebuilt next time", cache, exc)
        return {lang: {k: frozenset(v) for k, v in t.items()} for lang, t in table.items()}
