"""The reader interface the format modules implement (``index.readers`` holds the registry).

    >>> class CsvReader(Reader):
    ...     suffixes = (".csv",)
    ...     def to_text(self, data, path): return data.decode()

Its own module so format modules (``index.pdf``, ``index.office``) can subclass it while
``index.readers`` imports them to fill the registry.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from index.locations import Extracted, normalize


@dataclass(frozen=True)
class ReadOptions:
    """What a reader may need besides the bytes: OCR for PDF pages without a text layer."""

    ocr: bool = True  # OCR when Tesseract is installed (index.ocr); False = report the pages only
    ocr_languages: str = "eng+por+spa+deu"
    ocr_dpi: int = 300
    ocr_cache: Path | None = None  # where OCR'd page texts are kept (<data_dir>/ocr-cache)


class Reader:
    """Turns the bytes of one format into text. Subclasses set ``suffixes`` and ``to_text``, or
    ``read`` when they know where things are (pages, slides, headings)."""

    suffixes: ClassVar[tuple[str, ...]] = ()

    def to_text(self, data: bytes, path: Path) -> str:
        raise NotImplementedError

    def read(self, data: bytes, path: Path, options: ReadOptions) -> Extracted:
        return Extracted(normalize(self.to_text(data, path)))
