"""Fit a question tuning (``index/qtuning.py``): the bundled e5's last layers, for questions only.

    >>> groups = [(question, sentence_vectors, holds_answer), ...]     # from eval.calibrate.collect
    >>> sets = {"all": low_rank(train(model_dir, groups))}
    >>> qtuning.write(Path("rag/models/question-tuning.npz"), meta, sets)

Each group is one answerable question with its candidate sentences' stored vectors (the bundled
model's, as indexed) and which of them hold the gold answer. The loss is the cross-entropy of the
softmax over the cosines (divided by a temperature) with the answer sentences as the target: the
question's vector is pulled toward the sentence that answers and away from its neighbours on the
same topic. Groups without an answer sentence are left out.

Sentence vectors stay fixed, so nothing needs re-indexing. Only the encoder layers from
``FROM_LAYER`` on change; their changes are then cut to rank ``RANK`` (a truncated SVD) and stored
in int8 (``index/qtuning.py``), ~0.33 MB per set. Measured out of fold (the answer sentence has the
tuned cosine's top, 1,300 questions): rank 16 in float16 0.7785, rank 8 in int8 0.7785 (paired
0.000 [-0.004, +0.005]), rank 4 0.7746 (docs/EVAL.md).

Settings (one run, not searched): 3 epochs, AdamW lr 2e-5, weight decay 0.01, batches of 16
questions, temperature 0.02, layers 8-11 of 12, rank 8, seed 0. See docs/EVAL.md for the runs
(and for a "no answer" target for unanswerable questions, measured and not shipped).
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)

EPOCHS = 3
LR = 2e-5
TEMPERATURE = 0.02
BATCH = 16
FROM_LAYER = 8
RANK = 8
MAX_QUESTION_TOKENS = 64


def hyperparameters() -> dict:
    return {"epochs": EPOCHS, "lr": LR, "temperature": TEMPERATURE, "batch": BATCH, "from_layer": FROM_LAYER,
            "rank": RANK, "weight_decay": 0.01, "seed": 0}


def train(model_dir: Path, groups: Sequence[tuple[str, np.ndarray, np.ndarray]], threads: int = 1,
          seed: int = 0) -> dict[str, np.ndarray]:
    """The change of every trained weight of the encoder at ``model_dir`` (name -> delta)."""
    import torch
    from transformers import AutoModel, AutoTokenizer

    torch.manual_seed(seed)
    torch.set_num_threads(threads)
    tok = AutoTokenizer.from_pretrained(str(model_dir))
    base = AutoModel.from_pretrained(str(model_dir))
    model = copy.deepcopy(base)
    for name, p in model.named_parameters():
        p.requires_grad = name.startswith("encoder.layer.") and int(name.split(".")[2]) >= FROM_LAYER
    data = [(q, torch.tensor(np.asarray(v, dtype=np.float32)), torch.tensor(np.asarray(y, dtype=bool)))
            for q, v, y in groups if np.asarray(y).any()]
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=LR, weight_decay=0.01)
    rng = np.random.default_rng(seed)
    model.train()
    for epoch in range(EPOCHS):
        total = 0.0
        order = rng.permutation(len(data))
        for start in range(0, len(data), BATCH):
            batch = [data[i] for i in order[start:start + BATCH]]
            q = encode(model, tok, [b[0] for b in batch])
            loss = torch.zeros(())
            for qv, (_, vecs, y) in zip(q, batch):
                z = (vecs @ qv) / TEMPERATURE
                loss = loss - (torch.logsumexp(z[y], 0) - torch.logsumexp(z, 0))
            loss = loss / len(batch)
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += float(loss.detach()) * len(batch)
        log.info("question tuning: epoch %d, loss %.4f over %d questions", epoch + 1, total / max(1, len(data)),
                 len(data))
    before = base.state_dict()
    return {name: (p.detach() - before[name]).numpy() for name, p in model.named_parameters() if p.requires_grad}


def encode(model, tok, questions: Sequence[str]):
    """e5 question vectors (``query: `` prefix, mean pooling, unit length) from a torch model."""
    import torch

    b = tok(["query: " + q for q in questions], padding=True, truncation=True, max_length=MAX_QUESTION_TOKENS,
            return_tensors="pt")
    out = model(**b).last_hidden_state
    mask = b["attention_mask"].unsqueeze(-1).float()
    return torch.nn.functional.normalize((out * mask).sum(1) / mask.sum(1), dim=-1)


def low_rank(deltas: dict[str, np.ndarray], rank: int = RANK) -> dict[str, tuple[np.ndarray, ...]]:
    """Matrices cut to ``rank`` by truncated SVD, as factors (a, b) with a @ b ~ delta; vectors whole."""
    out: dict[str, tuple[np.ndarray, ...]] = {}
    for name, d in deltas.items():
        if d.ndim == 2 and min(d.shape) > rank:
            u, s, vt = np.linalg.svd(d.astype(np.float64), full_matrices=False)
            out[name] = ((u[:, :rank] * s[:rank]).astype(np.float32), vt[:rank].astype(np.float32))
        else:
            out[name] = (d.astype(np.float32),)
    return out
