"""BM25 side index (bm25s) with per-language stemming and stopwords, kept in sync with Chroma.

    >>> lex = LexicalIndex.build(ids, texts, languages)          # one language code per chunk
    >>> lex.search("Quem assessora a AIP?", k=5)                   # -> [(chunk_id, score), ...]

Chroma single-node has no BM25, so this index is rebuilt from the chunk collection whenever the
store's generation changes, and persisted beside it (atomically) so the next process loads it.
Each chunk is stemmed with its own language's stemmer; a query is stemmed with every indexed
language's stemmer, because a question in one language must still hit names, numbers and
cognates in documents written in another.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
import unicodedata
from functools import lru_cache
from pathlib import Path

import numpy as np

_STEMMERS = {
    "en": "english", "pt": "portuguese", "es": "spanish", "de": "german", "fr": "french",
    "it": "italian", "nl": "dutch",
}
_STOPWORDS = {
    "en": "STOPWORDS_EN", "pt": "STOPWORDS_PORTUGUESE", "es": "STOPWORDS_SPANISH",
    "de": "STOPWORDS_GERMAN", "fr": "STOPWORDS_FRENCH", "it": "STOPWORDS_ITALIAN", "nl": "STOPWORDS_DUTCH",
}
_WORD = re.compile(r"\d+(?:[.,]\d+)*|[^\W\d_]+", re.UNICODE)
FORMAT = 1


@lru_cache(maxsize=16)
def _stemmer(lang: str):
    import Stemmer

    return Stemmer.Stemmer(_STEMMERS[lang]) if lang in _STEMMERS else None


@lru_cache(maxsize=16)
def _stopwords(lang: str) -> frozenset[str]:
    import bm25s.stopwords as sw

    name = _STOPWORDS.get(lang)
    return frozenset(getattr(sw, name)) if name else frozenset()


def _fold(token: str) -> str:
    return "".join(c for c in unicodedata.normalize("NFKD", token) if not unicodedata.combining(c))


def _number(token: str) -> str:
    # 1,580 / 1.580 / 1580 are one number; a lone ,5 or .5 is a decimal part.
    if re.fullmatch(r"\d{1,3}(?:[.,]\d{3})+", token):
        return re.sub(r"[.,]", "", token)
    return token.replace(",", ".")


def tokenize(text: str, langs: tuple[str, ...]) -> list[str]:
    """Lower-case words minus stopwords, stemmed by each of ``langs``; numbers normalised."""
    out: list[str] = []
    stop = frozenset().union(*(_stopwords(lang) for lang in langs)) if len(langs) == 1 else _stopwords(langs[0])
    for raw in _WORD.findall(text.lower()):
        if raw[0].isdigit():
            out.append(_number(raw))
            continue
        if raw in stop or len(raw) < 2:
            continue
        stems = {_fold(s.stemWord(raw)) if (s := _stemmer(lang)) else _fold(raw) for lang in langs}
        out.extend(sorted(stems))
    return out


class LexicalIndex:
    """bm25s over pre-tokenised chunks; ``search`` returns chunk ids with BM25 scores."""

    def __init__(self, retriever, ids: list[str], languages: list[str], doc_ids: list[str],
                 generation: int = 0) -> None:
        self._bm25 = retriever
        self.ids, self.chunk_languages, self.doc_ids = ids, languages, doc_ids
        self.languages = sorted(set(languages)) or ["en"]
        self.generation = generation

    @classmethod
    def build(cls, ids: list[str], texts: list[str], languages: list[str], doc_ids: list[str],
              generation: int = 0) -> LexicalIndex:
        import bm25s

        corpus = [tokenize(t, (lang if lang in _STEMMERS else "en",)) or ["\x00empty"] for t, lang in zip(texts, languages)]
        bm25 = bm25s.BM25()
        if corpus:
            bm25.index(corpus, show_progress=False)
        return cls(bm25 if corpus else None, list(ids), list(languages), list(doc_ids), generation)

    def search(self, query: str, k: int = 20, query_lang: str = "en", languages: list[str] | None = None,
               sources: list[str] | None = None) -> list[tuple[str, float]]:
        """Top ``k`` (chunk id, score) pairs, optionally only chunks in ``languages``/``sources``."""
        if self._bm25 is None or not self.ids:
            return []
        langs = tuple(dict.fromkeys([query_lang if query_lang in _STEMMERS else "en",
                                     *[lang for lang in self.languages if lang in _STEMMERS]]))
        tokens = [t for t in tokenize(query, langs) if t in self._bm25.vocab_dict]
        if not tokens:
            return []
        weight = None
        if languages or sources:
            keep_l, keep_s = set(languages or ()), set(sources or ())
            weight = np.array([(not keep_l or lang in keep_l) and (not keep_s or doc in keep_s)
                               for lang, doc in zip(self.chunk_languages, self.doc_ids)], dtype=np.float32)
            if not weight.any():
                return []
        n = min(k, len(self.ids))
        docs, scores = self._bm25.retrieve([tokens], k=n, show_progress=False, weight_mask=weight, n_threads=1)
        return [(self.ids[int(d)], float(s)) for d, s in zip(docs[0], scores[0]) if s > 0]

    # ------------------------------------------------------------------ persistence
    def save(self, path: Path) -> None:
        """Write to a temp dir beside ``path`` then swap it in, so readers never see half a file."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(dir=path.parent, prefix=".bm25-"))
        if self._bm25 is not None:
            self._bm25.save(str(tmp / "bm25"), show_progress=False)
        (tmp / "meta.json").write_text(json.dumps(
            {"format": FORMAT, "generation": self.generation, "ids": self.ids,
             "languages": self.chunk_languages, "doc_ids": self.doc_ids}
        ))
        old = path.with_name(path.name + ".old")
        shutil.rmtree(old, ignore_errors=True)
        if path.exists():
            os.replace(path, old)
        os.replace(tmp, path)
        shutil.rmtree(old, ignore_errors=True)

    @classmethod
    def load(cls, path: Path) -> LexicalIndex | None:
        """The saved index, or None when absent, of another format, or unreadable."""
        import bm25s

        try:
            meta = json.loads((Path(path) / "meta.json").read_text())
            if meta.get("format") != FORMAT:
                return None
            bm25 = bm25s.BM25.load(str(Path(path) / "bm25")) if meta["ids"] else None
        except (OSError, ValueError, KeyError):
            return None
        return cls(bm25, meta["ids"], meta["languages"], meta["doc_ids"], meta["generation"])
