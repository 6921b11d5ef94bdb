"""``rag`` command line: index, status, remove, ask, config, serve, eval.

    $ rag index corpus/            # build or update the index (progress bar, summary, --json)
    $ rag ask "Who advises AIP?"   # answer with numbered citations

Errors from the project surface here as one line on stderr and a non-zero exit code.
"""

from __future__ import annotations

import argparse
import json
import sys

from rag.errors import RagError
from rag.settings import Settings


def _settings(args: argparse.Namespace) -> Settings:
    over = {"data_dir": getattr(args, "data_dir", None), "chroma_url": getattr(args, "chroma_url", None)}
    return Settings.load(getattr(args, "config", None), **{k: v for k, v in over.items() if v})


def _progress_bar(enabled: bool):
    if not enabled:
        return None, lambda: None
    from tqdm import tqdm

    bars: dict[str, tqdm] = {}

    def update(stage: str, done: int, total: int) -> None:
        bar = bars.get(stage)
        if bar is None:
            bar = bars[stage] = tqdm(total=total, desc=f"{stage:>6}", unit="item", file=sys.stderr, leave=False)
        bar.total = total
        bar.n = done
        bar.refresh()

    def close() -> None:
        for bar in bars.values():
            bar.close()

    return update, close


def cmd_index(args: argparse.Namespace) -> int:
    from rag.assistant import Assistant

    settings = _settings(args).for_batch_indexing()
    qa = Assistant(settings)
    if args.rebuild:
        _rebuild(settings)
        qa = Assistant(settings)
    paths = args.paths or [str(settings.corpus_dir)]
    qa.store.lease.on_wait = lambda note: print(note, file=sys.stderr, flush=True)
    progress, close = _progress_bar(not args.json and sys.stderr.isatty())
    try:
        report = qa.index(paths, progress)
    finally:
        close()
    if args.json:
        print(json.dumps(report.to_dict(), indent=2, ensure_ascii=False))
    else:
        for r in report.results:
            if r.status in ("failed", "skipped", "duplicate", "removed") or r.reason:
                print(f"  {r.status:>9}  {_printable(r.path)}: {r.reason}")
            elif r.note:
                print(f"  {'note':>9}  {_printable(r.path)}: {r.note}")
        counts = ", ".join(f"{v} {k}" for k, v in sorted(report.counts().items()))
        langs = ", ".join(f"{r.doc_id}={r.language}" for r in report.results if r.language)
        print(f"indexed {len(report.results)} file(s): {counts or 'nothing to do'}")
        if langs:
            print(f"languages: {langs}")
        if report.repaired:
            print(f"repaired after an interrupted run: {', '.join(report.repaired)}")
        if report.lease_from:
            print(f"took over the write lease of a writer that stopped without releasing it: {report.lease_from}")
        print(f"{report.chunks_embedded} chunks embedded in {report.seconds:.1f}s; "
              f"store now holds {report.documents} documents, {report.chunks} chunks")
    return 1 if report.failed else 0


def _printable(text: str) -> str:
    """A path for the terminal: control characters and bidi marks shown as escapes, never obeyed."""
    import unicodedata

    return "".join(ch if unicodedata.category(ch) not in ("Cc", "Cf") else ascii(ch)[1:-1] for ch in text)


def _rebuild(settings: Settings) -> None:
    """Start the store over: drop the collections (or the whole local store if it is unreadable)."""
    import shutil

    from rag import components

    try:
        components.get_store(settings).drop()
    except RagError:
        if settings.chroma_url:
            raise
        shutil.rmtree(settings.data_dir / "chroma", ignore_errors=True)
    shutil.rmtree(settings.data_dir / "bm25", ignore_errors=True)


def cmd_status(args: argparse.Namespace) -> int:
    from rag.assistant import Assistant

    st = Assistant(_settings(args)).status()
    if args.json:
        print(json.dumps(st, indent=2, ensure_ascii=False))
        return 0
    print(f"store:      {st['store']} (collection {st['collection']}, {st['store_bytes'] / 1e6:.1f} MB)")
    print(f"embedding:  {st['embedding_model']} ({st['embedding_backend']})")
    print(f"documents:  {st['documents']}  chunks: {st['chunks']}")
    print("chunks per language: " + ", ".join(f"{k}={v}" for k, v in st["chunks_per_language"].items()))
    print("dictionaries: " + (", ".join(st["dictionaries"]) or
                              "none (questions match words of their own language only; install with `make dicts`)"))
    for d in st["docs"]:
        print(f"  {d['doc_id']:<28} {d['language']:<3} {d['chunks']:>4} chunks  {d['source']}")
    return 0


def cmd_remove(args: argparse.Namespace) -> int:
    from rag.assistant import Assistant

    qa = Assistant(_settings(args))
    missing = [d for d in args.doc_ids if not qa.remove(d)]
    for d in missing:
        print(f"no document '{d}' in the index (see `rag status`)", file=sys.stderr)
    if not args.json:
        print(f"removed {len(args.doc_ids) - len(missing)} document(s)")
    else:
        print(json.dumps({"removed": [d for d in args.doc_ids if d not in missing], "missing": missing}))
    return 1 if missing else 0


