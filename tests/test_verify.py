"""Post-generation verification with the real embedder, on evidence from the real index."""

from __future__ import annotations

import pytest

from rag.context import build_context
from rag.types import Answer, Evidence
from rag.verify import Verifier

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def evidence(corpus_qa):
    ans = corpus_qa.ask("Who advises AIP?")
    q = "Who advises AIP?"
    ev, _, _ = corpus_qa.engine._evidence(q, ans.retrieved, corpus_qa.engine.embed_model.get_query_embedding(q), "en")
    return build_context(ev).sentences  # what the model reads and the verifier checks: evidence and neighbours


@pytest.mark.parametrize("text", ["Nvidia advises AIP.", "Nvidia is the technical advisor of AIP."])
def test_supported_answers_pass_and_get_a_citation(corpus_qa, evidence, text):
    verdict = Verifier(corpus_qa.engine.embed_model).check(text, [], evidence)
    assert verdict.ok and verdict.cited
    assert any("nvidia" in e.text.lower() for e in evidence if e.n in verdict.cited)  # added when missing


@pytest.mark.parametrize("text,bad", [("Paris.", "paris"), ("Intel advises AIP.", "intel"),
                                      ("The alliance is headquartered in Paris.", "paris"),
                                      ("Nvidia will invest 42 billion dollars.", "42")])
def test_unsupported_names_and_numbers_are_rejected_and_named(corpus_qa, evidence, text, bad):
    verdict = Verifier(corpus_qa.engine.embed_model).check(text, [1], evidence)
    assert not verdict.ok and bad in verdict.reason.lower()


def test_empty_answer_is_rejected(corpus_qa, evidence):
    assert not Verifier(corpus_qa.engine.embed_model).check("  ", [1], evidence).ok


# ---------------------------------------------------------------------- meaning, not just words
def _ev(n: int, text: str, lang: str, chunk: str) -> Evidence:
    return Evidence(n=n, doc_id=f"doc-{chunk}", source=f"{chunk}.txt", title=chunk, chunk_id=chunk, language=lang,
                    text=text, char_start=0, char_end=len(text), score=0.5)


AIP = [_ev(1, "La AIP quiere movilizar hasta 1 billón de dólares en inversiones.", "es", "a"),
       _ev(2, "Nvidia does not advise the Global Infrastructure Fund.", "en", "b"),
       _ev(3, "Maria Keller manages the Lisbon office of Atlas Energy.", "en", "c"),
       _ev(4, "The Northwind Foundation is led by its chair, Paul Brandt.", "en", "d")]


@pytest.mark.parametrize("text,lang", [
    ("Die AIP will bis zu 1 Billion US-Dollar mobilisieren.", "de"),      # Billion (de) = billón = 10^12
    ("The AIP wants to mobilise up to 1 trillion dollars.", "en"),
    ("Nvidia does not advise the Global Infrastructure Fund.", "en"),
])
def test_same_fact_in_other_words_and_languages_passes(corpus_qa, text, lang):
    verdict = Verifier(corpus_qa.engine.embed_model).check(text, [], AIP, lang=lang)
    assert verdict.ok, verdict.reason


@pytest.mark.parametrize("text,lang,why", [
    ("Die AIP mobilisieren bis zu 1 billion US-Dollar.", "de", "number word"),  # the English word in German
    ("The AIP wants to mobilise up to 1 billion dollars.", "en", "1,000,000,000"),       # 10^9 is not 10^12
    ("Nvidia advises the Global Infrastructure Fund.", "en", "negation"),
    ("Maria Keller leads the Northwind Foundation.", "en", "unrelated passages"),  # names from two documents
])
def test_wrong_claims_built_from_true_pieces_fail(corpus_qa, text, lang, why):
    verdict = Verifier(corpus_qa.engine.embed_model).check(text, [], AIP, lang=lang)
    assert not verdict.ok and why in verdict.reason, verdict.reason


# ---------------------------------------------------------------------- words left untranslated
@pytest.mark.parametrize("text,left", [
    ("A AIP quer recaudar até 1 trilhão de dólares em investimentos.", "recaudar"),   # Spanish verb kept
    ("A AIP quer movilizar até 1 trilhão de dólares em inversiones.", "movilizar"),
])
def test_a_translation_that_keeps_source_words_fails(corpus_qa, text, left):
    verdict = Verifier(corpus_qa.engine.embed_model).check(text, [], AIP[:1], lang="pt")
    assert not verdict.ok and "untranslated" in verdict.reason and left in verdict.reason, verdict.reason


