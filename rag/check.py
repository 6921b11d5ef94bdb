"""The answer check: before an answer is shown, a language model reads the question and the
sentence the chain would quote, and says whether that sentence answers it.

    >>> check = AnswerCheck.load()                      # rag/models/check.json
    >>> check.decide(gen, "When did the museum open?", evidence)
    CheckResult(p=0.83, threshold=0.52, passed=True)

Why a model: the abstention gate (``rag/abstain.py``) decides from ranker scores, similarities
and word overlap. Those tell whether a sentence is *about* the question's subject, not whether it
*says what is asked*: a question that changes one detail of what a paragraph says ("What
philosophies overlay ...?" on a paragraph naming the one *underlying* it) passes the gate. Telling
them apart is reading comprehension, which the bundled model does from one reply token: P(yes)
comes from its log-probabilities (``LLMGenerator.answers``, ``prompts/check.txt``).

The threshold is fitted on benchmark folds, not chosen by hand: ``python -m eval check-fit RUN``
(``eval/checkfit.py``) reads a run that recorded P(yes) for every answer the gate let through and
picks, for each fold, the threshold that maximises abstention F1 on the other folds with false
abstentions at most 5% of the answerable questions. The file keeps the threshold fitted on all
folds and one per held-out fold (an evaluation of fold k uses the one fitted without it), with the
model it was fitted for: another model's P(yes) is on another scale, refit it with that model.

Off by default (``answer_check = "on"`` turns it on): each checked answer costs one request to
the model (about 1 s with the bundled model on 2 cores) and the model server must run.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path

from rag.errors import ConfigError
from rag.types import Evidence

log = logging.getLogger(__name__)

DEFAULT_PATH = Path(__file__).parent / "models" / "check.json"


@dataclass(frozen=True)
class CheckResult:
    p: float  # the model's P(the sentence answers the question)
    threshold: float
    passed: bool


@dataclass(frozen=True)
class AnswerCheck:
    threshold: float
    model: str = ""  # the model the threshold was fitted for
    folds: dict[str, float] = field(default_factory=dict)  # held-out fold -> threshold fitted without it

    @classmethod
    def load(cls, path: str | Path = "", holdout: int | None = None, threshold: float = -1.0) -> AnswerCheck:
        """The check of ``path`` (empty: the shipped file); ``holdout``: the threshold fitted without
        that benchmark fold; ``threshold`` >= 0 replaces the file's (0 records P(yes), never refuses)."""
        where = Path(path) if path else DEFAULT_PATH
        if threshold >= 0 and not where.is_file():  # a threshold of one's own needs no fitted file
            if threshold > 1.0:
                raise ConfigError(f"answer check threshold must be within [0, 1], got {threshold}")
            return cls(threshold=threshold)
        try:
            data = json.loads(where.read_text(encoding="utf-8"))
            folds = {str(k): float(v) for k, v in data.get("folds", {}).items()}
            check = cls(threshold=float(data["threshold"]), model=str(data.get("model", "")), folds=folds)
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise ConfigError(f"answer check file {where}: {type(exc).__name__}: {exc}; refit it with "
                              "`python -m eval check-fit RUN --write FILE` or set check_path") from None
        if holdout is not None and holdout >= 0:
            if str(holdout) not in folds:
                raise ConfigError(f"answer check file {where} has no threshold fitted without fold {holdout}")
            check = cls(threshold=folds[str(holdout)], model=check.model, folds=folds)
        if threshold >= 0:
            check = cls(threshold=threshold, model=check.model, folds=folds)
        if not 0.0 <= check.threshold <= 1.0:
            raise ConfigError(f"answer check threshold must be within [0, 1], got {check.threshold} ({where})")
        return check

    def decide(self, gen, question: str, sentence: Evidence) -> CheckResult:
        """Ask ``gen`` (an ``LLMGenerator``) whether ``sentence`` answers ``question``.
        Raises ``LLMError`` when the model cannot be asked: the caller decides what then."""
        p = float(gen.answers(question, sentence.text))
        return CheckResult(p=p, threshold=self.threshold, passed=p >= self.threshold)
