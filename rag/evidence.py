"""Evidence selection: the few sentences of the retrieved chunks that best answer the question.

    >>> selector = EvidenceSelector.of(store, ranker, k=4)
    >>> sentences = selector.postprocess_nodes(chunk_nodes, QueryBundle(q, embedding=qvec))

A llama-index node postprocessor: chunks in, sentence nodes out, each with exact document
offsets. Sentence vectors were stored at indexing time, so scoring costs one Chroma read and a
few dot products, not an encoder pass. Each candidate sentence gets the features below, and a
small linear model (``rag/ranker.py``, a conditional logit fitted on benchmark folds by
``python -m eval calibrate``: which candidate of a question holds the answer) scores them:

* what the sentence says: its cosine to the question, relative to the best candidate (the
  question as the ranker file's question tuning encodes it, ``index/qtuning.py``: fitted to put
  the answering sentence closer than its neighbours on the same topic);
* its context: the best cosine of its neighbours, and the question words found in the sentence
  or before it in its passage (what a reader knows on reaching it: "It opened in 1921." answers
  "When did the museum open?" once "The museum ..." came before); in a sentence of another
  language, a question word also counts as found through its dictionary translations
  (``index.lexicon``);
* what retrieval knew: the dense cosine and the dense / BM25 ranks of its chunk;
* its length.

Deliberately not a feature: whether the sentence is in the question's language. On the benchmark
its weight came out strongly negative, an artefact of how cross-lingual items are built (the
answer is never in the question's language there), which would hurt every same-language corpus.

Headings, titles and navigation lines (short lines without sentence punctuation, markdown
headings, spans a reader marked as headings) stay context but are never evidence.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

import numpy as np
from llama_index.core.postprocessor.types import BaseNodePostprocessor
from llama_index.core.schema import NodeWithScore, QueryBundle, TextNode
from pydantic import PrivateAttr

from index.lexicon import Lexicon
from index.store import Store
from index.text import content_words, fold, stem, stems_related, token_key
from rag.ranker import Ranker
from rag.types import Evidence, Hit

FEATURES = ("cos", "cos_gap", "ctx_cos", "overlap", "ctx_overlap", "chunk_cos", "dense_rr", "bm25_rr",
            "log_words")
# Sentences that talk to the model rather than about the world (a security guard, not a quality
# rule): kept in the index (a reader may search for them), never used as evidence, so neither
# quoted nor put in an LLM prompt.
INJECTION = re.compile(
    r"\b(ignore|disregard|forget|override)\b.{0,60}\b(instructions?|prompts?|rules|directions)\b"
    r"|\b(ignor[ae]|esque[cç]a|olvid[ae])\b.{0,60}\b(instru[cç][oõ]es|instrucciones|reglas|regras)\b"
    r"|\b(ignoriere|vergiss|missachte)\b.{0,60}\b(anweisungen|anleitungen|regeln)\b"
    r"|\b(system prompt|you are now|jailbreak|developer mode)\b",
    re.IGNORECASE | re.DOTALL,
)
_SENTENCE_END = re.compile(r"[.!?…;:。！？][\"'”’»)\]]*$")
_LIST_ITEM = re.compile(r"^\s*(?:[-*•–]|\d+[.)])\s")
HEADING_WORDS = 12


def looks_like_injection(text: str) -> bool:
    return bool(INJECTION.search(text))


def looks_like_heading(text: str) -> bool:
    """A markdown heading, or a short line with no sentence punctuation that is not a list item
    ("Annual report", "Formation of the Partnership", "Home | About | Contact")."""
    t = text.strip()
    if t.startswith("#") or "|" in t and len(t.split()) <= 2 * HEADING_WORDS:
        return True
    return len(t.split()) <= HEADING_WORDS and not _SENTENCE_END.search(t) and not _LIST_ITEM.match(t)


@dataclass
class Candidate:
    """One sentence inside a retrieved chunk, with what the ranker needs."""

    sid: str
    text: str
    meta: dict
    vector: np.ndarray
    chunk: TextNode
    features: dict


def _matcher(text: str, lang: str) -> set[str]:
    """Keys a sentence can be matched by: its stems, canonical numbers and folded words."""
    toks = content_words(text, lang)
    return {token_key(t, lang) for t in toks} | {fold(t) for t in toks}


def _question_terms(question: str, lang: str) -> dict[str, tuple[str, ...]]:
    """Each content word of the question -> the keys that count as finding it in a sentence
    (its stem in the question's language, its folded form; stems in other languages are
    added per sentence)."""
    return {token_key(t, lang): (token_key(t, lang), fold(t)) for t in content_words(question, lang)}


def _found(qterms: dict[str, tuple[str, ...]], raw: dict[str, str], keys: set[str], lang: str,
           lexicon: Lexicon | None = None, query_language: str = "") -> set[str]:
    """The question's terms a sentence in ``lang`` holds: same key, related stems
    (``stems_related``), or, for a sentence in another language than the question's, a stem the
    bilingual dictionaries give as the term's translation (``index.lexicon``)."""
    out = set()
    cross = lexicon is not None and query_language and query_language != lang
    for q, alts in qterms.items():
        forms = {*alts, stem(raw[q], lang)}
        if forms & keys or any(stems_related(f, k) for f in forms for k in keys):
            out.add(q)
        elif cross and lexicon.translations(q, query_language, lang) & keys:
            out.add(q)
    return out


