"""Fit the evidence ranker and the abstention model (``rag/ranker.py``) on a gold set, by folds.

    $ python -m eval calibrate --bench xquad-dev --write rag/models/ranker.json
    $ python -m eval calibrate --gold my.jsonl --index my-docs/ --write my-ranker.json   # then ranker_path=...

One pass asks every question with the gate open and keeps, per question, the retrieved chunks
and every candidate sentence with its features (``rag.evidence.FEATURES``) and whether it holds
the gold answer. A second pass asks every question again of each other language's documents
alone (retrieval filtered to that language: an English question over a Portuguese-only corpus,
answerable only when a gold source is in that language). That scenario is what an analyst with
reports in other languages meets, and it holds the unanswerable questions with evidence in
another language that a multilingual gold set barely has.

Then, for each fold k (the gold file's ``fold`` field; questions without one are split into 5
folds by id), both models are fitted on the other folds and scored on fold k; the file keeps
those per-fold weights (so ``eval run`` on this gold set evaluates every question with weights
that never saw it) and the weights fitted on every fold (what answers use).

* sentence model: a conditional logit over each answerable question's candidates (whole corpus);
* answer model: logistic regression on ``rag.abstain.FEATURES`` over both scenarios, target =
  the question is answerable over that corpus; its threshold is the one with the best abstention
  F1 whose false abstentions stay within ``max_false_abstention`` (5%) of the answerable
  training questions.

The report (out of fold) also says where the limit is: ``top_sentence_correct`` (the ranker's top
sentence holds the answer), ``answer_in_top3`` and ``answer_in_candidates`` (some candidate
sentence holds it at all), over the answerable questions. A miss with the answer among the
candidates is the ranker's; one without is retrieval's or the chunking's.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import sys
import zlib
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from eval.gold import GoldItem
from eval.match import answer_correct
from rag.abstain import FEATURES as ANSWER_FEATURES
from rag.abstain import question_features
from rag.evidence import FEATURES, EvidenceSelector, feature_matrix, hit_nodes, rank, to_evidence
from rag.ranker import Logistic, Ranker

MAX_FALSE_ABSTENTION = 0.05
L2 = 1.0


@dataclass
class Sample:
    """One question's candidates and labels, collected once."""

    item: GoldItem  # answerable = over this sample's corpus
    fold: int
    hits: list
    cands: list
    x: np.ndarray  # candidates x FEATURES
    y: np.ndarray  # candidate holds the gold answer
    language: str = ""  # the question's, as detected
    corpus: str = ""  # "" = the whole corpus, else the one language retrieval was restricted to


def fold_of(item: GoldItem, folds: int = 5) -> int:
    """The item's ``fold``, or a stable hash of its id when the gold file has none."""
    return fold_for(item.id, item.fold, folds)


def fold_for(qid: str, fold: int | None, folds: int = 5) -> int:
    """``fold``, or when there is none a stable hash of the question id (``fold_of`` for ids)."""
    return fold if fold is not None else zlib.crc32(qid.encode()) % folds


