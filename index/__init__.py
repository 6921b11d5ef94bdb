"""Ingestion side: read -> detect language -> chunk -> embed -> store. Never imports ``rag``.

Importing this package fixes the process environment for offline use: no hub downloads,
tiktoken's BPE files from llama-index's bundled cache, no telemetry.
"""

from __future__ import annotations

import os
from pathlib import Path


def _offline_defaults() -> None:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", os.environ["HF_HUB_OFFLINE"])
    os.environ.setdefault("ANONYMIZED_TELEMETRY", "False")
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    if "TIKTOKEN_CACHE_DIR" not in os.environ:
        import importlib.util

        spec = importlib.util.find_spec("llama_index.core")
        if spec and spec.origin:
            cache = Path(spec.origin).parent / "_static" / "tiktoken_cache"
            if cache.is_dir():
                os.environ["TIKTOKEN_CACHE_DIR"] = str(cache)


_offline_defaults()
