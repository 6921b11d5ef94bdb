"""Baselines scored side by side with the full chain, to show what each stage buys.

    >>> systems = baseline_systems(settings, qa.documents(), workdir)
    >>> systems["quickstart"].ask("Who advises AIP?").text[:40]

* ``dense`` / ``bm25``: our whole chain with one retriever only (``Settings.retrieval``).
* ``quickstart``: the plain llama-index quickstart: ``VectorStoreIndex`` over a fresh
  ``ChromaVectorStore`` (temp dir), same embedder, default ``SentenceSplitter`` and default
  ``as_retriever()`` (top 2). No LLM: its answer is the top retrieved chunk's text, cited as such;
  it never abstains.
"""

from __future__ import annotations

import dataclasses
import shutil
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from index.language import detect_question_language
from rag.settings import Settings
from rag.types import Answer, Citation, Hit

DESCRIPTIONS = {
    "full": "our chain: hybrid retrieval (dense top_k + BM25 top bm25_top, RRF order) -> sentence evidence -> "
            "abstention gate -> answer -> citations",
    "dense": "same chain, dense retrieval only (retrieval=dense)",
    "bm25": "same chain, BM25 retrieval only (retrieval=bm25)",
    "quickstart": "plain llama-index quickstart: VectorStoreIndex over Chroma, default SentenceSplitter and "
                  "retriever (top 2), same embedder; answer = top chunk's text (extractive, no LLM), "
                  "never abstains; a whole chunk is no readable answer, so its accuracy is an upper bound",
    "quickstart_sentence": "the quickstart's top chunk narrowed to its sentence with the highest e5 cosine to the "
                           "question (the naive best-sentence answer); never abstains",
}


def chain_variant(settings: Settings, retrieval: str):
    """Our full chain with another retrieval mode, over the same index.

    >>> chain_variant(settings, "bm25").ask("Who advises AIP?").retrieved[0].bm25_rank
    1
    """
    from rag.assistant import Assistant

    return Assistant(dataclasses.replace(settings, retrieval=retrieval))


def read_documents(records: Sequence[Any]) -> list[tuple[str, str, str, str]]:
    """(doc_id, source, language, text) of the indexed documents, read from their source files.

    >>> read_documents(qa.documents())[0][0]
    '000_df219a4969b437e4'
    """
    from index.readers import read_file

    docs = []
    for rec in records:
        path = Path(rec.source)
        if not path.is_file():
            from eval.run import EvalError

            raise EvalError(f"quickstart baseline: source file {path} of document {rec.doc_id} "
                                    "is gone; re-index or run from the directory the corpus was indexed from")
        docs.append((rec.doc_id, rec.source, rec.language, read_file(path).text))
    return docs


