"""Plain data passed between the answering stages and returned by the public API.

    >>> c = Citation(n=1, doc_id="001_x", source="corpus/001_x.txt", chunk_id="c1", language="en",
    ...              quote="Nvidia joins as advisor.", char_start=10, char_end=34, score=0.8)
    >>> Answer(question="q", text="Nvidia [1]", language="en", mode="extractive", citations=[c]).to_dict()["citations"][0]["n"]
    1
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Literal

Mode = Literal["extractive", "local", "openai", "auto"]


@dataclass(frozen=True)
class Hit:
    """One retrieved chunk. ``rank`` is 1-based in the final order: chunks by their best sentence's
    evidence score (RRF order for chunks with no candidate sentence); dense/BM25 ranks as retrieved."""

    chunk_id: str
    doc_id: str
    source: str
    title: str
    language: str
    text: str
    char_start: int
    char_end: int
    score: float
    rank: int
    dense_rank: int | None = None
    bm25_rank: int | None = None
    dense_score: float | None = None  # the chunk's cosine to the question


@dataclass(frozen=True)
class Evidence:
    """One sentence chosen as evidence, with exact offsets into its document."""

    n: int  # 1-based number used in prompts and citations
    doc_id: str
    source: str
    title: str
    chunk_id: str
    language: str
    text: str
    char_start: int
    char_end: int
    score: float
    passage: str = ""  # the chunk the sentence comes from (for source cards)
    passage_start: int = 0  # document offset of ``passage``
    cosine: float = 0.0  # raw question-sentence cosine (score is the ranker's probability)
    location: str = ""  # "page 3", "slide 2", "sheet Revenue, row 14", "chapter 4 “Title”"; "" = plain text
    page: int | None = None  # PDF page or slide number
    features: dict[str, float] = field(default_factory=dict, compare=False)  # the ranker's inputs

    def citation(self) -> Citation:
        return Citation(n=self.n, doc_id=self.doc_id, source=self.source, chunk_id=self.chunk_id,
                        language=self.language, quote=self.text, char_start=self.char_start,
                        char_end=self.char_end, score=self.score, title=self.title,
                        passage=self.passage, passage_start=self.passage_start, location=self.location,
                        page=self.page)


@dataclass(frozen=True)
class Citation:
    """A numbered pointer from an answer to the exact sentence that supports it."""

    n: int
    doc_id: str
    source: str
    chunk_id: str
    language: str
    quote: str
    char_start: int
    char_end: int
    score: float
    title: str = ""
    passage: str = ""
    passage_start: int = 0
    location: str = ""  # where the quote is: "page 3", "slide 2", "sheet Revenue, row 14" ("" = plain text)
    page: int | None = None  # PDF page or slide number, when the document has pages


@dataclass(frozen=True)
class Conflict:
    """Sources disagree about ``about``: each claim is (value as written, citation number)."""

    about: str
    claims: list[tuple[str, int]]


@dataclass
class Answer:
    """What ``Assistant.ask`` returns. ``to_dict()`` is JSON-ready.

    ``stream`` yields up to two ``answer`` events: with an LLM mode first the extractive quote
    (``stage="quote"``, at once), then the final answer (``stage="final"``: the verified model
    answer, or the quote with ``fallback`` saying why). The last ``answer`` event is always final.
    """

    question: str
    text: str
    language: str
    mode: str  # the mode that produced the text: extractive | local | openai
    abstained: bool = False
    verified: bool = False  # True only when an LLM answer passed verification (quotes are not "verified")
    verification: str = ""  # why the answer was (not) verified, or why we fell back
    citations: list[Citation] = field(default_factory=list)
    conflicts: list[Conflict] = field(default_factory=list)
    related: list[Citation] = field(default_factory=list)  # offered on abstention, not citations
    retrieved: list[Hit] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)
    requested_mode: str = "auto"
    fallback: str = ""  # non-empty when an LLM mode fell back to extractive, with the reason
    stage: str = "final"  # "quote": the cited quote shown at once while the model works; "final": the answer
    draft: str = ""  # the model's own answer text, kept even when it was not used (for evaluation)
    withheld: bool = False  # abstained although the model's answer passed verification: the passage
    # holding the best-ranked sentence does not back it (the two readings disagree); see ``draft``
    mode_reason: str = ""  # why this mode answered ("auto: local model ...", "verification failed ...")
    p_answerable: float | None = None  # the abstention gate's P(the documents answer the question) (rag/abstain.py)
    check: float | None = None  # the answer check's P(the quoted sentence answers), when it ran (rag/check.py)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["conflicts"] = [
            {"about": c.about, "claims": [{"value": v, "citation": n} for v, n in c.claims]}
            for c in self.conflicts
        ]
        d["retrieved"] = [
            {k: v for k, v in asdict(h).items() if k != "text"} for h in self.retrieved
        ]
        return d


EventType = Literal["retrieved", "evidence", "token", "answer"]


@dataclass(frozen=True)
class Event:
    """One step of ``Assistant.stream``: payload is list[Hit], list[Evidence], str or Answer."""

    type: EventType
    payload: Any
