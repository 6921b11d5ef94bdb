"""Builds the parts named by one ``Settings``: embedder, store, indexer, lexicon. Cached per process.

    >>> s = Settings.load()
    >>> indexer = get_indexer(s); store = get_store(s)

This is the one place where settings turn into objects, so switching embedded Chroma for a
server, or one embedding model for another, is a settings change and nothing else.
"""

from __future__ import annotations

import sys
import threading
from functools import lru_cache
from pathlib import Path

from index.chunking import Chunker
from index.lexicon import Lexicon
from index.pipeline import Indexer
from index.readers import ReadOptions
from index.store import Store
from rag.settings import Settings

_lock = threading.RLock()


def configure_threads(threads: int, torch_too: bool = True) -> None:
    """Pin torch's intra-op threads (``Settings.threads``): two torch threads on two busy cores
    made one query ~40x slower. onnxruntime sessions get theirs in ``OnnxEmbedding``; torch is
    only touched when it is used; the environment (OMP_NUM_THREADS) is the entry points' job."""
    if not torch_too and "torch" not in sys.modules:
        return
    try:
        import torch

        if torch.get_num_threads() != threads:
            torch.set_num_threads(threads)
        if torch.get_num_interop_threads() != 1:
            torch.set_num_interop_threads(1)
    except RuntimeError:
        pass  # interop threads can only be set once, before any parallel work


def _key(s: Settings) -> tuple:
    return (str(s.model_root.resolve()), s.embed_model, s.embed_backend, s.threads, s.embed_batch_size)


@lru_cache(maxsize=4)
def _embedder(key: tuple):
    from index.embedder import load_embedder

    model_root, model, backend, threads, batch = key
    configure_threads(threads, torch_too=backend == "torch")
    emb = load_embedder(model, backend=backend, data_dir=Path(model_root), threads=threads, batch_size=batch)
    configure_threads(threads, torch_too=False)  # a first ONNX export imports torch
    return emb


def get_embedder(s: Settings):
    with _lock:
        return _embedder(_key(s))


@lru_cache(maxsize=8)
def _question_embedder(key: tuple, tuning: str, tuning_set: str):
    from index.embedder import load_embedder

    model_root, model, backend, threads, batch = key
    emb = load_embedder(model, backend=backend, data_dir=Path(model_root), threads=threads, batch_size=batch,
                        tuning=Path(tuning), tuning_set=tuning_set)
    configure_threads(threads, torch_too=False)  # a first ONNX export imports torch
    return emb


def get_question_embedder(s: Settings, tuning: str, tuning_set: str = "all"):
    """The encoder for questions that choose evidence: the embedder with the ranker file's question
    tuning (``index/qtuning.py``), or the embedder itself when there is none or another model is
    configured (the tuning is fitted for the bundled one)."""
    from index.embedder import BUNDLED_ID

    if not tuning or s.embed_model != BUNDLED_ID or s.sentence_vectors != "separate":
        return get_embedder(s)
    with _lock:
        return _question_embedder(_key(s), tuning, tuning_set)


def embedder_id(s: Settings) -> str:
    from index.embedder import embedder_id as _id

    return _id(s.embed_model, s.embed_backend) + ("-late" if s.sentence_vectors == "late" else "")


@lru_cache(maxsize=4)
def _lexicon(directory: str, cache_dir: str) -> Lexicon:
    return Lexicon(directory, Path(cache_dir))  # "" or "." = no dictionaries


def get_lexicon(s: Settings) -> Lexicon:
    """The bilingual dictionaries; their tables are cached beside the converted models (shared by
    every data directory that shares ``model_dir``)."""
    with _lock:
        return _lexicon(str(s.dictionary_dir), str((s.model_root / "lexicon").resolve()))


def get_store(s: Settings) -> Store:
    return Store(s.data_dir, embedder_id(s), chroma_url=s.chroma_url, prefix=s.collection_prefix,
                 timeout=s.chroma_timeout, lease_seconds=s.write_lease_seconds, lease_wait=s.write_wait_seconds)


def get_indexer(s: Settings, store: Store | None = None) -> Indexer:
    return Indexer(store or get_store(s), get_embedder(s), Chunker(s.chunk_size, s.chunk_overlap),
                   embedder_id=embedder_id(s), languages=s.detect_languages, max_file_mb=s.max_file_mb,
                   late_sentences=s.sentence_vectors == "late", group_docs=s.index_group_docs,
                   batch_files=s.index_batch_files,
                   read_options=ReadOptions(ocr=s.ocr, ocr_languages=s.ocr_languages, ocr_dpi=s.ocr_dpi,
                                            ocr_cache=s.data_dir / "ocr-cache"))
