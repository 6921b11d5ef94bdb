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
import shutil
import tempfile
from pathlib import Path

import numpy as np

from index.text import STEMMERS, content_words, is_number, norm_number, stem

FORMAT = 2  # 2: tokens from index.text (stopwords-iso)


def tokenize(text: str, langs: tuple[str, ...]) -> list[str]:
    """Content words of ``text`` (minus the first language's stopwords), each stemmed by every one
    of ``langs``; numbers in one canonical spelling."""
    out: list[str] = []
    for tok in content_words(text, langs[0]):
        if is_number(tok):
            out.append(norm_number(tok))
        else:
            out.extend(sorted({stem(tok, lang) for lang in langs}))
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

        corpus = [tokenize(t, (lang if lang in STEMMERS else "en",)) or ["\x00empty"] for t, lang in zip(texts, languages)]
        bm25 = bm25s.BM25()
        if corpus:
            bm25.index(corpus, show_progress=False)
        return cls(bm25 if corpus else None, list(ids), list(languages), list(doc_ids), generation)

    def search(self, query: str, k: int = 20, query_lang: str = "en", languages: list[str] | None = None,
               sources: list[str] | None = None) -> list[tuple[str, float]]:
        """Top ``k`` (chunk id, score) pairs, optionally only chunks in ``languages``/``sources``."""
        if self._bm25 is None or not self.ids:
            return []
        langs = tuple(dict.fromkeys([query_lang if query_lang in STEMMERS else "en",
                                     *[lang for lang in self.languages if lang in STEMMERS]]))
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
