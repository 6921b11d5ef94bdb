"""Readers for office documents and e-books: .docx .pptx .xlsx .odt .epub .eml.

    >>> ext = PptxReader().read(Path("deck.pptx").read_bytes(), Path("deck.pptx"), ReadOptions())
    >>> [r.label for r in ext.regions][:2]
    ['slide 1', 'slide 2']

Each reader walks its format's own structure with the format's maintained library (python-docx,
python-pptx, openpyxl, odfpy, ebooklib; the standard library's ``email``) and records where each
block is (``index.locations``): paragraph and section for documents, slide for decks, sheet and
row for spreadsheets, chapter for e-books. Titles, headings and column headers are marked as
headings: context for retrieval, not sentences to quote. A file the library cannot open raises
``ReaderError`` saying what kind of file was expected.
"""

from __future__ import annotations

import datetime as _dt
import io
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

from index.errors import ReaderError
from index.locations import Extracted, TextBuilder
from index.reader_base import Reader, ReadOptions

T = TypeVar("T")
_BLOCKS = ("h1", "h2", "h3", "h4", "h5", "h6", "p", "li", "blockquote", "pre", "dt", "dd", "td", "th",
           "figcaption", "caption")


def _open(path: Path, kind: str, fn: Callable[[], T]) -> T:
    """Run a library's loader; any failure becomes one clear ReaderError naming the file."""
    try:
        return fn()
    except ReaderError:
        raise
    except Exception as exc:  # noqa: BLE001 - libraries raise anything for a broken zip or XML
        detail = " ".join(str(exc).split())[:160] or type(exc).__name__
        raise ReaderError(str(path), f"not a readable {kind} file ({type(exc).__name__}: {detail}); "
                                     f"open and save it again as {kind}, or export it to PDF") from exc


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, _dt.datetime):
        return value.date().isoformat() if value.time() == _dt.time() else value.isoformat(sep=" ")
    if isinstance(value, _dt.date | _dt.time):
        return value.isoformat()
    return " ".join(str(value).split())


class _Sections:
    """Paragraph numbering under the latest heading: "paragraph 3 under “Results”"."""

    def __init__(self, b: TextBuilder) -> None:
        self.b, self.n, self.section = b, 0, ""

    def heading(self, text: str) -> None:
        if text.strip():
            self.section = " ".join(text.split())[:60]
            self.b.region(f"section “{self.section}”")
            self.b.add(text, heading=True)

    def paragraph(self, text: str, sep: str = "\n\n") -> None:
        if not text.strip():
            return
        self.n += 1
        under = f" under “{self.section}”" if self.section else ""
        self.b.region(f"paragraph {self.n}{under}")
        self.b.add(text, sep=sep)


class DocxReader(Reader):
    """Word documents: paragraphs and tables in body order; Title/Heading styles are headings."""

    suffixes = (".docx",)

    def read(self, data: bytes, path: Path, options: ReadOptions) -> Extracted:
        import docx
        from docx.table import Table
        from docx.text.paragraph import Paragraph

        doc = _open(path, "Word (.docx)", lambda: docx.Document(io.BytesIO(data)))
        b = TextBuilder()
        sec = _Sections(b)
        tables = 0
        for item in doc.iter_inner_content():
            if isinstance(item, Paragraph):
                style = (item.style.name if item.style is not None else "") or ""
                if style.startswith(("Heading", "Title", "Subtitle")):
                    sec.heading(item.text)
                else:
                    sec.paragraph(item.text)
            elif isinstance(item, Table):
                tables += 1
                for r, row in enumerate(item.rows, 1):
                    cells = list(dict.fromkeys(c.text.strip() for c in row.cells))  # merged cells repeat
                    b.region(f"table {tables}, row {r}")
                    b.add(" | ".join(c for c in cells if c), heading=r == 1, sep="\n")
        return b.build()


class PptxReader(Reader):
    """Slide decks: one region per slide (title as heading, then its text, tables and notes)."""

    suffixes = (".pptx",)

    def read(self, data: bytes, path: Path, options: ReadOptions) -> Extracted:
        from pptx import Presentation

        deck = _open(path, "PowerPoint (.pptx)", lambda: Presentation(io.BytesIO(data)))
        b = TextBuilder()
        for i, slide in enumerate(deck.slides, 1):
            b.region(f"slide {i}", page=i)
            title = slide.shapes.title
            if title is not None and title.has_text_frame:
                b.add(title.text_frame.text, heading=True)
            for shape in _shapes(slide.shapes):
                if title is not None and shape.shape_id == title.shape_id:
                    continue
                if getattr(shape, "has_text_frame", False) and shape.has_text_frame:
                    for para in shape.text_frame.paragraphs:
                        b.add(para.text.replace("\v", " "), sep="\n")
                elif getattr(shape, "has_table", False) and shape.has_table:
                    for r, row in enumerate(shape.table.rows):
                        b.add(" | ".join(c.text.strip() for c in row.cells if c.text.strip()), heading=r == 0,
                              sep="\n")
            if slide.has_notes_slide and slide.notes_slide.notes_text_frame is not None:
                b.add(slide.notes_slide.notes_text_frame.text)
        return b.build()


def _shapes(shapes) -> Iterator[Any]:
    for shape in shapes:
        if shape.shape_type is not None and getattr(shape, "shapes", None) is not None:  # a group
            yield from _shapes(shape.shapes)
        else:
            yield shape