class EvidenceSelector(BaseNodePostprocessor):
    """Chunks -> best ``k`` sentences (at most ``per_doc`` from one document)."""

    k: int = 4
    per_doc: int = 2
    query_language: str = "en"
    _store: Store = PrivateAttr()
    _ranker: Ranker = PrivateAttr()
    _lexicon: Lexicon | None = PrivateAttr(default=None)

    @classmethod
    def of(cls, store: Store, ranker: Ranker, k: int = 4, per_doc: int = 2,
           query_language: str = "en", lexicon: Lexicon | None = None) -> EvidenceSelector:
        sel = cls(k=k, per_doc=per_doc, query_language=query_language)
        sel._store, sel._ranker, sel._lexicon = store, ranker, lexicon
        return sel

    @classmethod
    def class_name(cls) -> str:
        return "EvidenceSelector"

    def _postprocess_nodes(self, nodes: list[NodeWithScore], query_bundle: QueryBundle | None = None) -> list[NodeWithScore]:
        if not nodes or query_bundle is None or query_bundle.embedding is None:
            return []
        scored = self.score_all(nodes, query_bundle)
        return scored[: self.k] if self.per_doc <= 0 else self.diverse(scored)

    # ------------------------------------------------------------------ candidates and features
    def candidates(self, nodes: list[NodeWithScore], query_bundle: QueryBundle) -> list[Candidate]:
        """Every sentence inside the given chunks that may be evidence, with its features."""
        spans: dict[str, list[TextNode]] = {}
        for n in nodes:
            spans.setdefault(n.node.metadata["doc_id"], []).append(n.node)
        # only the sentences in and next to the retrieved chunks, not whole documents (a 300-page
        # PDF is one document)
        got = self._store.sentences_of(sorted(spans), near=sorted(
            {(d, int(c.metadata["char_start"]), int(c.metadata["char_end"])) for d, cs in spans.items() for c in cs}))
        if not got["ids"]:
            return []
        q = np.asarray(query_bundle.embedding, dtype=np.float32)
        q /= np.linalg.norm(q) + 1e-9
        vecs = np.asarray(got["embeddings"], dtype=np.float32)
        cos = vecs @ q / (np.linalg.norm(vecs, axis=1) + 1e-9)
        lang = self.query_language
        qterms = _question_terms(query_bundle.query_str, lang)
        raw = {token_key(t, lang): t for t in content_words(query_bundle.query_str, lang)}
        order = sorted(range(len(got["ids"])), key=lambda i: (got["metadatas"][i]["doc_id"],
                                                              int(got["metadatas"][i]["char_start"])))
        langs = [got["metadatas"][i].get("language", lang) for i in range(len(got["ids"]))]
        found = [_found(qterms, raw, _matcher(got["documents"][i], langs[i]), langs[i], self._lexicon, lang)
                 for i in range(len(got["ids"]))]
        out: list[Candidate] = []
        seen: set[tuple[str, int]] = set()
        for pos, i in enumerate(order):
            meta, text = got["metadatas"][i], got["documents"][i]
            doc, a, b = meta["doc_id"], int(meta["char_start"]), int(meta["char_end"])
            chunks = [c for c in spans[doc] if int(c.metadata["char_start"]) <= a and b <= int(c.metadata["char_end"])]
            # Readers of structured formats mark headings themselves (and give a location); plain
            # text, Markdown and HTML lines are judged by their shape.
            heading = meta.get("is_heading") or (not meta.get("location") and looks_like_heading(text))
            if not chunks or (doc, a) in seen or looks_like_injection(text) or heading:
                continue
            seen.add((doc, a))
            near = [order[j] for j in (pos - 1, pos + 1)
                    if 0 <= j < len(order) and got["metadatas"][order[j]]["doc_id"] == doc]
            best = min(chunks, key=lambda c: c.metadata.get("rank") or 99)
            start = int(best.metadata["char_start"])
            before, j = [], pos  # this sentence and those before it in its passage (order is by doc, offset)
            while j >= 0 and got["metadatas"][order[j]]["doc_id"] == doc \
                    and int(got["metadatas"][order[j]]["char_start"]) >= start:
                before.append(order[j])
                j -= 1
            feats = {"cos": float(cos[i]), "ctx_cos": max((float(cos[j]) for j in near), default=float(cos[i])),
                     "found": found[i], "ctx_found": set().union(*(found[j] for j in before)),
                     "chunk_cos": max((c.metadata.get("dense_score") or 0.0) for c in chunks),
                     "dense_rr": max(1.0 / (1 + c.metadata["dense_rank"]) if c.metadata.get("dense_rank") else 0.0
                                     for c in chunks),
                     "bm25_rr": max(1.0 / (1 + c.metadata["bm25_rank"]) if c.metadata.get("bm25_rank") else 0.0
                                    for c in chunks),
                     "log_words": math.log(1 + len(text.split()))}
            out.append(Candidate(got["ids"][i], text, meta, vecs[i], best, feats))
        self._finish_features(out, qterms)
        return out

    @staticmethod
    def _finish_features(cands: list[Candidate], qterms: dict) -> None:
        """Features relative to the other candidates: IDF-weighted word overlap, cosine gap."""
        if not cands:
            return
        df: dict[str, int] = {}
        for c in cands:
            for t in c.features["found"]:
                df[t] = df.get(t, 0) + 1
        idf = {t: math.log(1 + len(cands) / (1 + df.get(t, 0))) for t in qterms}
        total = sum(idf.values()) or 1.0
        top = max(c.features["cos"] for c in cands)
        for c in cands:
            f = c.features
            f["overlap"] = sum(idf[t] for t in f.pop("found")) / total
            f["ctx_overlap"] = sum(idf[t] for t in f.pop("ctx_found")) / total
            f["cos_gap"] = f["cos"] - top

    def score_all(self, nodes: list[NodeWithScore], query_bundle: QueryBundle) -> list[NodeWithScore]:
        """Every candidate sentence as a node scored by the ranker, best first."""
        cands = self.candidates(nodes, query_bundle)
        return rank(cands, self._ranker.sentence_logits(feature_matrix(cands)))

    def diverse(self, scored: list[NodeWithScore]) -> list[NodeWithScore]:
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


