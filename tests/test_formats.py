"""Office files, e-books, e-mail and scanned PDFs: read with their structure, indexed with the real
pipeline, answered with citations that say where (page, slide, sheet and row, chapter, paragraph).

Every file is made here (tests/docfixtures.py) with the library its reader uses, in four
languages; the scanned PDF is rendered by Pillow to an image-only PDF and read back by Tesseract
(Debian's tesseract-ocr, installed by `make ocr`; those tests skip, saying so, without it).
"""

from __future__ import annotations

import os
import zipfile

import pytest
from conftest import run_cli
from docfixtures import CASES, WRAPPED_PAGES, text_pdf, write_all

from index.errors import ReaderError
from index.locations import location_at
from index.ocr import Ocr
from index.pdf import reflow
from index.readers import ReadOptions, read_file

OCR_MISSING = Ocr().missing()
needs_ocr = pytest.mark.skipif(bool(OCR_MISSING), reason=f"OCR not installed: {OCR_MISSING}")
OFFICE = ("docx", "pptx", "xlsx", "odt", "epub", "eml")


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    kinds = OFFICE if OCR_MISSING else (*OFFICE, "scan")
    return write_all(tmp_path_factory.mktemp("formats"), kinds)


@pytest.mark.parametrize("kind", OFFICE)
def test_reader_keeps_structure_and_offsets(files, kind):
    case = CASES[kind]
    doc = read_file(files[kind])
    at = doc.text.index(case.answer_word)
    region = location_at(doc.regions, at)
    assert region is not None and region.label.startswith(case.location), (region, doc.regions)
    for a, b in doc.headings:  # headings are whole lines of the text, never the answer sentence
        assert doc.text[a:b].strip() == doc.text[a:b] and not (a <= at < b)
    starts = [r.char_start for r in doc.regions]
    assert starts == sorted(starts) and all(0 <= s < len(doc.text) for s in starts)


def test_slide_titles_and_sheet_headers_are_headings(files):
    deck = read_file(files["pptx"])
    assert [deck.text[a:b] for a, b in deck.headings] == ["Company overview", "Funding round", "Next steps"]
    assert [(r.label, r.page) for r in deck.regions] == [("slide 1", 1), ("slide 2", 2), ("slide 3", 3)]
    sheet = read_file(files["xlsx"])
    assert "Producto | Ciudad | Unidades" in [sheet.text[a:b] for a, b in sheet.headings]
    assert "Producto: turbinas eólicas; Ciudad: Sevilla; Unidades: 350" in sheet.text.splitlines()
    assert location_at(sheet.regions, sheet.text.index("Lucía")).label == "sheet Empleados, row 2"


def test_pdf_reflow_joins_lines_undoes_hyphens_keeps_paragraphs(tmp_path):
    pdf = tmp_path / "report.pdf"
    pdf.write_bytes(text_pdf(WRAPPED_PAGES))
    doc = read_file(pdf)
    paragraphs = doc.text.split("\n\n")
    assert ("The board met on Tuesday to review the results of the third quarter and the information "
            "provided by the auditors, which was found complete.") in paragraphs
    assert "Sales rose in every region except the north, where two stores closed in August." in paragraphs
    assert "- Hiring continues in Lisbon." in paragraphs and "infor-" not in doc.text
    assert [doc.text[a:b] for a, b in doc.headings] == ["Quarterly Report", "Outlook"]
    assert location_at(doc.regions, doc.text.index("12 million")).page == 2
    assert location_at(doc.regions, doc.text.index("auditors")).label == "page 1"


@pytest.mark.parametrize("lines,expected", [
    ("one line only", [("one line only", False)]),
    ("well-\nknown words", [("well-\nknown words".replace("\n", " "), False)]),  # next line lower: joined
    ("A long line that wraps around here and\ncontinues.\n\nNew paragraph.", [
        ("A long line that wraps around here and continues.", False), ("New paragraph.", False)]),
    ("", []),
])
def test_reflow_cases(lines, expected):
    got = reflow(lines)
    if lines.startswith("well-"):
        assert got == [("wellknown words", False)]  # end-of-line hyphen + lower-case start: a split word
    else:
        assert got == expected


def test_scanned_pdf_without_ocr_says_which_pages_and_how(tmp_path, monkeypatch):
    from eval.ocr_bench import render_scanned_pdf

    scan = tmp_path / "scan.pdf"
    scan.write_bytes(render_scanned_pdf(["Only an image of text here."]))
    with pytest.raises(ReaderError, match=r"no text .*page 1 had no text layer and was not read: OCR is off.*RAG_OCR"):
        read_file(scan, options=ReadOptions(ocr=False))
    mixed = tmp_path / "mixed.pdf"  # page 1 has a text layer, page 2 is only an image
    from pypdf import PdfReader, PdfWriter

    writer = PdfWriter()
    for part in (text_pdf([["A page with a real text layer."]]), scan.read_bytes()):
        import io

        for page in PdfReader(io.BytesIO(part)).pages:
            writer.add_page(page)
    with open(mixed, "wb") as fh:
        writer.write(fh)
    monkeypatch.setenv("PATH", str(tmp_path))  # as on a machine without Tesseract and poppler
    doc = read_file(mixed)
    assert "real text layer" in doc.text
    assert doc.notes and "page 2 had no text layer and was not read" in doc.notes[0]
    assert "make ocr" in doc.notes[0] and "tesseract-ocr" in doc.notes[0]


@needs_ocr
def test_scanned_pdf_is_read_by_ocr_with_pages(files):
    doc = read_file(files["scan"])
    assert "5,2 millones de contenedores" in doc.text
    assert location_at(doc.regions, doc.text.index("5,2 millones")).label == "page 2"
    assert "read by OCR" in doc.notes[0]


