"""OCR for PDF pages without a text layer: poppler's ``pdftoppm`` renders, Tesseract reads.

    >>> ocr = Ocr("eng+por+spa+deu")
    >>> ocr.missing() or ocr.pdf_pages(pdf_bytes, [1, 2])     # {1: "text of page 1", 2: ...}

Both are Debian packages (``make ocr``: tesseract-ocr, tesseract-ocr-{eng,por,spa,deu},
poppler-utils) called as subprocesses, one page at a time with one thread, so OCR runs beside
the embedder on a small machine. ``missing()`` says what to install when a part is absent.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

INSTALL_HINT = ("install OCR with `make ocr` (or: apt-get install tesseract-ocr tesseract-ocr-eng "
                "tesseract-ocr-por tesseract-ocr-spa tesseract-ocr-deu poppler-utils) and index the file again")


class OcrFailed(Exception):
    """Rendering or recognising one page failed (the message says which tool and why)."""


@lru_cache(maxsize=1)
def installed_languages() -> frozenset[str]:
    """Tesseract's installed language packs (empty when Tesseract is absent)."""
    exe = shutil.which("tesseract")
    if exe is None:
        return frozenset()
    try:
        out = subprocess.run([exe, "--list-langs"], capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.SubprocessError):
        return frozenset()
    return frozenset(line.strip() for line in out.splitlines()[1:] if line.strip() and line.strip() != "osd")


@dataclass(frozen=True)
class Ocr:
    """Tesseract over pdftoppm renders; ``languages`` as Tesseract spells them, joined by '+'."""

    languages: str = "eng+por+spa+deu"
    dpi: int = 300
    timeout: float = 120.0

    def __post_init__(self) -> None:
        if self.dpi < 50:
            raise ValueError(f"ocr dpi must be >= 50, got {self.dpi}")

    def usable_languages(self) -> list[str]:
        have = installed_languages()
        return [lang for lang in self.languages.split("+") if lang.strip() in have]

    def missing(self) -> str:
        """Empty when OCR can run; else what is missing and how to install it."""
        if shutil.which("pdftoppm") is None:
            return f"poppler's pdftoppm is not installed; {INSTALL_HINT}"
        if shutil.which("tesseract") is None:
            return f"Tesseract is not installed; {INSTALL_HINT}"
        if not self.usable_languages():
            return f"Tesseract has none of the languages {self.languages!r}; {INSTALL_HINT}"
        return ""

    def pdf_pages(self, data: bytes, pages: list[int]) -> dict[int, str]:
        """Text of each 1-based page in ``pages`` (pages that fail raise ``OcrFailed``)."""
        with tempfile.TemporaryDirectory(prefix="rag-ocr-") as tmp:
            pdf = Path(tmp) / "in.pdf"
            pdf.write_bytes(data)
            out: dict[int, str] = {}
            for page in pages:
                png = Path(tmp) / f"page-{page}"
                self._run(["pdftoppm", "-f", str(page), "-l", str(page), "-r", str(self.dpi), "-gray", "-png",
                           "-singlefile", str(pdf), str(png)], f"pdftoppm (page {page})")
                out[page] = self.image(png.with_suffix(".png"))
        return out

    def image(self, path: Path) -> str:
        """Text of one image file."""
        langs = "+".join(self.usable_languages()) or "eng"
        return self._run(["tesseract", str(path), "stdout", "-l", langs, "--psm", "3"], "tesseract")

    def _run(self, argv: list[str], what: str) -> str:
        env = {**os.environ, "OMP_THREAD_LIMIT": "1"}  # one core: the machine is shared with the embedder
        try:
            done = subprocess.run(argv, capture_output=True, timeout=self.timeout, env=env)
        except subprocess.TimeoutExpired as exc:
            raise OcrFailed(f"{what} took over {self.timeout:.0f} s") from exc
        except OSError as exc:
            raise OcrFailed(f"{what} could not run ({exc})") from exc
        if done.returncode != 0:
            err = " ".join(done.stderr.decode("utf-8", "replace").split())[-200:]
            raise OcrFailed(f"{what} failed ({err or f'exit {done.returncode}'})")
        return done.stdout.decode("utf-8", "replace")
