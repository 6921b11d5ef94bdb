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

from index.errors import ReaderError
from index.locations import Region
from index.reader_base import Reader, ReadOptions


@dataclass(frozen=True)
class SourceDoc:
    """One document's text as read from disk, before language detection and chunking."""

    doc_id: str
    source: str
    title: str
    text: str
    content_hash: str
    regions: tuple[Region, ...] = ()  # page / slide / sheet+row / chapter labels (index.locations)
    headings: tuple[tuple[int, int], ...] = ()  # spans that are context, not answer sentences
    notes: tuple[str, ...] = ()  # for the index summary, e.g. pages that had no text layer


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
    """The page's content as lines of text, one per block element (paragraph, heading, list item,
    table cell): inline markup (links, emphasis) stays inside its sentence. Scripts, styles,
    templates, comments and the page's chrome (``nav``, ``footer``, ``aside``, forms) are dropped."""

    suffixes = (".html", ".htm")
    DROP = ("script", "style", "noscript", "template", "head", "svg", "iframe", "nav", "footer", "aside", "form",
            "button")
    BLOCKS = ("p", "div", "li", "h1", "h2", "h3", "h4", "h5", "h6", "br", "tr", "td", "th", "table", "section",
              "article", "header", "main", "blockquote", "pre", "dd", "dt", "figcaption", "caption", "hr")

    def to_text(self, data: bytes, path: Path) -> str:
        from bs4 import BeautifulSoup, Comment

        soup = BeautifulSoup(decode(data, path), "html.parser")
        for tag in soup(list(self.DROP)):
            tag.decompose()
        for comment in soup.find_all(string=lambda s: isinstance(s, Comment)):
            comment.extract()
        for tag in soup.find_all(list(self.BLOCKS)):  # a marker between blocks; source line breaks are spaces
            tag.insert_before("\x00")
            tag.insert_after("\x00")
        lines = (" ".join(part.split()) for part in soup.get_text("").split("\x00"))
        return "\n".join(line for line in lines if line)


__all__ = ["READERS", "SUPPORTED", "Reader", "ReadOptions", "SourceDoc", "decode", "doc_id_for", "read_file"]


def _registered() -> tuple[Reader, ...]:
    from index.office import DocxReader, EmlReader, EpubReader, OdtReader, PptxReader, XlsxReader
    from index.pdf import PdfReader

    return (TextReader(), HtmlReader(), PdfReader(), DocxReader(), PptxReader(), XlsxReader(), OdtReader(),
            EpubReader(), EmlReader())


READERS: dict[str, Reader] = {}
for _reader in _registered():
    for _suffix in _reader.suffixes:
        READERS[_suffix] = _reader

SUPPORTED = tuple(sorted(READERS))


def doc_id_for(path: Path) -> str:
    """A document's id is its file stem, made safe for ids and metadata."""
    stem = unicodedata.normalize("NFC", path.stem)
    return re.sub(r"[^\w.-]+", "_", stem).strip("_") or "doc"


def read_file(path: Path, max_bytes: int = 20 * 1024 * 1024, options: ReadOptions | None = None,
              doc_id: str = "") -> SourceDoc:
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
    got = reader.read(data, path, options or ReadOptions())
    text = got.text
    if not text.strip():
        raise ReaderError(str(path), "file holds no text")
    if _mostly_control(text):
        raise ReaderError(str(path), "looks like a binary file (mostly control characters), not text")
    title = next((line.strip() for line in text.splitlines() if line.strip()), path.stem)[:120]
    digest = hashlib.sha256(text.encode("utf-8")).hexdigest()
    return SourceDoc(doc_id=doc_id or doc_id_for(path), source=str(path), title=title, text=text,
                     content_hash=digest, regions=got.regions, headings=got.headings, notes=got.notes)


def _mostly_control(text: str) -> bool:
    sample = text[:8192]
    bad = sum(1 for ch in sample if unicodedata.category(ch) in ("Cc", "Co", "Cn") and ch not in "\n\t\f")
    return bad > 0.1 * len(sample)
