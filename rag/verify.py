"""Post-generation verification: every answer sentence must be backed by cited sentences of one
passage.

    >>> v = Verifier(embed_model).check("Nvidia advises AIP.", [1], evidence, lang="en")
    >>> v.ok, v.cited, v.reason

An answer sentence is backed by a passage (the sentences of one chunk the model read: an
evidence sentence and its neighbours) when, in that passage,

* every name it states occurs (folded, or as a stem in the sentence's language);
* every number it states occurs *by value*: amounts are read with the scale words of each
  sentence's own language (``index.text.amounts``), so "1 Billion" (de) = "1 billón" (es) =
  "1 trillion" (en) = 10^12, and "1 billion" written for "1 billón" fails;
* its negation agrees with the sentences that back it ("does not advise" is not "advises");
* it is close in meaning (embedding cosine) to one of the passage's sentences.

Names and figures collected from different passages do not back a claim: "the manager named
in one document is the head of the organisation in another" fails even though each name occurs
somewhere. Number words must be words of the answer's language (a German answer may not say
"billion"), and so must its other words: a word common in a source's language and all but absent
from the answer's ("recaudar" in a Portuguese answer from a Spanish source) was left untranslated
(``index.text.foreign_words``). Missing citations are added; any failing sentence fails the whole answer, and the
engine keeps the extractive answer and shows why.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from index.sentences import split_sentences
from index.text import (
    amounts,
    fold,
    foreign_scale_words,
    foreign_words,
    is_number,
    names,
    negated,
    number_value,
    stem,
    stopwords,
    words,
)
from rag.types import Evidence

CITE_MARGIN = 0.03


@dataclass(frozen=True)
class Verdict:
    ok: bool
    reason: str
    cited: list[int]
    foreign: tuple[str, ...] = ()  # words of another language that failed the answer, and nothing else yet


def values(text: str, lang: str, *, answer: bool = False) -> set[float]:
    """Numbers stated in ``text``: amounts with their scale (in ``lang``) and plain numbers. For an
    ``answer``, the number of a scaled amount is not also a claim of its own ("1,58 mil millones"
    states 1.58e9, not 1.58); a source offers both."""
    found = amounts(text, lang)
    scaled = {round(v, 6) for v, _ in found}
    consumed: list[str] = []
    if answer:
        for v, written in found:
            first = next((t for t in words(written) if is_number(t)), "")
            if first and number_value(first) != v:
                consumed.append(first)
    plain = []
    for t in words(text):
        if is_number(t):
            if t in consumed:
                consumed.remove(t)
            elif (v := number_value(t)) is not None:
                plain.append(round(v, 6))
    return scaled | set(plain)


def _vocabulary(text: str, lang: str) -> set[str]:
    """What a name can be found as in a sentence: a folded word or its stem in the sentence's language."""
    toks = [t for t in words(text) if not is_number(t)]
    return {fold(t) for t in toks} | {stem(t, lang) for t in toks}


ANSWER_WORDS = frozenset({"yes", "no", "sim", "nao", "si", "ja", "nein"})


def _initial_name(sentence: str, lang: str) -> set[str]:
    """The sentence's first word when it may be a name: capitalised, not a stopword of ``lang``
    and not yes/no ("Intel advises AIP." states "Intel"; "The alliance ..." states nothing)."""
    toks = [t for t in words(sentence) if not is_number(t)]
    if not toks or not toks[0][:1].isupper() or len(toks[0]) < 2:
        return set()
    first = fold(toks[0])
    return set() if first in stopwords(lang) or first in ANSWER_WORDS else {first}


def _name_in(name: str, vocab: set[str], lang: str) -> bool:
    """A name is in a sentence as written, as a stem, or as its cognate with another ending
    ("Orientalismo" for "Orientalism"): one a prefix of the other, at least 6 letters shared and
    at most 3 more."""
    if name in vocab or stem(name, lang) in vocab:
        return True
    return len(name) >= 6 and any(len(w) >= 6 and abs(len(w) - len(name)) <= 3
                                  and (w.startswith(name) or name.startswith(w)) for w in vocab)