def collect(qa: Any, items: Sequence[GoldItem], progress: bool = True,
            question_vector: Callable[[GoldItem, str], list[float]] | None = None,
            scenarios: bool = True) -> list[Sample]:
    """Retrieve and build candidates for every item (no ranking, no gate): over the whole corpus,
    then (``scenarios``) over each other language's documents alone (see the module docstring).
    ``question_vector(item, cleaned question)`` gives the vector that chooses evidence (a tuned
    encoder's); by default it is the retrieval's own."""
    from llama_index.core.schema import QueryBundle
    from tqdm import tqdm

    from index.language import detect_question_language
    from rag.engine import clean_question

    engine, s = qa.engine, qa.settings
    doc_language = {d.doc_id: d.language for d in qa.documents()}
    languages = sorted(set(doc_language.values()) - {""})
    out = []
    for item in tqdm(items, desc="features", unit="q", file=sys.stderr, disable=not progress):
        q = clean_question(item.question, s.max_question_chars)
        lang = detect_question_language(q)
        selector = EvidenceSelector.of(engine.store, None, k=s.evidence_k, query_language=lang, lexicon=engine.lexicon)
        others = [x for x in languages if x != lang] if len(languages) > 1 and scenarios else []
        vector = question_vector(item, q) if question_vector else None
        for corpus in ["", *others]:
            got = engine.retriever.retrieve(q, query_lang=lang, top_k=s.top_k, languages=[corpus] if corpus else None)
            answerable = item.answerable and (not corpus or any(doc_language.get(d) == corpus for d in item.sources))
            bundle = QueryBundle(query_str=q, embedding=vector if vector is not None else got.query_embedding)
            cands = selector.candidates(hit_nodes(got.hits), bundle)
            y = np.array([answerable and answer_correct(c.text, item.answers) for c in cands], dtype=float)
            out.append(Sample(dataclasses.replace(item, answerable=answerable), fold_of(item), got.hits, cands,
                              feature_matrix(cands), y, lang, corpus))
    return out


def _evidence(sample: Sample, model: Logistic, k: int):
    selector = EvidenceSelector(k=k)
    return to_evidence(selector.diverse(rank(sample.cands, model.logit(sample.x) if len(sample.x) else [])))[0]