@needs_ocr
def test_ocr_results_are_cached_so_reindexing_reads_no_page_again(files, tmp_path, monkeypatch):
    from index.ocr import Ocr

    opts = ReadOptions(ocr_cache=tmp_path / "ocr-cache")
    first = read_file(files["scan"], options=opts)
    assert len(list((tmp_path / "ocr-cache").rglob("*.txt"))) >= 2  # both pages (page 1 maybe twice)

    def no_tools(self, argv, what):
        raise AssertionError(f"{what} ran although its page is cached")

    monkeypatch.setattr(Ocr, "_run", no_tools)
    again = read_file(files["scan"], options=opts)
    assert again.text == first.text and again.content_hash == first.content_hash


BAD = {
    "docx": lambda good: good[: len(good) // 2],             # truncated zip
    "pptx": lambda good: b"this is not a slide deck at all",  # wrong content
    "xlsx": lambda good: good[: len(good) // 3],
    "odt": lambda good: _zip({"mimetype": "application/vnd.oasis.opendocument.text", "content.xml": "<broken"}),
    "epub": lambda good: _zip({"mimetype": "application/epub+zip"}),  # no container.xml
    "eml": lambda good: b"\x00\x01 nothing like a mail",
    "pdf": lambda good: b"%PDF-1.4\n%%EOF garbage",
}


def _zip(members: dict[str, str]) -> bytes:
    import io

    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        for name, text in members.items():
            z.writestr(name, text)
    return buf.getvalue()


@pytest.mark.parametrize("kind", list(BAD))
def test_bad_file_of_each_kind_gives_a_clear_reader_error(files, tmp_path, kind):
    good = files[kind].read_bytes() if kind in files else b""
    path = tmp_path / f"broken.{kind}"
    path.write_bytes(BAD[kind](good))
    with pytest.raises(ReaderError) as err:
        read_file(path)
    assert err.value.path == str(path) and len(err.value.reason) > 20
    assert "readable" in err.value.reason or "not an e-mail" in err.value.reason, err.value.reason


@pytest.mark.slow
def test_index_and_answer_each_format_with_locations(files, tmp_path, make_settings):
    """The real pipeline over every format plus one bad file of each kind: the good ones are
    indexed and answered (extractive) with a citation naming the slide/sheet/page; the bad ones
    are a clear line in the summary and cost nothing."""
    from rag import Assistant

    folder = tmp_path / "docs"
    folder.mkdir()
    for kind, path in files.items():
        (folder / path.name).write_bytes(path.read_bytes())
        if kind in BAD:
            (folder / f"broken_{kind}{path.suffix}").write_bytes(BAD[kind](path.read_bytes()))
    qa = Assistant(make_settings())
    report = qa.index([folder])
    by_name = {os.path.basename(r.path): r for r in report.results}
    for kind, path in files.items():
        assert by_name[path.name].status == "added", by_name[path.name]
        if kind in BAD:
            bad = by_name[f"broken_{kind}{path.suffix}"]
            assert bad.status == "failed" and ("readable" in bad.reason or "e-mail" in bad.reason), bad
    langs = {r.doc_id: r.language for r in report.results if r.status == "added"}
    for kind in files:
        assert langs[files[kind].stem] == CASES[kind].language, (kind, langs)
    if "scan" in files:
        assert "read by OCR" in by_name[files["scan"].name].note

    for kind, path in files.items():
        case = CASES[kind]
        answer = qa.ask(case.question, mode="extractive")
        assert not answer.abstained, (kind, answer.text, answer.verification)
        cite = next((c for c in answer.citations if c.doc_id == path.stem), None)
        assert cite is not None, (kind, answer.text, [c.doc_id for c in answer.citations])
        assert case.answer_word in cite.quote, (kind, cite.quote)
        assert cite.location.startswith(case.location), (kind, cite.location)
        if kind in ("pptx", "scan"):
            assert cite.page == int(case.location.split()[-1])
    sents = qa.store.get_sentences(where={"doc_id": files["pptx"].stem}, include=["documents", "metadatas"])
    flags = {t: m["is_heading"] for t, m in zip(sents["documents"], sents["metadatas"])}
    assert flags["Funding round"] is True and flags[next(t for t in flags if "40 million" in t)] is False

    cli = run_cli("ask", CASES["pptx"].question, "--mode", "extractive",
                  env={"RAG_DATA_DIR": str(qa.settings.data_dir)})
    assert cli.returncode == 0 and "slide 2" in cli.stdout, cli.stdout + cli.stderr
    again = run_cli("index", str(folder), env={"RAG_DATA_DIR": str(qa.settings.data_dir)})
    assert again.returncode == 1 and "broken_docx.docx: not a readable Word (.docx) file" in again.stdout
    assert f"{len(files)} unchanged" in again.stdout, again.stdout
    if "scan" in files:  # the summary line of the scan; its pages come from the OCR cache this time
        assert "note  " in again.stdout and "had no text layer: read by OCR" in again.stdout
        assert list((qa.settings.data_dir / "ocr-cache").rglob("*.txt"))


def test_source_card_shows_the_location():
    from app import card_html
    from rag import Citation

    c = Citation(n=2, doc_id="deck", source="uploads/deck.pptx", chunk_id="c", language="en",
                 quote="Helix Labs raised 40 million euros.", char_start=5, char_end=40, score=1.0,
                 passage="xxxxxHelix Labs raised 40 million euros.", location="slide <2>", page=2)
    out = card_html(c, "citation")
    assert 'data-testid="card-location">slide &lt;2&gt;</span>' in out and "slide <2>" not in out
