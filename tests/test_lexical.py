"""The BM25 side index: exact Lucene BM25, and updates in segments that score like a fresh build."""

from __future__ import annotations

import math
import random
from collections import Counter

import pytest
from conftest import CORPUS

from index.chunking import Chunker
from index.lexical import LexicalIndex, tokenize
from index.readers import read_file


def _chunks() -> tuple[list[str], list[str], list[str], list[str]]:
    langs = {"000": "pt", "002": "es", "003": "de"}
    ids, texts, languages, docs = [], [], [], []
    for path in sorted(CORPUS.glob("*.txt")):
        for i, span in enumerate(Chunker(120, 20).split(read_file(path).text)):
            ids.append(f"{path.stem}:{i}")
            texts.append(span.text)
            languages.append(langs.get(path.stem[:3], "en"))
            docs.append(path.stem)
    return ids, texts, languages, docs


QUESTIONS = [("Quem assessora a AIP?", "pt"), ("How much will the partnership invest?", "en"),
             ("¿Cuántos millones de dólares?", "es"), ("Wer berät die Partnerschaft?", "de"), ("Nvidia xAI", "en")]


def _bm25(query: str, lang: str, ids, texts, languages, k1=1.5, b=0.75) -> dict[str, float]:
    """Textbook Lucene BM25, written out for the test."""
    docs = [Counter(tokenize(t, (lg,))) for t, lg in zip(texts, languages)]
    lengths = [sum(d.values()) for d in docs]
    avgdl = sum(lengths) / len(docs)
    q = tokenize(query, tuple(dict.fromkeys([lang, *sorted(set(languages))])))
    out = {}
    for i, d in zip(ids, docs):
        score = 0.0
        for t in q:
            df = sum(1 for x in docs if t in x)
            if df and t in d:
                idf = math.log(1 + (len(docs) - df + 0.5) / (df + 0.5))
                score += idf * d[t] * (k1 + 1) / (d[t] + k1 * (1 - b + b * lengths[ids.index(i)] / avgdl))
        if score > 0:
            out[i] = score
    return out


def test_scores_are_textbook_bm25():
    ids, texts, languages, docs = _chunks()
    lex = LexicalIndex.build(ids, texts, languages, docs)
    for query, lang in QUESTIONS:
        want = _bm25(query, lang, ids, texts, languages)
        got = dict(lex.search(query, k=len(ids), query_lang=lang))
        assert want and set(got) == set(want), query
        assert all(abs(got[i] - want[i]) < 1e-4 * max(1.0, want[i]) for i in want), query


def _same(a: LexicalIndex, b: LexicalIndex) -> None:
    assert sorted(a.ids) == sorted(b.ids) and a.size == b.size
    for query, lang in QUESTIONS:
        x, y = dict(a.search(query, 50, lang)), dict(b.search(query, 50, lang))
        assert set(x) == set(y) and all(abs(x[i] - y[i]) < 1e-4 for i in x), query


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_updates_in_segments_score_like_a_fresh_build(tmp_path, seed):
    ids, texts, languages, docs = _chunks()
    rng = random.Random(seed)
    rows = dict(zip(ids, zip(texts, languages, docs)))
    live = set(rng.sample(ids, len(ids) // 2))
    pick = sorted(live)
    lex = LexicalIndex.build(pick, [rows[i][0] for i in pick], [rows[i][1] for i in pick], [rows[i][2] for i in pick])
    for step in range(14):  # adds, deletes and re-adds (an edited chunk comes back with new text)
        add = rng.sample(sorted(set(ids) - live), min(6, len(set(ids) - live)))
        gone = set(rng.sample(sorted(live), min(5, len(live))))
        again = rng.sample(sorted(live - gone), 2)
        for i in again:
            rows[i] = (rows[i][0] + " Rewritten in year 2031.", rows[i][1], rows[i][2])
        new = add + again
        lex = lex.updated(new, [rows[i][0] for i in new], [rows[i][1] for i in new], [rows[i][2] for i in new], gone)
        live = (live - gone) | set(new)
        if step % 3 == 0:  # and through the files, as another process would see it
            lex.save(tmp_path / "bm25")
            lex = LexicalIndex.load(tmp_path / "bm25")
        pick = sorted(live)
        fresh = LexicalIndex.build(pick, [rows[i][0] for i in pick], [rows[i][1] for i in pick],
                                   [rows[i][2] for i in pick])
        _same(lex, fresh)
    assert len(lex.segments) <= 9  # merged now and then
    assert len(list((tmp_path / "bm25").glob("*.npz"))) <= 2 * 9  # old segment files are cleaned up


def test_filters_and_an_empty_index():
    ids, texts, languages, docs = _chunks()
    lex = LexicalIndex.build(ids, texts, languages, docs)
    hits = lex.search("AIP Nvidia", 50, "en", languages=["pt"])
    assert hits and all(languages[ids.index(i)] == "pt" for i, _ in hits)
    assert all(docs[ids.index(i)] == docs[0] for i, _ in lex.search("AIP", 50, "en", sources=[docs[0]]))
    assert LexicalIndex.build([], [], [], []).search("AIP") == []
    assert lex.updated([], [], [], [], set(ids)).search("AIP") == []
