"""Chat UI for the multilingual RAG service: a thin Gradio layer over ``rag.Assistant``.

    $ python app.py                      # http://127.0.0.1:7860 (indexes corpus/ if the store is empty)
    $ RAG_AUTH_FILE=/etc/rag/users python app.py --host 0.0.0.0     # readers and admins (rag.auth)

Everything about answering lives in ``rag``; this file only renders. Safety rules kept here:
loopback unless authenticated (credentials from the environment or a file, never argv); with
authentication on, only admins upload and remove documents; uploads and removals run in their
own queue (``ingest``), so questions are answered meanwhile, from the last committed version; uploads limited in size and type and stored under sanitised names
in ``<data_dir>/uploads``; Gradio's file cache lives in ``<data_dir>/gradio-tmp`` and no other
path is served; every document or answer string is HTML-escaped before it reaches the page.
"""

from __future__ import annotations

import argparse
import html
import ipaddress
import os
import re
import shutil
import sys
import unicodedata
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import gradio as gr

from rag import Answer, Assistant, Citation, RagError, Settings
from rag.auth import Credentials, load_credentials
from rag.defaults import apply_process_defaults
from rag.openai_api import openai_router

LANGUAGES = ["en", "pt", "es", "de"]
UPLOAD_TYPES = (".txt", ".md", ".html", ".htm", ".pdf", ".docx", ".pptx", ".xlsx", ".odt", ".epub", ".eml")
EXAMPLES = ["Who advises AIP?", "Quem assessora a AIP?", "¿Quién asesora a la AIP?", "Wer berät AIP?",
            "How much does AIP aim to mobilise?"]
DOC_HEADERS = ["document", "language", "chunks", "characters", "title"]
CSS = """
.rag-card blockquote {margin: .4em 0; padding: .5em .8em; border-left: 3px solid #999; white-space: pre-wrap}
.rag-card mark {background: #ffe066; color: #000; padding: 0 .1em}
.rag-cite summary {cursor: pointer; font-weight: 600; padding: .2em 0}
.rag-conflict {border: 1px solid #d9480f; background: #fff4e6; color: #7a2e0b; padding: .5em .8em;
               border-radius: 6px; margin-bottom: .5em}
.rag-meta, .rag-timings {color: #666; font-size: .85em}
"""


# ---------------------------------------------------------------------- rendering (always escaped)
def esc(value: object) -> str:
    return html.escape(str(value), quote=True)


def md_safe(text: str) -> str:
    """Text for the (markdown-rendering) chatbot: HTML escaped, markdown link/emphasis syntax inert."""
    return re.sub(r"([\\`*_\[\]#|~])", r"\\\1", esc(text))


def timings_line(answer: Answer) -> str:
    parts = [f"{k} {v * 1000:.0f} ms" for k, v in answer.timings.items()]
    return f"timings ({answer.mode}): " + " · ".join(parts)


def stage_label(answer: Answer) -> str:
    """What kind of answer the reader is looking at (the first line of the chat message)."""
    if answer.stage == "quote":
        return "📄 **Quoted source** · the model's answer follows once it is verified…"
    if answer.verified:
        return "✓ **Verified answer** (every sentence checked against its cited sources)"
    if answer.withheld:  # the model answered, but its answer was not shown
        return f"❔ **No clear answer** · {md_reason(answer.verification)}"
    if answer.fallback:
        return f"📄 **Quoted source** · model answer not used: {md_reason(answer.fallback)}"
    return "📄 **Quoted source**" if answer.mode == "extractive" and answer.citations else ""


def md_reason(text: str) -> str:
    """A reason shown in Markdown: shortened, HTML-escaped, Markdown marks escaped."""
    return re.sub(r"([\\`*_\[\]#|~])", r"\\\1", html.escape(short(text, 160), quote=False))


def chat_text(answer: Answer, draft: str = "") -> str:
    """A chat message: what it is, the answer, the unverified draft while it streams, the timings."""
    label = stage_label(answer)
    out = f"{label}\n\n{md_safe(answer.text)}" if label else md_safe(answer.text)
    if draft:
        out += f"\n\n> *model drafting, not yet verified:* {md_safe(draft)}"
    return f"{out}\n\n*{md_safe(timings_line(answer))}*"


def llm_status(state: str) -> str:
    """The model's state line under the chat ("warming up" while the server starts)."""
    if state == "warming up":
        return "⏳ The language model is warming up: answers quote their sources until it is ready."
    if state == "ready":
        return "✓ Language model ready: quoted answers are followed by the model's verified answer."
    if state.startswith("unavailable"):
        return f"Language model {md_safe(short(state, 200))}: answers quote their sources."
    return "Answers quote their sources (no language model in use)."


