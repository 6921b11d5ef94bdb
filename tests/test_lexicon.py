"""Bilingual dictionaries (index/lexicon.py): dictd files read as Debian installs them, both
directions merged, tables cached and rebuilt when a dictionary changes, and a missing dictionary
is no error. The last tests use the real FreeDict packages that `make test` installs (`make dicts`)."""

from __future__ import annotations

import gzip
from pathlib import Path

import pytest

from index.lexicon import LANGUAGES, Lexicon, build_table, dictionary_files, read_entries
from index.text import stem

_B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"


def _b64(n: int) -> str:
    out = ""
    while True:
        out = _B64[n % 64] + out
        n //= 64
        if not n:
            return out


def write_dictd(directory: Path, name: str, entries: list[tuple[str, str]], extra_index: str = "") -> None:
    """A dictd dictionary as dictfmt writes FreeDict's: a dictzip (gzip) data file of entries (the
    headword line with pronunciation and grammar, then the senses), and an index of headword,
    base-64 offset and length."""
    data, index = b"", ["00databaseshort\tA\tB"]
    for head, body in entries:
        raw = f"{head} /pron/ <n>\n{body}\n".encode()
        index.append(f"{head}\t{_b64(len(data))}\t{_b64(len(raw))}")
        data += raw
    (directory / f"freedict-{name}.dict.dz").write_bytes(gzip.compress(data))
    (directory / f"freedict-{name}.index").write_text("\n".join(index) + "\n" + extra_index, encoding="utf-8")


ENG_SPA = [
    ("house", "1. casa <f>\n2. hogar [fig.]\n Note: not a building here\n see: {home}"),
    ("president", "presidente, presidenta"),
    ("to live", "vivir"),  # one content word after the stopword: counts
    ("fire engine", "coche de bomberos"),  # a phrase on both sides: skipped
    ("42", "cuarenta y dos"),  # a number is no word to translate
]
SPA_ENG = [("fundar", "to establish, create (a company)")]


@pytest.fixture()
def dict_dir(tmp_path: Path) -> Path:
    d = tmp_path / "dictd"
    d.mkdir()
    write_dictd(d, "eng-spa", ENG_SPA, extra_index="broken line without offsets\nbad\t!!\t@@\n")
    write_dictd(d, "spa-eng", SPA_ENG)
    return d


def test_entries_read_senses_without_markup(dict_dir):
    entries = dict(read_entries(*dictionary_files(dict_dir, "en", "es")))
    assert entries["house"] == ["casa", "hogar"]  # pronunciation, grammar, labels, notes, see-also dropped
    assert entries["president"] == ["presidente", "presidenta"]
    assert "broken line without offsets" not in entries and "bad" not in entries  # malformed lines skipped


def test_both_directions_merge_and_phrases_are_skipped(dict_dir):
    lex = Lexicon(dict_dir)
    assert lex.translations(stem("house", "en"), "en", "es") == {stem("casa", "es"), stem("hogar", "es")}
    assert lex.translations(stem("casa", "es"), "es", "en") == {stem("house", "en")}  # read backwards
    assert stem("vivir", "es") in lex.translations(stem("live", "en"), "en", "es")
    # from the Spanish-English file: "to establish" and "create" are words, "(a company)" a gloss
    assert lex.translations(stem("fundar", "es"), "es", "en") == {stem("establish", "en"), stem("create", "en")}
    assert lex.translations(stem("establish", "en"), "en", "es") == {stem("fundar", "es")}
    table = build_table(dict_dir, "en", "es")
    assert not any(" " in k or k[:1].isdigit() for side in table.values() for k in side)


def test_missing_pairs_and_languages_are_empty_not_errors(dict_dir, tmp_path):
    lex = Lexicon(dict_dir)
    assert lex.pairs() == [("en", "es"), ("es", "en")]
    assert lex.translations("haus", "de", "en") == frozenset()  # no German dictionary here
    assert lex.translations("hous", "en", "en") == frozenset()  # same language: nothing to translate
    assert lex.translations("hous", "en", "xx") == frozenset()
    assert Lexicon(None).translations("hous", "en", "es") == frozenset()
    Lexicon(None).prepare()  # dictionaries off: nothing to prepare, no error
    Lexicon(tmp_path / "nowhere", tmp_path / "cache").prepare()
    assert Lexicon(tmp_path / "nowhere").pairs() == []


