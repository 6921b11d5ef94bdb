"""Chroma behind one small class: chunk vectors, a document registry, and a crash journal.

    >>> store = Store(Path(".rag"), embedder_id="e5small")            # embedded, on disk
    >>> store = Store(Path(".rag"), "e5small", chroma_url="http://127.0.0.1:8000")  # a server

Three collections per embedding model, so vectors of two models never mix:
``<prefix>-<embedder_id>`` holds the chunks (cosine space, our own embeddings, written through
llama-index's ``ChromaVectorStore`` so its retrievers read them back), ``-sents`` holds every
sentence with its vector (evidence selection scores sentences without embedding them per query;
it is read by document, never searched by vector, so its HNSW graph is built cheaply and its text
is a metadata field rather than a Chroma document, which Chroma would also index for full-text
search: the two halve its write time, docs/PERFORMANCE.md), and
``<prefix>-<embedder_id>-docs`` is the registry: one record per *committed* document (hash,
chunk count, language) plus a ``__meta__`` record holding the journal of documents being
written and a generation counter that side indexes use to know they are stale.

Commit protocol for one document: add its new chunks -> write its registry record -> delete its
chunks of any other version. A kill between any two steps leaves chunks that the journal names;
``repair()`` on the next run deletes whatever no committed record accounts for.

Chunk and sentence ids include the document's content hash, so two versions of a document never
share a record. Queries (``vector_store`` reads and ``sentences_of``) see only the committed
version of each document, one snapshot per question: a query running while a document is
re-indexed sees the old version or the new one, never a mix. Every Chroma failure (server down
or hung, corrupt files, a full disk) surfaces as ``StoreError`` naming the store and what to do
(``index.chroma``). Writers hold the store's write lease (``index.lease``), so the journal and the
generation counter have one writer at a time, across processes and machines.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

from index.chroma import _disk_full, _Guarded, _is_failure, _low_space, _one_line, make_client
from index.errors import StoreError
from index.lease import WriteLease

META_ID = "__meta__"
_BATCH = 2000
# The sentence collection is only read by document id: a sparse HNSW graph is enough (a store
# made before keeps the graph it was made with; Chroma cannot change it).
_SENTENCE_HNSW = {"hnsw:M": 4, "hnsw:construction_ef": 16}
_TEXT = "text"  # the sentence's text, in its metadata (stores made before hold it as the document)


def _sentence_rows(got: dict) -> dict:
    """A Chroma ``get`` of sentences with each text under ``documents``, wherever it was stored."""
    if got.get("metadatas") is not None:
        docs = got.get("documents") or [None] * len(got["ids"])
        got["documents"] = [m.pop(_TEXT, None) or d or "" for d, m in zip(docs, got["metadatas"])]
    return got


@dataclass(frozen=True)
class DocRecord:
    """A committed document as the registry knows it."""

    doc_id: str
    source: str
    title: str
    language: str
    content_hash: str
    chunks: int
    chars: int
    indexed_at: float


def _control(record_id: str) -> bool:
    """Registry records that are not documents: ``__meta__`` and the write lease chain."""
    return record_id.startswith("__") and record_id.endswith("__") or record_id.startswith("__lease__:")


class _CommittedView(_Guarded):
    """The chunk collection as queries see it: only each document's committed version.

    Reads run without a version filter (a ``doc_hash $in [every committed hash]`` clause costs
    O(documents) per query: seconds at 25k documents) and then drop the rows that are not the
    committed version of their document - chunks of a version being written or being pruned. A
    dense query that loses hits that way asks Chroma again for more."""

    def query(self, **kwargs):
        self._store.new_snapshot()
        kwargs = _with_metadatas(kwargs)
        n = int(kwargs.pop("n_results", 10))
        fetch = n
        while True:
            got = self.__getattr__("query")(n_results=fetch, **kwargs)
            keep = self._store.committed_rows(got["metadatas"][0])
            if len(keep) >= n or len(got["ids"][0]) < fetch or fetch >= 64 * n:
                return _take(got, keep[:n], nested=True)
            fetch *= 4

    def get(self, **kwargs):
        got = self.__getattr__("get")(**_with_metadatas(kwargs))
        return _take(got, self._store.committed_rows(got["metadatas"]), nested=False)


def _with_metadatas(kwargs: dict) -> dict:
    """``kwargs`` with a truthy ``where`` only, and metadatas included (the version check needs them)."""
    kwargs = {k: v for k, v in kwargs.items() if k != "where" or v}
    if "include" in kwargs and "metadatas" not in kwargs["include"]:
        kwargs["include"] = [*kwargs["include"], "metadatas"]
    return kwargs


def _take(got, rows: list[int], nested: bool):
    """A Chroma get/query result cut down to ``rows`` (of its only query when ``nested``)."""
    for key in ("ids", "documents", "metadatas", "distances", "embeddings", "uris", "data"):
        value = got.get(key)
        if value is None:
            continue
        part = value[0] if nested else value
        picked = [part[i] for i in rows]
        got[key] = [picked] if nested else picked
    return got


class Store:
    """Chunks and document registry for one embedding model in one Chroma database."""

    def __init__(self, data_dir: Path, embedder_id: str, chroma_url: str = "", prefix: str = "rag",
                 timeout: float = 5.0, lease_seconds: float = 30.0, lease_wait: float = 600.0) -> None:
        self.data_dir = Path(data_dir)
        self.chroma_url = chroma_url
        self.name = f"{prefix}-{embedder_id}"[:60].strip("-_.")
        self.client = make_client(self.data_dir, chroma_url, timeout)
        try:
            self.chunks = self.client.get_or_create_collection(
                self.name, metadata={"hnsw:space": "cosine", "embedder": embedder_id},
                embedding_function=None,
            )
            self.sentences = self.client.get_or_create_collection(
                f"{self.name}-sents", metadata={"hnsw:space": "cosine", **_SENTENCE_HNSW}, embedding_function=None
            )
            self.registry = self.client.get_or_create_collection(
                f"{self.name}-docs", metadata={"hnsw:space": "cosine"}, embedding_function=None
            )
        except Exception as exc:
            if self.chroma_url and _is_failure(exc):
                raise self.failure("open", exc) from exc
            raise StoreError(
                f"cannot open collection {self.name} in {self.where} ({_one_line(exc)}); "
                "run `rag index --rebuild` to start over"
            ) from exc
        self.chunks = _Guarded(self.chunks, self)
        self.sentences = _Guarded(self.sentences, self)
        self.registry = _Guarded(self.registry, self)
        self._vector_store = None
        self._snapshot = threading.local()  # committed hashes one question reads with
        self.lease = WriteLease(self.registry, self.where, lease_seconds, lease_wait)

    def write_lease(self) -> WriteLease:
        """The store's write lease (``with store.write_lease(): ...``); see ``index.lease``."""
        return self.lease

    def failure(self, operation: str, exc: BaseException) -> StoreError:
        """The StoreError for a failed Chroma call: where, what, and what to do."""
        if _disk_full(exc) or (not self.chroma_url and _low_space(self.data_dir)):
            return StoreError(
                f"the disk holding {self.where} is full (during {operation}: {_one_line(exc, 120)}); free some "
                "space, then run `rag index` again: documents committed before are kept, the rest is repaired")
        if self.chroma_url:
            return StoreError(
                f"Chroma server at {self.chroma_url} failed during {operation} ({type(exc).__name__}: "
                f"{_one_line(exc)}); check that `chroma run` is up there - answering resumes once it is back"
            )
        return StoreError(
            f"the Chroma store at {self.where} failed during {operation} ({type(exc).__name__}: "
            f"{_one_line(exc)}); if this persists, run `rag index --rebuild`"
        )

    @property
    def where(self) -> str:
        return self.chroma_url or str(self.data_dir / "chroma")

    @property
    def vector_store(self):
        """llama-index's ChromaVectorStore over the chunk collection."""
        if self._vector_store is None:
            from llama_index.vector_stores.chroma import ChromaVectorStore

            self._vector_store = ChromaVectorStore(chroma_collection=_CommittedView(self.chunks._collection, self))
        return self._vector_store

    def committed_hashes(self) -> dict[str, str]:
        """doc_id -> content hash of every committed document."""
        got = self.registry.get(include=["metadatas"])
        return {i: m["content_hash"] for i, m in zip(got["ids"], got["metadatas"]) if not _control(i)}

    def new_snapshot(self) -> None:
        """Start a question's snapshot of committed versions (its first read, the dense query)."""
        self._snapshot.hashes = {}

    def committed_rows(self, metadatas: list) -> list[int]:
        """Positions of the rows that belong to their document's committed version. The versions
        are looked up once per document per question (the snapshot): a question running while a
        document is re-indexed reads the old version or the new one, never a mix."""
        snap = getattr(self._snapshot, "hashes", None)
        if snap is None:
            snap = self._snapshot.hashes = {}
        missing = sorted({m["doc_id"] for m in metadatas if m and m.get("doc_id") not in snap})
        if missing:
            got = self.registry.get(ids=missing, include=["metadatas"])
            found = {i: m["content_hash"] for i, m in zip(got["ids"], got["metadatas"])}
            snap.update({d: found.get(d) for d in missing})
        return [i for i, m in enumerate(metadatas)
                if m and snap.get(m.get("doc_id")) is not None and m.get("doc_hash") == snap[m["doc_id"]]]

    # ------------------------------------------------------------------ registry
    def _meta(self) -> dict:
        got = self.registry.get(ids=[META_ID], include=["metadatas"])
        if not got["ids"]:
            return {"generation": 0, "journal": "[]"}
        return dict(got["metadatas"][0])

    def _write_meta(self, **changes) -> None:
        meta = {**self._meta(), **changes}
        self.registry.upsert(ids=[META_ID], embeddings=[[1.0]], metadatas=[meta], documents=[""])

    def generation(self) -> int:
        return int(self._meta().get("generation", 0))

    def bump_generation(self) -> int:
        gen = self.generation() + 1
        self._write_meta(generation=gen)
        return gen

    def journal(self) -> list[str]:
        return json.loads(self._meta().get("journal", "[]"))

    def set_journal(self, doc_ids: list[str]) -> None:
        self._write_meta(journal=json.dumps(sorted(set(doc_ids))))

    def documents(self) -> list[DocRecord]:
        got = self.registry.get(include=["metadatas"])
        recs = [DocRecord(**m) for i, m in zip(got["ids"], got["metadatas"]) if not _control(i)]
        return sorted(recs, key=lambda r: r.doc_id)

    def docs(self, doc_ids: list[str]) -> dict[str, DocRecord]:
        """The committed records of these documents (those that have one), in few reads."""
        out: dict[str, DocRecord] = {}
        for i in range(0, len(doc_ids), _BATCH):
            got = self.registry.get(ids=doc_ids[i : i + _BATCH], include=["metadatas"])
            out.update({d: DocRecord(**m) for d, m in zip(got["ids"], got["metadatas"])})
        return out

    def docs_by_hash(self, hashes: list[str]) -> dict[str, list[DocRecord]]:
        """Committed records by content hash, for these hashes."""
        out: dict[str, list[DocRecord]] = {}
        for i in range(0, len(hashes), _BATCH):
            part = hashes[i : i + _BATCH]
            where = {"content_hash": part[0]} if len(part) == 1 else {"content_hash": {"$in": part}}
            got = self.registry.get(where=where, include=["metadatas"])
            for m in got["metadatas"]:
                out.setdefault(m["content_hash"], []).append(DocRecord(**m))
        return out

    def commit(self, *recs: DocRecord) -> None:
        """Commit these document versions (one registry write: each becomes visible whole)."""
        if recs:
            self.registry.upsert(ids=[r.doc_id for r in recs], embeddings=[[1.0]] * len(recs),
                                 metadatas=[asdict(r) for r in recs], documents=[""] * len(recs))

    # ------------------------------------------------------------------ chunks
    def existing_ids(self, ids: list[str]) -> set[str]:
        found: set[str] = set()
        for i in range(0, len(ids), _BATCH):
            found.update(self.chunks.get(ids=ids[i : i + _BATCH], include=[])["ids"])
        return found

    def add_nodes(self, nodes: list) -> None:
        for i in range(0, len(nodes), _BATCH):
            self.vector_store.add(nodes[i : i + _BATCH])

    def add_sentences(self, ids: list[str], texts: list[str], vectors: list, metas: list[dict]) -> None:
        for i in range(0, len(ids), _BATCH):
            j = slice(i, i + _BATCH)
            self.sentences.upsert(ids=ids[j], embeddings=vectors[j],
                                  metadatas=[{**m, _TEXT: t} for m, t in zip(metas[j], texts[j])])

    def get_sentences(self, **kwargs) -> dict:
        """``sentences.get(**kwargs)`` with the texts under ``documents`` (asked for with
        ``include=["documents", ...]``, which implies the metadatas they are kept in)."""
        include = list(kwargs.pop("include", ["documents", "metadatas"]))
        if "documents" in include and "metadatas" not in include:
            include.append("metadatas")
        return _sentence_rows(self.sentences.get(include=include, **kwargs))

    def existing_sentence_ids(self, ids: list[str]) -> set[str]:
        found: set[str] = set()
        for i in range(0, len(ids), _BATCH):
            found.update(self.sentences.get(ids=ids[i : i + _BATCH], include=[])["ids"])
        return found

    def sentences_of(self, doc_ids: list[str], near: list[tuple[str, int, int]] | None = None,
                     margin: int = 200) -> dict:
        """The committed sentences of these documents, with their vectors (for evidence scoring);
        with ``near`` (doc_id, char_start, char_end) spans, only those overlapping a span widened by
        ``margin`` characters each side: a chunk's sentences and the ones next to it (a neighbour
        ends just before the chunk starts, however long it is), not all of a 300-page PDF.
        Reads with the snapshot of the question's retrieval, then ends that snapshot."""
        # Read by document, cut to the spans here: Chroma's range filters on char offsets made
        # this read 15x slower on a 41k-sentence store (287 vs 18 ms p50, docs/PERFORMANCE.md).
        where = {"doc_id": doc_ids[0]} if len(doc_ids) == 1 else {"doc_id": {"$in": doc_ids}}
        try:
            got = self.get_sentences(where=where, include=["documents", "metadatas", "embeddings"])
            keep = self.committed_rows(got["metadatas"])
            if near:
                spans: dict[str, list[tuple[int, int]]] = {}
                for d, a, b in near:
                    spans.setdefault(d, []).append((a - margin, b + margin))
                keep = [i for i in keep if any(a <= int(got["metadatas"][i]["char_end"]) and
                                               int(got["metadatas"][i]["char_start"]) <= b
                                               for a, b in spans.get(got["metadatas"][i]["doc_id"], ()))]
            return _take(got, keep, nested=False)
        finally:
            self._snapshot.hashes = None

    def stored_vectors(self, doc_ids: list[str]) -> dict[tuple, list[float]]:
        """Vectors already stored for these documents (any version), keyed by
        (is_sentence, doc_id, char_start, char_end, text): an edit re-embeds only what changed."""
        out: dict[tuple, list[float]] = {}
        for i in range(0, len(doc_ids), 100):
            part = doc_ids[i : i + 100]
            where = {"doc_id": part[0]} if len(part) == 1 else {"doc_id": {"$in": part}}
            for is_sent, get in ((False, self.chunks.get), (True, self.get_sentences)):
                got = get(where=where, include=["documents", "metadatas", "embeddings"])
                for text, m, vec in zip(got["documents"], got["metadatas"], got["embeddings"]):
                    out[(is_sent, m["doc_id"], int(m["char_start"]), int(m["char_end"]), text)] = list(vec)
        return out

    def prune(self, doc_id: str, keep_hash: str | None) -> int:
        """Delete the chunks and sentences of ``doc_id`` not belonging to version ``keep_hash``."""
        where: dict = {"doc_id": doc_id}
        if keep_hash is not None:
            where = {"$and": [{"doc_id": doc_id}, {"doc_hash": {"$ne": keep_hash}}]}
        removed = 0
        for coll in (self.chunks, self.sentences):
            stale = coll.get(where=where, include=[])["ids"]
            for i in range(0, len(stale), _BATCH):
                coll.delete(ids=stale[i : i + _BATCH])
            removed += len(stale) if coll is self.chunks else 0
        return removed

    def remove(self, doc_id: str) -> bool:
        """Remove a document: registry first (so queries stop trusting it), then its chunks."""
        known = doc_id in self.docs([doc_id])
        self.set_journal([*self.journal(), doc_id])
        self.registry.delete(ids=[doc_id])
        removed = self.prune(doc_id, None)
        self.set_journal([d for d in self.journal() if d != doc_id])
        return known or removed > 0

    def repair(self) -> list[str]:
        """Finish what a killed run left: drop chunks no committed record accounts for."""
        pending = self.journal()
        for doc_id in pending:
            rec = self.docs([doc_id]).get(doc_id)
            self.prune(doc_id, rec.content_hash if rec else None)
        if pending:
            self.set_journal([])
            self.bump_generation()
        return pending

    def count(self) -> int:
        return self.chunks.count()

    def _pages(self, include: list[str], batch: int) -> Iterator[dict]:
        """Every chunk, ``batch`` at a time, as Chroma ``get`` results."""
        offset = 0
        while True:
            got = self.chunks.get(include=include, limit=batch, offset=offset)
            if not got["ids"]:
                return
            yield got
            offset += len(got["ids"])

    def iter_chunks(self, batch: int = 5000) -> Iterator[tuple[list[str], list[str], list[dict]]]:
        """All chunks, in pages: (ids, texts, metadatas)."""
        for got in self._pages(["documents", "metadatas"], batch):
            yield got["ids"], got["documents"], got["metadatas"]

    def chunk_ids(self, batch: int = 20000) -> list[str]:
        """Every chunk id (no texts, no vectors), in pages."""
        return [i for got in self._pages([], batch) for i in got["ids"]]

    def chunk_texts(self, ids: list[str]) -> dict:
        """Texts and metadata of these chunks, as one Chroma ``get`` result."""
        out: dict = {"ids": [], "documents": [], "metadatas": []}
        for i in range(0, len(ids), _BATCH):
            got = self.chunks.get(ids=ids[i : i + _BATCH], include=["documents", "metadatas"])
            for key in out:
                out[key] += got[key]
        return out

    def size_bytes(self) -> int:
        if self.chroma_url:
            return 0
        root = self.data_dir / "chroma"
        return sum(p.stat().st_size for p in root.rglob("*") if p.is_file())

    def drop(self) -> None:
        """Delete both collections (``--rebuild``)."""
        for name in (self.name, f"{self.name}-sents", f"{self.name}-docs"):
            try:
                self.client.delete_collection(name)
            except Exception:  # noqa: BLE001 - absent is fine
                pass

