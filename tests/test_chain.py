"""The answering chain over the real corpus index, extractive mode (no LLM needed)."""

from __future__ import annotations

import dataclasses
import json

import pytest
from conftest import run_cli

from rag.errors import QuestionError

pytestmark = pytest.mark.slow

ADVISOR = {"en": "Who advises AIP?", "es": "¿Quién asesora a la AIP?", "de": "Wer berät AIP?"}
NOT_FOUND = {"en": "Not found in the documents.", "pt": "Não encontrado nos documentos.",
             "es": "No se encontró en los documentos.", "de": "In den Dokumenten nicht gefunden."}


# "Wer berät AIP?": the answer says "Technologieberater"; the rule that matched "berät" inside
# that compound was fitted to this question and is gone (no German decompounder ships here).
# "Who advises AIP?": the Nvidia sentence is the ranker's second choice, after the sentence that
# introduces AIP (the known topic-sentence failure, docs/EVAL.md).
@pytest.mark.parametrize("lang", [pytest.param(lang, marks=pytest.mark.xfail(
    strict=True, reason="topic sentence / German compound (docs/EVAL.md)")) if lang in ("de", "en") else lang
    for lang in sorted(ADVISOR)])
def test_who_advises_aip_in_each_language(corpus_qa, lang):
    ans = corpus_qa.ask(ADVISOR[lang])
    assert not ans.abstained and ans.language == lang and not ans.verified  # a quote: nothing to verify
    assert "nvidia" in ans.text.lower()
    cite = ans.citations[0]
    assert "nvidia" in cite.quote.lower()
    doc = (corpus_qa.settings.corpus_dir / f"{cite.doc_id}.txt")
    text = (doc if doc.is_absolute() else (corpus_qa.settings.corpus_dir.resolve() / doc.name)).read_text()
    assert text[cite.char_start:cite.char_end] == cite.quote  # the citation points at the exact sentence
    assert cite.passage[cite.char_start - cite.passage_start:cite.char_end - cite.passage_start] == cite.quote


def test_portuguese_question_is_answered_in_portuguese_or_abstains_in_portuguese(corpus_qa):
    ans = corpus_qa.ask("Quem é o CEO da BlackRock mencionado nas notícias?")
    assert ans.language == "pt" and "Fink" in ans.text


def test_crosslingual_answer_says_which_language_it_quotes(corpus_qa):
    """The label, not the gate: asked with the gate open (abstain_threshold 0). Since the ranker
    was refitted with the dictionaries this question sits just below the threshold over the Spanish
    documents alone (P(answerable) 0.58 < 0.61: the small Spanish dictionary lacks "alliance"), a
    false abstention that docs/EVAL.md counts; what is tested here is how a quote is labelled."""
    from rag import Assistant

    qa = Assistant(dataclasses.replace(corpus_qa.settings, abstain_threshold=0.0))
    ans = qa.ask("Which company is the technical advisor of the alliance?", languages=["es"])
    assert ans.citations and all(c.language == "es" for c in ans.citations)
    assert ans.text.startswith("From a source in Spanish:") and "Nvidia" in ans.text


# Near-miss questions about AIP that the documents do not answer: the vocabulary gate that caught
# them was fitted to these questions and is gone; near-miss abstention is the benchmark's weak
# spot too (docs/EVAL.md). Strict xfails, so a fix shows.
NEAR_MISS = pytest.mark.xfail(strict=True, reason="near-miss unanswerable: documents about AIP, no answer")


@pytest.mark.parametrize("question", [pytest.param("Where is AIP headquartered?", marks=NEAR_MISS),
                                      pytest.param("How many GPUs will AIP buy?", marks=NEAR_MISS),
                                      "What is the population of India?"])
def test_unanswerable_questions_abstain(corpus_qa, question):
    ans = corpus_qa.ask(question)
    assert ans.abstained and ans.text == NOT_FOUND["en"] and not ans.citations
    assert ans.related and ans.verification  # closest passages offered, and the reason recorded


@pytest.mark.parametrize("lang,question", [("pt", "Qual é a capital da Austrália?"),
                                           ("es", "¿Cómo se prepara una paella valenciana?"),
                                           ("de", "Wie wird das Wetter morgen in Berlin?")])
def test_abstention_is_in_the_question_language(corpus_qa, lang, question):
    ans = corpus_qa.ask(question)
    assert ans.abstained and ans.text == NOT_FOUND[lang]


def test_conflicting_figures_are_both_shown(corpus_qa):
    ans = corpus_qa.ask("How much does AIP aim to mobilise?")
    assert ans.conflicts, ans.text
    values = " ".join(v for v, _ in ans.conflicts[0].claims)
    assert "100 billion" in values and "1 billón" in values
    cited = {c.n for c in ans.citations}
    assert all(n in cited for _, n in ans.conflicts[0].claims)
    assert {c.doc_id for c in ans.citations} >= {"002_ecd3f22a6ca37239"}


