"""The two small learned models of the answering chain, shipped as one JSON file.

    >>> ranker = Ranker.load()                       # rag/models/ranker.json
    >>> ranker.sentence_logits(X)                    # higher = more likely the answer sentence
    >>> ranker.answerable(x) >= ranker.threshold     # answer, or abstain

* ``sentence``: a conditional logit over the evidence features (``rag.evidence.FEATURES``): the
  softmax of its scores over one question's candidates is P(this one holds the answer);
* ``answer``: logistic regression over question-level features (``rag.abstain.FEATURES``), the
  probability that the documents answer the question; ``threshold`` is where the chain abstains;
* ``question_tuning`` (optional): ``{"path": ..., "per_fold": bool}``, the question tuning file
  (``index/qtuning.py``, relative to this file) whose question vectors the sentence model was
  fitted on; ``per_fold`` when it has a set per fold of the same gold file, like the weights.

Both are fitted by ``python -m eval calibrate`` (``eval/calibrate.py``) on a gold set with folds:
the shipped file holds the weights fitted on every fold, plus one set per held-out fold so that
an evaluation on fold k uses weights that never saw fold k. Inspectable: features are
standardised, so a coefficient says how much one standard deviation of a feature moves the log-odds.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, replace
from functools import lru_cache
from pathlib import Path

import numpy as np

from rag.errors import ConfigError

DEFAULT_PATH = Path(__file__).resolve().parent / "models" / "ranker.json"
LATE_PATH = DEFAULT_PATH.with_name("ranker-late.json")  # fitted on sentence_vectors=late (other cosines)


def path_for(ranker_path: str, sentence_vectors: str = "separate") -> Path:
    """The ranker file in force: ``ranker_path`` if set, else the shipped one for these vectors."""
    return Path(ranker_path) if ranker_path else LATE_PATH if sentence_vectors == "late" else DEFAULT_PATH


@dataclass(frozen=True)
class Logistic:
    """Standardised logistic regression: p = sigmoid(((x - mean) / scale) . coef + intercept)."""

    features: tuple[str, ...]
    mean: tuple[float, ...]
    scale: tuple[float, ...]
    coef: tuple[float, ...]
    intercept: float

    def logit(self, x: np.ndarray) -> np.ndarray:
        x = np.atleast_2d(np.asarray(x, dtype=np.float64))
        return ((x - np.array(self.mean)) / np.array(self.scale)) @ np.array(self.coef) + self.intercept

    def prob(self, x: np.ndarray) -> np.ndarray:
        return 1.0 / (1.0 + np.exp(-np.clip(self.logit(x), -30, 30)))

    @classmethod
    def fit(cls, features: tuple[str, ...], x: np.ndarray, y: np.ndarray, l2: float = 1.0,
            weights: np.ndarray | None = None, iterations: int = 50) -> Logistic:
        """Newton's method on the L2-penalised log-likelihood (the intercept is not penalised)."""
        x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
        w = np.ones(len(y)) if weights is None else np.asarray(weights, dtype=np.float64)
        mean, scale = x.mean(axis=0), x.std(axis=0)
        scale[scale < 1e-9] = 1.0
        z = np.hstack([(x - mean) / scale, np.ones((len(x), 1))])
        beta = np.zeros(z.shape[1])
        penalty = np.full(z.shape[1], l2)
        penalty[-1] = 0.0
        for _ in range(iterations):
            p = 1.0 / (1.0 + np.exp(-np.clip(z @ beta, -30, 30)))
            grad = z.T @ (w * (p - y)) + penalty * beta
            hess = (z * (w * p * (1 - p))[:, None]).T @ z + np.diag(penalty + 1e-9)
            step = np.linalg.solve(hess, grad)
            beta -= step
            if np.abs(step).max() < 1e-8:
                break
        return cls(tuple(features), tuple(mean.round(6)), tuple(scale.round(6)), tuple(beta[:-1].round(6)),
                   float(round(beta[-1], 6)))

    @classmethod
    def fit_choice(cls, features: tuple[str, ...], groups: list[tuple[np.ndarray, np.ndarray]],
                   l2: float = 1.0) -> Logistic:
        """Conditional logit: each group is one question's candidates (x) and which hold the answer
        (y); maximises the softmax probability of the right ones (L-BFGS, scipy)."""
        from scipy.optimize import minimize

        groups = [(np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)) for x, y in groups if y.sum()]
        allx = np.vstack([x for x, _ in groups])
        mean, scale = allx.mean(axis=0), allx.std(axis=0)
        scale[scale < 1e-9] = 1.0
        zs = [((x - mean) / scale, y / y.sum()) for x, y in groups]

        def loss(beta: np.ndarray) -> tuple[float, np.ndarray]:
            total, grad = 0.5 * l2 * beta @ beta, l2 * beta
            for z, t in zs:
                u = z @ beta
                p = np.exp(u - u.max())
                p /= p.sum()
                total -= float(t @ np.log(p + 1e-12))
                grad = grad - z.T @ (t - p)
            return total, grad

        beta = minimize(loss, np.zeros(allx.shape[1]), jac=True, method="L-BFGS-B").x
        return cls(tuple(features), tuple(mean.round(6)), tuple(scale.round(6)), tuple(beta.round(6)), 0.0)

    @classmethod
    def from_dict(cls, d: dict) -> Logistic:
        return cls(tuple(d["features"]), tuple(d["mean"]), tuple(d["scale"]), tuple(d["coef"]), float(d["intercept"]))