def cmd_ask(args: argparse.Namespace) -> int:
    from rag.assistant import Assistant

    qa = Assistant(_settings(args))
    if not qa.documents():  # an empty store would only ever answer "not found"
        raise RagError(f"nothing is indexed yet in {qa.store.where}: run `rag index <files or folders>` "
                       "(e.g. `rag index corpus`) first")
    kwargs = {"mode": args.mode, "languages": args.lang or None, "sources": args.source or None, "top_k": args.top_k}
    if args.json:
        print(json.dumps(qa.ask(args.question, **kwargs).to_dict(), indent=2, ensure_ascii=False))
        return 0
    answer = None
    for event in qa.stream(args.question, **kwargs):
        if event.type == "token":
            print(event.payload, end="", flush=True)
        elif event.type == "answer" and event.payload.stage == "quote":
            print(f"quoted source (the model's answer follows once verified):\n{event.payload.text}\n", flush=True)
        elif event.type == "answer":
            answer = event.payload
    print(f"\n{'verified answer' if answer.verified else 'answer'}:\n{answer.text}\n")
    label = "related passages (not citations)" if answer.abstained else "citations"
    items = answer.related if answer.abstained else answer.citations
    if items:
        print(f"{label}:")
    for c in items:
        where = f"{c.location}, " if c.location else ""
        print(f"  [{c.n}] {c.doc_id} ({c.language}) {where}chars {c.char_start}-{c.char_end}: “{c.quote}”")
    note = f"mode={answer.mode} verified={answer.verified} language={answer.language}"
    if answer.mode_reason:
        note += f" ({answer.mode_reason})"
    if answer.fallback:
        note += f" fallback: {answer.fallback}"
    print(f"\n{note}\ntimings: " + ", ".join(f"{k}={v * 1000:.0f}ms" for k, v in answer.timings.items()))
    return 0


def cmd_config(args: argparse.Namespace) -> int:
    print(json.dumps(_settings(args).public(), indent=2, default=str))
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    import app

    argv = []
    for flag, value in (("--host", args.host), ("--port", args.port), ("--auth", args.auth),
                        ("--auth-file", args.auth_file), ("--config", args.config), ("--data-dir", args.data_dir)):
        if value:
            argv += [flag, str(value)]
    if args.chroma_url:
        import os

        os.environ["RAG_CHROMA_URL"] = args.chroma_url
    return app.main(argv)


def cmd_eval(args: argparse.Namespace) -> int:
    from eval.__main__ import main as eval_main

    return eval_main(args.rest)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="rag", description="Multilingual QA over your documents, with citations.")
    p.add_argument("--config", help="TOML config file (default ./rag.toml or $RAG_CONFIG)")
    p.add_argument("--data-dir", help="where the index lives (default ./.rag)")
    p.add_argument("--chroma-url", help="use a `chroma run` server instead of the embedded store")
    sub = p.add_subparsers(dest="command", required=True)

    s = sub.add_parser("index", help="build or update the index")
    s.add_argument("paths", nargs="*", help="files or folders (default: the corpus folder)")
    s.add_argument("--rebuild", action="store_true", help="drop the index and start over")
    s.add_argument("--json", action="store_true")
    s.set_defaults(func=cmd_index)

    s = sub.add_parser("status", help="what is indexed")
    s.add_argument("--json", action="store_true")
    s.set_defaults(func=cmd_status)

    s = sub.add_parser("remove", help="remove documents by id")
    s.add_argument("doc_ids", nargs="+")
    s.add_argument("--json", action="store_true")
    s.set_defaults(func=cmd_remove)

    s = sub.add_parser("ask", help="answer a question with citations")
    s.add_argument("question")
    s.add_argument("-m", "--mode", choices=["auto", "extractive", "local", "openai"])
    s.add_argument("-l", "--lang", action="append", help="only passages in this language (repeatable)")
    s.add_argument("-s", "--source", action="append", help="only this document id (repeatable)")
    s.add_argument("-k", "--top-k", type=int)
    s.add_argument("--json", action="store_true")
    s.set_defaults(func=cmd_ask)

    s = sub.add_parser("config", help="print the settings in force (secrets masked)")
    s.set_defaults(func=cmd_config)

    s = sub.add_parser("serve", help="start the chat UI")
    s.add_argument("--host", help="address to bind (default: settings host, 127.0.0.1)")
    s.add_argument("--port", type=int, help="port (default: settings port, 7860)")
    s.add_argument("--auth-file", help="credentials file (or RAG_AUTH_FILE, RAG_READER_PASSWORD, RAG_ADMIN_PASSWORD); "
                   "required when binding beyond 127.0.0.1")
    s.add_argument("--auth", help=argparse.SUPPRESS)  # refused by the app: argv is visible to every local user
    s.set_defaults(func=cmd_serve)

    s = sub.add_parser("eval", help="evaluation runs (same as python -m eval)")
    s.add_argument("rest", nargs=argparse.REMAINDER)
    s.set_defaults(func=cmd_eval)
    return p


def main(argv: list[str] | None = None) -> int:
    from rag.defaults import apply_process_defaults

    apply_process_defaults()  # offline, no telemetry, 1 thread (README "Threads"); kept if set
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except RagError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
