"""The chat UI (app.py) in a real browser: Debian's chromium driven by Playwright.

One app process serves the whole module: the corpus is indexed into a temp data dir with
``python -m rag index corpus``, then ``python app.py`` starts on a free port in extractive mode
(no LLM needed). Screenshots land in test-artifacts/ (git-ignored).

DOM contract used here (kept stable in app.py):
    #question textarea, #ask-btn            ask
    #chat .message.bot                      answers (last one = newest; "timings (" once final)
    #answer-panel [data-testid=citation-N]  the <summary> of citation N; clicking opens
    [data-testid=source-card]               its card: card-doc, card-lang, card-passage > mark
    [data-testid=related-N], [data-testid=conflict]   related reading on abstention / conflict notice
    #upload input[type=file], #doc-status, #doc-table, #remove-doc, #remove-btn
"""

from __future__ import annotations

import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import pytest
from conftest import ROOT, app_env, free_port, start_app, stop_app

ARTIFACTS = ROOT / "test-artifacts"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update"]
BOT = "#chat .message.bot"
ANSWER_TIMEOUT = 90_000  # ms; the 2-core CI box may be busy with other test processes


@pytest.fixture(scope="module")
def server(tmp_path_factory, model_dir) -> Iterator[SimpleNamespace]:
    data = tmp_path_factory.mktemp("ui-data")
    env = app_env(data, model_dir, RAG_MAX_UPLOAD_MB="1")
    done = subprocess.run([sys.executable, "-m", "rag", "index", "corpus"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-2000:]
    log_path = data / "app.log"
    proc, url = start_app(env, log_path, ready="/")
    yield SimpleNamespace(url=url, data=data, env=env, log=log_path)
    stop_app(proc)


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    if not Path(CHROMIUM).exists():
        pytest.skip("Debian's chromium is not installed (make browser)")
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield b
        b.close()


@pytest.fixture
def page(browser, server, request):
    ctx = browser.new_context(viewport={"width": 1400, "height": 1000})
    pg = ctx.new_page()
    pg.dialogs = []
    pg.on("dialog", lambda d: (pg.dialogs.append(d.message), d.dismiss()))
    pg.goto(server.url)
    pg.wait_for_selector("#question textarea", timeout=60_000)
    yield pg
    ARTIFACTS.mkdir(exist_ok=True)
    pg.screenshot(path=str(ARTIFACTS / f"ui-{request.node.name}.png"), full_page=True)
    ctx.close()


def ask(page, question: str) -> str:
    """Type a question, wait for the final (non-streaming) answer, return its text."""
    from playwright.sync_api import expect

    before = page.locator(BOT).count()
    page.fill("#question textarea", question)
    page.press("#question textarea", "Enter")
    expect(page.locator(BOT)).to_have_count(before + 1, timeout=ANSWER_TIMEOUT)
    expect(page.locator(BOT).last).to_contain_text("timings (", timeout=ANSWER_TIMEOUT)
    return page.locator(BOT).last.inner_text()


def open_card(page, kind: str = "citation", n: int = 1):
    page.click(f"#answer-panel [data-testid={kind}-{n}]")
    card = page.locator(f"#answer-panel details[data-testid={kind}][data-n='{n}'] [data-testid=source-card]")
    card.wait_for(state="visible")
    return card


def upload(page, path: Path) -> str:
    from playwright.sync_api import expect

    page.set_input_files("#upload input[type=file]", str(path))
    status = page.locator("#doc-status")
    expect(status).to_contain_text(path.suffix, timeout=ANSWER_TIMEOUT)
    return status.inner_text()


def choose(page, dropdown: str, value: str) -> None:
    page.click(f"{dropdown} input")
    page.get_by_role("option", name=value, exact=True).click()


# ---------------------------------------------------------------------- in the browser
@pytest.mark.browser
@pytest.mark.slow
def test_answer_with_clickable_citation_card(page):
    text = ask(page, "Who is the CEO of BlackRock?")
    assert "Fink" in text and "[1]" in text
    assert "timings (extractive)" in page.inner_text("#answer-panel")
    card = open_card(page)
    assert "Fink" in card.locator("mark").inner_text()
    assert card.locator("[data-testid=card-lang]").inner_text() in ("en", "pt", "es", "de")
    assert card.locator("[data-testid=card-doc]").inner_text().startswith("00")
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "ui-screenshot.png"), full_page=True)

    page.click("#ask-btn")  # empty question: an error toast, the chat is unchanged
    page.locator(".toast-body").filter(has_text="empty").wait_for(timeout=30_000)
    assert page.locator(BOT).count() == 1


