"""Sentence-aware chunking with a tiktoken budget; every chunk keeps exact document offsets.

    >>> chunks = Chunker(chunk_size=200, chunk_overlap=40).split("First sentence. Second one.")
    >>> chunks[0].text == "First sentence. Second one."[chunks[0].char_start:chunks[0].char_end]
    True

llama-index's ``SentenceSplitter`` (with tiktoken's cl100k_base for counting) decides the
boundaries; we only locate each chunk in the source text, so offsets are true by construction.
"""

from __future__ import annotations

import hashlib
import re
import threading
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from index.errors import ConfigError


@dataclass(frozen=True)
class Span:
    text: str
    char_start: int
    char_end: int


_ENV_LOCK = threading.Lock()


@lru_cache(maxsize=1)
def _encoding():
    """cl100k_base from llama-index's bundled BPE file (offline), unless TIKTOKEN_CACHE_DIR is
    set; like llama-index we point tiktoken at it only while loading, and put the variable back."""
    import importlib.util
    import os

    import tiktoken

    if "TIKTOKEN_CACHE_DIR" in os.environ:
        return tiktoken.get_encoding("cl100k_base")
    spec = importlib.util.find_spec("llama_index.core")
    cache = Path(spec.origin).parent / "_static" / "tiktoken_cache" if spec and spec.origin else None
    if cache is None or not cache.is_dir():
        return tiktoken.get_encoding("cl100k_base")
    with _ENV_LOCK:
        os.environ["TIKTOKEN_CACHE_DIR"] = str(cache)
        try:
            return tiktoken.get_encoding("cl100k_base")
        finally:
            os.environ.pop("TIKTOKEN_CACHE_DIR", None)


def count_tokens(text: str) -> int:
    return len(_encoding().encode(text, disallowed_special=()))


class Chunker:
    """Splits a document into overlapping, sentence-aligned spans of at most ``chunk_size`` tokens."""

    def __init__(self, chunk_size: int = 200, chunk_overlap: int = 40) -> None:
        if chunk_size <= 0:
            raise ConfigError(f"chunk_size must be > 0, got {chunk_size}")
        if not 0 <= chunk_overlap < chunk_size:
            raise ConfigError(f"chunk_overlap must be in [0, {chunk_size}), got {chunk_overlap}")
        from llama_index.core.node_parser import SentenceSplitter

        self.chunk_size, self.chunk_overlap = chunk_size, chunk_overlap
        enc = _encoding()
        self._splitter = SentenceSplitter(
            chunk_size=chunk_size,
            chunk_overlap=chunk_overlap,
            tokenizer=lambda t: enc.encode(t, disallowed_special=()),
            paragraph_separator="\n\n",
        )

    def split(self, text: str) -> list[Span]:
        spans: list[Span] = []
        last: Span | None = None  # the splitter's previous chunk, as located
        for piece in self._splitter.split_text(text):
            piece = piece.strip()
            if not piece:
                continue
            start = self._locate(text, piece, last)
            if start is None:
                continue
            last = Span(piece, start, start + len(piece))
            if count_tokens(piece) <= self.chunk_size:
                spans.append(last)
            else:  # the splitter adds up token counts of its parts, and stripping can change
                # tokenization (" þ0÷" is 4 tokens, "þ0÷" is 5): re-split to keep the budget
                spans.extend(self._fit(text, start, last.char_end))
        return spans

    def _fit(self, text: str, start: int, end: int) -> list[Span]:
        """Greedy re-split of ``text[start:end]`` into spans within budget: whole words where a
        word fits, characters where one does not (any character is at most 4 tokens)."""
        out: list[Span] = []
        units = [(m.start(), m.end()) for m in re.finditer(r"\S+", text[start:end])]
        a = b = None
        for us, ue in units:
            us, ue = start + us, start + ue
            if a is not None and count_tokens(text[a:ue]) <= self.chunk_size:
                b = ue
                continue
            if a is not None:
                out.append(Span(text[a:b], a, b))
                a = None
            if count_tokens(text[us:ue]) <= self.chunk_size:
                a, b = us, ue
                continue
            i = us
            while i < ue:
                j = i + 1
                while j < ue and count_tokens(text[i : j + 1]) <= self.chunk_size:
                    j += 1
                out.append(Span(text[i:j], i, j))
                i = j
        if a is not None:
            out.append(Span(text[a:b], a, b))
        return out

    @staticmethod
    def _locate(text: str, piece: str, prev: Span | None) -> int | None:
        """Where ``piece`` starts: the latest match that touches the previous chunk (starting no
        later than the first non-space character after it, so repeated text cannot leave a gap),
        else the first match after it; None when that match lies inside the previous chunk (a
        chunk of overlap only) or the piece only fits inside text already covered (degenerate
        repetitive text)."""
        if prev is None:
            start = text.find(piece)
        else:
            gap = len(text) - len(text[prev.char_end :].lstrip())
            start = text.rfind(piece, prev.char_start, gap + len(piece))
            if start >= 0 and start + len(piece) <= prev.char_end:
                return None  # only overlap (stripping left nothing new): already covered
            if start < 0:
                start = text.find(piece, prev.char_end)
        if start < 0:
            if text.find(piece) >= 0:
                return None
            raise ValueError("chunker could not locate a chunk in its document")
        return start


def chunk_id(doc_id: str, span: Span, version: str = "") -> str:
    """Stable id from document id, offsets, content and (optionally) the document version's hash:
    same input, same id, on every machine; two versions of a document never share an id."""
    key = f"{doc_id}\x1f{span.char_start}\x1f{span.char_end}\x1f{span.text}"
    key = (f"{key}\x1f{version}" if version else key).encode()
    return f"{doc_id[:40]}-{hashlib.sha256(key).hexdigest()[:16]}"
