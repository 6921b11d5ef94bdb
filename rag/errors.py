"""The project's error hierarchy, in one place.

    RagError                 base; every message names the value at fault and what to do
    ├── ConfigError          a setting has a bad value (index.errors)
    ├── IndexingError        a file could not be indexed; the batch goes on (index.errors)
    │   └── ReaderError      unreadable file or no text (index.errors)
    ├── StoreError           store missing, corrupt or unreachable (index.errors)
    ├── ModelError           embedding model cannot be built or loaded (index.errors)
    ├── QuestionError        the question cannot be answered as asked (empty, too long)
    ├── LLMError             the LLM server is unreachable, too slow or answered garbage
    │   └── LLMModelError    the bundled GGUF is missing or fails its checksum
    └── GoldFileError        an evaluation gold file is malformed (names the line and field)

Errors are translated only at the edges: the CLI prints the message and exits non-zero,
the UI shows it as ``gr.Error``.
"""

from __future__ import annotations

from index.errors import ConfigError, IndexingError, ModelError, RagError, ReaderError, StoreError

__all__ = [
    "RagError", "ConfigError", "IndexingError", "ReaderError", "StoreError", "ModelError",
    "QuestionError", "LLMError", "LLMModelError", "GoldFileError",
]


class QuestionError(RagError):
    """The question is empty or otherwise unusable."""


class LLMError(RagError):
    """The LLM server failed: unreachable, timed out, or returned something unusable."""


class LLMModelError(LLMError):
    """The bundled model file is missing or does not match its checksum."""


class GoldFileError(RagError):
    """A gold file line is malformed."""

    def __init__(self, path: str, line: int, field: str, reason: str) -> None:
        super().__init__(f"{path}:{line}: field '{field}': {reason}")
        self.path, self.line, self.field, self.reason = path, line, field, reason