class QuickstartBaseline:
    """The llama-index quickstart over the same corpus and embedder, as a question -> Answer callable.

    >>> qs = QuickstartBaseline(settings, read_documents(qa.documents()))
    >>> qs.ask("Quem assessora a AIP?").citations[0].doc_id
    >>> qs.close()
    """

    def __init__(self, settings: Settings, documents: Sequence[tuple[str, str, str, str]],
                 workdir: Path | None = None) -> None:
        import chromadb
        from chromadb.config import Settings as ChromaSettings
        from llama_index.core import Document, StorageContext, VectorStoreIndex
        from llama_index.vector_stores.chroma import ChromaVectorStore

        from rag.components import get_embedder

        self._dir = Path(tempfile.mkdtemp(prefix="quickstart-chroma-", dir=workdir))
        self._client = chromadb.PersistentClient(path=str(self._dir),
                                                 settings=ChromaSettings(anonymized_telemetry=False))
        store = ChromaVectorStore(chroma_collection=self._client.get_or_create_collection("quickstart"))
        self._lang = {doc_id: lang for doc_id, _, lang, _ in documents}
        docs = [Document(text=text, id_=doc_id, metadata={"doc_id": doc_id, "file_name": Path(source).name})
                for doc_id, source, _, text in documents]
        t = time.perf_counter()
        self.index = VectorStoreIndex.from_documents(
            docs, storage_context=StorageContext.from_defaults(vector_store=store),
            embed_model=get_embedder(settings))
        self.build_seconds = time.perf_counter() - t

    def ask(self, question: str) -> Answer:
        t = time.perf_counter()
        nodes = self.index.as_retriever().retrieve(question)
        took = time.perf_counter() - t
        hits = [Hit(chunk_id=n.node.node_id, doc_id=n.node.metadata.get("doc_id", ""),
                    source=n.node.metadata.get("file_name", ""), title="",
                    language=self._lang.get(n.node.metadata.get("doc_id", ""), ""), text=n.node.get_content(),
                    char_start=n.node.start_char_idx or 0, char_end=n.node.end_char_idx or 0,
                    score=float(n.score or 0.0), rank=rank) for rank, n in enumerate(nodes, 1)]
        lang = detect_question_language(question)
        if not hits:
            return Answer(question=question, text="", language=lang, mode="quickstart", retrieved=[],
                          timings={"retrieve": took, "total": time.perf_counter() - t})
        top = hits[0]
        cite = Citation(n=1, doc_id=top.doc_id, source=top.source, chunk_id=top.chunk_id, language=top.language,
                        quote=top.text, char_start=top.char_start, char_end=top.char_end, score=top.score)
        return Answer(question=question, text=top.text, language=lang, mode="quickstart", citations=[cite],
                      retrieved=hits, timings={"retrieve": round(took, 4),
                                               "total": round(time.perf_counter() - t, 4)})

    def ask_sentence(self, question: str, store: Any, embed_model: Any) -> Answer:
        """The quickstart's top chunk narrowed to its sentence most similar to the question (e5
        cosine over our stored sentence vectors): the naive "best sentence" answer, a readable
        quote as short as ours."""
        import numpy as np

        ans = self.ask(question)
        if not ans.citations:
            return ans
        t = time.perf_counter()
        top = ans.citations[0]
        got = store.sentences_of([top.doc_id])
        inside = [i for i, m in enumerate(got["metadatas"])
                  if top.char_start <= int(m["char_start"]) and int(m["char_end"]) <= top.char_end]
        if not inside:
            return ans
        q = np.asarray(embed_model.get_query_embedding(question))
        best = max(inside, key=lambda i: float(np.dot(got["embeddings"][i], q)))
        m = got["metadatas"][best]
        cite = dataclasses.replace(top, quote=got["documents"][best], char_start=int(m["char_start"]),
                                   char_end=int(m["char_end"]))
        ans.timings["total"] = round(ans.timings["total"] + time.perf_counter() - t, 4)
        return dataclasses.replace(ans, text=cite.quote, citations=[cite])

    def close(self) -> None:
        try:
            self._client.clear_system_cache()
        finally:
            shutil.rmtree(self._dir, ignore_errors=True)


def baseline_systems(settings: Settings, records: Sequence[Any], workdir: Path | None = None,
                     cross_fit: bool = False) -> dict[str, tuple[Callable[[Any], Answer], Callable[[], None]]]:
    """name -> (ask(gold item), close) for the dense, bm25 and quickstart baselines, in report order.

    >>> ask, close = baseline_systems(settings, qa.documents())["dense"]
    """
    from eval.run import fold_asker

    out: dict[str, tuple[Callable[[Any], Answer], Callable[[], None]]] = {}
    for name in ("dense", "bm25"):
        out[name] = fold_asker(dataclasses.replace(settings, retrieval=name), cross_fit), (lambda: None)
    qs = QuickstartBaseline(settings, read_documents(records), workdir)
    out["quickstart"] = (lambda item: qs.ask(item.question)), (lambda: None)
    from rag.assistant import Assistant

    ours = Assistant(settings)
    out["quickstart_sentence"] = (lambda item: qs.ask_sentence(item.question, ours.store, ours.indexer.embed_model),
                                  qs.close)
    return out