def short(text: str, limit: int = 70) -> str:
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def passage_html(c: Citation) -> str:
    """The passage with the cited sentence wrapped in <mark> (offsets are document offsets)."""
    start, end = c.char_start - c.passage_start, c.char_end - c.passage_start
    if not c.passage or not 0 <= start <= end <= len(c.passage):
        return f"<mark>{esc(c.quote)}</mark>"
    p = c.passage
    return f"{esc(p[:start])}<mark>{esc(p[start:end])}</mark>{esc(p[end:])}"


def card_html(c: Citation, kind: str) -> str:
    """One clickable citation: <summary> opens a source card (name, language, highlighted passage)."""
    name = shown_path(c.source) or c.doc_id
    where = f" · {esc(c.location)}" if c.location else ""
    location = f'<span data-testid="card-location">{esc(c.location)}</span> · ' if c.location else ""
    return (f'<details class="rag-cite" data-testid="{kind}" data-n="{c.n}">'
            f'<summary data-testid="{kind}-{c.n}">[{c.n}] {esc(short(c.title or c.doc_id))} '
            f'<span class="rag-meta">{esc(c.doc_id)}{where} · {esc(c.language)}</span></summary>'
            f'<div class="rag-card" data-testid="source-card">'
            f'<div class="rag-meta"><b data-testid="card-doc">{esc(c.doc_id)}</b> · file '
            f'<span data-testid="card-file">{esc(name)}</span> · '
            f'{location}language <span data-testid="card-lang">{esc(c.language)}</span> · '
            f'characters {c.char_start}–{c.char_end}</div>'
            f'<blockquote data-testid="card-passage">{passage_html(c)}</blockquote></div></details>')


def panel_html(answer: Answer) -> str:
    """Citations (or related reading on abstention), conflicts and timings of one answer."""
    out = [f'<div class="rag-panel" data-testid="answer-panel" data-stage="{esc(answer.stage)}" '
           f'data-verified="{str(answer.verified).lower()}" data-abstained="{str(answer.abstained).lower()}">']
    for conflict in answer.conflicts:
        claims = " vs ".join(f"<b>{esc(v)}</b> [{n}]" for v, n in conflict.claims)
        out.append(f'<div class="rag-conflict" role="alert" data-testid="conflict">⚠ The sources disagree: '
                   f'{claims} <span class="rag-meta">(about “{esc(short(conflict.about, 100))}”)</span></div>')
    if answer.abstained:
        head = "No clear answer" if answer.withheld else "Not found"
        out.append(f"<p><b>{head} in the documents.</b> Closest passages, offered as related reading "
                   "(not citations):</p>")
        out += [card_html(c, "related") for c in answer.related]
    elif answer.citations:
        out.append("<p><b>Citations</b> (click one to open its source):</p>")
        out += [card_html(c, "citation") for c in answer.citations]
    if answer.fallback:
        out.append(f'<p class="rag-meta">LLM answer not used: {esc(answer.fallback)}</p>')
    if answer.mode_reason:
        out.append(f'<p class="rag-meta" data-testid="mode-reason">{esc(answer.mode_reason)}</p>')
    out.append(f'<p class="rag-timings" data-testid="timings">{esc(timings_line(answer))}</p></div>')
    return "".join(out)


def shown_path(source: str) -> str:
    """A document's file as users see it: relative to the working directory when inside it."""
    try:
        return Path(source).resolve().relative_to(Path.cwd().resolve()).as_posix()
    except (ValueError, OSError):
        return source


# ---------------------------------------------------------------------- uploads
def safe_name(name: str) -> str:
    """A file name with no path parts, no leading dot, only [A-Za-z0-9._-], suffix kept (lower case)."""
    base = re.split(r"[\\/]", name)[-1]
    base = unicodedata.normalize("NFKD", base).encode("ascii", "ignore").decode()
    stem, dot, suffix = base.rpartition(".")
    stem, suffix = (stem, suffix) if dot else (base, "")
    stem = re.sub(r"[^A-Za-z0-9_-]+", "_", stem).strip("._-")[:64] or "upload"
    suffix = re.sub(r"[^a-z0-9]", "", suffix.lower())
    return f"{stem}.{suffix}" if suffix else stem


