"""Office, e-book, e-mail and scanned-PDF files made by the tests themselves, in four languages.

    >>> files = write_all(tmp_path)          # {"docx": Path, "pptx": Path, ...}
    >>> CASES["pptx"].question, CASES["pptx"].location
    ('How much money did Helix Labs raise?', 'slide 2')

Each file is written with the library its reader uses (python-docx, python-pptx, openpyxl, odfpy,
ebooklib, the standard library's email) or, for the scanned PDF, rendered by Pillow to an
image-only PDF (eval.ocr_bench.render_scanned_pdf). Each case knows a question, a word its
answer must quote, and where that quote is.
"""

from __future__ import annotations

from dataclasses import dataclass
from email.message import EmailMessage
from pathlib import Path


@dataclass(frozen=True)
class Case:
    name: str
    language: str
    question: str
    answer_word: str
    location: str  # the citation's location must start with this


CASES = {
    "docx": Case("relatorio_lusomar.docx", "pt", "Em que cidade a Lusomar abriu uma fábrica de bicicletas?",
                 "Aveiro", "paragraph 3 under “Produção”"),
    "pptx": Case("helix_deck.pptx", "en", "How much money did Helix Labs raise?", "40 million", "slide 2"),
    "xlsx": Case("ventas_2024.xlsx", "es", "¿Cuántas turbinas eólicas se vendieron en Sevilla?", "350",
                 "sheet Ventas, row 3"),
    "odt": Case("nordwerk_bericht.odt", "de", "In welcher Stadt baut Nordwerk Windräder?", "Kiel",
                "paragraph 3 under “Standorte”"),
    "epub": Case("the_lighthouse.epub", "en", "Who kept the lighthouse of Cabo Branco?", "Marta Silva",
                 "chapter 2"),
    "eml": Case("office_move.eml", "en", "When does the Dresden office move to Torstraße?", "June",
                "paragraph 2"),
    "scan": Case("puerto_escaneado.pdf", "es", "¿Cuántos contenedores recibió el puerto de Valencia en 2023?",
                 "5,2 millones", "page 2"),
}


def write_docx(path: Path) -> Path:
    import docx

    d = docx.Document()
    d.add_heading("Relatório anual da Lusomar", 0)
    d.add_paragraph("A Lusomar é uma empresa portuguesa de mobilidade fundada em 2015.")
    d.add_heading("Produção", 1)
    d.add_paragraph("A produção cresceu vinte por cento durante o ano passado.")
    d.add_paragraph("Em 2021 a Lusomar abriu uma fábrica de bicicletas elétricas em Aveiro.")
    table = d.add_table(rows=2, cols=2)
    for r, (a, b) in enumerate([("Ano", "Bicicletas"), ("2023", "12000")]):
        table.cell(r, 0).text, table.cell(r, 1).text = a, b
    d.save(path)
    return path


def write_pptx(path: Path) -> Path:
    from pptx import Presentation

    deck = Presentation()
    for title, body in [("Company overview", "Helix Labs builds solid-state batteries for boats."),
                        ("Funding round", "Helix Labs raised 40 million euros from three investors in March."),
                        ("Next steps", "The first factory opens in Rotterdam next year.")]:
        slide = deck.slides.add_slide(deck.slide_layouts[1])
        slide.shapes.title.text = title
        slide.placeholders[1].text_frame.text = body
    deck.save(path)
    return path


def write_xlsx(path: Path) -> Path:
    from openpyxl import Workbook

    book = Workbook()
    ws = book.active
    ws.title = "Ventas"
    for row in [("Producto", "Ciudad", "Unidades"), ("paneles solares", "Madrid", 1200),
                ("turbinas eólicas", "Sevilla", 350), ("baterías", "Bilbao", 80)]:
        ws.append(row)
    other = book.create_sheet("Empleados")
    other.append(("Nombre", "Puesto"))
    other.append(("Lucía Gómez", "directora financiera"))
    book.save(path)
    return path


def write_odt(path: Path) -> Path:
    from odf.opendocument import OpenDocumentText
    from odf.text import H, P

    doc = OpenDocumentText()
    doc.text.addElement(H(outlinelevel=1, text="Jahresbericht der Nordwerk AG"))
    doc.text.addElement(P(text="Die Nordwerk AG ist ein Hersteller von Anlagen für erneuerbare Energie."))
    doc.text.addElement(H(outlinelevel=2, text="Standorte"))
    doc.text.addElement(P(text="Die Verwaltung sitzt seit 2010 in Hamburg."))
    doc.text.addElement(P(text="Nordwerk baut seine Windräder in einem Werk in Kiel."))
    doc.save(str(path))
    return path


