"""Post-generation verification: every answer sentence must be backed by an evidence sentence.

    >>> v = Verifier(embed_model).check("Nvidia advises AIP.", [1], evidence)
    >>> v.ok, v.cited, v.reason

A sentence is backed when every name and number it states occurs in the evidence and its
embedding is close enough to the evidence sentence that shares most of them. Missing citations are added; a name or
number no evidence sentence has makes the whole answer fail, and the engine falls back to
the extractive answer.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from index.sentences import split_sentences
from index.text import fold, names, norm_number, stem, words
from rag.types import Evidence

CITE_MARGIN = 0.03


@dataclass(frozen=True)
class Verdict:
    ok: bool
    reason: str
    cited: list[int]


class Verifier:
    """Checks an LLM draft against the evidence it was given."""

    def __init__(self, embed_model, min_similarity: float = 0.80) -> None:
        self.embed_model, self.min_similarity = embed_model, min_similarity

    def check(self, text: str, cited: list[int], evidence: list[Evidence]) -> Verdict:
        if not text.strip():
            return Verdict(False, "the model returned an empty answer", [])
        if not evidence:
            return Verdict(False, "there is no evidence to check the answer against", [])
        vocab = [_vocabulary(e.text, e.language) for e in evidence]
        out: list[int] = []
        for sent in [s.text for s in split_sentences(text)] or [text]:
            terms = names(sent)
            found = [[t in v or stem(t, e.language) in v for v, e in zip(vocab, evidence)] for t in terms]
            missing = sorted(t for t, hits in zip(terms, found) if not any(hits))
            if missing:
                return Verdict(False, f"answer states {', '.join(repr(m) for m in missing)}, "
                                      "which no evidence sentence contains", [])
            sims = self._similarities(sent, evidence)
            # Names and numbers may be spread over the evidence ("Nvidia ... the consortium" +
            # "AIP"); the sentence that backs the claim is the closest one sharing most of them.
            share = [sum(hits[i] for hits in found) / len(terms) if terms else 0.0 for i in range(len(evidence))]
            best = max(range(len(evidence)), key=lambda i: sims[i] + 0.1 * share[i])
            if sims[best] < self.min_similarity:
                return Verdict(False, f"answer sentence {sent[:60]!r} is not supported by any evidence "
                                      f"sentence (best similarity {sims[best]:.2f} < {self.min_similarity})", [])
            # Keep the model's own citations only when they back this sentence about as well as
            # the best one and share one of its names or numbers (a 1.5B model cites generously).
            floor = max(self.min_similarity, sims[best] - CITE_MARGIN)
            backing = {e.n for i, e in enumerate(evidence) if sims[i] >= floor and (not terms or share[i] > 0)}
            ok = [n for n in cited if n in backing]
            chosen = ok or [evidence[best].n]
            out.extend(n for n in chosen if n not in out)
        return Verdict(True, "every answer sentence is backed by a cited evidence sentence", out)

    def _similarities(self, sentence: str, evidence: list[Evidence]) -> list[float]:
        q = np.asarray(self.embed_model.get_query_embedding(sentence), dtype=np.float32)
        vs = np.asarray(self.embed_model.get_text_embedding_batch([e.text for e in evidence]), dtype=np.float32)
        return list(vs @ q / (np.linalg.norm(vs, axis=1) * np.linalg.norm(q) + 1e-9))


def _vocabulary(text: str, lang: str) -> set[str]:
    """What a name or number in an answer can be found as in an evidence sentence: a folded word,
    its stem in the sentence's language (Nvidia's -> nvidia), or a canonical number."""
    toks = words(text)
    return {fold(t) for t in toks} | {stem(t, lang) for t in toks} | {norm_number(t) for t in toks if t[0].isdigit()}