def test_a_faithful_translation_with_shared_words_passes(corpus_qa):
    # "dólares" and "investimentos"/"inversiones" differ, "dólares" is a word of both languages
    verdict = Verifier(corpus_qa.engine.embed_model).check(
        "A AIP quer mobilizar até 1 trilhão de dólares em investimentos.", [], AIP[:1], lang="pt")
    assert verdict.ok, verdict.reason


class _Translator:
    """A model that translates with the given replies, in turn, and records what it was told to avoid."""

    def __init__(self, *replies: str) -> None:
        self.replies, self.avoided = list(replies), []

    def translate(self, text: str, source: str, language: str, avoid=()) -> str:
        self.avoided.append(tuple(avoid))
        return self.replies.pop(0) if self.replies else ""  # nothing left: an empty reply, which fails


def _quote() -> Answer:
    return Answer(question="Quanto a AIP quer mobilizar?", text=f"“{AIP[0].text}” [1]", language="pt",
                  mode="extractive", citations=[AIP[0].citation()])


def test_a_translation_leaving_words_is_asked_again_naming_them(corpus_qa):
    gen = _Translator("A AIP quer recaudar até 1 trilhão de dólares em investimentos.",
                      "A AIP quer mobilizar até 1 trilhão de dólares em investimentos.")
    out = corpus_qa.engine._translated(_quote(), AIP[:1], "pt", gen)
    assert gen.avoided == [(), ("recaudar",)]
    assert out is not None and "mobilizar até 1 trilhão" in out.text and "recaudar" not in out.text


@pytest.mark.parametrize("replies,asked", [
    (("A AIP quer recaudar até 1 trilhão de dólares.", "A AIP quer recaudar até 1 trilhão de dólares."), 2),
    (("A AIP quer mobilizar até 1 bilhão de dólares.",), 1),  # 10^9 for 10^12: no second try, it is no wording slip
])
def test_a_translation_that_still_fails_keeps_the_quote(corpus_qa, replies, asked):
    gen = _Translator(*replies)
    assert corpus_qa.engine._translated(_quote(), AIP[:1], "pt", gen) is None
    assert len(gen.avoided) == asked


class _Drafter(_Translator):
    """A model whose answer is ``answer`` citing the context sentence with "billón", and whose
    translations are ``replies``."""

    name = "local"

    def __init__(self, answer: str, *replies: str) -> None:
        super().__init__(*replies)
        self.answer = answer

    def stream(self, question, language, context, history=None):
        from rag.llm import Draft

        cited = next(s.n for s in context.sentences if "billón" in s.text)
        yield Draft(text=self.answer, cited=[cited], raw="{}", prompt_tokens=0, completion_tokens=0,
                    seconds=0.0, ttft=0.0)


def _ask_with(corpus_qa, gen):
    return corpus_qa.ask("Quanto a AIP quer mobilizar em investimentos?", mode="local",
                         llm_factory=lambda settings, mode: gen)


def test_an_answer_leaving_source_words_is_worded_again_then_verified(corpus_qa):
    gen = _Drafter("A AIP quer movilizar até 1 trilhão de dólares em inversiones.",
                   "A AIP quer mobilizar até 1 trilhão de dólares em investimentos.")
    ans = _ask_with(corpus_qa, gen)
    assert gen.avoided == [("movilizar", "inversiones")]
    assert ans.verified and ans.text.startswith("A AIP quer mobilizar até 1 trilhão"), ans.verification
    assert "worded in pt once more" in ans.verification and "movilizar" in ans.draft  # the draft stays as written


@pytest.mark.parametrize("draft,reworded", [
    # worded again, still Spanish: the quote stays, with the reason
    ("A AIP quer movilizar até 1 trilhão de dólares em inversiones.", True),
    # a wrong number is no wording slip: the model is not asked to word it again
    ("A AIP quer mobilizar até 1 bilhão de dólares em investimentos.", False),
])
def test_an_answer_that_still_fails_keeps_the_quote(corpus_qa, draft, reworded):
    gen = _Drafter(draft, "A AIP quer movilizar até 1 trilhão de dólares." if reworded else "")
    ans = _ask_with(corpus_qa, gen)
    assert not ans.verified and ans.fallback.startswith("verification failed"), ans.verification
    # then the quote (a Spanish sentence) is translated for the Portuguese reader: a first attempt avoids nothing
    assert gen.avoided[0] == (("movilizar", "inversiones") if reworded else ())
    assert gen.avoided[int(reworded)] == ()
