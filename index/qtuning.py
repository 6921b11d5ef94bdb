"""Question tuning: the bundled e5's question side, adjusted to find the sentence that answers.

    >>> load_embedder(BUNDLED_ID, "onnx", Path(".rag"), tuning=Path("rag/models/ranker.questions.npz"))

e5 puts a question next to the sentences *about* its topic; the answer sentence is one of them, and
often not the closest (a passage's first sentence names the question's entity, a later one answers).
A copy of the encoder whose last layers carry small low-rank changes (deltas) is fitted to tell them
apart: for each benchmark question, a softmax over the cosines to its candidate sentences, with the
sentence that holds the gold answer as the target (``eval/qtune.py``, run by ``python -m eval
calibrate --tune-questions``). Only the question is encoded by the tuned copy, and only to choose
evidence sentences: chunks and sentences keep the bundled model's vectors, so a store built without
tuning needs no re-indexing, and dense retrieval is unchanged.

The file (``.npz``) holds one set of deltas per key: ``all`` (fitted on every fold, used to answer)
and one per benchmark fold (fitted without it, used to evaluate that fold, as the ranker file's
per-fold weights are). A matrix's delta is stored as two factors ``a @ b`` (rank r) in int8, with a
float16 scale per row of ``a`` and per column of ``b`` (format 2; format 1 kept them in float16), a
vector's delta whole in float16; ``meta`` is JSON (what it was fitted on, and the command). A
tuned model directory (the bundled checkpoint plus the deltas) is exported to ONNX once per file
and set under ``models/``.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import numpy as np

from index.e5convert import MODEL_NAME, build_atomically, sha256_file
from index.errors import ModelError

FORMAT = 2
_SEP = "|"


def _int8(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``x`` ~ ``q * scale[:, None]``: int8 values with one float16 scale per row."""
    scale = (np.abs(x).max(axis=1) / 127).astype(np.float16).astype(np.float32)
    safe = np.where(scale > 0, scale, 1.0)[:, None]
    return np.clip(np.round(x / safe), -127, 127).astype(np.int8), scale.astype(np.float16)


def write(path: Path, meta: dict, sets: dict[str, dict[str, tuple[np.ndarray, ...]]]) -> None:
    """Save delta sets: ``{key: {weight name: (a, b) or (vector,)}}``."""
    arrays: dict[str, np.ndarray] = {"meta": np.frombuffer(json.dumps({**meta, "format": FORMAT}).encode(), np.uint8)}
    for key, deltas in sets.items():
        for name, parts in deltas.items():
            base = _SEP.join((key, name, ""))
            if len(parts) == 2:
                a, b = (np.asarray(x, dtype=np.float32) for x in parts)
                arrays[base + "aq"], arrays[base + "as"] = _int8(a)
                bq, bs = _int8(b.T)
                arrays[base + "bq"], arrays[base + "bs"] = bq.T, bs
            else:
                arrays[base + "d"] = np.asarray(parts[0], dtype=np.float16)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp.npz")
    np.savez_compressed(tmp, **arrays)
    tmp.replace(path)


def _open(path: Path):
    try:
        return np.load(path, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise ModelError(f"question tuning file {path} cannot be read ({exc}); refit it with "
                         "`python -m eval calibrate --tune-questions`, or use a ranker file without one") from exc


def read_meta(path: Path) -> dict:
    with _open(path) as z:
        return json.loads(z["meta"].tobytes().decode())


def keys(path: Path) -> list[str]:
    with _open(path) as z:
        return sorted({k.split(_SEP)[0] for k in z.files if k != "meta"})


def deltas(path: Path, key: str) -> dict[str, np.ndarray]:
    """The full delta of every changed weight in set ``key``."""
    out: dict[str, np.ndarray] = {}
    with _open(path) as z:
        names = {k.split(_SEP)[1] for k in z.files if k.startswith(key + _SEP)}
        if not names:
            raise ModelError(f"question tuning file {path} has no set {key!r} (it has: {', '.join(keys(path))})")
        for name in names:
            base = _SEP.join((key, name, ""))
            if base + "d" in z.files:
                out[name] = z[base + "d"].astype(np.float32)
            elif base + "aq" in z.files:  # format 2
                a = z[base + "aq"].astype(np.float32) * z[base + "as"].astype(np.float32)[:, None]
                b = z[base + "bq"].astype(np.float32) * z[base + "bs"].astype(np.float32)[None, :]
                out[name] = a @ b
            else:  # format 1
                out[name] = z[base + "a"].astype(np.float32) @ z[base + "b"].astype(np.float32)
    return out


def set_name(path: Path, key: str) -> str:
    """The models/ directory name of the bundled model with set ``key`` of ``path``."""
    return f"{MODEL_NAME}-q{hashlib.sha256(f'{sha256_file(Path(path))}{key}'.encode()).hexdigest()[:12]}"


def _checked(path: Path, key: str, shapes: dict[str, tuple]) -> dict[str, np.ndarray]:
    out = deltas(path, key)
    for weight, delta in out.items():
        if tuple(shapes.get(weight, ())) != delta.shape:
            raise ModelError(f"question tuning file {path} does not fit this model: weight {weight!r} "
                             "is missing or has another shape (fitted for another model)")
    return out


def apply(model, path: Path, key: str) -> None:
    """Add set ``key`` of ``path`` to a loaded torch model's weights (in place)."""
    import torch

    params = dict(model.named_parameters())
    with torch.no_grad():
        for weight, delta in _checked(path, key, {n: tuple(p.shape) for n, p in params.items()}).items():
            params[weight].add_(torch.from_numpy(delta))


def tuned_model(base_dir: Path, path: Path, key: str, models: Path) -> Path:
    """A sentence-transformers directory of ``base_dir`` with set ``key`` of ``path`` added to its
    weights, built once under ``models`` (the torch backend's; ONNX exports apply the set directly)."""
    from safetensors.numpy import load_file, save_file

    def build(out: Path) -> None:
        for f in Path(base_dir).rglob("*"):
            rel = f.relative_to(base_dir)
            if f.is_file() and rel.name not in ("manifest.json", "model.safetensors"):
                (out / rel).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(f, out / rel)
        weights = load_file(str(Path(base_dir) / "model.safetensors"))
        for weight, delta in _checked(path, key, {n: w.shape for n, w in weights.items()}).items():
            weights[weight] = weights[weight] + delta
        save_file(weights, str(out / "model.safetensors"))

    meta = {"base_manifest_sha256": sha256_file(Path(base_dir) / "manifest.json"),
            "tuning_sha256": sha256_file(Path(path)), "set": key}
    return build_atomically(Path(models) / set_name(path, key), build, meta)
