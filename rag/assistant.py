"""The public Python API: one object that indexes, answers and streams.

    >>> qa = Assistant()                                  # settings from env/config
    >>> qa.ask("Who advises AIP?").citations[0].quote

Everything is built lazily from one ``Settings``; the same code talks to embedded Chroma or a
Chroma server, and to the bundled local LLM or any OpenAI-compatible server.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

from index.lexical import LexicalIndex
from index.pipeline import IndexReport
from index.store import DocRecord
from rag import components
from rag.engine import CitedQueryEngine
from rag.settings import Settings
from rag.types import Answer, Event

LEXICAL_CHECK_SECONDS = 1.0


class Assistant:
    """Question answering with verified citations over the indexed documents."""

    def __init__(self, settings: Settings | None = None, **overrides: Any) -> None:
        self.settings = settings or Settings.load(**overrides)
        self._lock = threading.RLock()
        self._store = self._indexer = self._engine = None
        self._lexical: LexicalIndex | None = None
        self._lexical_checked = 0.0
        self.llm_state = "off"  # "off" | "warming up" | "ready" | "unavailable: <why>" (see warm_up)

    # ------------------------------------------------------------------ parts
    @property
    def store(self):
        with self._lock:
            if self._store is None:
                self._store = components.get_store(self.settings)
            return self._store

    @property
    def indexer(self):
        with self._lock:
            if self._indexer is None:
                self._indexer = components.get_indexer(self.settings, self.store)
            return self._indexer

    @property
    def engine(self) -> CitedQueryEngine:
        with self._lock:
            if self._engine is None:
                self._engine = CitedQueryEngine.build(self.settings, self.store, self.indexer.embed_model,
                                                      self._current_lexical, components.get_lexicon(self.settings))
            return self._engine

    def _current_lexical(self) -> LexicalIndex:
        """The BM25 index for the store's generation; another process's writes are seen within 1 s."""
        with self._lock:
            now = time.monotonic()
            if self._lexical is None or now - self._lexical_checked > LEXICAL_CHECK_SECONDS:
                self._lexical_checked = now
                if self._lexical is None or self._lexical.generation != self.store.generation():
                    self._lexical = self.indexer.lexical()
            return self._lexical

    def warm_up(self, background: bool = True) -> threading.Thread | None:
        """Load the embedder, side indexes and dictionaries, and start the local LLM server (and send it one
        1-token request) when ``auto`` or ``local`` will use it, so the first question does not pay
        for it. ``llm_state`` says where this is ("warming up", "ready") for the UI."""

        if self.settings.mode != "extractive":
            self.llm_state = "warming up"  # until we know: the UI says so from its first page

        def work() -> None:
            try:
                self.engine.embed_model.get_query_embedding("warm up")
                self._current_lexical()
                self.engine.lexicon.prepare()  # the dictionaries' tables, built once per model_dir
                self.engine.ask("warm up", mode="extractive")  # the whole chain once: the first quote is instant
                mode = self.settings.mode
                if mode == "auto":
                    mode = self.engine.resolve_auto()
                if mode in ("local", "openai"):
                    from rag.llm import generator_for

                    self.llm_state = "warming up"
                    generator_for(self.settings, mode).warm()  # starts the local server; caches the prompt
                    self.llm_state = "ready"
                else:
                    self.llm_state = "off"
            except Exception as exc:  # noqa: BLE001 - warming up is best effort; asking reports errors
                self.llm_state = f"unavailable: {str(exc)[:200]}"
                logging.getLogger(__name__).warning("warm-up: %s", exc)

        if not background:
            work()
            return None
        thread = threading.Thread(target=work, name="rag-warm-up", daemon=True)
        thread.start()
        return thread

    # ------------------------------------------------------------------ answering
    def ask(self, question: str, **kwargs: Any) -> Answer:
        """Answer ``question``; kwargs: languages, sources, top_k, mode, history."""
        return self.engine.ask(question, **kwargs)

    def stream(self, question: str, **kwargs: Any) -> Iterator[Event]:
        """Yield retrieved / evidence / token events, then one answer event."""
        return self.engine.stream(question, **kwargs)

    def available_modes(self) -> list[str]:
        """Answer modes this installation can use right now."""
        from rag.llm_server import resolve_model_path

        modes = ["auto", "extractive"]
        try:
            resolve_model_path(self.settings)
            modes.append("local")
        except Exception:  # noqa: BLE001 - no bundled model installed: no local mode
            pass
        if self.settings.llm_base_url:
            modes.append("openai")
        return modes

    # ------------------------------------------------------------------ documents
    def index(self, paths: Iterable[str | Path], progress: Callable[[str, int, int], None] | None = None,
              remove_missing: bool = True) -> IndexReport:
        report = self.indexer.index_paths([Path(p) for p in paths], progress, remove_missing=remove_missing)
        self._lexical = None
        components.get_lexicon(self.settings).prepare()  # built once per model_dir: no question waits for it
        return report

    def add_files(self, paths: Iterable[str | Path], progress=None) -> IndexReport:
        """Index these files (and only them): nothing else is removed."""
        return self.index(paths, progress, remove_missing=False)

    def remove(self, doc_id: str) -> bool:
        removed = self.indexer.remove(doc_id)
        self._lexical = None
        return removed

    def documents(self) -> list[DocRecord]:
        return self.store.documents()

    def status(self) -> dict[str, Any]:
        docs = self.documents()
        per_lang: dict[str, int] = {}
        for _, _, metas in self.store.iter_chunks():
            for m in metas:
                per_lang[m.get("language", "?")] = per_lang.get(m.get("language", "?"), 0) + 1
        return {
            "documents": len(docs),
            "chunks": self.store.count(),
            "chunks_per_language": dict(sorted(per_lang.items())),
            "documents_per_language": _count(d.language for d in docs),
            "embedding_model": self.settings.embed_model,
            "embedding_backend": self.settings.embed_backend,
            "collection": self.store.name,
            "store": self.store.where,
            "store_bytes": self.store.size_bytes(),
            "generation": self.store.generation(),
            "dictionaries": ["-".join(p) for p in components.get_lexicon(self.settings).pairs()],
            "docs": [{"doc_id": d.doc_id, "language": d.language, "chunks": d.chunks, "source": d.source,
                      "title": d.title} for d in docs],
        }


def _count(items: Iterable[str]) -> dict[str, int]:
    out: dict[str, int] = {}
    for i in items:
        out[i] = out.get(i, 0) + 1
    return dict(sorted(out.items()))
