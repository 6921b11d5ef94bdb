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
    cache_dir: Path | None = None  # page texts by (file hash, page, languages, dpi): re-indexing reads none again

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

    def pdf_pages(self, data: bytes, pages: list[int], digest: str = "") -> dict[int, str]:
        """Text of each 1-based page in ``pages`` (pages that fail raise ``OcrFailed``).
        ``digest`` (the file's sha256) enables the cache."""
        out: dict[int, str] = {}
        todo = []
        for page in pages:
            hit = self._cached(digest, page)
            if hit is not None:
                out[page] = hit
            else:
                todo.append(page)
        if not todo:
            return out
        with tempfile.TemporaryDirectory(prefix="rag-ocr-") as tmp:
            pdf = Path(tmp) / "in.pdf"
            pdf.write_bytes(data)
            for page in todo:
                png = Path(tmp) / f"page-{page}"
                self._run(["pdftoppm", "-f", str(page), "-l", str(page), "-r", str(self.dpi), "-gray", "-png",
                           "-singlefile", str(pdf), str(png)], f"pdftoppm (page {page})")
                out[page] = self.image(png.with_suffix(".png"))
                self._store(digest, page, out[page])
        return out

    def _cache_path(self, digest: str, page: int) -> Path | None:
        if not digest or self.cache_dir is None:
            return None
        return Path(self.cache_dir) / digest[:2] / f"{digest}-p{page}-{self.languages}-{self.dpi}.txt"

    def _cached(self, digest: str, page: int) -> str | None:
        path = self._cache_path(digest, page)
        try:
            return path.read_text(encoding="utf-8") if path is not None and path.is_file() else None
        except OSError:
            return None

    def _store(self, digest: str, page: int, text: str) -> None:
        path = self._cache_path(digest, page)
        if path is None:
            return
        try:  # written whole then renamed: a killed run never leaves half a page
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(f".{os.getpid()}.tmp")
            tmp.write_text(text, encoding="utf-8")
            tmp.replace(path)
        except OSError:
            pass  # a read-only data dir still OCRs, only without the cache

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