def unique_path(folder: Path, name: str, taken: set[str]) -> Path:
    """``folder/name``, numbered (name-2, name-3 ...) if the file or its document id already exists."""
    stem, suffix = Path(name).stem, Path(name).suffix
    candidate, i = stem, 1
    while (folder / f"{candidate}{suffix}").exists() or candidate in taken:
        i += 1
        candidate = f"{stem}-{i}"
    return folder / f"{candidate}{suffix}"


# ---------------------------------------------------------------------- the app
def build_ui(qa: Assistant, creds: Credentials | None = None) -> gr.Blocks:
    settings = qa.settings
    creds = creds or Credentials()
    uploads = (settings.data_dir / "uploads").resolve()
    modes = qa.available_modes()
    limit = dict(concurrency_id="rag", concurrency_limit=1)  # questions: one at a time (README "Threads")
    ingest = dict(concurrency_id="ingest", concurrency_limit=1)  # uploads, removals: their own worker

    def need_admin(request: gr.Request | None) -> None:
        if not creds.is_admin(getattr(request, "username", None)):
            raise gr.Error("adding and removing documents needs an admin login; this user may only ask")

    def doc_rows() -> list[list[Any]]:
        return [[d.doc_id, d.language, d.chunks, d.chars, d.title[:80]] for d in qa.documents()]

    def doc_updates(note: str) -> tuple:
        ids = [d.doc_id for d in qa.documents()]
        return note, doc_rows(), gr.update(choices=ids), gr.update(choices=ids, value=None)

    def respond(question: str, messages: list, turns: list, languages: list[str], sources: list[str],
                mode: str, top_k: float) -> Iterator[tuple]:
        history = [(t["q"], t["a"]) for t in turns]
        events = qa.stream(question, languages=languages or None, sources=sources or None, top_k=int(top_k),
                           mode=mode, history=history)
        try:
            event = next(events)  # a bad question fails here, before the chat changes
        except RagError as exc:
            gr.Warning(str(exc))
            yield gr.skip(), question, gr.skip(), gr.skip()  # give the question back to edit
            return
        messages = [*messages, {"role": "user", "content": md_safe(question)},
                    {"role": "assistant", "content": "…"}]
        draft, quote = "", None
        try:
            while True:
                if event.type == "retrieved":
                    messages[-1]["content"] = f"searching {len(event.payload)} passages…"
                elif event.type == "token":
                    draft += event.payload
                    messages[-1]["content"] = chat_text(quote, draft) if quote else md_safe(draft)
                elif event.type == "answer" and event.payload.stage == "quote":
                    quote = event.payload  # shown at once; the final answer replaces it
                    messages[-1]["content"] = chat_text(quote)
                    yield messages, gr.skip(), panel_html(quote), gr.skip()
                    event = next(events)
                    continue
                elif event.type == "answer":
                    answer: Answer = event.payload
                    messages[-1]["content"] = chat_text(answer)
                    panel = panel_html(answer)
                    turn = {"q": question, "a": answer.text, "msg": len(messages) - 1, "panel": panel}
                    yield messages, gr.skip(), panel, [*turns, turn]
                    return
                yield messages, gr.skip(), gr.skip(), gr.skip()
                event = next(events)
        except RagError as exc:
            messages[-1]["content"] = f"⚠ {md_safe(str(exc))}"
            yield messages, gr.skip(), "", turns

    def show_turn(turns: list, evt: gr.SelectData) -> str:
        index = evt.index[0] if isinstance(evt.index, list | tuple) else evt.index
        return next((t["panel"] for t in turns if t["msg"] == index), gr.skip())

    def upload(files: list[str] | None, request: gr.Request, progress: gr.Progress = gr.Progress()) -> tuple:  # noqa: B008
        try:
            need_admin(request)
        except gr.Error:
            for f in files or []:
                Path(f).unlink(missing_ok=True)
            raise
        notes, saved = [], []
        taken = {d.doc_id for d in qa.documents()}
        uploads.mkdir(parents=True, exist_ok=True)
        for f in files or []:
            src = Path(f)
            shown = esc(src.name)
            if src.suffix.lower() not in UPLOAD_TYPES:
                notes.append(f"✗ {shown}: type not accepted (only {', '.join(UPLOAD_TYPES)})")
            elif src.stat().st_size > settings.max_upload_mb * 1024 * 1024:
                notes.append(f"✗ {shown}: larger than {settings.max_upload_mb:g} MB (max_upload_mb)")
            else:
                dest = unique_path(uploads, safe_name(src.name), taken)
                shutil.copyfile(src, dest)
                taken.add(dest.stem)
                saved.append(dest)
            src.unlink(missing_ok=True)  # the copy in Gradio's cache is no longer needed
        if saved:
            try:
                report = qa.add_files(saved, progress=lambda stage, done, total: progress((done, total), desc=stage))
            except RagError as exc:
                raise gr.Error(str(exc)) from None
            for r in report.results:
                ok = r.status in ("added", "updated", "unchanged")
                if not ok:
                    Path(r.path).unlink(missing_ok=True)
                detail = f"{r.chunks} chunks, language {r.language}" if ok else r.reason
                if ok and r.note:
                    detail += f"; {r.note}"
                notes.append(f"{'✓' if ok else '✗'} {esc(Path(r.path).name)} → {esc(r.doc_id or '-')}: "
                             f"{r.status} ({esc(detail)})")
        return None, *doc_updates("<br>".join(notes) or "no file chosen")

    def remove(doc_id: str | None, request: gr.Request) -> tuple:
        need_admin(request)
        if not doc_id:
            raise gr.Error("choose a document to remove")
        source = next((d.source for d in qa.documents() if d.doc_id == doc_id), "")
        if not qa.remove(doc_id):
            raise gr.Error(f"no document '{doc_id}' in the index")
        stored = Path(source).resolve()
        if source and stored.parent == uploads:
            stored.unlink(missing_ok=True)
        return doc_updates(f"removed {esc(doc_id)}")

    def ask(question: str, languages: list[str] | None = None, sources: list[str] | None = None,
            top_k: int = 0, mode: str = "") -> dict:
        """Answer one question; returns the answer as a dict (text, citations, conflicts, timings ...)."""
        if mode and mode not in modes:
            raise gr.Error(f"mode must be one of {modes}, got {mode!r}")
        try:
            return qa.ask(question, languages=languages or None, sources=sources or None, top_k=top_k or None,
                          mode=mode or None).to_dict()
        except RagError as exc:
            raise gr.Error(str(exc)) from None

    ids = [d.doc_id for d in qa.documents()]
    with gr.Blocks(title="Ask the documents", delete_cache=(3600, 3600)) as demo:
        turns = gr.State([])
        gr.Markdown("## Ask the documents\nQuestions in English, Português, Español or Deutsch; every answer "
                    "cites the sentences it comes from.")
        with gr.Row():
            with gr.Column(scale=3):
                chat = gr.Chatbot(elem_id="chat", height=380, sanitize_html=True, latex_delimiters=[],
                                  feedback_options=None, label="Chat", buttons=["copy", "copy_all"])
                with gr.Row():
                    box = gr.Textbox(elem_id="question", placeholder="Ask a question…", show_label=False, scale=5)
                    send = gr.Button("Ask", variant="primary", elem_id="ask-btn", scale=1)
                    clear = gr.Button("New chat", elem_id="clear-btn", scale=1)
                status_line = gr.Markdown(llm_status(getattr(qa, "llm_state", "off")), elem_id="llm-status")
                gr.Examples([[q] for q in EXAMPLES], inputs=[box], label="Examples", elem_id="examples")
            with gr.Column(scale=2):
                lang = gr.Dropdown(LANGUAGES, value=[], multiselect=True, label="Only passages in",
                                   elem_id="lang-filter")
                docs = gr.Dropdown(ids, value=[], multiselect=True, label="Only documents", elem_id="doc-filter")
                mode = gr.Radio(modes, value=settings.mode if settings.mode in modes else "auto",
                                label="Answer mode", elem_id="mode")
                top_k = gr.Slider(1, max(20, settings.top_k), value=settings.top_k, step=1,
                                  label="Passages to retrieve", elem_id="top-k")
                panel = gr.HTML(elem_id="answer-panel", padding=True)
        with gr.Accordion("Documents", open=True, elem_id="documents"):
            with gr.Row():
                with gr.Column(scale=2):
                    files = gr.File(file_count="multiple", file_types=list(UPLOAD_TYPES), elem_id="upload",
                                    label=f"Add {' '.join(UPLOAD_TYPES)} (≤ {settings.max_upload_mb:g} MB each)",
                                    height=160)
                    status = gr.HTML(elem_id="doc-status", padding=True)
                    with gr.Row():
                        gone = gr.Dropdown(ids, value=None, label="Remove a document", elem_id="remove-doc",
                                           scale=3)
                        drop = gr.Button("Remove", variant="stop", elem_id="remove-btn", scale=1)
                table = gr.Dataframe(doc_rows(), headers=DOC_HEADERS, interactive=False, elem_id="doc-table",
                                     wrap=True, max_height=320, scale=3,
                                     column_widths=["28%", "12%", "10%", "13%", "37%"])

        asked = gr.State("")
        inputs = [asked, chat, turns, lang, docs, mode, top_k]
        for trigger in (box.submit, send.click):  # the box empties at once, so typing on is safe
            trigger(lambda q: ("", q), [box], [box, asked], queue=False, api_visibility="undocumented").then(
                respond, inputs, [chat, box, panel, turns], api_visibility="undocumented", **limit)
        clear.click(lambda: ([], "", []), None, [chat, panel, turns], api_visibility="undocumented")
        chat.clear(lambda: ("", []), None, [panel, turns], api_visibility="undocumented")
        chat.select(show_turn, [turns], [panel], api_visibility="undocumented")
        files.upload(upload, [files], [files, status, table, docs, gone], api_name="upload",
                     api_visibility="undocumented", **ingest)
        drop.click(remove, [gone], [status, table, docs, gone], api_name="remove", api_visibility="undocumented",
                   **ingest)
        gr.api(ask, api_name="ask", **limit)
        gr.Timer(1.0).tick(lambda: llm_status(getattr(qa, "llm_state", "off")), None, [status_line], queue=False,
                           api_visibility="undocumented", show_progress="hidden")
    return demo


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="app.py", description="Chat UI over the indexed documents.")
    p.add_argument("--host", help="address to bind (default 127.0.0.1; others need --auth)")
    p.add_argument("--port", type=int, help="port (default 7860)")
    p.add_argument("--auth-file", help="credentials file, '<reader|admin> <user> <password>' per line "
                   "(or RAG_AUTH_FILE; also RAG_READER_PASSWORD / RAG_ADMIN_PASSWORD); required beyond loopback")
    p.add_argument("--auth", help=argparse.SUPPRESS)  # refused: argv is visible to every local user
    p.add_argument("--config", help="TOML config file (default ./rag.toml or $RAG_CONFIG)")
    p.add_argument("--data-dir", help="where the index lives (default ./.rag or $RAG_DATA_DIR)")
    args = p.parse_args(argv)
    apply_process_defaults()
    try:
        if args.auth:
            raise RagError("--auth USER:PASSWORD is no longer accepted: the command line is visible to every "
                           "local user (ps); put the credentials in a file named by --auth-file / RAG_AUTH_FILE "
                           "(chmod 600), or in RAG_READER_PASSWORD / RAG_ADMIN_PASSWORD")
        settings = Settings.load(args.config, data_dir=args.data_dir, auth_file=args.auth_file)
        host, port = args.host or settings.host, args.port or settings.port
        creds = load_credentials(settings)
        if not creds.enabled and not is_loopback(host):
            print(f"error: refusing to listen on {host} without authentication; give credentials in a file "
                  "(--auth-file / RAG_AUTH_FILE) or RAG_READER_PASSWORD / RAG_ADMIN_PASSWORD, or bind 127.0.0.1",
                  file=sys.stderr)
            return 2
        tmp = (settings.data_dir / "gradio-tmp").resolve()
        os.environ["GRADIO_TEMP_DIR"] = str(tmp)  # Gradio's upload cache, the only path it serves
        os.environ["GRADIO_EXAMPLES_CACHE"] = str(tmp / "examples")
        os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
        qa = Assistant(settings)
        if not qa.documents() and Path(settings.corpus_dir).is_dir():
            print(f"index is empty: indexing {settings.corpus_dir} ...", flush=True)
            qa.index([settings.corpus_dir])
        qa.warm_up()  # in the background: models (and the local LLM server) load while the UI starts
        demo = build_ui(qa, creds)
    except RagError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    try:
        demo.queue(default_concurrency_limit=1).launch(
            server_name=host, server_port=port, auth=creds.gradio_check if creds.enabled else None, allowed_paths=[],
            max_file_size=int(settings.max_upload_mb * 1024 * 1024), ssr_mode=False, show_error=False, css=CSS,
            footer_links=["api"], prevent_thread_lock=True)
    except OSError as exc:
        print(f"error: cannot listen on {host}:{port} ({exc})", file=sys.stderr)
        return 2
    if settings.openai_api:  # same process and port: http://host:port/v1 (rag/openai_api.py)
        demo.app.include_router(openai_router(qa, require_auth=not is_loopback(host), creds=creds))
        print(f"OpenAI-compatible API on http://{host}:{port}/v1 (models: GET /v1/models)", flush=True)
    demo.block_thread()
    return 0


if __name__ == "__main__":
    sys.exit(main())
