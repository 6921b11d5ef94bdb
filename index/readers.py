"""Read files into plain text, one small reader class per format behind one registry.

    >>> doc = read_file(Path("corpus/001_ef270eff479935e8.txt"))
    >>> doc.doc_id, doc.title[:20]
    ('001_ef270eff479935e8', 'Amidst the global su')

A reader either returns a ``SourceDoc`` or raises ``ReaderError`` naming the file and the reason;
the pipeline records the reason and goes on with the next file.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from index.errors import ReaderError


@dataclass(frozen=True)
class SourceDoc:
    """One document's text as read from disk, before language detection and chunking."""

    doc_id: str
    source: str
    title: str
    text: str
    content_hash: str


class Reader:
    """Turns the bytes of one format into text. Subclasses set ``suffixes`` and ``to_text``."""

    suffixes: ClassVar[tuple[str, ...]] = ()

    def to_text(self, data: bytes, path: Path) -> str:
        raise NotImplementedError


def decode(data: bytes, path: Path) -> str:
    """UTF-8 (with or without BOM), UTF-16 by BOM, then cp1252 (the usual legacy encoding of
    EN/PT/ES/DE text; statistical detection guesses cp1250 on short Portuguese), then detection."""
    if b"\x00" in data[:4096] and not data.startswith((b"\xff\xfe", b"\xfe\xff")):
        raise ReaderError(str(path), "looks like a binary file (NUL bytes), not text")
    for enc in ("utf-8-sig", "utf-16"):
        if enc == "utf-16" and not data.startswith((b"\xff\xfe", b"\xfe\xff")):
            continue
        try:
            return data.decode(enc)
        except UnicodeDecodeError:
            pass
    try:
        return data.decode("cp1252")
    except UnicodeDecodeError:
        pass
    from charset_normalizer import from_bytes

    best = from_bytes(data).best()
    if best is not None and best.encoding:
        return str(best)
    return data.decode("latin-1")


class TextReader(Reader):
    suffixes = (".txt", ".md", ".markdown", ".text")

    def to_text(self, data: bytes, path: Path) -> str:
        return decode(data, path)


class HtmlReader(Reader):
    """Visible text only: scripts, styles, templates and comments are dropped."""

    suffixes = (".html", ".htm")

    def to_text(self, data: bytes, path: Path) -> str:
        from bs4 import BeautifulSoup, Comment

        soup = BeautifulSoup(decode(data, path), "html.parser")
        for tag in soup(["script", "style", "noscript", "template", "head", "svg", "iframe"]):
            tag.decompose()
        for comment in soup.find_all(string=lambda s: isinstance(s, Comment)):
            comment.extract()
        lines = (line.strip() for line in soup.get_text("\n").splitlines())
        return "\n".join(line for line in lines if line)


class PdfReader(Reader):
    suffixes = (".pdf",)

    def to_text(self, data: bytes, path: Path) -> str:
        import io

        from pypdf import PdfReader as _Pdf
        from pypdf.errors import PdfReadError

        try:
            pdf = _Pdf(io.BytesIO(data))
            _decrypt(pdf, path)
            pages = [page.extract_text() or "" for page in pdf.pages]
        except (PdfReadError, ValueError, KeyError, TypeError) as exc:
            raise ReaderError(str(path), f"not a readable PDF ({exc})") from exc
        text = "\n\n".join(p.strip() for p in pages if p.strip())
        if not text.strip():
            raise ReaderError(
                str(path), "PDF has no text layer (scanned image?); run OCR first, then index the text"
            )
        return text


def _decrypt(pdf, path: Path) -> None:
    """Open an encrypted PDF with the empty password (\"no password to read\"), or say what to do."""
    if not pdf.is_encrypted:
        return
    from pypdf.errors import DependencyError

    try:
        opened = pdf.decrypt("")
    except DependencyError as exc:
        raise ReaderError(str(path), "PDF is encrypted with AES and pypdf needs the `cryptography` package for "
                          "it: `pip install cryptography`, or decrypt it first (`qpdf --decrypt in.pdf out.pdf`)") from exc
    if not opened:
        raise ReaderError(str(path), "PDF is encrypted (password-protected); decrypt it first, e.g. "
                          "`qpdf --decrypt --password=PASSWORD in.pdf out.pdf`, then index the result")


READERS: dict[str, Reader] = {}
for _reader in (TextReader(), HtmlReader(), PdfReader()):
    for _suffix in _reader.suffixes:
        READERS[_suffix] = _reader

SUPPORTED = tuple(sorted(READERS))


def doc_id_for(path: Path) -> str:
    """A document's id is its file stem, made safe for ids and metadata."""
    stem = unicodedata.normalize("NFC", path.stem)
    return re.sub(r"[^\w.-]+", "_", stem).strip("_") or "doc"


def read_file(path: Path, max_bytes: int = 20 * 1024 * 1024, doc_id: str = "") -> SourceDoc:
    """Read one file through the reader its suffix selects; raise ReaderError otherwise.
    ``doc_id`` is given by the indexer (``index.docids``); alone, a file's id is its stem."""
    reader = READERS.get(path.suffix.lower())
    if reader is None:
        raise ReaderError(str(path), f"unsupported file type '{path.suffix}'; supported: {', '.join(SUPPORTED)}")
    try:
        size = path.stat().st_size
        if size > max_bytes:
            raise ReaderError(
                str(path), f"file is {size / 2**20:.1f} MB, over the {max_bytes / 2**20:g} MB limit (max_file_mb); "
                "split it, or raise max_file_mb"
            )
        data = path.read_bytes()
    except OSError as exc:
        raise ReaderError(str(path), f"cannot read file ({exc.strerror or exc})") from exc
    text = unicodedata.normalize("NFC", reader.to_text(data, path)).replace("\r\n", "\n").replace("\r", "\n")
    text = text.replace("\x00", "")
    if not text.strip():
        raise ReaderError(str(path), "file holds no text")
    if _mostly_control(text):
        raise ReaderError(str(path), "looks like a binary file (mostly control characters), not text")
    title = next((line.strip() for line in text.splitlines() if line.strip()), path.stem)[:120]
    digest = hashlib.sha256(text.encode("utf-8")).hexdigest()
    return SourceDoc(doc_id=doc_id or doc_id_for(path), source=str(path), title=title, text=text, content_hash=digest)


def _mostly_control(text: str) -> bool:
    sample = text[:8192]
    bad = sum(1 for ch in sample if unicodedata.category(ch) in ("Cc", "Co", "Cn") and ch not in "\n\t\f")
    return bad > 0.1 * len(sample)
