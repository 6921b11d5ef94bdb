"""Evidence selection: the few sentences of the retrieved chunks that best answer the question.

    >>> selector = EvidenceSelector.of(store, k=5)
    >>> sentences = selector.postprocess_nodes(chunk_nodes, QueryBundle(q, embedding=qvec))

A llama-index node postprocessor: chunks in, sentence nodes out, each with exact document
offsets. Sentence vectors were stored at indexing time, so scoring costs one Chroma read and a
dot product, not an encoder pass. Score = cosine(question, sentence) + a bonus for sharing the
question's words (IDF-weighted over the candidates, so rare words count). No bonus for the
question's own language: measured on the gold set, preferring it cost 4 points of accuracy on
cross-lingual questions (it quotes a same-language document that lacks the answer).
"""

from __future__ import annotations

import math
import re

import numpy as np
from llama_index.core.postprocessor.types import BaseNodePostprocessor
from llama_index.core.schema import NodeWithScore, QueryBundle, TextNode
from pydantic import PrivateAttr

from index.store import Store
from rag.terms import shared_stems, stems

TERM_WEIGHT = 0.4
# Sentences that talk to the model rather than about the world: kept in the index (a reader may
# search for them), never used as evidence, so neither quoted nor put in an LLM prompt.
INJECTION = re.compile(
    r"\b(ignore|disregard|forget|override)\b.{0,60}\b(instructions?|prompts?|rules|directions)\b"
    r"|\b(ignor[ae]|esque[cç]a|olvid[ae])\b.{0,60}\b(instru[cç][oõ]es|instrucciones|reglas|regras)\b"
    r"|\b(ignoriere|vergiss|missachte)\b.{0,60}\b(anweisungen|anleitungen|regeln)\b"
    r"|\b(system prompt|you are now|jailbreak|developer mode)\b"
    r"|\b(answer|respond|reply|say)\b.{0,40}\bto (every|all|any) (question|prompt|request)s?\b",
    re.IGNORECASE | re.DOTALL,
)


def looks_like_injection(text: str) -> bool:
    return bool(INJECTION.search(text))


class EvidenceSelector(BaseNodePostprocessor):
    """Chunks -> best ``k`` sentences (at most ``per_doc`` from one document)."""

    k: int = 5
    per_doc: int = 2
    query_language: str = "en"
    _store: Store = PrivateAttr()

    @classmethod
    def of(cls, store: Store, k: int = 5, per_doc: int = 2, query_language: str = "en") -> EvidenceSelector:
        sel = cls(k=k, per_doc=per_doc, query_language=query_language)
        sel._store = store
        return sel

    @classmethod
    def class_name(cls) -> str:
        return "EvidenceSelector"

    def _postprocess_nodes(self, nodes: list[NodeWithScore], query_bundle: QueryBundle | None = None) -> list[NodeWithScore]:
        if not nodes or query_bundle is None or query_bundle.embedding is None:
            return []
        return self.score_all(nodes, query_bundle)[: self.k] if self.per_doc <= 0 else self._diverse(
            self.score_all(nodes, query_bundle))

    def score_all(self, nodes: list[NodeWithScore], query_bundle: QueryBundle) -> list[NodeWithScore]:
        """Every sentence inside the given chunks, scored, best first."""
        spans: dict[str, list[tuple[int, int, TextNode]]] = {}
        for n in nodes:
            m = n.node.metadata
            spans.setdefault(m["doc_id"], []).append((int(m["char_start"]), int(m["char_end"]), n.node))
        got = self._store.sentences_of(sorted(spans))
        if not got["ids"]:
            return []
        q = np.asarray(query_bundle.embedding, dtype=np.float32)
        vecs = np.asarray(got["embeddings"], dtype=np.float32)
        cos = vecs @ q / (np.linalg.norm(vecs, axis=1) * np.linalg.norm(q) + 1e-9)
        q_stems = stems(query_bundle.query_str)
        rows = []
        seen: set[tuple[str, int]] = set()
        for sid, text, meta, c, vec in zip(got["ids"], got["documents"], got["metadatas"], cos, vecs):
            a, b = int(meta["char_start"]), int(meta["char_end"])
            chunk = next((node for s, e, node in spans[meta["doc_id"]] if s <= a and b <= e), None)
            if chunk is None or (meta["doc_id"], a) in seen or looks_like_injection(text):
                continue
            seen.add((meta["doc_id"], a))
            rows.append((sid, text, meta, float(c), vec, chunk, shared_stems(q_stems, text)))
        # IDF over the candidate sentences: a word every sentence shares ("AIP") says little.
        df: dict[str, int] = {}
        for *_, shared in rows:
            for t in shared:
                df[t] = df.get(t, 0) + 1
        idf = {t: math.log(1 + len(rows) / (1 + df.get(t, 0))) for t in q_stems}
        total = sum(idf.values()) or 1.0
        scored: list[NodeWithScore] = []
        for sid, text, meta, c, vec, chunk, shared in rows:
            overlap = sum(idf[t] for t in shared) / total
            score = c + TERM_WEIGHT * overlap
            cm = chunk.metadata
            node = TextNode(id_=sid, text=text, metadata={
                **meta, "chunk_id": chunk.node_id, "source": cm.get("source", ""), "title": cm.get("title", ""),
                "passage": chunk.get_content(), "passage_start": int(cm["char_start"]), "cosine": c,
                "overlap": overlap,
            }, embedding=vec.tolist())
            scored.append(NodeWithScore(node=node, score=score))
        scored.sort(key=lambda n: -(n.score or 0.0))
        return scored

    def _diverse(self, scored: list[NodeWithScore]) -> list[NodeWithScore]:
        out: list[NodeWithScore] = []
        per: dict[str, int] = {}
        for n in scored:
            doc = n.node.metadata["doc_id"]
            if per.get(doc, 0) < self.per_doc:
                out.append(n)
                per[doc] = per.get(doc, 0) + 1
            if len(out) == self.k:
                break
        return out