def answer_rows(samples: Sequence[Sample], model: Logistic, k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(answer features, answerable, top evidence correct) per sample; no evidence -> all zeros."""
    feats, ans, right = [], [], []
    for s in samples:
        ev = _evidence(s, model, k)
        f = question_features(s.item.question, ev, s.hits, s.language) if ev else dict.fromkeys(ANSWER_FEATURES, 0.0)
        feats.append([f[n] for n in ANSWER_FEATURES])
        ans.append(s.item.answerable)
        right.append(bool(ev) and s.item.answerable and answer_correct(ev[0].text, s.item.answers))
    return np.array(feats), np.array(ans, bool), np.array(right, bool)


def capped_f1(abstain: np.ndarray, answerable: np.ndarray, max_fa: float = MAX_FALSE_ABSTENTION) -> float | None:
    """Abstention F1 of ``abstain``, or None when its false abstentions exceed ``max_fa`` of the
    answerable questions (the rule every abstention threshold here is chosen by)."""
    tp, fp, fn = (abstain & ~answerable).sum(), (abstain & answerable).sum(), (~abstain & ~answerable).sum()
    if fp > max_fa * max(1, answerable.sum()):
        return None
    return 2 * tp / (2 * tp + fp + fn) if tp else 0.0


def choose_threshold(p: np.ndarray, answerable: np.ndarray, max_fa: float = MAX_FALSE_ABSTENTION) -> float:
    """Best abstention F1 with false abstentions <= ``max_fa`` of the answerable questions."""
    best, best_t = -1.0, 0.0
    for t in np.unique(np.round(p, 4)):
        f1 = capped_f1(p < t, answerable, max_fa)
        if f1 is not None and f1 > best:
            best, best_t = f1, float(t)
    return best_t


def fit(samples: Sequence[Sample], k: int, l2: float = L2, label: str = "") -> Ranker:
    """Sentence model on the whole-corpus samples, answer model and threshold on all of them (a
    question weighs as much in the other-language scenario as over the whole corpus, however many
    other languages it was asked of)."""
    train = [s for s in samples if s.item.answerable and len(s.x) and not s.corpus]
    sentence = Logistic.fit_choice(FEATURES, [(s.x, s.y) for s in train], l2=l2)
    ax, ans, _ = answer_rows(samples, sentence, k)
    asked = Counter(s.item.id for s in samples if s.corpus)
    weights = np.array([1.0 / asked[s.item.id] if s.corpus else 1.0 for s in samples])
    answer = Logistic.fit(ANSWER_FEATURES, ax, ans.astype(float), l2=l2, weights=weights)
    return Ranker(sentence, answer, choose_threshold(answer.prob(ax), ans), label)


def score(samples: Sequence[Sample], ranker: Ranker, k: int) -> list[dict[str, Any]]:
    """Per question: abstained?, top sentence correct?, and where the answer stands among the
    candidates (any of them, the ranker's top 3), for a ranker that never saw these questions."""
    ax, ans, right = answer_rows(samples, ranker.sentence, k)
    p = ranker.answer.prob(ax) if len(ax) else np.zeros(0)
    top3 = [bool(len(s.y)) and bool(s.y[np.argsort(-ranker.sentence.logit(s.x), kind="stable")[:3]].any())
            for s in samples]
    return [{"id": s.item.id, "fold": s.fold, "kind": s.item.kind, "lang": s.item.lang, "corpus": s.corpus,
             "answerable": bool(a), "abstained": bool(pi < ranker.threshold), "top_correct": bool(r),
             "in_candidates": bool(s.y.any()), "in_top3": t3, "p_answerable": round(float(pi), 4)}
            for s, a, r, pi, t3 in zip(samples, ans, right, p, top3)]


def summary(rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
    ans = [r for r in rows if r["answerable"]]
    un = [r for r in rows if not r["answerable"]]
    tp = sum(r["abstained"] for r in un)
    fp = sum(r["abstained"] for r in ans)
    fn = len(un) - tp
    correct = sum(r["top_correct"] and not r["abstained"] for r in ans)
    return {"questions": len(rows), "answerable_accuracy": round(correct / len(ans), 4) if ans else None,
            "top_sentence_correct": round(sum(r["top_correct"] for r in ans) / len(ans), 4) if ans else None,
            # the ceiling: the answer is among the ranker's top 3 / among the candidates at all
            "answer_in_top3": round(sum(r["in_top3"] for r in ans) / len(ans), 4) if ans else None,
            "answer_in_candidates": round(sum(r["in_candidates"] for r in ans) / len(ans), 4) if ans else None,
            "abstention_f1": round(2 * tp / (2 * tp + fp + fn), 4) if un else None,
            "false_abstention_rate": round(fp / len(ans), 4) if ans else None}


def cross_fit(samples: Sequence[Sample], k: int, gold_sha: str, l2: float = L2) -> tuple[dict, list[dict]]:
    """Per-fold rankers (each fitted without its fold), the all-folds ranker, out-of-fold rows."""
    folds = sorted({s.fold for s in samples})
    per_fold, rows = {}, []
    for f in folds:
        ranker = fit([s for s in samples if s.fold != f], k, l2, f"{gold_sha} without fold {f}")
        per_fold[str(f)] = ranker.to_dict()
        rows += score([s for s in samples if s.fold == f], ranker, k)
    full = fit(samples, k, l2, f"{gold_sha} all folds")
    return {"all": full.to_dict(), "folds": per_fold}, rows


def tune_questions(qa: Any, items: Sequence[GoldItem], gold_sha: str, out: Path, command: str,
                   progress: bool = True) -> None:
    """Fit a question tuning (``eval/qtune.py``) per fold and on all folds, and write it to ``out``."""
    from eval import qtune
    from index.e5convert import ensure_model
    from index.qtuning import write
    from rag.engine import clean_question

    s = qa.settings
    samples = [x for x in collect(qa, items, progress, scenarios=False) if x.item.answerable and x.y.any()]
    groups = [(clean_question(x.item.question, s.max_question_chars), np.array([c.vector for c in x.cands]), x.y > 0)
              for x in samples]
    folds = [x.fold for x in samples]
    model_dir = ensure_model(Path(s.model_root))
    sets = {}
    for f in [*sorted(set(folds)), "all"]:
        train = [g for g, k in zip(groups, folds) if k != f]
        print(f"question tuning: fitting set {f} on {len(train)} questions", file=sys.stderr)
        sets[str(f)] = qtune.low_rank(qtune.train(model_dir, train, threads=s.threads))
    write(out, {"gold_sha256": gold_sha, "questions": len(groups), "command": command,
                "date": datetime.now(UTC).isoformat(timespec="seconds"), **qtune.hyperparameters()}, sets)


def tuned_vectors(qa: Any, tuning: Path, per_fold: bool) -> Callable[[GoldItem, str], list[float]]:
    """item, question -> its vector from the tuning's set for the item's fold (``per_fold``: the
    tuning was fitted on this gold file, so each fold is encoded by the set fitted without it) or
    from the set fitted on everything."""
    from rag.components import get_question_embedder

    def vector(item: GoldItem, question: str) -> list[float]:
        key = str(fold_of(item)) if per_fold else "all"
        return get_question_embedder(qa.settings, str(tuning), key).get_query_embedding(question)

    return vector


def calibrate(qa: Any, items: Sequence[GoldItem], gold: Path, command: str, progress: bool = True,
              tuning: Path | None = None, tune: bool = False) -> dict:
    """Collect, cross-fit, and return the ranker file's content (with an out-of-fold report).

    ``tuning``: the question tuning file whose vectors choose evidence (``tune``: fit it first, on
    these questions, per fold). Its sets per fold are used when it was fitted on this gold file."""
    from index.qtuning import read_meta

    gold_sha = hashlib.sha256(Path(gold).read_bytes()).hexdigest()
    per_fold = False
    if tuning is not None:
        if tune:
            tune_questions(qa, items, gold_sha, tuning, command, progress)
        per_fold = read_meta(tuning).get("gold_sha256") == gold_sha
    vectors = tuned_vectors(qa, tuning, per_fold) if tuning is not None else None
    samples = collect(qa, items, progress, question_vector=vectors)
    models, rows = cross_fit(samples, qa.settings.evidence_k, gold_sha)
    whole = [r for r in rows if not r["corpus"]]
    by = {}
    for key in ("kind", "lang", "fold"):
        by[key] = {str(v): summary([r for r in whole if r[key] == v]) for v in sorted({r[key] for r in whole})}
    foreign = [r for r in rows if r["corpus"]]
    report = {"out_of_fold": summary(whole), **{f"by_{k}": v for k, v in by.items()},
              "foreign_corpus": summary(foreign) if foreign else None}
    shown = Path(gold).resolve()
    root = Path(__file__).resolve().parents[1]
    shown = shown.relative_to(root) if shown.is_relative_to(root) else shown
    if tuning is not None:
        models["question_tuning"] = {"path": str(Path(tuning).resolve()), "per_fold": per_fold}
    return {**models, "meta": {"gold": str(shown), "gold_sha256": gold_sha, "questions": len(items),
                               "date": datetime.now(UTC).isoformat(timespec="seconds"), "command": command,
                               "report": report}}


def render(data: dict) -> str:
    rep = data["meta"]["report"]
    out = [f"fitted on {data['meta']['questions']} questions of {data['meta']['gold']}",
           f"out of fold: {json.dumps(rep['out_of_fold'])}"]
    for key in ("by_kind", "by_lang", "by_fold"):
        out += [f"  {key[3:]} {k}: {json.dumps(v)}" for k, v in rep[key].items()]
    if rep.get("foreign_corpus"):
        out.append(f"questions over each other language's documents alone: {json.dumps(rep['foreign_corpus'])}")
    a = data["all"]
    out.append("sentence model (standardised coefficients): " + ", ".join(
        f"{n} {c:+.2f}" for n, c in zip(a["sentence"]["features"], a["sentence"]["coef"])))
    out.append("answer model: " + ", ".join(f"{n} {c:+.2f}" for n, c in zip(a["answer"]["features"], a["answer"]["coef"]))
               + f"; abstain below {a['threshold']:.3f}")
    return "\n".join(out)