def write_epub(path: Path) -> Path:
    from ebooklib import epub

    book = epub.EpubBook()
    book.set_identifier("rag-test-lighthouse")
    book.set_title("The Lighthouse")
    book.set_language("en")
    chapters = []
    for i, (title, text) in enumerate([
        ("The harbour", "The fishing boats left the harbour before dawn every morning."),
        ("The keeper", "Marta Silva kept the lighthouse of Cabo Branco for thirty years."),
    ], 1):
        c = epub.EpubHtml(title=title, file_name=f"chap_{i}.xhtml", lang="en")
        c.content = f"<html><body><h1>{title}</h1><p>{text}</p></body></html>"
        book.add_item(c)
        chapters.append(c)
    book.toc = chapters
    book.add_item(epub.EpubNcx())
    book.add_item(epub.EpubNav())
    book.spine = ["nav", *chapters]
    epub.write_epub(str(path), book)
    return path


def write_eml(path: Path) -> Path:
    msg = EmailMessage()
    msg["From"] = "Facilities <facilities@example.com>"
    msg["To"] = "staff@example.com"
    msg["Subject"] = "Dresden office move"
    msg["Date"] = "Mon, 03 Mar 2025 09:00:00 +0100"
    msg.set_content("Dear colleagues,\n\nThe Dresden office moves to Torstraße 12 on the first of June.\n\n"
                    "Parking permits are handed out at the front desk.\n")
    path.write_bytes(msg.as_bytes())
    return path


def write_scan(path: Path) -> Path:
    from eval.ocr_bench import render_scanned_pdf

    path.write_bytes(render_scanned_pdf([
        "Informe anual del puerto de Valencia.\n\nEl puerto amplió el muelle norte durante la primavera.",
        "En 2023 el puerto de Valencia recibió 5,2 millones de contenedores.\n\n"
        "La mayoría llegaron desde Asia y el norte de África.",
    ]))
    return path


WRITERS = {"docx": write_docx, "pptx": write_pptx, "xlsx": write_xlsx, "odt": write_odt, "epub": write_epub,
           "eml": write_eml, "scan": write_scan}


def write_all(folder: Path, kinds: tuple[str, ...] = tuple(WRITERS)) -> dict[str, Path]:
    folder.mkdir(parents=True, exist_ok=True)
    return {k: WRITERS[k](folder / CASES[k].name) for k in kinds}


def text_pdf(pages: list[list[str]]) -> bytes:
    """A PDF with a text layer, written by hand: each page is a list of lines ("" = a paragraph gap)."""
    objs = [b"<< /Type /Catalog /Pages 2 0 R >>", b""]
    kids = []
    for lines in pages:
        ops = ["BT /F1 11 Tf 72 740 Td 14 TL"]
        for line in lines:
            safe = line.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)")
            ops.append(f"({safe}) Tj T*" if line else "T*")
        stream = (" ".join(ops) + " ET").encode("latin-1")
        page_no, content_no = len(objs) + 1, len(objs) + 2
        kids.append(page_no)
        objs.append(b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents %d 0 R "
                    b"/Resources << /Font << /F1 FONT 0 R >> >> >>" % content_no)
        objs.append(b"<< /Length %d >>\nstream\n" % len(stream) + stream + b"\nendstream")
    font_no = len(objs) + 1
    objs.append(b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica /Encoding /WinAnsiEncoding >>")
    objs = [o.replace(b"FONT", str(font_no).encode()) for o in objs]
    objs[1] = b"<< /Type /Pages /Kids [%s] /Count %d >>" % (b" ".join(b"%d 0 R" % k for k in kids), len(kids))
    return pdf_from_objects(objs)


WRAPPED_PAGES = [
    ["Quarterly Report", "",
     "The board met on Tuesday to review the", "results of the third quarter and the infor-",
     "mation provided by the auditors, which was", "found complete.",
     "Sales rose in every region except the north,", "where two stores closed in August."],
    ["Outlook",
     "The company expects revenue of 12 million", "euros next year.",
     "- Hiring continues in Lisbon.", "- A second warehouse opens in Porto."],
]


def pdf_from_objects(objs: list[bytes]) -> bytes:
    """A PDF file from its numbered objects (1 = catalog), with a correct xref table."""
    out, offsets = b"%PDF-1.4\n", []
    for i, obj in enumerate(objs, 1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % i + obj + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objs) + 1)
    out += b"".join(b"%010d 00000 n \n" % o for o in offsets)
    return out + b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objs) + 1, xref)
