"""Errors raised by the ingestion side. ``rag.errors`` re-exports them and draws the full tree.

    RagError
    ├── ConfigError          a setting has a bad value
    ├── IndexingError        a file could not be indexed (the batch goes on)
    │   └── ReaderError      the file could not be read or holds no text
    ├── StoreError           the vector store or side index is missing, corrupt or unreachable
    └── ModelError           the embedding model could not be built, verified or loaded
"""

from __future__ import annotations


class RagError(Exception):
    """Base of every error this project raises on purpose; its message says what to do."""


class ConfigError(RagError):
    """A setting has a value we cannot use."""


class IndexingError(RagError):
    """One file could not be indexed; the rest of the batch goes on."""

    def __init__(self, path: str, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path = path
        self.reason = reason


class ReaderError(IndexingError):
    """The file could not be read, or holds no text."""


class StoreError(RagError):
    """The store is missing, corrupt or unreachable."""


class ModelError(RagError):
    """An embedding model could not be built, verified or loaded."""
