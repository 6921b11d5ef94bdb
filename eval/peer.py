"""The peer system for the benchmark: a plain llama-index quickstart over the same corpus and embedder.

    >>> peer = run_peer(settings, items)        # settings: an indexed data dir; items: gold questions
    >>> peer["default"]["retrieval"]["recall@5"], peer["default"]["latency"]["p50_ms"]

It reuses ``eval.baselines.QuickstartBaseline`` (``VectorStoreIndex`` over a fresh
``ChromaVectorStore``, default ``SentenceSplitter``, same embedding model) and asks the gold
questions through its retriever twice: as shipped (``as_retriever()``, top 2 chunks) and with
``similarity_top_k`` equal to our ``top_k`` (8), so recall is also compared at equal depth.
No LLM and no evidence step: its latency is retrieval only (query embedding + Chroma query).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import numpy as np

from eval.gold import GoldItem
from rag.settings import Settings
from rag.types import Answer, Hit


def _answer(question: str, nodes: list, took: float) -> Answer:
    hits = [Hit(chunk_id=n.node.node_id, doc_id=n.node.metadata.get("doc_id", ""),
                source=n.node.metadata.get("file_name", ""), title="", language="", text=n.node.get_content(),
                char_start=n.node.start_char_idx or 0, char_end=n.node.end_char_idx or 0,
                score=float(n.score or 0.0), rank=rank) for rank, n in enumerate(nodes, 1)]
    text = hits[0].text if hits else ""
    return Answer(question=question, text=text, language="", mode="quickstart", retrieved=hits,
                  timings={"retrieve": took, "total": took})


def _summary(rows: list[dict[str, Any]], seconds: list[float]) -> dict[str, Any]:
    from eval.metrics import add_retrieval

    scored = [r["scores"]["retrieval"] for r in add_retrieval(rows) if r["scores"]["retrieval"]]
    ms = np.asarray(seconds) * 1000
    return {"retrieval": {k: round(float(np.mean([s[k] for s in scored])), 4) for k in ("recall@5", "hit@1", "mrr")}
            | {"questions": len(scored)},
            "latency": {"p50_ms": round(float(np.percentile(ms, 50)), 2),
                        "p95_ms": round(float(np.percentile(ms, 95)), 2), "n": len(seconds)}}


def run_peer(settings: Settings, items: Sequence[GoldItem], records: Sequence[Any] | None = None) -> dict[str, Any]:
    """Build the quickstart over the indexed documents of ``settings`` and score it on ``items``."""
    from eval.baselines import QuickstartBaseline, read_documents
    from eval.metrics import score_answer
    from rag.assistant import Assistant

    docs = read_documents(records if records is not None else Assistant(settings).documents())
    qs = QuickstartBaseline(settings, docs)
    out: dict[str, Any] = {"build_seconds": round(qs.build_seconds, 2), "documents": len(docs)}
    try:
        for name, kwargs in (("default", {}), ("top_k", {"similarity_top_k": settings.top_k})):
            retriever = qs.index.as_retriever(**kwargs)
            retriever.retrieve(items[0].question)  # warm-up
            rows, seconds = [], []
            for item in items:
                t = time.perf_counter()
                nodes = retriever.retrieve(item.question)
                seconds.append(time.perf_counter() - t)
                rows.append(score_answer(item, _answer(item.question, nodes, seconds[-1])))
            out[name] = {"similarity_top_k": kwargs.get("similarity_top_k", 2), **_summary(rows, seconds)}
    finally:
        qs.close()
    return out