def test_conflict_mechanism_on_known_evidence():
    """Two documents, the same fact, different amounts in two languages: both are claimed."""
    import numpy as np

    from rag.conflicts import asks_quantity, find_conflicts
    from rag.types import Evidence

    def ev(n, doc, lang, text, score):
        return Evidence(n=n, doc_id=doc, source=doc, title="", chunk_id=f"{doc}-c", language=lang, text=text,
                        char_start=0, char_end=len(text), score=score)

    evidence = [ev(1, "a", "en", "The fund aims to mobilise up to $100 billion.", 0.9),
                ev(2, "b", "es", "El fondo quiere movilizar hasta 1 billón de dólares.", 0.85),
                ev(3, "c", "en", "The fund was founded in 2019 by three partners.", 0.8)]
    same = np.ones(8) / np.sqrt(8)
    vectors = [same, same, np.eye(8)[0]]
    assert asks_quantity("How much will the fund mobilise?", "en")
    assert not asks_quantity("Who founded the fund?", "en")
    assert find_conflicts(evidence, vectors, 0) == [1]  # 1e11 vs 1e12 (Spanish "billón"); not the year


def test_filters_restrict_citations(corpus_qa):
    by_lang = corpus_qa.ask("Who advises AIP?", languages=["de"])
    assert by_lang.citations and {c.language for c in by_lang.citations} == {"de"}
    assert {h.language for h in by_lang.retrieved} == {"de"}
    by_doc = corpus_qa.ask("Who advises AIP?", sources=["004_aa7a5d420b0d2dd0"])
    assert {h.doc_id for h in by_doc.retrieved} == {"004_aa7a5d420b0d2dd0"}


@pytest.mark.parametrize("question, lang", [("Who advises AIP?", "en"), ("Quanto vai mobilizar o fundo?", "pt"),
                                            ("Wer ist der Chef von BlackRock?", "de")])
def test_candidates_are_the_dense_top_k_plus_bm25s_own_best(corpus_qa, question, lang):
    """Hybrid retrieval keeps every chunk of the dense top_k and of BM25's top bm25_top, nothing
    else, in RRF order; a single retriever keeps its own top_k."""
    from rag.retrieve import HybridRetriever

    engine, top_k = corpus_qa.engine, 3
    got = engine.retriever.retrieve(question, query_lang=lang, top_k=top_k)
    dense = {h.chunk_id for h in got.hits if h.dense_rank and h.dense_rank <= top_k}
    lexical = {h.chunk_id for h in got.hits if h.bm25_rank and h.bm25_rank <= engine.retriever.bm25_top}
    assert len(dense) == top_k and lexical  # the demo store has more than top_k chunks for each
    assert {h.chunk_id for h in got.hits} == dense | lexical
    assert [h.rank for h in got.hits] == list(range(1, len(got.hits) + 1))
    assert all(a.score >= b.score for a, b in zip(got.hits, got.hits[1:]))  # RRF order
    for mode, rank in (("dense", "dense_rank"), ("bm25", "bm25_rank")):
        one = HybridRetriever(engine.store, engine.embed_model, engine.retriever._lexical, mode=mode)
        hits = one.retrieve(question, query_lang=lang, top_k=top_k).hits
        assert [getattr(h, rank) for h in hits] == list(range(1, top_k + 1))


def test_follow_up_uses_history(corpus_qa):
    first = corpus_qa.ask("Who is the CEO of BlackRock?")
    history = [("Who is the CEO of BlackRock?", first.text)]
    follow = corpus_qa.ask("What did he say about clients?", history=history)
    assert "pension" in follow.text.lower() and not follow.abstained
    # What is searched: the follow-up with the last turn ("he" is Fink). Asked alone, the question
    # now finds the same sentence too (the corpus's only statement about clients), so the control
    # is the search text, not an abstention.
    searched = corpus_qa.engine._with_history("What did he say about clients?", history)
    assert searched.startswith("Who is the CEO of BlackRock?") and searched.endswith("What did he say about clients?")


def test_stream_yields_steps_then_answer_with_timings(corpus_qa):
    events = list(corpus_qa.stream("Wer berät AIP?"))
    kinds = [e.type for e in events]
    assert kinds[0] == "retrieved" and kinds[1] == "evidence" and kinds[-1] == "answer"
    ans = events[-1].payload
    assert set(ans.timings) >= {"embed", "dense", "bm25", "fuse", "evidence", "generate", "total"}
    assert json.loads(json.dumps(ans.to_dict()))["citations"][0]["n"] == ans.citations[0].n


@pytest.mark.parametrize("bad", ["", "   ", "?!…", "x" * 20_000])
def test_unusable_questions_get_a_clear_error(corpus_qa, bad):
    with pytest.raises(QuestionError) as err:
        corpus_qa.ask(bad)
    assert "question" in str(err.value)


@pytest.mark.parametrize("odd", ["AIP\x00\x07 Nvidia?", "谁是AIP的顾问？", "من يقدم المشورة لـ AIP؟", "Nvidia 🚀🚀 AIP?",
                                 "Who advises AIP? Quem assessora? Wer berät?"])
def test_odd_questions_answer_or_abstain_without_crashing(corpus_qa, odd):
    ans = corpus_qa.ask(odd)
    assert ans.text and (ans.abstained or ans.citations)


def test_cli_ask_prints_citations_and_json(corpus_qa):
    env = {"RAG_DATA_DIR": str(corpus_qa.settings.data_dir), "RAG_MODE": "extractive"}
    out = run_cli("ask", "Who is the CEO of BlackRock?", env=env)
    assert out.returncode == 0, out.stderr
    assert "Fink" in out.stdout and "[1]" in out.stdout and "citations:" in out.stdout
    data = json.loads(run_cli("ask", "Wer berät AIP?", "--json", env=env).stdout)
    assert data["language"] == "de" and data["citations"] and not data["abstained"]
