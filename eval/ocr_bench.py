"""OCR speed and character accuracy on rendered pages in English, Portuguese, Spanish and German.

    $ python -m eval.ocr_bench                 # prints a Markdown table (pages/s, accuracy per language)
    $ python -m eval.ocr_bench --dpi 200 --json

Known text is rendered to an image-only PDF (Pillow, DejaVu Sans, 200 dpi A4), read back through
the same path indexing uses (``index.pdf.PdfReader``: pdftoppm + Tesseract, then re-flow), and
compared with the original: accuracy = 1 - Levenshtein distance / length, on whitespace-collapsed
text. ``render_scanned_pdf`` is also what the tests use to make their scanned PDFs.
"""

from __future__ import annotations

import argparse
import io
import json
import textwrap
import time
from pathlib import Path

FONT = "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf"
PAGES = {
    "en": ("Annual report of the harbour authority. In 2023 the port handled 5.2 million containers, "
           "eight percent more than the year before. The new northern quay opened in September and "
           "employs 340 people. Information about tariffs is published every quarter on the authority's "
           "website, together with the schedule of maintenance works."),
    "pt": ("Relatório anual da autoridade portuária. Em 2023 o porto movimentou 5,2 milhões de contentores, "
           "mais oito por cento do que no ano anterior. O novo cais norte abriu em setembro e emprega "
           "340 pessoas. A informação sobre tarifas é publicada todos os trimestres, com o calendário "
           "das obras de manutenção e as ações de formação."),
    "es": ("Informe anual de la autoridad portuaria. En 2023 el puerto movió 5,2 millones de contenedores, "
           "un ocho por ciento más que el año anterior. El nuevo muelle norte abrió en septiembre y "
           "emplea a 340 personas. La información sobre tarifas se publica cada trimestre, junto con el "
           "calendario de obras de mantenimiento y la señalización."),
    "de": ("Jahresbericht der Hafenbehörde. Im Jahr 2023 schlug der Hafen 5,2 Millionen Container um, "
           "acht Prozent mehr als im Vorjahr. Der neue Nordkai wurde im September eröffnet und "
           "beschäftigt 340 Menschen. Informationen über Gebühren werden vierteljährlich veröffentlicht, "
           "zusammen mit dem Zeitplan der Wartungsarbeiten für Straßen und Brücken."),
}


def render_scanned_pdf(pages: list[str], dpi: int = 200, font_pt: float = 12.0, width_chars: int = 70,
                       degrade: bool = False) -> bytes:
    """An image-only PDF (no text layer): each string is one A4 page of wrapped lines. ``degrade``
    makes it look photocopied: 150 dpi, 10 pt, tilted 0.8 degrees, blurred, speckled."""
    import random

    from PIL import Image, ImageDraw, ImageFilter, ImageFont

    if degrade:
        dpi, font_pt, width_chars = 150, 10.0, 80

    font = ImageFont.truetype(FONT, int(font_pt * dpi / 72))
    size = (int(8.27 * dpi), int(11.69 * dpi))
    images = []
    for text in pages:
        img = Image.new("L", size, 255)
        draw = ImageDraw.Draw(img)
        y = dpi  # one-inch margins
        for para in text.split("\n\n"):
            for line in textwrap.wrap(para, width_chars):
                draw.text((dpi, y), line, font=font, fill=0)
                y += int(font_pt * 1.5 * dpi / 72)
            y += int(font_pt * dpi / 72)
        if degrade:
            rnd = random.Random(len(text))
            img = img.rotate(0.8, resample=Image.Resampling.BICUBIC, fillcolor=255)
            img = img.filter(ImageFilter.GaussianBlur(0.7))
            px = img.load()
            for _ in range(size[0] * size[1] // 200):  # 0.5% of pixels flipped to black or white
                px[rnd.randrange(size[0]), rnd.randrange(size[1])] = rnd.choice((0, 255))
        images.append(img)
    out = io.BytesIO()
    images[0].save(out, "PDF", resolution=dpi, save_all=True, append_images=images[1:])
    return out.getvalue()


def levenshtein(a: str, b: str) -> int:
    prev = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        cur = [i]
        for j, cb in enumerate(b, 1):
            cur.append(min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (ca != cb)))
        prev = cur
    return prev[-1]


def accuracy(truth: str, got: str) -> float:
    truth, got = " ".join(truth.split()), " ".join(got.split())
    return max(0.0, 1 - levenshtein(truth, got) / max(1, len(truth)))


def bench(dpi: int = 300, languages: str = "eng+por+spa+deu", repeat: int = 1, degrade: bool = False) -> list[dict]:
    """One row per language: seconds per page, pages/s, character accuracy."""
    from index.pdf import PdfReader
    from index.readers import ReadOptions

    opts = ReadOptions(ocr=True, ocr_languages=languages, ocr_dpi=dpi)
    rows = []
    for lang, text in PAGES.items():
        pdf = render_scanned_pdf([text] * repeat, degrade=degrade)
        started = time.perf_counter()
        got = PdfReader().read(pdf, Path(f"bench-{lang}.pdf"), opts)
        seconds = time.perf_counter() - started
        first = got.text[: got.regions[1].char_start] if len(got.regions) > 1 else got.text
        rows.append({"language": lang, "pages": repeat, "seconds": round(seconds, 2),
                     "pages_per_s": round(repeat / seconds, 3), "accuracy": round(accuracy(text, first), 4),
                     "dpi": dpi, "tesseract_languages": languages, "degraded": degrade})
    return rows


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m eval.ocr_bench", description=__doc__.split("\n")[0])
    p.add_argument("--dpi", type=int, default=300, help="render resolution for OCR (setting ocr_dpi)")
    p.add_argument("--languages", default="eng+por+spa+deu", help="Tesseract languages (setting ocr_languages)")
    p.add_argument("--repeat", type=int, default=2, help="pages per language")
    p.add_argument("--degrade", action="store_true", help="photocopy-like pages: 150 dpi, tilted, blurred, speckled")
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)
    from index.ocr import Ocr

    missing = Ocr(args.languages).missing()
    if missing:
        print(f"error: {missing}")
        return 2
    rows = bench(args.dpi, args.languages, args.repeat, args.degrade)
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    print("| language | pages | seconds | pages/s | character accuracy |\n|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['language']} | {r['pages']} | {r['seconds']} | {r['pages_per_s']} | {r['accuracy']:.2%} |")
    total = sum(r["pages"] for r in rows) / sum(r["seconds"] for r in rows)
    kind = "degraded (150 dpi scan, tilted, blurred, speckled)" if args.degrade else "clean (200 dpi scan)"
    print(f"\nall: {total:.3f} pages/s, {kind} pages OCR'd at {args.dpi} dpi, Tesseract languages {args.languages}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
