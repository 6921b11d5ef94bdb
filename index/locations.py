"""Where a piece of a document is: page, slide, sheet and row, chapter, paragraph.

    >>> b = TextBuilder()
    >>> b.region("slide 1", page=1); b.add("Quarterly results", heading=True); b.add("Revenue grew 12%.")
    >>> ext = b.build(); location_at(ext.regions, ext.text.index("Revenue")).label
    'slide 1'

A structured reader builds its text through ``TextBuilder``: each block is normalised (NFC, one
kind of line break, no NULs) as it is added, so the offsets it records are offsets into the
final document text - the same offsets chunks, sentences and citations carry. ``regions`` label
the text from their start to the next region's; ``headings`` are spans that are context
(titles, column headers), not sentences an answer should quote.
"""

from __future__ import annotations

import bisect
import unicodedata
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Region:
    """The text from ``char_start`` up to the next region is at ``label`` ("page 3", "slide 2")."""

    char_start: int
    label: str
    page: int | None = None  # PDF page (1-based), or the slide number


@dataclass(frozen=True)
class Extracted:
    """What a reader returns: the text, its labelled regions, its heading spans, and notes for
    the index summary (e.g. pages without a text layer)."""

    text: str
    regions: tuple[Region, ...] = ()
    headings: tuple[tuple[int, int], ...] = ()
    notes: tuple[str, ...] = ()


def normalize(text: str) -> str:
    """The normalisation every document text gets (``read_file`` applies it to plain readers)."""
    return unicodedata.normalize("NFC", text).replace("\r\n", "\n").replace("\r", "\n").replace("\x00", "")


@dataclass
class TextBuilder:
    """Accumulates blocks of text with regions and headings; ``build()`` gives an ``Extracted``."""

    parts: list[str] = field(default_factory=list)
    regions: list[Region] = field(default_factory=list)
    headings: list[tuple[int, int]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    _pos: int = 0
    _pending: tuple[str, int | None] | None = None

    def region(self, label: str, page: int | None = None) -> None:
        """Start a region at the next block added (an empty region is dropped)."""
        self._pending = (label, page)

    def add(self, text: str, heading: bool = False, sep: str = "\n\n") -> None:
        """Append one block (a paragraph, a row, a title); blank blocks are ignored."""
        text = normalize(text).strip()
        if not text:
            return
        if self.parts:
            self.parts.append(sep)
            self._pos += len(sep)
        start = self._pos
        if self._pending is not None:
            label, page = self._pending
            if self.regions and self.regions[-1].char_start == start:
                self.regions.pop()
            self.regions.append(Region(start, label, page))
            self._pending = None
        self.parts.append(text)
        self._pos += len(text)
        if heading:
            self.headings.append((start, self._pos))

    def note(self, text: str) -> None:
        self.notes.append(text)

    def build(self) -> Extracted:
        return Extracted("".join(self.parts), tuple(self.regions), tuple(self.headings), tuple(self.notes))


def location_at(regions: tuple[Region, ...] | list[Region], offset: int) -> Region | None:
    """The region holding document offset ``offset`` (the last one starting at or before it)."""
    starts = [r.char_start for r in regions]
    i = bisect.bisect_right(starts, offset) - 1
    return regions[i] if i >= 0 else None


def in_heading(headings: tuple[tuple[int, int], ...] | list[tuple[int, int]], start: int, end: int) -> bool:
    """True when the span ``[start, end)`` lies inside one heading span."""
    return any(a <= start and end <= b for a, b in headings)
