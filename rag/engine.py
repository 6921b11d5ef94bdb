"""The answering chain as a llama-index query engine: retrieve -> evidence -> abstain -> generate
-> verify -> cite.

    >>> engine = CitedQueryEngine.build(settings, store, embed_model, lexical_loader, lexicon)
    >>> for event in engine.stream("Quem assessora a AIP?"): ...   # retrieved/evidence/token/answer
    >>> engine.query("Who advises AIP?").metadata["answer"].citations

Guarantees are enforced here, not trusted to the LLM: abstention is decided from the evidence
before any generation; an LLM draft must pass verification and be in the question's language,
else the answer falls back to the extractive one and says why; a verified draft that the passage
holding the best-ranked sentence does not back is not shown: the two readings disagree, so the
answer abstains and offers the related passages.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import numpy as np
from llama_index.core.base.response.schema import Response
from llama_index.core.query_engine import CustomQueryEngine
from llama_index.core.schema import NodeWithScore, QueryBundle, TextNode
from pydantic import ConfigDict, PrivateAttr

from index.language import detect_language, detect_question_language, without_names
from index.text import fold, names, words
from rag.abstain import AbstentionGate
from rag.conflicts import asks_quantity, figures, find_conflicts
from rag.context import build_context
from rag.errors import LLMError, QuestionError
from rag.evidence import EvidenceSelector, hit_nodes, rerank_hits, to_evidence
from rag.extractive import extractive_answer, pick_primary
from rag.messages import ANSWER_LANGUAGES, language_name, message
from rag.ranker import Ranker, path_for
from rag.retrieve import HybridRetriever
from rag.settings import Settings
from rag.types import Answer, Conflict, Event, Evidence, Hit
from rag.verify import Verdict, Verifier

FOLLOW_UP_WORDS = 12


def answer_language(text: str) -> str:
    """The language of an answer's own words among en/pt/es/de ("" when too few to tell): names
    and numbers are left out, as lingua reads "California State Route 99" as English."""
    rest = without_names(text)
    if len(rest.split()) < 3:
        return ""
    found = detect_language(rest, ANSWER_LANGUAGES)
    return found.code if found.confidence > 0.5 else ""


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


def in_passage_of(primary: Evidence, sentence: Evidence) -> bool:
    """Is ``sentence`` inside the passage (chunk) ``primary`` was found in? By document offsets,
    so a sentence that overlapping chunks share counts for both."""
    end = primary.passage_start + len(primary.passage) if primary.passage else primary.char_end
    start = primary.passage_start if primary.passage else primary.char_start
    return sentence.doc_id == primary.doc_id and sentence.char_start < end and sentence.char_end > start


class CitedQueryEngine(CustomQueryEngine):
    """Answers with verified citations; ``stream`` yields the steps, ``query`` the final Response."""

    model_config = ConfigDict(arbitrary_types_allowed=True)
    settings: Any
    retriever: Any
    store: Any
    embed_model: Any
    lexicon: Any = None  # index.lexicon.Lexicon: question words found across languages
    _reranker: Any = PrivateAttr(default=None)

    @classmethod
    def build(cls, settings: Settings, store, embed_model, lexical, lexicon=None) -> CitedQueryEngine:
        retriever = HybridRetriever(store, embed_model, lexical, settings.dense_k, settings.bm25_k, settings.retrieval,
                                    settings.bm25_top)
        return cls(settings=settings, retriever=retriever, store=store, embed_model=embed_model, lexicon=lexicon)

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

        filters = dict(top_k=top_k or s.top_k, languages=languages or None, sources=sources or None)
        got, timings = self._retrieve(query, lang, **filters)
        yield Event("retrieved", got.hits)
        t = time.perf_counter()
        evidence, vectors, decision = self._find(question, query, got, lang)
        if query != question and evidence and max(e.features["ctx_overlap"] for e in evidence) == 0:
            # None of the follow-up's own words is in what the previous turn's context found: a
            # new topic, asked on its own (not glued onto the last turn).
            query = question
            got, timings = self._retrieve(question, lang, **filters)
            evidence, vectors, decision = self._find(question, question, got, lang)
        timings["evidence"] = time.perf_counter() - t
        yield Event("evidence", evidence)

        base = dict(question=question, language=lang, retrieved=got.hits, requested_mode=mode,
                    p_answerable=round(float(decision.answerable), 6))
        checked = None
        if s.answer_check == "on" and not decision.abstain:
            t = time.perf_counter()
            checked, skipped = self._check(question, evidence, lang, mode, llm_factory)
            timings["check"] = time.perf_counter() - t
            if checked is not None:
                base["check"] = checked.p
                if not checked.passed:
                    decision = replace(decision, abstain=True, reason=(
                        f"answer check: the model read the best sentence and found it does not answer the "
                        f"question (P(yes) {checked.p:.2f} < threshold {checked.threshold:.2f})"))
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
        text, cited = extractive_answer(lang, evidence)
        verification = "quoted from the evidence"
        if s.answer_check == "on":
            verification += (f"; answer check passed (P(yes) {checked.p:.2f} >= {checked.threshold:.2f})"
                             if checked is not None else f"; answer check skipped: {skipped}")
        quote = Answer(text=text, mode="extractive", citations=self._cite(evidence, cited), **base,
                       verification=verification, stage="quote")
        self._add_conflicts(quote, conflicts, evidence, lang)
        answer = None
        if mode != "extractive":
            reason = ""
            if mode == "auto" and llm_factory is None:
                mode, reason = self.resolve_auto_reason()
            if mode is not None:
                # The quote now (milliseconds), the model's answer when it is verified (seconds).
                yield Event("answer", self._finish(replace(quote, timings={}), dict(timings), started))
                gen, why = self._generator(mode, llm_factory)
                if gen is None:
                    answer = Answer(text="", mode=mode, fallback=f"LLM unavailable: {why}", **base)
                else:
                    found = self._standalone(gen, question, history, lang, filters)
                    if found:  # the model reads the evidence for what the follow-up means
                        standalone, evidence, base["retrieved"] = found
                        conflicts = []  # found on the first evidence: their numbers would not match
                    answer = yield from self._llm_answer(question, lang, evidence, history, gen, base)
                    if found:
                        answer.verification = f"{answer.verification} (follow-up read as: {standalone!r})"
                    if answer.fallback and answer.draft:  # the model works, only its answer was not used
                        quote = self._translated(quote, evidence, lang, gen) or quote
                answer.mode_reason = reason or f"{mode}: asked for"
            else:
                quote.mode_reason = reason
        if answer is None or answer.fallback:
            fallback = answer.fallback if answer else ""
            answer = replace(quote, stage="final", fallback=fallback, draft=answer.draft if answer else "",
                             mode_reason=answer.mode_reason if answer else quote.mode_reason or "extractive: asked for",
                             verification=f"fell back to extractive: {fallback}; {quote.verification}" if fallback
                             else quote.verification)
        elif answer.abstained:
            answer.related = [e.citation() for e in evidence[:3]]
        else:
            self._add_conflicts(answer, conflicts, evidence, lang)
        timings["generate"] = time.perf_counter() - t
        yield Event("answer", self._finish(answer, timings, started))

    def _add_conflicts(self, answer: Answer, conflicts: list[Conflict], evidence: list[Evidence], lang: str) -> None:
        if not conflicts:
            return
        answer.conflicts = conflicts
        notice = "; ".join(", ".join(f"{v} [{n}]" for v, n in c.claims) for c in conflicts)
        answer.text = f"{answer.text}\n\n⚠ {message(lang, 'conflict')} {notice}"
        extra = sorted({n for c in conflicts for _, n in c.claims} - {c.n for c in answer.citations})
        answer.citations = sorted([*answer.citations, *self._cite(evidence, extra)], key=lambda c: c.n)

    # ------------------------------------------------------------------ steps
    def _retrieve(self, query: str, lang: str, **filters):
        got = self.retriever.retrieve(query, query_lang=lang, **filters)
        timings = dict(got.timings)
        if self.settings.reranker_model:
            t = time.perf_counter()
            got.hits = self._rerank(query, got.hits)
            timings["rerank"] = time.perf_counter() - t
        return got, timings

    def _find(self, question: str, query: str, got, lang: str):
        """Evidence, its vectors and the abstention decision for ``question`` over ``got``'s hits."""
        # A follow-up's sentences are scored against what is asked now *and* its context: the
        # mean of both vectors (the history alone would re-select the previous answer).
        ranker = self.ranker()
        encoder = self.embed_model
        if ranker.question_tuning:  # the sentence model was fitted on a tuned encoder's question vectors
            from rag.components import get_question_embedder

            encoder = get_question_embedder(self.settings, ranker.question_tuning, ranker.tuning_set)
        q_vec = got.query_embedding if encoder is self.embed_model else encoder.get_query_embedding(query)
        if query != question:
            now = np.asarray(encoder.get_query_embedding(question))
            q_vec = list((now + np.asarray(q_vec)) / 2)
        evidence, vectors, got.hits = self._evidence(question, got.hits, q_vec, lang)
        return evidence, vectors, self.gate().decide(question, evidence, got.hits, lang)

    def _standalone(self, gen, question: str, history, lang: str, filters: dict):
        """With a model: the follow-up rewritten into a standalone question, and its evidence
        (None when there is no history, the rewrite fails or changes nothing, or it abstains)."""
        if not history or not hasattr(gen, "rewrite"):
            return None
        try:
            standalone = gen.rewrite(question, history, lang)
        except LLMError:
            return None
        if not standalone or fold(standalone) == fold(question):
            return None
        got, _ = self._retrieve(standalone, lang, **filters)
        evidence, _, decision = self._find(standalone, standalone, got, lang)
        return None if decision.abstain else (standalone, evidence, got.hits)

    def _check(self, question: str, evidence: list[Evidence], lang: str, mode: str, llm_factory):
        """(the answer check's result, "") or (None, why it could not run): the model of ``mode``,
        or in extractive and auto modes the configured server, else the local model."""
        from rag.check import AnswerCheck

        s = self.settings
        check = AnswerCheck.load(s.check_path, s.ranker_holdout if s.ranker_holdout >= 0 else None,
                                 s.answer_check_threshold)
        gen, why = self._generator(mode if mode in ("local", "openai") else "openai" if s.llm_base_url else "local",
                                   llm_factory)
        if gen is None:
            return None, f"LLM unavailable: {why}"
        if not hasattr(gen, "answers"):
            return None, f"{type(gen).__name__} cannot be asked whether a sentence answers"
        try:
            return check.decide(gen, question, pick_primary(lang, evidence)), ""
        except LLMError as exc:
            return None, str(exc)

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
        its question, and the start of its answer (where "it" usually points). A question that names
        something the last turn did not (a name or a number of its own) is a new topic and is
        searched alone, so the previous turn is not glued onto it."""
        if not history or len(question.split()) > FOLLOW_UP_WORDS:
            return question
        last_q, last_a = history[-1]
        last_a = re.sub(r"\[\d+\]|⚠.*", "", str(last_a or ""), flags=re.S).strip()[:200]
        before = names(f"{last_q} {last_a}") | {fold(w) for w in words(f"{last_q} {last_a}")}
        if names(question) - before:
            return question
        return f"{last_q} {last_a} {question}".strip()

    def ranker(self) -> Ranker:
        s = self.settings
        return Ranker.load(path_for(s.ranker_path, s.sentence_vectors), s.ranker_holdout if s.ranker_holdout >= 0 else None)

    def gate(self) -> AbstentionGate:
        t = self.settings.abstain_threshold
        return AbstentionGate(self.ranker(), None if t < 0 else t)

    def _evidence(self, query: str, hits: list[Hit], embedding: list[float], lang: str):
        """Evidence sentences (and their vectors), and the hits re-ranked by their best sentence."""
        selector = EvidenceSelector.of(self.store, self.ranker(), k=self.settings.evidence_k, query_language=lang,
                                       lexicon=self.lexicon)
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
        return self.resolve_auto_reason()[0]

    def resolve_auto_reason(self) -> tuple[str | None, str]:
        """``resolve_auto`` and why. Latency is not a reason to skip the model: the cited quote is
        shown within milliseconds either way, and the model's answer replaces it once verified."""
        from rag.llm import LLMGenerator
        from rag.llm_server import resolve_model_path

        s = self.settings
        if s.llm_base_url:
            if LLMGenerator(s.llm_base_url, s.llm_model or "default", api_key=s.llm_api_key).ping(timeout=2):
                return "openai", "auto: the configured OpenAI-compatible server answers (quote first, then its answer)"
        try:
            resolve_model_path(s)
            return "local", "auto: the bundled local model (quote shown at once, its verified answer follows)"
        except LLMError as exc:
            return None, f"auto: extractive, no LLM available ({str(exc)[:120]})"

    def _generator(self, mode: str, llm_factory):
        """(generator, "") or (None, why it is unavailable)."""
        from rag.llm import generator_for

        try:
            return (llm_factory or generator_for)(self.settings, mode), ""
        except LLMError as exc:
            return None, str(exc)

    def _llm_answer(self, question, lang, evidence, history, gen, base):
        name = getattr(gen, "name", "llm")
        context = build_context(evidence, self.settings.llm_context_tokens)
        sentences = context.sentences
        draft = None
        try:
            for piece in gen.stream(question, lang, context, history):
                if isinstance(piece, str):
                    yield Event("token", piece)
                else:
                    draft = piece
        except LLMError as exc:
            return Answer(text="", mode=name, fallback=f"LLM failed: {exc}", **base)
        if draft is None:
            return Answer(text="", mode=name, fallback="LLM returned nothing", **base)
        if not getattr(draft, "found", True):
            return Answer(text=message(lang, "not_found"), mode=name, abstained=True, draft=draft.text,
                          verification="the model found no answer in the passages it read", **base)
        failed = dict(text="", mode=name, draft=draft.text, **base)
        text, note = draft.text, ""
        verdict = Verifier(self.embed_model).check(text, draft.cited, sentences, lang=lang, question=question)
        if not verdict.ok and verdict.foreign:  # a wording slip, not a wrong claim: the model words it once more
            by_n = {e.n: e for e in sentences}
            source = next((by_n[n].language for n in draft.cited if n in by_n and by_n[n].language != lang),
                          next((e.language for e in sentences if e.language != lang), lang))
            again = self._worded(gen, text, source, lang, draft.cited, sentences, question, verdict.foreign, tries=1)
            if again:
                note = f" (the draft left {', '.join(map(repr, verdict.foreign[:3]))} in {source}; worded in {lang} once more)"
                text, verdict = again
        if not verdict.ok:
            return Answer(fallback=f"verification failed: {verdict.reason}", **failed)
        got = answer_language(text)
        if got not in (lang, ""):
            return Answer(fallback=f"answer came back in '{got}', not '{lang}'", **failed)
        verdict = self.agreeing(text, verdict, sentences, evidence, lang, question)
        if not verdict.ok:
            return Answer(text=message(lang, "unsure"), mode=name, abstained=True, withheld=True,
                          draft=draft.text, verification=verdict.reason + note, **base)
        marks = "".join(f"[{n}]" for n in verdict.cited)
        return Answer(text=f"{text.strip()} {marks}", mode=name, verified=True, draft=draft.text,
                      verification=verdict.reason + note, citations=self._cite(sentences, verdict.cited), **base)

    def agreeing(self, text: str, verdict: Verdict, sentences: list[Evidence], evidence: list[Evidence],
                 lang: str, question: str) -> Verdict:
        """``verdict`` when the answer is backed by the passage holding the ranker's best sentence
        (cited there, or verified against that passage alone, whose citations it then gets); else a
        failed verdict: the model's supported answer and the ranker read different passages, so
        the documents do not answer this clearly."""
        primary = pick_primary(lang, evidence)
        if any(in_passage_of(primary, e) for e in sentences if e.n in verdict.cited):
            return verdict
        own = [e for e in sentences if in_passage_of(primary, e)]
        alone = Verifier(self.embed_model).check(text, [], own, lang=lang, question=question)
        if alone.ok:
            return alone
        return replace(alone, reason="the model's answer is backed by another passage than the one holding the "
                                     f"best-ranked sentence [{primary.n}] ({alone.reason}): not shown as an answer")

    def _translated(self, quote: Answer, evidence: list[Evidence], lang: str, gen) -> Answer | None:
        """The quote in the reader's language by the model, checked like an answer against the one
        sentence it translates; None when there is nothing to translate or the check fails. A
        translation that fails only by leaving source words untranslated is asked for once more,
        naming those words."""
        primary = next((e for e in evidence if quote.citations and e.n == quote.citations[0].n), None)
        if gen is None or primary is None or primary.language == lang:
            return None
        done = self._worded(gen, primary.text, primary.language, lang, [primary.n], [primary])
        if done is None:
            return None
        text = done[0]
        head = message(lang, "translated_from", language=language_name(primary.language, lang))
        body = quote.text.split("\n\n⚠", 1)
        notice = f"\n\n⚠{body[1]}" if len(body) > 1 else ""
        return replace(quote, text=f"{head} “{text}” [{primary.n}]{notice}",
                       verification=f"quote translated from {primary.language} by the model "
                                    "(names, numbers and negation checked against the original)")

    def _worded(self, gen, text: str, source: str, lang: str, cited: list[int], sentences: list[Evidence],
                question: str = "", avoid: tuple[str, ...] = (), tries: int = 2) -> tuple[str, Verdict] | None:
        """``text`` translated into ``lang`` by the model and verified against ``sentences`` like an
        answer (names, numbers by value, negation, words of another language); (translation,
        verdict), or None when it fails or the model has no ``translate``. An attempt that fails
        only by keeping words of another language is followed by one naming them (``avoid``: those
        of an earlier attempt), up to ``tries`` attempts."""
        if not hasattr(gen, "translate"):
            return None
        verifier = Verifier(self.embed_model)
        for _ in range(tries):
            try:
                out = gen.translate(text, source, lang, avoid=avoid)
            except LLMError:
                return None
            verdict = verifier.check(out, cited, sentences, lang=lang, question=question)
            if out and verdict.ok and answer_language(out) in (lang, ""):
                return out, verdict
            avoid = verdict.foreign if out else ()
            if not avoid:
                return None
        return None

    @staticmethod
    def _cite(evidence: list[Evidence], numbers: list[int]):
        by_n = {e.n: e for e in evidence}
        return [by_n[n].citation() for n in numbers if n in by_n]

    @staticmethod
    def _finish(answer: Answer, timings: dict, started: float) -> Answer:
        """Stamp the timings (a copy: the quote and the final answer each keep their own)."""
        timings = dict(timings)
        timings["total"] = time.perf_counter() - started
        answer.timings = {k: round(v, 4) for k, v in timings.items()}
        return answer