def test_tables_are_cached_and_rebuilt_when_a_dictionary_changes(dict_dir, tmp_path):
    cache = tmp_path / "cache"
    first = Lexicon(dict_dir, cache)
    first.prepare(("en", "es"))
    files = sorted(cache.glob("en-es-*.json.gz"))
    assert len(files) == 1
    # a second process reads the cache: the same answers without the dictionaries' entries being read
    assert Lexicon(dict_dir, cache).translations("hous", "en", "es") == first.translations("hous", "en", "es")
    write_dictd(dict_dir, "eng-spa", [("house", "vivienda")])
    changed = Lexicon(dict_dir, cache)
    assert changed.translations(stem("house", "en"), "en", "es") == {stem("vivienda", "es")}
    assert len(sorted(cache.glob("en-es-*.json.gz"))) == 2  # a new table beside the old one


def test_an_unreadable_cache_is_rebuilt(dict_dir, tmp_path):
    cache = tmp_path / "cache"
    Lexicon(dict_dir, cache).prepare(("en", "es"))
    (path,) = cache.glob("en-es-*.json.gz")
    path.write_bytes(b"not gzip")
    assert stem("casa", "es") in Lexicon(dict_dir, cache).translations(stem("house", "en"), "en", "es")
    assert gzip.decompress(path.read_bytes())  # rewritten whole


def test_evidence_finds_a_question_word_in_a_sentence_of_another_language(dict_dir):
    """What the ranker's overlap features count: "house" is found in a Spanish sentence through
    "casa", only with the dictionaries and only across languages."""
    from index.text import content_words, token_key
    from rag.evidence import _found, _matcher, _question_terms

    question = "Where is the house?"
    qterms = _question_terms(question, "en")
    raw = {token_key(t, "en"): t for t in content_words(question, "en")}
    spanish = _matcher("La casa está en la plaza.", "es")
    assert _found(qterms, raw, spanish, "es") == set()
    assert _found(qterms, raw, spanish, "es", Lexicon(dict_dir), "en") == {stem("house", "en")}
    # a sentence in the question's own language is matched by its words, not by translations
    assert _found(qterms, raw, _matcher("Una casa.", "en"), "en", Lexicon(dict_dir), "en") == set()


# ---------------------------------------------------------------- the Debian FreeDict packages
DEBIAN = Path("/usr/share/dictd")


@pytest.fixture(scope="module")
def debian(model_dir) -> Lexicon:
    lex = Lexicon(DEBIAN, model_dir / "lexicon")  # where the chain's tests find the tables too
    missing = [f"{a}-{b}" for a in LANGUAGES for b in LANGUAGES if a != b and (a, b) not in lex.pairs()]
    assert not missing, f"FreeDict dictionaries missing: {missing}; run `make dicts`"
    return lex


@pytest.mark.parametrize(("word", "src", "translation", "tgt"), [
    ("president", "en", "presidente", "pt"),
    ("president", "en", "Präsident", "de"),
    ("Präsident", "de", "presidente", "es"),
    ("biblioteca", "es", "library", "en"),
    ("leiten", "de", "dirigir", "es"),
    ("navio", "pt", "ship", "en"),
    ("Wasser", "de", "água", "pt"),
])
def test_the_installed_dictionaries_translate_common_words(debian, word, src, translation, tgt):
    assert stem(translation, tgt) in debian.translations(stem(word, src), src, tgt)


def test_translations_are_bounded(debian):
    """No stem drags in a vocabulary: at most MAX_PER_STEM per direction it was read in."""
    from index.lexicon import MAX_PER_STEM

    for a, b in (("en", "de"), ("en", "pt")):
        table = debian._table(a, b)
        assert max(len(v) for side in table.values() for v in side.values()) <= 2 * MAX_PER_STEM
