"""PDF reader: text per page (re-flowed into paragraphs), a "page N" region each, OCR for pages
without a text layer.

    >>> ext = PdfReader().read(Path("memo.pdf").read_bytes(), Path("memo.pdf"), ReadOptions())
    >>> ext.regions[0].label, ext.regions[0].page
    ('page 1', 1)

A PDF stores lines, not paragraphs: ``reflow`` joins the wrapped lines of a paragraph, undoes
end-of-line hyphenation ("infor-" + "mation") and keeps paragraph breaks (blank lines, short
lines that end a sentence), so a sentence quoted from a PDF is a sentence, not a line fragment.
Short unpunctuated lines followed by a capitalised line are headings. Pages with no text are
OCR'd (``index.ocr``) when Tesseract is installed; otherwise the summary names them and says
how to enable OCR, and a PDF with no text at all is refused with that advice.
"""

from __future__ import annotations

import hashlib
import io
import re
from pathlib import Path

from index.errors import ReaderError
from index.locations import Extracted, TextBuilder
from index.ocr import Ocr, OcrFailed
from index.reader_base import Reader, ReadOptions

_END = re.compile(r"[.!?:;…\"”»)]$")
_BULLET = re.compile(r"^([-•*–▪◦]\s|\(?\d{1,3}[.)]\s|\(?[a-z][.)]\s)")
TESSERACT = {"en": "eng", "pt": "por", "es": "spa", "de": "deu", "fr": "fra", "it": "ita", "nl": "nld"}
SHORT = 0.75  # a line under 75% of the page's usual line length can end a paragraph


def reflow(text: str) -> list[tuple[str, bool]]:
    """A page's lines as paragraphs: (text, is_heading)."""
    lines = [" ".join(line.split()) for line in text.replace("\r", "\n").split("\n")]
    widths = sorted(len(line) for line in lines if line)
    if not widths:
        return []
    usual = widths[int(0.9 * (len(widths) - 1))]
    out: list[tuple[str, bool]] = []
    cur = ""
    for i, line in enumerate(lines):
        if not line:
            if cur:
                out.append((cur, False))
            cur = ""
            continue
        nxt = lines[i + 1] if i + 1 < len(lines) else ""  # "" also when a blank line follows
        short = len(line) < SHORT * usual
        if not cur and short and nxt and not _END.search(line) and not line.endswith(",") \
                and line[:1].isupper() and nxt[:1].isupper() and len(line.split()) <= 12:
            out.append((line, True))  # a heading: alone on its line, no sentence punctuation
            continue
        if cur.endswith("-") and len(cur) > 1 and cur[-2].isalpha() and line[:1].islower():
            cur = cur[:-1] + line  # "infor-" + "mation"
        else:
            cur = f"{cur} {line}" if cur else line
        if not nxt or _BULLET.match(nxt) or (short and _END.search(line)):
            out.append((cur, False))
            cur = ""
    if cur:
        out.append((cur, False))
    return out


def _pages(pages: list[int]) -> str:
    return ("page " if len(pages) == 1 else "pages ") + ", ".join(map(str, pages))


class PdfReader(Reader):
    suffixes = (".pdf",)

    def read(self, data: bytes, path: Path, options: ReadOptions) -> Extracted:
        texts = self.page_texts(data, path)
        empty = [i for i, t in enumerate(texts, 1) if not t.strip()]
        b = TextBuilder()
        if empty:
            self._ocr(data, path, texts, empty, options, b)
        for i, text in enumerate(texts, 1):
            b.region(f"page {i}", page=i)
            for para, heading in reflow(text):
                b.add(para, heading=heading)
        got = b.build()
        if not got.text.strip():
            raise ReaderError(str(path), f"PDF has no text layer (a scanned image?): {'; '.join(got.notes)}")
        return got

    @staticmethod
    def page_texts(data: bytes, path: Path) -> list[str]:
        """The text layer of every page, in order ('' for a page without one)."""
        from pypdf import PdfReader as _Pdf
        from pypdf.errors import PdfReadError

        try:
            pdf = _Pdf(io.BytesIO(data))
            _decrypt(pdf, path)
            return [page.extract_text() or "" for page in pdf.pages]
        except (PdfReadError, ValueError, KeyError, TypeError) as exc:
            raise ReaderError(str(path), f"not a readable PDF ({exc})") from exc

    @staticmethod
    def _ocr(data: bytes, path: Path, texts: list[str], empty: list[int], options: ReadOptions,
             b: TextBuilder) -> None:
        """Fill ``texts`` for the ``empty`` pages by OCR, or note why they stay empty."""
        ocr = Ocr(options.ocr_languages, options.ocr_dpi, cache_dir=options.ocr_cache)
        digest = hashlib.sha256(data).hexdigest()
        why = ocr.missing()
        if not options.ocr:
            why = "OCR is off: set ocr = true (RAG_OCR=true)" + (f"; also {why}" if why else "")
        if why:
            b.note(f"{_pages(empty)} had no text layer and {'was' if len(empty) == 1 else 'were'} not read: {why}")
            return
        known = " ".join(texts)
        if known.strip():  # the pages that have text say which language to read first
            ocr = _language_first(ocr, known)
        failed, blank = [], []
        for page in empty:
            try:
                texts[page - 1] = ocr.pdf_pages(data, [page], digest)[page]
                if not known.strip() and texts[page - 1].strip():
                    known = texts[page - 1]  # the first page read decides; read it again if that changed
                    better = _language_first(ocr, known)
                    if better != ocr:
                        ocr = better
                        texts[page - 1] = ocr.pdf_pages(data, [page], digest)[page]
            except OcrFailed as exc:
                failed.append(f"page {page}: {exc}")
                continue
            if not texts[page - 1].strip():
                blank.append(page)
        done = [p for p in empty if texts[p - 1].strip()]
        if done:
            b.note(f"{_pages(done)} had no text layer: read by OCR ({ocr.languages})")
        if blank:
            b.note(f"{_pages(blank)}: OCR found no text (blank or unreadable scan)")
        if failed:
            b.note("OCR failed on " + "; ".join(failed))


def _language_first(ocr: Ocr, text: str) -> Ocr:
    """``ocr`` with the language of ``text`` first among its languages, when it has it: Tesseract
    weighs the first language most (with English first it read "Gebühren" as "Gebuhren")."""
    from dataclasses import replace

    from index.language import detect_language

    found = detect_language(text)
    lang = TESSERACT.get(found.code)
    langs = ocr.languages.split("+")
    if found.confidence < 0.5 or lang not in langs or langs[0] == lang:
        return ocr
    return replace(ocr, languages="+".join([lang, *(x for x in langs if x != lang)]))


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
