"""The answering chain as a llama-index query engine: retrieve -> evidence -> abstain -> generate
-> verify -> cite.

    >>> engine = CitedQueryEngine.build(settings, store, embed_model, lexical_loader)
    >>> for event in engine.stream("Quem assessora a AIP?"): ...   # retrieved/evidence/token/answer
    >>> engine.query("Who advises AIP?").metadata["answer"].citations

Guarantees are enforced here, not trusted to the LLM: abstention is decided from the evidence
before any generation; an LLM draft must pass verification and be in the question's language,
else the answer falls back to the extractive one and says why.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from typing import Any

import numpy as np
from llama_index.core.base.response.schema import Response
from llama_index.core.query_engine import CustomQueryEngine
from llama_index.core.schema import NodeWithScore, QueryBundle, TextNode
from pydantic import ConfigDict, PrivateAttr

from index.language import detect_language, detect_question_language
from rag.abstain import AbstentionGate
from rag.conflicts import asks_quantity, figures, find_conflicts
from rag.errors import LLMError, QuestionError
from rag.evidence import EvidenceSelector, hit_nodes, rerank_hits, to_evidence
from rag.extractive import extractive_answer, pick_primary
from rag.messages import ANSWER_LANGUAGES, message
from rag.ranker import Ranker
from rag.retrieve import HybridRetriever
from rag.settings import Settings
from rag.types import Answer, Conflict, Event, Evidence, Hit
from rag.verify import Verifier

FOLLOW_UP_WORDS = 12


def clean_question(question: str, limit: int) -> str:
    text = "".join(ch if ch.isprintable() or ch in "\n\t" else " " for ch in str(question or ""))
    text = " ".join(text.split())
    if not text:
        raise QuestionError("the question is empty; type a question about the documents")
    if len(text) > limit:
        raise QuestionError(f"the question is {len(text)} characters long; the limit is {limit} "
                            "(max_question_chars): shorten it to the question itself")
    if not any(ch.isalnum() for ch in text):
        raise QuestionError("the question has no words or numbers in it; ask about the documents in words")
    return text


class CitedQueryEngine(CustomQueryEngine):
    """Answers with verified citations; ``stream`` yields the steps, ``query`` the final Response."""

    model_config = ConfigDict(arbitrary_types_allowed=True)
    settings: Any
    retriever: Any
    store: Any
    embed_model: Any
    _reranker: Any = PrivateAttr(default=None)

    @classmethod
    def build(cls, settings: Settings, store, embed_model, lexical) -> CitedQueryEngine:
        retriever = HybridRetriever(store, embed_model, lexical, settings.dense_k, settings.bm25_k, settings.retrieval)
        return cls(settings=settings, retriever=retriever, store=store, embed_model=embed_model)

    def custom_query(self, query_str: str) -> Response:
        answer = self.ask(query_str)
        nodes = [NodeWithScore(node=TextNode(id_=f"cite-{c.n}", text=c.quote, metadata={"doc_id": c.doc_id}),
                               score=c.score) for c in answer.citations]
        return Response(response=answer.text, source_nodes=nodes, metadata={"answer": answer})

    def ask(self, question: str, **kwargs) -> Answer:
        answer = None
        for event in self.stream(question, **kwargs):
            if event.type == "answer":
                answer = event.payload
        assert answer is not None
        return answer

    # ------------------------------------------------------------------ the chain
    def stream(self, question: str, *, languages: list[str] | None = None, sources: list[str] | None = None,
               top_k: int | None = None, mode: str | None = None,
               history: list[tuple[str, str]] | None = None, llm_factory=None) -> Iterator[Event]:
        s = self.settings
        started = time.perf_counter()
        question = clean_question(question, s.max_question_chars)
        mode = mode or s.mode
        detected = detect_question_language(question)
        lang = detected if detected in ANSWER_LANGUAGES else "en"
        query = self._with_history(question, history)

        got = self.retriever.retrieve(query, query_lang=lang, top_k=top_k or s.top_k,
                                      languages=languages or None, sources=sources or None)
        timings = dict(got.timings)
        if s.reranker_model:
            t = time.perf_counter()
            got.hits = self._rerank(query, got.hits)
            timings["rerank"] = time.perf_counter() - t
        yield Event("retrieved", got.hits)

        t = time.perf_counter()
        # A follow-up's sentences are scored against what is asked now *and* its context: the
        # mean of both vectors (the history alone would re-select the previous answer).
        q_vec = got.query_embedding
        if query != question:
            now = np.asarray(self.embed_model.get_query_embedding(question))
            q_vec = list((now + np.asarray(got.query_embedding)) / 2)
        evidence, vectors, got.hits = self._evidence(question, got.hits, q_vec, lang)
        if query != question and evidence and max(e.features["ctx_overlap"] for e in evidence) == 0:
            # None of the follow-up's own words is in what the previous turn's context found: a
            # new topic, asked on its own (not glued onto the last turn).
            got = self.retriever.retrieve(question, query_lang=lang, top_k=top_k or s.top_k,
                                          languages=languages or None, sources=sources or None)
            evidence, vectors, got.hits = self._evidence(question, got.hits, got.query_embedding, lang)
        decision = self.gate().decide(question, evidence, got.hits)
        timings["evidence"] = time.perf_counter() - t
        yield Event("evidence", evidence)

        base = dict(question=question, language=lang, retrieved=got.hits, requested_mode=mode)
        if decision.abstain:
            text = message(lang, "not_found")
            if detected not in ANSWER_LANGUAGES:
                text = f"{text} {message('en', 'unsupported_language')}"
            yield Event("answer", self._finish(Answer(text=text, mode="extractive", abstained=True,
                                                      verification=decision.reason,
                                                      related=[e.citation() for e in evidence[:3]], **base),
                                               timings, started))
            return

        conflicts = self._conflicts(question, evidence, vectors, lang)
        t = time.perf_counter()
        answer = None
        if mode != "extractive":
            answer = yield from self._llm_answer(question, lang, evidence, history, mode, base, llm_factory)
        if answer is None or answer.fallback:
            fallback = answer.fallback if answer else ""
            text, cited = extractive_answer(lang, evidence)
            answer = Answer(text=text, mode="extractive", citations=self._cite(evidence, cited), **base,
                            verification=f"fell back to extractive: {fallback}" if fallback else "quoted from the evidence",
                            fallback=fallback)
        timings["generate"] = time.perf_counter() - t
        if conflicts:
            answer.conflicts = conflicts
            notice = "; ".join(", ".join(f"{v} [{n}]" for v, n in c.claims) for c in conflicts)
            answer.text = f"{answer.text}\n\n⚠ {message(lang, 'conflict')} {notice}"
            extra = sorted({n for c in conflicts for _, n in c.claims} - {c.n for c in answer.citations})
            answer.citations = sorted([*answer.citations, *self._cite(evidence, extra)], key=lambda c: c.n)
        yield Event("answer", self._finish(answer, timings, started))

    # ------------------------------------------------------------------ steps
    def _rerank(self, query: str, hits: list[Hit]) -> list[Hit]:
        """Optional cross-encoder stage (``reranker_model``): llama-index's SentenceTransformerRerank."""
        from dataclasses import replace

        from llama_index.core.postprocessor import SentenceTransformerRerank

        if self._reranker is None or self._reranker.model != self.settings.reranker_model:
            self._reranker = SentenceTransformerRerank(model=self.settings.reranker_model, top_n=len(hits) or 1)
        nodes = [NodeWithScore(node=TextNode(id_=h.chunk_id, text=h.text), score=h.score) for h in hits]
        by_id = {h.chunk_id: h for h in hits}
        ranked = self._reranker.postprocess_nodes(nodes, query_str=query)
        return [replace(by_id[n.node.node_id], rank=i, score=float(n.score or 0)) for i, n in enumerate(ranked, 1)]

    @staticmethod
    def _with_history(question: str, history: list[tuple[str, str]] | None) -> str:
        """A short follow-up ("and how much will it invest?") is searched together with the last turn:
        its question, and the start of its answer (where "it" usually points)."""
        if not history or len(question.split()) > FOLLOW_UP_WORDS:
            return question
        last_q, last_a = history[-1]
        last_a = re.sub(r"\[\d+\]|⚠.*", "", str(last_a or ""), flags=re.S).strip()[:200]
        return f"{last_q} {last_a} {question}".strip()

    def ranker(self) -> Ranker:
        s = self.settings
        return Ranker.load(s.ranker_path, s.ranker_holdout if s.ranker_holdout >= 0 else None)

    def gate(self) -> AbstentionGate:
        t = self.settings.abstain_threshold
        return AbstentionGate(self.ranker(), None if t < 0 else t)

    def _evidence(self, query: str, hits: list[Hit], embedding: list[float], lang: str):
        """Evidence sentences (and their vectors), and the hits re-ranked by their best sentence."""
        selector = EvidenceSelector.of(self.store, self.ranker(), k=self.settings.evidence_k, query_language=lang)
        scored = selector.score_all(hit_nodes(hits), QueryBundle(query_str=query, embedding=embedding))
        evidence, vectors = to_evidence(selector.diverse(scored))
        return evidence, vectors, rerank_hits(hits, scored)

    def _conflicts(self, question: str, evidence: list[Evidence], vectors: list, lang: str) -> list[Conflict]:
        if not asks_quantity(question, lang) or any(v is None for v in vectors):
            return []
        primary = pick_primary(lang, evidence)
        index = evidence.index(primary)
        others = find_conflicts(evidence, vectors, index)
        if not others:
            return []
        claims = [(" / ".join(w for _, w in figures(evidence[i])), evidence[i].n) for i in [index, *others]]
        return [Conflict(about=question, claims=claims)]

    def resolve_auto(self) -> str | None:
        """What ``auto`` means here: a reachable OpenAI-compatible server, else the local model
        if installed, else None (extractive)."""
        from rag.llm import LLMGenerator
        from rag.llm_server import resolve_model_path

        s = self.settings
        if s.llm_base_url:
            if LLMGenerator(s.llm_base_url, s.llm_model or "default", api_key=s.llm_api_key).ping(timeout=2):
                return "openai"
        try:
            resolve_model_path(s)
            return "local"
        except LLMError:
            return None

    def _llm_answer(self, question, lang, evidence, history, mode, base, llm_factory):
        from rag.llm import generator_for

        if mode == "auto" and llm_factory is None:
            mode = self.resolve_auto()
            if mode is None:
                return None
        try:
            gen = (llm_factory or generator_for)(self.settings, mode)
        except LLMError as exc:
            return Answer(text="", mode=mode, fallback=f"LLM unavailable: {exc}", **base)
        name = getattr(gen, "name", mode)
        verifier = Verifier(self.embed_model)
        reason = ""
        for attempt in range(2):  # a second try only when the answer came back in the wrong language
            try:
                draft = None
                for piece in gen.stream(question, lang, evidence, history):
                    if isinstance(piece, str):
                        if attempt == 0:
                            yield Event("token", piece)
                    else:
                        draft = piece
            except LLMError as exc:
                return Answer(text="", mode=name, fallback=f"LLM failed: {exc}", **base)
            if draft is None:
                return Answer(text="", mode=name, fallback="LLM returned nothing", **base)
            verdict = verifier.check(draft.text, draft.cited, evidence)
            if not verdict.ok:
                return Answer(text="", mode=name, fallback=f"verification failed: {verdict.reason}", **base)
            got_lang = detect_language(draft.text).code
            if got_lang != lang and len(draft.text.split()) >= 4 and detect_language(draft.text).confidence > 0.5:
                reason = f"answer came back in '{got_lang}', not '{lang}'"
                continue
            marks = "".join(f"[{n}]" for n in verdict.cited)
            return Answer(text=f"{draft.text.strip()} {marks}", mode=name, verified=True,
                          verification=verdict.reason, citations=self._cite(evidence, verdict.cited), **base)
        return Answer(text="", mode=name, fallback=reason, **base)

    @staticmethod
    def _cite(evidence: list[Evidence], numbers: list[int]):
        by_n = {e.n: e for e in evidence}
        return [by_n[n].citation() for n in numbers if n in by_n]

    @staticmethod
    def _finish(answer: Answer, timings: dict, started: float) -> Answer:
        timings["total"] = time.perf_counter() - started
        answer.timings = {k: round(v, 4) for k, v in timings.items()}
        return answer