@dataclass(frozen=True)
class Ranker:
    """Sentence model, answerability model and the abstention threshold."""

    sentence: Logistic
    answer: Logistic
    threshold: float
    fitted_on: str = ""
    # The question tuning the sentence model was fitted with (``index/qtuning.py``; absolute path,
    # "" = none: questions are encoded by the bundled model as it is) and the set of it to use.
    question_tuning: str = ""
    tuning_set: str = "all"

    def sentence_logits(self, x: np.ndarray) -> np.ndarray:
        return self.sentence.logit(x) if len(x) else np.zeros(0)

    def answerable(self, x: np.ndarray) -> float:
        return float(self.answer.prob(x)[0])

    def to_dict(self) -> dict:
        return {"sentence": asdict(self.sentence), "answer": asdict(self.answer), "threshold": self.threshold,
                "fitted_on": self.fitted_on}

    @classmethod
    def from_dict(cls, d: dict) -> Ranker:
        return cls(Logistic.from_dict(d["sentence"]), Logistic.from_dict(d["answer"]), float(d["threshold"]),
                   d.get("fitted_on", ""))

    @classmethod
    def load(cls, path: str | Path = "", holdout: int | None = None) -> Ranker:
        """The ranker in ``path`` (default: the shipped one); ``holdout`` picks the weights fitted
        without that fold (evaluation on the benchmark the weights were fitted on)."""
        return _load(str(path or DEFAULT_PATH), holdout)


@lru_cache(maxsize=16)
def _load(path: str, holdout: int | None) -> Ranker:
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
        tuning = data.get("question_tuning") or {}
        extra = {}
        if tuning:
            extra["question_tuning"] = str((Path(path).resolve().parent / tuning["path"]).resolve())
            if holdout is not None and holdout >= 0 and tuning.get("per_fold"):
                extra["tuning_set"] = str(holdout)  # fitted without this fold, like the weights below
        if holdout is not None and holdout >= 0:
            folds = data.get("folds", {})
            if str(holdout) not in folds:
                raise ConfigError(f"ranker file {path} has no weights without fold {holdout} "
                                  f"(has {sorted(folds)}); refit with python -m eval calibrate")
            return replace(Ranker.from_dict(folds[str(holdout)]), **extra)
        return replace(Ranker.from_dict(data["all"]), **extra)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ConfigError(f"cannot read the ranker file {path}: {exc}; refit it with "
                          "python -m eval calibrate or set ranker_path to a valid file") from exc
