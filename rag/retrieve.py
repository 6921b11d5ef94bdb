"""Hybrid retrieval: Chroma dense search + BM25 side index, ordered by llama-index's RRF.

    >>> hybrid = HybridRetriever(store, embed_model, lexical_loader, bm25_top=4)
    >>> result = hybrid.retrieve("Who advises AIP?", query_lang="en", top_k=8)
    >>> result.hits[0].doc_id, result.timings["dense"]

Both retrievers are llama-index ``BaseRetriever`` s and ``QueryFusionRetriever`` (reciprocal
rank fusion, one query, no LLM) orders what they found. The candidates are the dense top
``top_k`` plus BM25's own top ``bm25_top`` (names, numbers and rare words the vector misses), not
RRF's top ``top_k``: a cut of the fused list drops dense hits for BM25's same-language
distractors, which cost cross-lingual questions (docs/EVAL.md, stop 32). How much BM25 counts in
the end is the evidence ranker's fitted weight on its rank. The query is embedded once, up front,
so the embedding time is measured on its own and the dense retriever reuses the vector.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from llama_index.core import VectorStoreIndex
from llama_index.core.llms import MockLLM
from llama_index.core.retrievers import BaseRetriever, QueryFusionRetriever
from llama_index.core.retrievers.fusion_retriever import FUSION_MODES
from llama_index.core.schema import NodeWithScore, QueryBundle
from llama_index.core.vector_stores import FilterOperator, MetadataFilter, MetadataFilters

from index.lexical import LexicalIndex
from index.store import Store
from rag.types import Hit


class LexicalRetriever(BaseRetriever):
    """BM25 over our per-language side index, returning the same nodes Chroma stores.

    llama-index's ``BM25Retriever`` stems every text with one (English by default) stemmer and
    wants the nodes in memory; ours stems each chunk in its own language and reads nodes back
    from Chroma, so RRF sees identical nodes from both retrievers.
    """

    def __init__(self, lexical: LexicalIndex, store: Store, top_k: int = 20, query_lang: str = "en",
                 languages: list[str] | None = None, sources: list[str] | None = None) -> None:
        super().__init__()
        self._lex, self._store, self._k = lexical, store, top_k
        self._lang, self._languages, self._sources = query_lang, languages, sources

    def _retrieve(self, query_bundle: QueryBundle) -> list[NodeWithScore]:
        hits = self._lex.search(query_bundle.query_str, self._k, self._lang, self._languages, self._sources)
        if not hits:
            return []
        nodes = {n.node_id: n for n in self._store.vector_store.get_nodes(node_ids=[h[0] for h in hits])}
        return [NodeWithScore(node=nodes[i], score=s) for i, s in hits if i in nodes]


class _Timed(BaseRetriever):
    """Records how long the wrapped retriever took and the rank it gave each node."""

    def __init__(self, inner: BaseRetriever, name: str, sink: dict) -> None:
        super().__init__()
        self._inner, self._name, self._sink = inner, name, sink

    def _retrieve(self, query_bundle: QueryBundle) -> list[NodeWithScore]:
        t = time.perf_counter()
        out = self._inner.retrieve(query_bundle)
        self._sink[self._name] = time.perf_counter() - t
        self._sink[f"{self._name}_ranks"] = {n.node.node_id: r for r, n in enumerate(out, 1)}
        self._sink[f"{self._name}_scores"] = {n.node.node_id: float(n.score or 0.0) for n in out}
        return out


@dataclass
class Retrieved:
    hits: list[Hit]
    query_embedding: list[float]
    timings: dict[str, float] = field(default_factory=dict)


def metadata_filters(languages: list[str] | None, sources: list[str] | None) -> MetadataFilters | None:
    filters = []
    if languages:
        filters.append(MetadataFilter(key="language", value=list(languages), operator=FilterOperator.IN))
    if sources:
        filters.append(MetadataFilter(key="doc_id", value=list(sources), operator=FilterOperator.IN))
    return MetadataFilters(filters=filters) if filters else None


class HybridRetriever:
    """Dense + lexical retrieval ordered by RRF; ``lexical`` returns the current side index.

    ``mode`` "dense" or "bm25" (evaluation baselines) keeps one retriever's top ``top_k``."""

    def __init__(self, store: Store, embed_model, lexical: Callable[[], LexicalIndex],
                 dense_k: int = 20, bm25_k: int = 20, mode: str = "hybrid", bm25_top: int = 4) -> None:
        if mode not in ("hybrid", "dense", "bm25"):
            raise ValueError(f"retrieval must be hybrid, dense or bm25, got {mode!r}")
        self.store, self.embed_model, self._lexical = store, embed_model, lexical
        self.dense_k, self.bm25_k, self.mode, self.bm25_top = dense_k, bm25_k, mode, bm25_top
        self._index = VectorStoreIndex.from_vector_store(store.vector_store, embed_model=embed_model)

    def retrieve(self, question: str, query_lang: str = "en", top_k: int = 8,
                 languages: list[str] | None = None, sources: list[str] | None = None) -> Retrieved:
        timings: dict = {}
        t = time.perf_counter()
        embedding = self.embed_model.get_query_embedding(question)
        timings["embed"] = time.perf_counter() - t
        dense = self._index.as_retriever(similarity_top_k=self.dense_k,
                                         filters=metadata_filters(languages, sources))
        lexical = LexicalRetriever(self._lexical(), self.store, self.bm25_k, query_lang, languages, sources)
        parts = {"dense": [_Timed(dense, "dense", timings)], "bm25": [_Timed(lexical, "bm25", timings)]}
        chosen = parts["dense"] + parts["bm25"] if self.mode == "hybrid" else parts[self.mode]
        fusion = QueryFusionRetriever(
            chosen,
            llm=MockLLM(), mode=FUSION_MODES.RECIPROCAL_RANK, num_queries=1,
            similarity_top_k=self.dense_k + self.bm25_k, use_async=False,
        )
        t = time.perf_counter()
        fused = fusion.retrieve(QueryBundle(query_str=question, embedding=embedding))
        total = time.perf_counter() - t
        timings["fuse"] = max(0.0, total - timings.get("dense", 0.0) - timings.get("bm25", 0.0))
        dense_ranks, bm25_ranks = timings.pop("dense_ranks", {}), timings.pop("bm25_ranks", {})
        dense_scores = timings.pop("dense_scores", {})
        if self.mode == "hybrid":
            fused = [n for n in fused if dense_ranks.get(n.node.node_id, top_k + 1) <= top_k
                     or bm25_ranks.get(n.node.node_id, self.bm25_top + 1) <= self.bm25_top]
        else:
            fused = fused[:top_k]
        timings.pop("bm25_scores", None)
        # Every chunk's cosine from the stored vectors (BM25-only chunks included), so later stages
        # compare like with like whichever retriever found a chunk.
        dense_scores = self._cosines([n.node.node_id for n in fused], embedding) if fused else {}
        hits = [_hit(n, rank, dense_ranks, bm25_ranks, dense_scores) for rank, n in enumerate(fused, 1)]
        return Retrieved(hits, embedding, timings)

    def _cosines(self, chunk_ids: list[str], embedding: list[float]) -> dict[str, float]:
        import numpy as np

        got = self.store.chunks.get(ids=chunk_ids, include=["embeddings"])
        q = np.asarray(embedding, dtype=np.float32)
        q /= np.linalg.norm(q) + 1e-9
        return {i: float(np.dot(v, q) / (np.linalg.norm(v) + 1e-9)) for i, v in zip(got["ids"], got["embeddings"])}


def _hit(n: NodeWithScore, rank: int, dense: dict, bm25: dict, dense_scores: dict) -> Hit:
    m = n.node.metadata
    return Hit(chunk_id=n.node.node_id, doc_id=m.get("doc_id", ""), source=m.get("source", ""),
               title=m.get("title", ""), language=m.get("language", ""), text=n.node.get_content(),
               char_start=int(m.get("char_start", 0)), char_end=int(m.get("char_end", 0)),
               score=float(n.score or 0.0), rank=rank, dense_rank=dense.get(n.node.node_id),
               bm25_rank=bm25.get(n.node.node_id), dense_score=dense_scores.get(n.node.node_id))