@pytest.mark.browser
@pytest.mark.slow
def test_examples_filters_follow_up_and_conflict(page):
    from playwright.sync_api import expect

    page.locator("#examples").get_by_text("Wer berät AIP?", exact=True).click()
    expect(page.locator("#question textarea")).to_have_value("Wer berät AIP?")
    page.press("#question textarea", "Enter")
    page.locator(BOT).last.filter(has_text="timings (").wait_for(timeout=ANSWER_TIMEOUT)
    said = page.locator(BOT).last.inner_text()
    assert "[1]" in said
    # The corpus tells this story in four languages, and the ranker does not prefer the reader's
    # (docs/EVAL.md, "Question tuning": language match on the demo set): a quote in another language
    # says so, in German, before the quote.
    lang = open_card(page).locator("[data-testid=card-lang]").inner_text()
    assert lang in ("en", "pt", "es", "de")
    assert lang == "de" or "Aus einer Quelle auf" in said, said

    # a follow-up in the same chat (the handler passes history=[(q, a)]; see the fast test below)
    ask(page, "Who founded it?")
    assert page.locator(BOT).count() == 2
    page.locator(BOT).first.click()  # an earlier answer's citations come back
    expect(page.locator("#answer-panel [data-testid=card-lang]").first).to_have_text(lang)

    page.click("#clear-btn")
    choose(page, "#lang-filter", "pt")
    ask(page, "Who advises AIP?")
    langs = page.locator("#answer-panel [data-testid=card-lang]").all_text_contents()
    assert langs and set(langs) == {"pt"}

    page.click("#clear-btn")
    page.locator("#lang-filter .token-remove, #lang-filter [aria-label*='Remove']").first.click()
    # a question whose evidence holds two figures for one fact (the demo set's q042)
    ask(page, "¿Cuánto capital privado (private equity) planeaba recaudar inicialmente la alianza?")
    conflict = page.locator("#answer-panel [data-testid=conflict]")
    if conflict.count():  # the corpus disagrees about the amount: both sides are cited
        cited = conflict.inner_text()
        for n in page.locator("#answer-panel details[data-testid=citation]").evaluate_all(
                "els => els.map(e => e.dataset.n)"):
            assert f"[{n}]" in cited or f"[{n}]" in page.locator(BOT).last.inner_text()


@pytest.mark.browser
@pytest.mark.slow
def test_upload_ask_remove(page, server, tmp_path):
    doc = tmp_path / "acme.txt"
    doc.write_text("Acme Robotics was founded in 1999 by Jane Doe in Lisbon. "
                   "The company builds warehouse robots.\n", encoding="utf-8")
    status = upload(page, doc)
    assert "acme" in status and "added" in status, status
    assert "acme" in page.inner_text("#doc-table")
    assert (server.data / "uploads" / "acme.txt").is_file()
    page.click("#doc-filter input")  # the document filter knows the new document
    page.get_by_role("option", name="acme", exact=True).wait_for()
    page.keyboard.press("Escape")

    assert "Jane Doe" in ask(page, "Who founded Acme Robotics?")
    card = open_card(page)
    assert card.locator("[data-testid=card-doc]").inner_text() == "acme"
    assert "Jane Doe" in card.locator("mark").inner_text()

    choose(page, "#remove-doc", "acme")
    page.click("#remove-btn")
    page.locator("#doc-status").filter(has_text="removed acme").wait_for(timeout=ANSWER_TIMEOUT)
    assert "acme" not in page.inner_text("#doc-table")
    assert not (server.data / "uploads" / "acme.txt").exists()
    text = ask(page, "Who founded Acme Robotics?")
    docs = page.locator("#answer-panel [data-testid=citation] [data-testid=card-doc]").all_text_contents()
    assert "acme" not in docs and "Jane Doe" not in text