class XlsxReader(Reader):
    """Spreadsheets: one line per row, "header: value; ..." so a row reads on its own; the
    region is "sheet NAME, row N" (the row number Excel shows). Cached values, not formulas."""

    suffixes = (".xlsx", ".xlsm")

    def read(self, data: bytes, path: Path, options: ReadOptions) -> Extracted:
        from openpyxl import load_workbook

        book = _open(path, "Excel (.xlsx)", lambda: load_workbook(io.BytesIO(data), read_only=True, data_only=True))
        b = TextBuilder()
        try:
            for ws in book.worksheets:
                header: list[str] | None = None
                b.region(f"sheet {ws.title}")
                b.add(f"Sheet {ws.title}", heading=True)
                for r, values in enumerate(_open(path, "Excel (.xlsx)", lambda ws=ws: list(ws.iter_rows(values_only=True))), 1):
                    cells = [_cell(v) for v in values]
                    if not any(cells):
                        continue
                    b.region(f"sheet {ws.title}, row {r}")
                    if header is None:
                        header = cells
                        b.add(" | ".join(c for c in cells if c), heading=True, sep="\n")
                        continue
                    pairs = [f"{h}: {c}" if h else c for h, c in zip([*header, *[""] * len(cells)], cells) if c]
                    b.add("; ".join(pairs), sep="\n")
        finally:
            book.close()
        return b.build()


class OdtReader(Reader):
    """OpenDocument text: headings (text:h), paragraphs, list items and table rows in order."""

    suffixes = (".odt",)

    def read(self, data: bytes, path: Path, options: ReadOptions) -> Extracted:
        from odf import teletype
        from odf.opendocument import load

        doc = _open(path, "OpenDocument text (.odt)", lambda: load(io.BytesIO(data)))
        b = TextBuilder()
        sec = _Sections(b)

        def walk(node) -> None:
            for child in node.childNodes:
                name = getattr(child, "qname", (None, None))[1]
                if name == "h":
                    sec.heading(teletype.extractText(child))
                elif name == "p":
                    sec.paragraph(teletype.extractText(child))
                elif name == "table-row":
                    cells = [teletype.extractText(c).strip() for c in child.childNodes
                             if getattr(c, "qname", (None, None))[1] == "table-cell"]
                    b.add(" | ".join(c for c in cells if c), sep="\n")
                elif name in ("list", "list-item", "section", "table", "table-rows", "table-header-rows",
                              "list-header", "index-body", "table-of-content"):
                    walk(child)

        walk(doc.text)
        return b.build()


class EpubReader(Reader):
    """E-books: spine documents in reading order, one "chapter N" region each (with its first
    heading as the title); h1-h6 are headings."""

    suffixes = (".epub",)

    def read(self, data: bytes, path: Path, options: ReadOptions) -> Extracted:
        import warnings

        import ebooklib
        from bs4 import BeautifulSoup
        from ebooklib import epub

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            book = _open(path, "EPUB (.epub)", lambda: epub.read_epub(io.BytesIO(data), options={"ignore_ncx": True}))
        b = TextBuilder()
        chapter = 0
        for idref, _linear in book.spine:
            item = book.get_item_with_id(idref)
            if item is None or item.get_type() != ebooklib.ITEM_DOCUMENT or isinstance(item, epub.EpubNav):
                continue
            soup = BeautifulSoup(item.get_content(), "html.parser")
            blocks = [el for el in soup.find_all(_BLOCKS) if el.find(_BLOCKS) is None]
            texts = [(el.name, " ".join(el.get_text(" ").split())) for el in blocks]
            texts = [(n, t) for n, t in texts if t]
            if not texts:
                continue
            chapter += 1
            title = next((t for n, t in texts if n[0] == "h" and n[1:].isdigit()), "")
            b.region(f"chapter {chapter}" + (f" “{title[:60]}”" if title else ""), page=None)
            for name, text in texts:
                b.add(text, heading=name[0] == "h" and name[1:].isdigit())
        return b.build()


class EmlReader(Reader):
    """E-mail messages: subject (heading), sender and date (context), then the body (plain text,
    or the HTML part's visible text)."""

    suffixes = (".eml",)

    def read(self, data: bytes, path: Path, options: ReadOptions) -> Extracted:
        from email import policy
        from email.parser import BytesParser

        msg = _open(path, "e-mail (.eml)", lambda: BytesParser(policy=policy.default).parsebytes(data))
        if not any(msg.get(h) for h in ("From", "To", "Subject", "Date")):
            raise ReaderError(str(path), "not an e-mail message (no From/To/Subject/Date headers); "
                                         "save the message as .eml from the mail client")
        b = TextBuilder()
        b.region("message header")
        b.add(str(msg.get("Subject", "")), heading=True)
        b.add(f"From: {msg.get('From', '')}; Date: {msg.get('Date', '')}", heading=True, sep="\n")
        body = _open(path, "e-mail (.eml)", lambda: msg.get_body(preferencelist=("plain", "html")))
        text = ""
        if body is not None:
            text = body.get_content()
            if body.get_content_subtype() == "html":
                from bs4 import BeautifulSoup

                text = BeautifulSoup(text, "html.parser").get_text("\n")
        sec = _Sections(b)
        for para in text.replace("\r\n", "\n").split("\n\n"):
            sec.paragraph(" ".join(line.strip() for line in para.splitlines() if line.strip()))
        return b.build()