def feature_matrix(cands: list[Candidate]) -> np.ndarray:
    return np.array([[c.features[f] for f in FEATURES] for c in cands]).reshape(len(cands), len(FEATURES))


def rank(cands: list[Candidate], logits: np.ndarray) -> list[NodeWithScore]:
    """Candidates as sentence nodes, best first: score = sigmoid(logit), and each one's share of the
    softmax over all candidates (how clearly it wins) added to its features."""
    logits = np.asarray(logits, dtype=np.float64)
    share = np.exp(logits - logits.max()) if len(logits) else logits
    share = share / share.sum() if len(logits) else share
    scored = []
    for c, z, sh in zip(cands, logits, share):
        c.features.update(logit=float(z), share=float(sh))
        p = 1.0 / (1.0 + np.exp(-z))
        cm = c.chunk.metadata
        node = TextNode(id_=c.sid, text=c.text, metadata={
            **c.meta, "chunk_id": c.chunk.node_id, "source": cm.get("source", ""), "title": cm.get("title", ""),
            "passage": c.chunk.get_content(), "passage_start": int(cm["char_start"]),
            "features": c.features}, embedding=c.vector.tolist())
        scored.append(NodeWithScore(node=node, score=float(p)))
    scored.sort(key=lambda n: -(n.score or 0.0))
    return scored


def hit_nodes(hits: list[Hit]) -> list[NodeWithScore]:
    """Retrieved chunks as the nodes the selector takes (with what retrieval knew about them)."""
    return [NodeWithScore(node=TextNode(id_=h.chunk_id, text=h.text, metadata={
        "doc_id": h.doc_id, "char_start": h.char_start, "char_end": h.char_end, "source": h.source,
        "title": h.title, "rank": h.rank, "dense_rank": h.dense_rank, "bm25_rank": h.bm25_rank,
        "dense_score": h.dense_score}), score=h.score) for h in hits]


def to_evidence(picked: list[NodeWithScore]) -> tuple[list[Evidence], list]:
    """Selected sentence nodes -> numbered Evidence (and their vectors)."""
    evidence, vectors = [], []
    for n, node in enumerate(picked, 1):
        m = node.node.metadata
        evidence.append(Evidence(n=n, doc_id=m["doc_id"], source=m["source"], title=m["title"],
                                 chunk_id=m["chunk_id"], language=m.get("language", ""),
                                 text=node.node.get_content(), char_start=m["char_start"], char_end=m["char_end"],
                                 score=float(node.score or 0), passage=m["passage"],
                                 passage_start=m["passage_start"], cosine=m["features"]["cos"],
                                 location=m.get("location", ""), page=int(m.get("page") or 0) or None,
                                 features=m["features"]))
        vectors.append(node.node.embedding)
    return evidence, vectors


def rerank_hits(hits: list[Hit], scored: list[NodeWithScore]) -> list[Hit]:
    """Chunks in the order of their best candidate sentence (the ranker weighs dense and BM25
    evidence as fitted, where RRF weighs them equally); chunks without a candidate keep their
    fused order after the others."""
    from dataclasses import replace

    best: dict[str, float] = {}
    for n in scored:
        cid = n.node.metadata["chunk_id"]
        best[cid] = max(best.get(cid, float("-inf")), n.score or 0.0)
    order = sorted(hits, key=lambda h: (h.chunk_id not in best, -best.get(h.chunk_id, 0.0), h.rank))
    return [replace(h, rank=i) for i, h in enumerate(order, 1)]