@pytest.mark.browser
@pytest.mark.slow
def test_script_in_a_document_does_not_run(page, server, tmp_path):
    evil = tmp_path / '<img src=x onerror="window.__pwned=3">.txt'
    evil.write_text('Zorblax widgets <script>window.__pwned=1</script> are made in Tallinn by Zorblax Ltd '
                    '<img src=x onerror="window.__pwned=2">.\nZorblax widgets cost 42 euros each.\n',
                    encoding="utf-8")
    status = upload(page, evil)
    assert "added" in status, status
    stored = [p.name for p in (server.data / "uploads").iterdir()]
    assert stored and all(re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*\.txt", n) for n in stored), stored

    text = ask(page, "Where are Zorblax widgets made?")
    assert "<script>window.__pwned=1</script>" in text  # shown literally, not run
    card = open_card(page)
    assert 'onerror="window.__pwned=2"' in card.inner_text()
    assert "<script>" in page.inner_text("#doc-table")
    time.sleep(1)
    assert page.evaluate("window.__pwned") is None
    assert page.locator("#chat script, #answer-panel script, #chat img[src=x], #answer-panel img").count() == 0
    assert page.dialogs == []


@pytest.mark.browser
@pytest.mark.slow
def test_uploads_limited_in_type_and_size(page, server, tmp_path):
    before = sorted(p.name for p in (server.data / "uploads").glob("*"))
    exe = tmp_path / "notes.exe"
    exe.write_bytes(b"MZ not a document")
    big = tmp_path / "big.txt"
    big.write_text("Large file sentence about nothing in particular.\n" * 30_000, encoding="utf-8")  # ~1.5 MB
    for path, refusal in ((exe, "file type|not accepted"), (big, "exceed|larger than")):
        page.reload()
        page.set_input_files("#upload input[type=file]", str(path))
        page.locator(".toast-body, #doc-status").filter(has_text=re.compile(refusal, re.I)).first.wait_for(
            timeout=ANSWER_TIMEOUT)
    assert sorted(p.name for p in (server.data / "uploads").glob("*")) == before
    table = page.inner_text("#doc-table")
    assert "notes" not in table and "big" not in table


@pytest.mark.browser
@pytest.mark.slow
def test_abstention_offers_related_reading(page):
    text = ask(page, "What is the boiling point of liquid nitrogen on Mars?")
    panel = page.locator("#answer-panel")
    assert "not found" in text.lower()
    assert panel.locator("[data-testid=citation]").count() == 0
    assert "not citations" in panel.inner_text()
    if panel.locator("[data-testid=related]").count():
        assert open_card(page, "related").locator("mark").count() == 1


# ---------------------------------------------------------------------- over HTTP
@pytest.mark.browser
@pytest.mark.slow
def test_gradio_client_api(server):
    from gradio_client import Client

    client = Client(server.url, verbose=False)
    answer = client.predict("Who is the CEO of BlackRock?", api_name="/ask")
    assert "Fink" in answer["text"] and answer["citations"]
    assert {"n", "doc_id", "quote", "char_start", "char_end"} <= set(answer["citations"][0])
    answer = client.predict("Wer berät AIP?", ["de"], None, 4, "extractive", api_name="/ask")
    assert {c["language"] for c in answer["citations"]} == {"de"}
    with pytest.raises(Exception, match="empty"):
        client.predict("   ", api_name="/ask")


@pytest.mark.browser
@pytest.mark.slow
def test_file_routes_and_upload_limit(server):
    import httpx

    targets = ["/etc/passwd", str(ROOT / "app.py"), str(server.data / "chroma" / "chroma.sqlite3")]
    for prefix in ("/gradio_api/file=", "/file="):
        for target in targets:
            r = httpx.get(f"{server.url}{prefix}{target}", timeout=10)
            assert r.status_code != 200, (prefix, target)
            assert "root:" not in r.text
    r = httpx.get(f"{server.url}/gradio_api/file=/../../../../etc/passwd", timeout=10)
    assert r.status_code != 200 and "root:" not in r.text
    # the size limit holds on the server too, not only in the browser
    r = httpx.post(f"{server.url}/gradio_api/upload", timeout=30,
                   files={"files": ("big.txt", b"x" * 1_500_000, "text/plain")})
    assert r.status_code == 413


@pytest.mark.browser
@pytest.mark.slow
def test_non_loopback_bind_without_auth_refuses(server):
    env = {k: v for k, v in server.env.items() if k != "RAG_AUTH"}
    for cmd in ([sys.executable, "app.py", "--host", "0.0.0.0", "--port", str(free_port())],
                [sys.executable, "-m", "rag", "serve", "--host", "0.0.0.0", "--port", str(free_port())]):
        done = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
        assert done.returncode != 0
        assert "without authentication" in done.stderr and "--auth" in done.stderr


# ---------------------------------------------------------------------- pure helpers (fast)
def test_safe_upload_names(tmp_path):
    from app import safe_name, unique_path

    assert safe_name("../../etc/passwd") == "passwd"
    assert safe_name("..\\..\\win.TXT") == "win.txt"
    assert safe_name(".hidden.md") == "hidden.md"
    assert safe_name("Relatório final (v2).PDF") == "Relatorio_final_v2.pdf"
    assert safe_name('<img src=x onerror="a()">.txt') == "img_src_x_onerror_a.txt"
    assert safe_name("...") == "upload"
    (tmp_path / "a.txt").write_text("x")
    assert unique_path(tmp_path, "a.txt", set()).name == "a-2.txt"
    assert unique_path(tmp_path, "b.txt", {"b"}).name == "b-2.txt"


def test_rendering_escapes_and_highlights():
    from app import card_html, md_safe
    from rag import Citation

    passage = 'Intro. <script>x()</script> Acme <img src=x onerror="y()"> sentence. Tail.'
    start = passage.index("<script>")
    c = Citation(n=1, doc_id="d", source="uploads/d.txt", chunk_id="c", language="en", quote="",
                 char_start=100 + start, char_end=100 + passage.index(" Tail"), score=1.0, title="<b>t</b>",
                 passage=passage, passage_start=100)
    out = card_html(c, "citation")
    assert "<script>" not in out and "<img" not in out and "<b>t</b>" not in out
    assert "<mark>&lt;script&gt;x()&lt;/script&gt; Acme" in out
    assert "<" not in md_safe("<script>alert(1)</script>") and "\\[1\\]" in md_safe("[1]")


def test_a_model_answer_that_was_not_shown_is_labelled_with_its_reason():
    from app import panel_html, stage_label
    from rag import Answer

    unsure = Answer(question="q", text="The documents do not answer this clearly", language="en", mode="local",
                    abstained=True, withheld=True, draft="Intel advises AIP.",
                    verification="the model's answer is backed by another passage than the one holding [1]")
    assert stage_label(unsure).startswith("❔ **No clear answer** · the model's answer is backed")
    assert "\\[1\\]" in stage_label(unsure)  # Markdown marks in the reason are escaped
    assert "No clear answer in the documents." in panel_html(unsure)
    not_found = Answer(question="q", text="Not found in the documents.", language="en", mode="extractive",
                       abstained=True)
    assert stage_label(not_found) == "" and "Not found in the documents." in panel_html(not_found)
    # the model's own "not found" (a draft, not withheld) is a plain not-found, with its reason
    none = Answer(question="q", text="Not found in the documents.", language="en", mode="local", abstained=True,
                  draft="The documents do not say.", verification="the model found no answer in the passages it read")
    assert "No clear answer" not in stage_label(none) and "Not found in the documents." in panel_html(none)


def test_chat_streams_tokens_then_final_answer_and_passes_history(tmp_path):
    """The chat handler with a stand-in Assistant: tokens stream escaped, the final text replaces
    them, the panel is built, and the next question gets the conversation as history."""
    from app import build_ui
    from rag import Answer, Citation, Conflict, Event, Settings

    calls: list[dict] = []

    class FakeAssistant:
        settings = Settings(data_dir=tmp_path)

        def available_modes(self):
            return ["auto", "extractive", "local"]

        def documents(self):
            return []

        def stream(self, question, **kwargs):
            calls.append(kwargs)
            c = [Citation(n, f"d{n}", f"d{n}.txt", "c", "en", "q", 0, 1, 1.0, passage="q") for n in (1, 2)]
            yield Event("retrieved", [])
            yield Event("answer", Answer(question=question, text="“Jane Doe founded Acme.” [1]", language="en",
                                         mode="extractive", citations=c[:1], stage="quote"))
            yield Event("token", "Jane ")
            yield Event("token", "<b>Doe</b>")
            yield Event("answer", Answer(question=question, text="Jane Doe [1]", language="en", mode="local",
                                         citations=c, conflicts=[Conflict("x", [("$1", 1), ("$2", 2)])],
                                         timings={"total": 0.5}))

    demo = build_ui(FakeAssistant())
    respond = next(f.fn for f in demo.fns.values() if getattr(f.fn, "__name__", "") == "respond")
    steps, chats = [], []
    for step in respond("Who founded Acme?", [], [], [], [], "local", 5):
        steps.append(step)
        chats.append(step[0][-1]["content"])  # the handler updates its message list in place
    quoted = [c for c in chats if "Quoted source" in c]
    assert quoted and "follows once it is verified" in quoted[0]  # the quote stage is shown first, marked
    assert any("not yet verified" in c and "Jane &lt;b&gt;Doe&lt;/b&gt;" in c for c in chats)  # streamed, escaped
    final_chat, _, panel, turns = steps[-1]
    assert final_chat[-1]["content"].startswith("Jane Doe \\[1\\]") and "total 500 ms" in final_chat[-1]["content"]
    assert "not yet verified" not in final_chat[-1]["content"]  # the final answer replaced quote and draft
    assert 'data-testid="conflict"' in panel and "[1]" in panel and "[2]" in panel
    assert panel.count('data-testid="citation"') == 2
    assert calls[0] == {"languages": None, "sources": None, "top_k": 5, "mode": "local", "history": []}
    list(respond("And when?", final_chat, turns, ["en"], ["d1"], "auto", 3))
    assert calls[1]["history"] == [("Who founded Acme?", "Jane Doe [1]")]
    assert calls[1]["languages"] == ["en"] and calls[1]["sources"] == ["d1"]
