"""What the model reads: the evidence sentences with their neighbours, as passages, within a
token budget.

    >>> ctx = build_context(evidence, budget=700)
    >>> [[s.n for s in p] for p in ctx.passages]   # [[5, 1, 6], [2, 7]]: evidence [1] with its neighbours
    >>> ctx.sentences                              # every citable sentence, evidence first

One isolated sentence cannot answer "why", list or yes/no questions, and a pronoun in it ("It
advises the alliance") points at a name in the sentence before. So each evidence sentence is
given with up to ``window`` sentences either side from its own passage (the chunk it was found
in), best evidence first, until ``budget`` tokens (tiktoken cl100k_base, the chunker's counter)
are used. Neighbours become citable sentences numbered after the evidence (``n`` > k), with
exact document offsets, so a citation of a neighbour highlights the right sentence.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from index.chunking import count_tokens
from index.sentences import split_sentences
from rag.types import Evidence

DEFAULT_BUDGET = 450  # tokens of sentence text; the prompt rules and question add about 400 (cached: the rules)


@dataclass(frozen=True)
class Context:
    """Passages (each a list of sentences in reading order) and the tokens they use."""

    passages: list[list[Evidence]]
    tokens: int
    budget: int

    @property
    def sentences(self) -> list[Evidence]:
        return sorted((s for p in self.passages for s in p), key=lambda s: s.n)

    def group_of(self, n: int) -> int:
        """Index of the passage holding sentence ``n`` (-1 if none)."""
        return next((i for i, p in enumerate(self.passages) if any(s.n == n for s in p)), -1)


def _neighbours(ev: Evidence, window: int) -> list[tuple[int, int, str]]:
    """(doc start, doc end, text) of the sentences around ``ev`` in its passage, ``ev`` included."""
    if not ev.passage:
        return [(ev.char_start, ev.char_end, ev.text)]
    spans = split_sentences(ev.passage, language=ev.language)
    local = ev.char_start - ev.passage_start
    at = next((i for i, s in enumerate(spans) if s.char_start <= local < s.char_end), None)
    if at is None:
        return [(ev.char_start, ev.char_end, ev.text)]
    out = []
    for s in spans[max(0, at - window): at + window + 1]:
        if s.char_start <= local < s.char_end:
            out.append((ev.char_start, ev.char_end, ev.text))
        elif s.text.strip():
            out.append((ev.passage_start + s.char_start, ev.passage_start + s.char_end, s.text))
    return out


def build_context(evidence: list[Evidence], budget: int = DEFAULT_BUDGET, window: int = 1) -> Context:
    """Evidence sentences (all of them, whatever the budget) plus neighbours while the budget lasts."""
    if budget < 0 or window < 0:
        raise ValueError(f"budget and window must be >= 0, got {budget}, {window}")
    used = sum(count_tokens(e.text) for e in evidence)
    next_n = max((e.n for e in evidence), default=0) + 1
    taken: dict[tuple[str, int], Evidence] = {(e.doc_id, e.char_start): e for e in evidence}
    groups: dict[str, list[Evidence]] = {}  # chunk id -> sentences of that passage
    for ev in sorted(evidence, key=lambda e: -e.score):
        group = groups.setdefault(ev.chunk_id, [])
        if ev not in group:
            group.append(ev)
        for start, end, text in _neighbours(ev, window):
            key = (ev.doc_id, start)
            if key in taken:
                if taken[key] not in group and taken[key].chunk_id == ev.chunk_id:
                    group.append(taken[key])
                continue
            cost = count_tokens(text)
            if used + cost > budget:
                continue
            used += cost
            taken[key] = replace(ev, n=next_n, text=text, char_start=start, char_end=end, score=0.0,
                                 cosine=0.0, features={})
            group.append(taken[key])
            next_n += 1
    passages = [sorted(g, key=lambda s: s.char_start) for g in groups.values()]
    return Context(passages=passages, tokens=used, budget=budget)
