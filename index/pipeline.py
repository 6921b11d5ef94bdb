"""The indexing run: read -> detect language -> chunk -> embed -> store, incrementally and safely.

    >>> indexer = Indexer(store, embed_model, Chunker(200, 40))
    >>> report = indexer.index_paths([Path("corpus")])        # -> IndexReport
    >>> report.chunks_embedded, report.failed

Unchanged files (same content hash as their committed record) embed nothing; a changed file's
chunks and sentences that already exist (same offsets and text) reuse their stored vectors; a
file gone from an indexed folder is removed.
Each document is committed on its own (see ``index.store``), so one bad file never costs the
others, and a kill mid-run is repaired by the next run.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

from index.chunking import Chunker, Span, chunk_id
from index.docids import assign_ids
from index.embedder import token_lengths
from index.errors import IndexingError, RagError, ReaderError
from index.language import DEFAULT_LANGUAGES, detect_language
from index.lexical import LexicalIndex
from index.locations import in_heading, location_at
from index.readers import READERS, SUPPORTED, ReadOptions, SourceDoc, read_file
from index.sentences import split_sentences
from index.store import DocRecord, Store

Progress = Callable[[str, int, int], None]  # (stage, done, total)


@dataclass
class FileResult:
    path: str
    doc_id: str
    status: str  # added | updated | unchanged | duplicate | skipped | failed | removed
    chunks: int = 0
    embedded: int = 0
    language: str = ""
    reason: str = ""
    note: str = ""  # a warning about a file that was indexed (e.g. pages without a text layer)


@dataclass
class IndexReport:
    results: list[FileResult] = field(default_factory=list)
    seconds: float = 0.0
    documents: int = 0
    chunks: int = 0
    repaired: list[str] = field(default_factory=list)
    lease_from: str = ""  # the writer whose expired lease this run took over (it had died)

    @property
    def chunks_embedded(self) -> int:
        return sum(r.embedded for r in self.results)

    @property
    def failed(self) -> list[FileResult]:
        return [r for r in self.results if r.status == "failed"]

    def counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for r in self.results:
            out[r.status] = out.get(r.status, 0) + 1
        return out

    def to_dict(self) -> dict:
        return {"ok": not self.failed, "counts": self.counts(), "chunks_embedded": self.chunks_embedded,
                "documents": self.documents, "chunks": self.chunks, "seconds": round(self.seconds, 3),
                "repaired": self.repaired, "lease_from": self.lease_from, "files": [asdict(r) for r in self.results]}


_FAULT_HITS: dict[str, int] = {}


def _fault_point(name: str) -> None:
    """Crash-safety tests kill the process here: RAG_FAULT_KILL_AT=after_add|after_commit, or
    ``after_add:3`` for the third time the point is reached (half-way through a batch)."""
    point, _, nth = os.environ.get("RAG_FAULT_KILL_AT", "").partition(":")
    if point == name:
        _FAULT_HITS[name] = _FAULT_HITS.get(name, 0) + 1
        if _FAULT_HITS[name] >= int(nth or 1):
            os.kill(os.getpid(), signal.SIGKILL)


def discover(paths: Iterable[Path]) -> tuple[list[tuple[Path, Path]], list[FileResult]]:
    """(root, file) pairs to read under ``paths``; unsupported files inside folders are skipped."""
    files: list[tuple[Path, Path]] = []
    skipped: list[FileResult] = []
    for root in paths:
        root = Path(root)
        if root.is_dir():
            for p in sorted(root.rglob("*")):
                if not p.is_file() or any(part.startswith(".") for part in p.relative_to(root).parts):
                    continue
                if p.suffix.lower() in READERS:
                    files.append((root, p))
                else:
                    skipped.append(FileResult(str(p), "", "skipped", reason=f"unsupported type '{p.suffix}'"))
        else:
            files.append((root, root))  # read_file reports missing or unsupported files itself
    first: dict[Path, tuple[Path, Path]] = {}
    for root, p in files:  # a file reached from two roots is indexed once, from the first
        first.setdefault(p.resolve(), (root, p))
    return list(first.values()), skipped


def read_stable(path: Path, max_bytes: int, doc_id: str, options: ReadOptions | None = None) -> SourceDoc:
    """``read_file``, plus: a file that changes or vanishes while it is read, or that a reader's
    library cannot parse (any exception), is one failed file with a clear reason - never a crash
    of the batch, never a half-read version indexed (what was committed before stays)."""
    before = _stamp(path)
    try:
        doc = read_file(path, max_bytes, options, doc_id)
    except IndexingError:
        raise
    except MemoryError as exc:
        raise ReaderError(str(path), "too large to read into memory; split it or lower max_file_mb") from exc
    except Exception as exc:  # noqa: BLE001 - a damaged file must not stop the batch
        raise ReaderError(str(path), f"could not be parsed ({type(exc).__name__}: {str(exc)[:200]}); the file "
                          "may be damaged: open and re-save it, or convert it to text") from exc
    after = _stamp(path)
    if after is None:
        raise ReaderError(str(path), "the file vanished while it was being read; nothing of it was indexed")
    if before != after:
        raise ReaderError(str(path), "the file changed while it was being read; nothing of this read was "
                          "indexed - run `rag index` again once it is written completely")
    return doc


def _stamp(path: Path) -> tuple | None:
    try:
        st = path.stat()
    except OSError:
        return None
    return st.st_size, st.st_mtime_ns, st.st_ino


def _where(doc: SourceDoc, offset: int) -> dict:
    """Location metadata of the text at ``offset``: ``location`` ("page 3", "slide 2", "sheet
    Revenue, row 14"; "" for plain text) and ``page`` (1-based PDF page or slide; 0 = none, since
    Chroma metadata cannot hold None)."""
    region = location_at(doc.regions, offset)
    return {"location": region.label if region else "", "page": (region.page or 0) if region else 0}


class Indexer:
    """Runs incremental indexing into one ``Store`` with one embedding model."""

    def __init__(self, store: Store, embed_model, chunker: Chunker, embedder_id: str = "",
                 languages: tuple[str, ...] = DEFAULT_LANGUAGES, max_file_mb: float = 20.0,
                 read_options: ReadOptions | None = None, late_sentences: bool = False,
                 group_docs: int = 64, batch_files: int = 512) -> None:
        self.store, self.embed_model, self.chunker = store, embed_model, chunker
        # sentence vectors pooled from their chunk's pass (needs an embedder with encode_spans)
        self.late_sentences = late_sentences and hasattr(embed_model, "encode_spans")
        self.group_docs = max(1, group_docs)  # documents per store write and commit
        self.batch_files = max(1, batch_files)  # files read and embedded before they are written
        self.read_options = read_options or ReadOptions()
        self.embedder_id = embedder_id
        self.languages = languages
        self.max_bytes = int(max_file_mb * 1024 * 1024)

    # ------------------------------------------------------------------ public
    def index_paths(self, paths: Iterable[Path], progress: Progress | None = None,
                    remove_missing: bool = True) -> IndexReport:
        """Index ``paths`` under the store's write lease (one writer at a time, any process)."""
        with self.store.write_lease() as lease:
            report = self._index_paths(paths, progress, remove_missing)
            if lease.taken_over is not None:
                report.lease_from = lease.taken_over.owner
            return report

    def _index_paths(self, paths: Iterable[Path], progress: Progress | None, remove_missing: bool) -> IndexReport:
        started = time.perf_counter()
        paths = [Path(p) for p in paths]
        report = IndexReport(repaired=self.store.repair())
        files, skipped = discover(paths)
        report.results.extend(skipped)
        ids = assign_ids(files, {r.doc_id: r.source for r in self.store.documents()}, SUPPORTED)
        # Removals first, so a file renamed since the last run is indexed under its new name.
        changed = remove_missing and self._remove_missing(paths, {a.doc_id for a in ids.values()}, report)
        if changed:
            self.store.bump_generation()
        # Then the files in batches: read, embed, write. A batch is committed before the next is
        # read, so a long run shows its progress to readers and a crash loses one batch at most.
        for start in range(0, len(files), self.batch_files):
            docs: list[SourceDoc] = []
            notes: dict[str, str] = {}
            for i, (_, path) in enumerate(files[start : start + self.batch_files], start):
                assigned = ids[path]
                try:
                    docs.append(read_stable(path, self.max_bytes, assigned.doc_id, self.read_options))
                    notes[assigned.doc_id] = assigned.note
                except IndexingError as exc:
                    report.results.append(FileResult(str(path), assigned.doc_id, "failed", reason=exc.reason))
                if progress:
                    progress("read", i + 1, len(files))
            if self._index_docs(docs, report, progress, notes):
                changed = True
                self.store.bump_generation()
        self.lexical()  # brought up to date from what changed (a new segment), not rebuilt
        report.documents, report.chunks = len(self.store.documents()), self.store.count()
        report.seconds = time.perf_counter() - started
        return report

    def texts_of(self, doc: SourceDoc) -> list[str]:
        """The texts indexing ``doc`` embeds (its chunks, then its sentences), without writing anything."""
        lang, nodes = self._nodes(doc)
        return [n.text for n in (*nodes, *self._sentences(doc, lang))]

    def remove(self, doc_id: str) -> bool:
        with self.store.write_lease():
            removed = self.store.remove(doc_id)
            if removed:
                self.store.bump_generation()
                self.lexical()
            return removed

    def lexical(self, rebuild: bool = False) -> LexicalIndex:
        """The BM25 side index for the store's current generation: the saved one when current,
        else the saved one brought up to date (only chunks added or removed since are read and
        tokenised), else - none saved, or ``rebuild`` - built from every chunk in Chroma."""
        path = self.store.data_dir / "bm25" / self.store.name
        gen = self.store.generation()
        lex = None if rebuild else LexicalIndex.load(path)
        if lex is not None and lex.generation == gen and lex.size == self.store.count():
            return lex
        if lex is None:
            ids: list[str] = []
            texts: list[str] = []
            langs: list[str] = []
            doc_ids: list[str] = []
            for page_ids, page_texts, metas in self.store.iter_chunks():
                ids += page_ids
                texts += page_texts
                langs += [m.get("language", "en") for m in metas]
                doc_ids += [m.get("doc_id", "") for m in metas]
            lex = LexicalIndex.build(ids, texts, langs, doc_ids, generation=gen)
        else:
            current, have = set(self.store.chunk_ids()), set(lex.ids)
            added = sorted(current - have)
            got = self.store.chunk_texts(added)
            lex = lex.updated(got["ids"], got["documents"], [m.get("language", "en") for m in got["metadatas"]],
                              [m.get("doc_id", "") for m in got["metadatas"]], have - current, generation=gen)
        try:
            lex.save(path)
        except OSError:
            pass  # a read-only data dir still answers from the in-memory index
        return lex

    # ------------------------------------------------------------------ steps
    def _index_docs(self, docs: list[SourceDoc], report: IndexReport, progress: Progress | None,
                    notes: dict[str, str] | None = None) -> bool:
        seen_hashes: dict[str, str] = {}
        todo: list[tuple[SourceDoc, DocRecord | None, str, list, list]] = []
        recs = self.store.docs([d.doc_id for d in docs])
        twins = self.store.docs_by_hash(sorted({d.content_hash for d in docs}))
        for doc in docs:
            rec = recs.get(doc.doc_id)
            same = [r.doc_id for r in twins.get(doc.content_hash, [])]
            twin = seen_hashes.get(doc.content_hash) or (doc.doc_id if doc.doc_id in same else next(iter(same), None))
            if twin and twin != doc.doc_id:
                report.results.append(FileResult(doc.source, doc.doc_id, "duplicate",
                                                 reason=f"same text as document '{twin}' (not indexed twice)"))
                continue
            seen_hashes[doc.content_hash] = doc.doc_id
            if rec and rec.content_hash == doc.content_hash:
                report.results.append(FileResult(doc.source, doc.doc_id, "unchanged", rec.chunks, 0, rec.language,
                                                 note="; ".join(doc.notes)))
                continue
            try:
                lang, nodes = self._nodes(doc)
                sents = self._sentences(doc, lang)
            except (RagError, ValueError) as exc:
                report.results.append(FileResult(doc.source, doc.doc_id, "failed", reason=str(exc)))
                continue
            todo.append((doc, rec, lang, nodes, sents))
        if not todo:
            return False
        self.store.set_journal([d.doc_id for d, *_ in todo])
        embedded = self._embed_missing([n for *_, nodes, sents in todo for n in (*nodes, *sents)], progress)
        for group in self._groups(todo):
            self.store.lease.check()  # a writer that lost its lease stops here, before writing more
            failed: set[str] = set()
            try:
                self._write(group)
            except Exception:  # noqa: BLE001 - one document's store failure must not stop the batch:
                for one in group:  # write them one by one, to find the one that fails
                    try:
                        self._write([one])
                    except Exception as exc:  # noqa: BLE001
                        failed.add(one[0].doc_id)
                        report.results.append(FileResult(one[0].source, one[0].doc_id, "failed",
                                                         reason=f"store error: {exc}"))
            for doc, rec, lang, nodes, _ in group:
                if doc.doc_id in failed:
                    continue
                report.results.append(FileResult(doc.source, doc.doc_id, "updated" if rec else "added", len(nodes),
                                                 sum(n.node_id in embedded for n in nodes if n.embedding is not None),
                                                 lang, reason=(notes or {}).get(doc.doc_id, ""),
                                                 note="; ".join(doc.notes)))
        self.store.set_journal([])
        return True

    def _groups(self, todo: list) -> Iterator[list]:
        """Documents in write groups of up to ``group_docs`` documents (and about 2,000 rows)."""
        group, rows = [], 0
        for item in todo:
            if group and (len(group) >= self.group_docs or rows + len(item[3]) + len(item[4]) > 2000):
                yield group
                group, rows = [], 0
            group.append(item)
            rows += len(item[3]) + len(item[4])
        if group:
            yield group

    def _write(self, group: list) -> None:
        """Write a group of documents: their rows, then their records in one commit (each
        document's new version becomes visible whole), then drop the rows of replaced versions."""
        fresh = [n for _, _, _, nodes, _ in group for n in nodes if n.embedding is not None]
        sents = [s for *_, sentences in group for s in sentences if s.embedding is not None]
        self.store.add_nodes(fresh)
        self.store.add_sentences([s.node_id for s in sents], [s.text for s in sents],
                                 [s.embedding for s in sents], [s.metadata for s in sents])
        _fault_point("after_add")
        self.store.commit(*(DocRecord(doc.doc_id, doc.source, doc.title, lang, doc.content_hash, len(nodes),
                                      len(doc.text), time.time()) for doc, _, lang, nodes, _ in group))
        _fault_point("after_commit")
        for doc, rec, *_ in group:
            if rec is not None:  # a new document has no older version (a killed run's rows are repaired first)
                self.store.prune(doc.doc_id, doc.content_hash)

    def _nodes(self, doc: SourceDoc) -> tuple[str, list]:
        from llama_index.core.schema import NodeRelationship, RelatedNodeInfo, TextNode

        whole = detect_language(doc.text, self.languages)
        doc_lang, text = whole.code, doc.text.strip()
        spans: list[Span] = self.chunker.split(doc.text)
        nodes = []
        for i, span in enumerate(spans):  # a chunk that is the whole document was detected already
            found = whole if span.text == text else detect_language(span.text, self.languages)
            lang = found.code if found.confidence >= 0.6 else doc_lang
            meta = {"doc_id": doc.doc_id, "source": doc.source, "title": doc.title, "language": lang,
                    "doc_language": doc_lang, "char_start": span.char_start, "char_end": span.char_end,
                    "chunk_index": i, "doc_hash": doc.content_hash, "embedder": self.embedder_id,
                    **_where(doc, span.char_start)}
            node = TextNode(id_=chunk_id(doc.doc_id, span, doc.content_hash), text=span.text, metadata=meta,
                            start_char_idx=span.char_start, end_char_idx=span.char_end,
                            excluded_embed_metadata_keys=list(meta), excluded_llm_metadata_keys=list(meta))
            node.relationships[NodeRelationship.SOURCE] = RelatedNodeInfo(node_id=doc.doc_id)
            nodes.append(node)
        return doc_lang, nodes

    def _sentences(self, doc: SourceDoc, doc_lang: str) -> list:
        from llama_index.core.schema import TextNode

        out = []
        for span in split_sentences(doc.text, language=doc_lang):
            meta = {"doc_id": doc.doc_id, "doc_hash": doc.content_hash, "language": doc_lang,
                    "char_start": span.char_start, "char_end": span.char_end, **_where(doc, span.char_start),
                    "is_heading": in_heading(doc.headings, span.char_start, span.char_end)}
            out.append(TextNode(id_="s:" + chunk_id(doc.doc_id, span, doc.content_hash), text=span.text,
                                metadata=meta))
        return out

    def _embed_missing(self, nodes: list, progress: Progress | None) -> set[str]:
        """Give every node the store lacks a vector: a stored one when an earlier version of its
        document had the same chunk or sentence (same offsets and text), else a new embedding.
        Returns the ids embedded now."""
        chunk_ids = [n.node_id for n in nodes if not n.node_id.startswith("s:")]
        sent_ids = [n.node_id for n in nodes if n.node_id.startswith("s:")]
        have = self.store.existing_ids(chunk_ids) | self.store.existing_sentence_ids(sent_ids)
        missing = [n for n in nodes if n.node_id not in have]
        stored = self.store.stored_vectors(sorted({n.metadata["doc_id"] for n in missing})) if missing else {}
        todo = []
        for n in missing:
            m = n.metadata
            vec = stored.get((n.node_id.startswith("s:"), m["doc_id"], m["char_start"], m["char_end"], n.text))
            if vec is None:
                todo.append(n)
            else:
                n.embedding = vec
        embedded = {n.node_id for n in todo}
        if self.late_sentences:
            todo = self._embed_late(todo, progress)
        todo = self._longest_first(todo)
        batch = max(1, int(getattr(self.embed_model, "embed_batch_size", 32)))
        for i in range(0, len(todo), batch):
            part = todo[i : i + batch]
            vectors = self.embed_model.get_text_embedding_batch([n.text for n in part])
            for node, vec in zip(part, vectors):
                node.embedding = vec
            if progress:
                progress("embed", min(i + batch, len(todo)), len(todo))
        return embedded

    def _longest_first(self, nodes: list) -> list:
        """Nodes by the encoder's token count, longest first. A batch pads to its longest text:
        mixing chunks (~200 tokens) with sentences (~30) wasted 60% of the encoder, and sorting by
        characters still padded 23% more tokens than sorting by tokens (languages differ in
        characters per token), which cost 15-30% of the encoder's time on Wikipedia summaries
        (``python -m eval bench``, sections encode and corpus)."""
        lengths = token_lengths(self.embed_model, [n.text for n in nodes])
        return [n for _, n in sorted(zip(lengths, nodes, strict=True), key=lambda p: -p[0])]

    def _embed_late(self, todo: list, progress: Progress | None) -> list:
        """Embed the chunks of ``todo``, giving each sentence inside one of them the mean of its
        tokens' states from that pass; returns what is left to embed on its own (sentences no
        chunk of this run holds whole, or cut off by the encoder's length limit)."""
        chunks = self._longest_first([n for n in todo if not n.node_id.startswith("s:")])
        by_doc: dict[str, list] = {}
        for c in chunks:
            by_doc.setdefault(c.metadata["doc_id"], []).append(c)
        inside: dict[str, list[tuple[object, int, int]]] = {c.node_id: [] for c in chunks}
        rest = []
        for n in todo:
            if not n.node_id.startswith("s:"):
                continue
            m = n.metadata
            home = next((c for c in by_doc.get(m["doc_id"], ()) if c.metadata["char_start"] <= m["char_start"]
                         and m["char_end"] <= c.metadata["char_end"]), None)
            if home is None:
                rest.append(n)
                continue
            a, b = m["char_start"] - home.metadata["char_start"], m["char_end"] - home.metadata["char_start"]
            if home.text[a:b] != n.text:  # offsets that do not point at the text: encode it on its own
                rest.append(n)
                continue
            inside[home.node_id].append((n, a, b))
        batch = max(1, int(getattr(self.embed_model, "embed_batch_size", 32)))
        for i in range(0, len(chunks), batch):
            part = chunks[i : i + batch]
            vectors, spans = self.embed_model.encode_spans(
                [c.text for c in part], [[(a, b) for _, a, b in inside[c.node_id]] for c in part],
                self.embed_model.text_instruction)
            for c, vec, sent_vecs in zip(part, vectors, spans, strict=True):
                c.embedding = vec.tolist()
                for (sent, _, _), sv in zip(inside[c.node_id], sent_vecs, strict=True):
                    if sv is None:
                        rest.append(sent)
                    else:
                        sent.embedding = sv.tolist()
            if progress:
                progress("embed", min(i + batch, len(chunks)), len(chunks) + len(rest))
        return rest

    def _remove_missing(self, roots: list[Path], present: set[str], report: IndexReport) -> bool:
        dirs = [r.resolve() for r in roots if r.is_dir()]
        changed = False
        for rec in self.store.documents():
            src = Path(rec.source).resolve()
            if rec.doc_id in present or src.exists() or not any(d in src.parents for d in dirs):
                continue
            self.store.remove(rec.doc_id)
            report.results.append(FileResult(rec.source, rec.doc_id, "removed", reason="file no longer exists"))
            changed = True
        return changed
