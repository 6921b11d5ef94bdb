"""BM25 side index with per-language stemming and stopwords, kept in sync with Chroma, in segments.

    >>> lex = LexicalIndex.build(ids, texts, languages, doc_ids)     # one language code per chunk
    >>> lex = lex.updated(new_ids, new_texts, new_languages, new_doc_ids, removed_ids)
    >>> lex.search("Quem assessora a AIP?", k=5)                      # -> [(chunk_id, score), ...]

Chroma single-node has no BM25, so this index lives beside the store and is persisted, so that the
next process loads it instead of tokenising every chunk again. It is a list of immutable
segments (term counts of the chunks they hold, as a sparse matrix) and a set of deleted chunk ids:
indexing a document adds a segment with just its chunks and marks the replaced ones deleted, so
the cost of an update grows with the update, not with the corpus. Scores are exact BM25 over the
live chunks of all segments: document frequencies, chunk count and average length are counted
across segments with deleted rows left out. When segments pile up (more than ``MAX_SEGMENTS``) or
a fifth of the rows are deleted, they are merged from their stored counts, without tokenising.

Scoring is Lucene's BM25 (k1 = 1.5, b = 0.75, idf = ln(1 + (N - df + 0.5) / (df + 0.5))), the
variant bm25s computed for this index before. Each chunk is stemmed with its own language's
stemmer; a query is stemmed with every indexed language's stemmer, because a question in one
language must still hit names, numbers and cognates in documents written in another.
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy import sparse

from index.text import STEMMERS, content_words, is_number, norm_number, stem

FORMAT = 3  # 3: own BM25 in segments (2: bm25s, tokens from index.text)
K1, B = 1.5, 0.75
MAX_SEGMENTS = 8
MAX_DELETED_SHARE = 0.2


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


@dataclass
class Segment:
    """Term counts of some chunks: ``tf[row, col]`` is how often term ``terms[col]`` occurs in chunk ``ids[row]``."""

    name: str
    ids: list[str]
    languages: list[str]
    doc_ids: list[str]
    terms: list[str]
    tf: sparse.csc_matrix
    lengths: np.ndarray

    def __post_init__(self) -> None:
        self.vocab = {t: j for j, t in enumerate(self.terms)}

    @classmethod
    def build(cls, ids: list[str], texts: list[str], languages: list[str], doc_ids: list[str]) -> Segment:
        vocab: dict[str, int] = {}
        rows, cols, vals, lengths = [], [], [], []
        for r, (text, lang) in enumerate(zip(texts, languages, strict=True)):
            tokens = tokenize(text, (lang if lang in STEMMERS else "en",))
            lengths.append(len(tokens))
            for tok, n in Counter(tokens).items():
                rows.append(r)
                cols.append(vocab.setdefault(tok, len(vocab)))
                vals.append(n)
        tf = sparse.csc_matrix((np.asarray(vals, np.float32), (rows, cols)), shape=(len(ids), len(vocab)))
        return cls(uuid.uuid4().hex[:12], list(ids), list(languages), list(doc_ids), list(vocab), tf,
                   np.asarray(lengths, np.float32))

    def column(self, term: str) -> tuple[np.ndarray, np.ndarray]:
        """(rows, counts) of the chunks holding ``term``."""
        j = self.vocab.get(term)
        if j is None:
            return np.zeros(0, np.int64), np.zeros(0, np.float32)
        a, b = self.tf.indptr[j], self.tf.indptr[j + 1]
        return self.tf.indices[a:b], self.tf.data[a:b]

    @classmethod
    def merge(cls, parts: list[tuple[Segment, np.ndarray]]) -> Segment:
        """One segment of the rows of ``parts`` (segment, rows to keep), from their counts."""
        vocab: dict[str, int] = {}
        blocks, ids, langs, docs, lengths = [], [], [], [], []
        for seg, keep in parts:
            remap = np.asarray([vocab.setdefault(t, len(vocab)) for t in seg.terms], np.int64)
            coo = seg.tf[keep].tocoo()
            blocks.append((coo.data, coo.row + len(ids), remap[coo.col] if len(remap) else coo.col))
            ids += [seg.ids[i] for i in keep]
            langs += [seg.languages[i] for i in keep]
            docs += [seg.doc_ids[i] for i in keep]
            lengths.append(seg.lengths[keep])
        data = np.concatenate([d for d, _, _ in blocks]) if blocks else np.zeros(0, np.float32)
        rows = np.concatenate([r for _, r, _ in blocks]) if blocks else np.zeros(0, np.int64)
        cols = np.concatenate([c for _, _, c in blocks]) if blocks else np.zeros(0, np.int64)
        tf = sparse.csc_matrix((data, (rows, cols)), shape=(len(ids), len(vocab)))
        return cls(uuid.uuid4().hex[:12], ids, langs, docs, list(vocab), tf,
                   np.concatenate(lengths) if lengths else np.zeros(0, np.float32))

    # ------------------------------------------------------------------ files
    def save(self, folder: Path) -> None:
        if (folder / f"{self.name}.npz").exists():
            return  # segments never change once written
        tmp = folder / f".{self.name}.tmp.npz"
        np.savez(tmp, data=self.tf.data, indices=self.tf.indices, indptr=self.tf.indptr,
                 shape=np.asarray(self.tf.shape), lengths=self.lengths)
        (folder / f"{self.name}.json").write_text(json.dumps(
            {"ids": self.ids, "languages": self.languages, "doc_ids": self.doc_ids, "terms": self.terms}))
        os.replace(tmp, folder / f"{self.name}.npz")

    @classmethod
    def load(cls, folder: Path, name: str) -> Segment:
        meta = json.loads((folder / f"{name}.json").read_text())
        with np.load(folder / f"{name}.npz") as z:
            tf = sparse.csc_matrix((z["data"], z["indices"], z["indptr"]), shape=tuple(z["shape"]))
            lengths = z["lengths"]
        return cls(name, meta["ids"], meta["languages"], meta["doc_ids"], meta["terms"], tf, lengths)


class LexicalIndex:
    """BM25 over the live chunks of its segments; ``search`` returns chunk ids with BM25 scores."""

    def __init__(self, segments: list[Segment], deleted: set[str] | None = None, generation: int = 0) -> None:
        self.segments, self.deleted, self.generation = segments, set(deleted or ()), generation
        # a row is live unless its id is deleted or a newer segment holds the id again
        seen: set[str] = set()
        live = []
        for seg in reversed(segments):
            live.append(np.asarray([i not in self.deleted and i not in seen for i in seg.ids], bool))
            seen.update(seg.ids)
        self._live = live[::-1]
        self.size = int(sum(m.sum() for m in self._live))
        total = float(sum(s.lengths[m].sum() for s, m in zip(segments, self._live)))
        self.avgdl = total / self.size if self.size else 1.0
        self.languages = sorted({lang for s, m in zip(segments, self._live) for lang, keep in zip(s.languages, m)
                                 if keep}) or ["en"]

    @classmethod
    def build(cls, ids: list[str], texts: list[str], languages: list[str], doc_ids: list[str],
              generation: int = 0) -> LexicalIndex:
        return cls([Segment.build(ids, texts, languages, doc_ids)] if ids else [], generation=generation)

    @property
    def ids(self) -> list[str]:
        """The live chunk ids."""
        return [i for s, m in zip(self.segments, self._live) for i, keep in zip(s.ids, m) if keep]

    def updated(self, ids: list[str], texts: list[str], languages: list[str], doc_ids: list[str],
                removed: set[str], generation: int | None = None) -> LexicalIndex:
        """A new index with these chunks added (one new segment; an id already there is replaced)
        and ``removed`` ones deleted; merged into one segment when segments pile up or a fifth of
        the rows are dead."""
        segments = [*self.segments, Segment.build(ids, texts, languages, doc_ids)] if ids else list(self.segments)
        out = LexicalIndex(segments, (self.deleted | set(removed)) - set(ids),
                           self.generation if generation is None else generation)
        rows = sum(len(seg.ids) for seg in segments)
        if len(segments) > MAX_SEGMENTS or (rows and rows - out.size > MAX_DELETED_SHARE * rows):
            merged = Segment.merge([(seg, np.flatnonzero(live)) for seg, live in zip(out.segments, out._live)])
            out = LexicalIndex([merged] if merged.ids else [], set(), out.generation)
        return out

    # ------------------------------------------------------------------ search
    def search(self, query: str, k: int = 20, query_lang: str = "en", languages: list[str] | None = None,
               sources: list[str] | None = None) -> list[tuple[str, float]]:
        """Top ``k`` (chunk id, score) pairs, optionally only chunks in ``languages``/``sources``."""
        if not self.size:
            return []
        langs = tuple(dict.fromkeys([query_lang if query_lang in STEMMERS else "en",
                                     *[lang for lang in self.languages if lang in STEMMERS]]))
        weights = Counter(tokenize(query, langs))
        columns = {t: [seg.column(t) for seg in self.segments] for t in weights}
        df = {t: sum(int(live[rows].sum()) for (rows, _), live in zip(cols, self._live)) for t, cols in columns.items()}
        idf = {t: float(np.log(1 + (self.size - n + 0.5) / (n + 0.5))) for t, n in df.items() if n}
        if not idf:
            return []
        keep_l, keep_s = set(languages or ()), set(sources or ())
        found: list[tuple[float, str]] = []
        for s, (seg, live) in enumerate(zip(self.segments, self._live)):
            scores = np.zeros(len(seg.ids), np.float32)
            norm = K1 * (1 - B + B * seg.lengths / self.avgdl)
            for t, w in idf.items():
                rows, tf = columns[t][s]
                scores[rows] += weights[t] * w * tf * (K1 + 1) / (tf + norm[rows])
            mask = live.copy()
            if keep_l or keep_s:
                mask &= np.asarray([(not keep_l or lang in keep_l) and (not keep_s or doc in keep_s)
                                    for lang, doc in zip(seg.languages, seg.doc_ids)], bool)
            scores[~mask] = 0
            top = np.flatnonzero(scores > 0)
            if len(top) > k:
                top = top[np.argpartition(-scores[top], k - 1)[:k]]
            found += [(float(scores[r]), seg.ids[r]) for r in top]
        found.sort(key=lambda x: -x[0])
        return [(i, score) for score, i in found[:k]]

    # ------------------------------------------------------------------ persistence
    def save(self, path: Path) -> None:
        """Write new segments, then swap ``meta.json`` in: readers see the old index or the new one."""
        path = Path(path)
        try:
            old = json.loads((path / "meta.json").read_text())
        except (OSError, ValueError):
            old = {}
        if old.get("format") != FORMAT and path.exists():
            shutil.rmtree(path)  # another format: start the folder over
            old = {}
        path.mkdir(parents=True, exist_ok=True)
        for seg in self.segments:
            seg.save(path)
        names = [s.name for s in self.segments]
        meta = {"format": FORMAT, "generation": self.generation, "segments": names, "deleted": sorted(self.deleted)}
        tmp = path / f".meta-{uuid.uuid4().hex[:8]}.json"
        tmp.write_text(json.dumps(meta))
        os.replace(tmp, path / "meta.json")
        keep = set(names) | set(old.get("segments", []))  # a reader may still be loading the previous ones
        for f in path.iterdir():
            if f.suffix in (".npz", ".json") and f.name != "meta.json" and f.name.split(".")[0] not in keep:
                f.unlink(missing_ok=True)

    @classmethod
    def load(cls, path: Path) -> LexicalIndex | None:
        """The saved index, or None when absent, of another format, or unreadable."""
        try:
            meta = json.loads((Path(path) / "meta.json").read_text())
            if meta.get("format") != FORMAT:
                return None
            segments = [Segment.load(Path(path), name) for name in meta["segments"]]
        except (OSError, ValueError, KeyError):
            return None
        return cls(segments, set(meta["deleted"]), meta["generation"])