class Verifier:
    """Checks an LLM draft against the sentences it was given."""

    def __init__(self, embed_model, min_similarity: float = 0.80) -> None:
        self.embed_model, self.min_similarity = embed_model, min_similarity

    def check(self, text: str, cited: list[int], evidence: list[Evidence], lang: str | None = None,
              question: str = "") -> Verdict:
        """``evidence``: every sentence the model read (neighbours included); ``lang``: the answer's
        language. German capitalises every noun, so in a German answer a word capitalised only on its
        first letter that the ``question`` uses ("Stadt", "Straße") is not taken for a name; acronyms
        and other names are still checked."""
        if not text.strip():
            return Verdict(False, "the model returned an empty answer", [])
        if not evidence:
            return Verdict(False, "there is no evidence to check the answer against", [])
        vocab = [_vocabulary(e.text, e.language) for e in evidence]
        common_nouns = {fold(w) for w in words(question) if w[:1].isupper() and w[1:].islower()} if lang == "de" else set()
        nums = [values(e.text, e.language) for e in evidence]
        neg = [negated(e.text, e.language) for e in evidence]
        vecs = np.asarray(self.embed_model.get_text_embedding_batch([e.text for e in evidence]), dtype=np.float32)
        vecs /= np.linalg.norm(vecs, axis=1, keepdims=True) + 1e-9
        groups: dict[str, list[int]] = {}
        for i, e in enumerate(evidence):
            groups.setdefault(e.chunk_id, []).append(i)
        sources = sorted({e.language for e in evidence if e.language and e.language != lang})
        out: list[int] = []
        for sent in [s.text for s in split_sentences(text, language=lang)] or [text]:
            foreign = foreign_scale_words(sent, lang) if lang else []
            if foreign:
                return Verdict(False, f"answer writes the number word {foreign[0]!r}, which is not a {lang} "
                                      "number word (its value differs between languages)", [], tuple(foreign))
            untranslated = foreign_words(sent, lang, sources) if lang else []
            if untranslated:
                return Verdict(False, f"answer leaves {', '.join(repr(w) for w in untranslated[:3])} untranslated: "
                                      f"{'a word' if len(untranslated) == 1 else 'words'} of {'/'.join(sources)}, "
                                      f"not of {lang} (word frequencies of the wordfreq package)", [],
                               tuple(dict.fromkeys(untranslated)))
            in_amounts = {fold(w) for _, written in amounts(sent, lang or "en") for w in words(written)}
            terms = sorted(t for t in names(sent) | _initial_name(sent, lang or "en")
                           if not is_number(t) and t not in in_amounts and t not in common_nouns)
            wanted = values(sent, lang or "en", answer=True)
            has = [[_name_in(t, v, e.language) for t in terms] for v, e in zip(vocab, evidence)]
            has_num = [[any(abs(w - x) <= 1e-6 * max(1.0, abs(w)) for x in n) for w in sorted(wanted)] for n in nums]
            missing = [t for j, t in enumerate(terms) if not any(h[j] for h in has)]
            missing += [f"{w:,.15g}" for j, w in enumerate(sorted(wanted)) if not any(h[j] for h in has_num)]
            if missing:
                return Verdict(False, f"answer states {', '.join(repr(m) for m in missing)}, "
                                      "which no evidence sentence contains (numbers compared by value)", [])
            q = np.asarray(self.embed_model.get_query_embedding(sent), dtype=np.float32)
            sims = vecs @ (q / (np.linalg.norm(q) + 1e-9))
            own = {i for i, e in enumerate(evidence) if e.n in cited}
            chosen, why = self._back(sent, lang or "en", own, groups, has, has_num, sims, neg)
            if not chosen:
                return Verdict(False, why, [])
            out.extend(evidence[i].n for i in chosen if evidence[i].n not in out)
        return Verdict(True, "every answer sentence is backed by cited sentences of one passage "
                             "(names, numbers by value, negation)", out)

    def _back(self, sent, lang, cited, groups, has, has_num, sims, neg) -> tuple[list[int], str]:
        """Indexes of the sentences of the best passage that backs ``sent``, or ([], why not)."""
        why = ""
        ranked = sorted(groups.values(), key=lambda g: -max(sims[i] for i in g))
        for members in ranked:
            n_terms = len(has[members[0]]) + len(has_num[members[0]])
            covered = [any(has[i][j] for i in members) for j in range(len(has[members[0]]))]
            covered += [any(has_num[i][j] for i in members) for j in range(len(has_num[members[0]]))]
            if not all(covered):
                why = why or ("answer sentence joins names or numbers from unrelated passages: "
                              f"{sent[:60]!r} is not backed by any one passage")
                continue
            best = max(members, key=lambda i: sims[i])
            if sims[best] < self.min_similarity:
                why = why or (f"answer sentence {sent[:60]!r} is not supported by any evidence sentence "
                              f"(best similarity {sims[best]:.2f} < {self.min_similarity})")
                continue
            floor = max(self.min_similarity, sims[best] - CITE_MARGIN)
            shares = {i for i in members if any(has[i]) or any(has_num[i])}
            chosen = [i for i in members if i in cited_index(cited, members, sims, floor, shares, n_terms)]
            chosen = chosen or [best]
            for j in range(n_terms):  # a citation for every name and number the sentence states
                hits = [i for i in members if (has[i] + has_num[i])[j]]
                if hits and not any(i in chosen for i in hits):
                    chosen.append(max(hits, key=lambda i: sims[i]))
            if negated(sent, lang) != any(neg[i] for i in chosen):
                why = why or (f"answer sentence {sent[:60]!r} " + ("negates what its sources state" if negated(sent, lang)
                              else "drops the negation of its sources"))
                continue
            return sorted(chosen), ""
        return [], why or "no passage backs the answer"


def cited_index(cited, members, sims, floor, shares, n_terms) -> set[int]:
    """The model's own citations kept: close to the best sentence and sharing a name or number."""
    return {i for i in members if i in cited and sims[i] >= floor and (not n_terms or i in shares)}
