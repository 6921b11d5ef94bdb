"""``python -m eval`` (also ``rag eval``): run, compare, gate, calibrate, bench.

    $ python -m eval run --gold eval/gold/aip.jsonl --mode extractive --out runs/x [--baselines] [--gate]
    $ python -m eval compare runs/a runs/b
    $ python -m eval gate runs/x
    $ python -m eval run --bench xquad-dev --baselines        (the public benchmark, its own data dir)
    $ python -m eval calibrate --bench xquad-dev --write rag/models/ranker.json
    $ python -m eval check-fit runs/check-p --write rag/models/check.json   (rag/check.py, eval/checkfit.py)
    $ python -m eval bench [--quick] [--only latency,peer] [--out runs/bench-x]   (docs/PERFORMANCE.md)

Exit codes: 0 ok, 1 the gate failed, 2 bad input (malformed gold file, bad setting, missing run).
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path

from eval.gold import DEFAULT_GOLD


def _overrides(pairs: list[str] | None) -> dict[str, str]:
    out = {}
    for pair in pairs or []:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            from eval.run import EvalError

            raise EvalError(f"--set expects key=value (a Settings field), got {pair!r}")
        out[key.strip()] = value.strip()
    return out


def _folds(text: str | None) -> list[int] | None:
    if not text:
        return None
    try:
        return [int(f) for f in text.split(",") if f.strip()]
    except ValueError:
        from eval.run import EvalError

        raise EvalError(f"--folds expects whole numbers separated by commas, got {text!r}") from None


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--gold", type=Path, default=DEFAULT_GOLD, help=f"gold JSONL file (default {DEFAULT_GOLD})")
    p.add_argument("--bench", help="a shipped benchmark (eval/benchmarks/NAME, e.g. xquad-dev): its gold file, "
                                   "its corpus indexed into <data_dir>/bench/NAME")
    p.add_argument("--data-dir", help="index location (default: settings' data_dir); with --bench, the data "
                                      "directory whose bench/NAME holds the benchmark's own store")
    p.add_argument("--chroma-url", help="a `chroma run` server instead of the embedded store")
    p.add_argument("--config", help="TOML config file (default ./rag.toml or $RAG_CONFIG)")
    p.add_argument("--set", dest="overrides", action="append", metavar="KEY=VALUE",
                   help="override any setting, e.g. --set top_k=10 (repeatable)")
    p.add_argument("--index", nargs="+", action="extend", metavar="PATH",
                   help="index these files/folders first (default: corpus/ when the store is empty)")
    p.add_argument("--limit", type=int, help="only the first N questions")
    p.add_argument("--ids", help="only these question ids, comma-separated")
    p.add_argument("--folds", help="only questions of these folds (gold field 'fold'), comma-separated, e.g. 0")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m eval", description="Evaluate the RAG chain on a gold set.")
    sub = p.add_subparsers(dest="command", required=True)

    s = sub.add_parser("run", help="ask every gold question, score, write metrics/results/report")
    _common(s)
    s.add_argument("--mode", choices=["extractive", "llm", "auto"], default="extractive",
                   help="extractive (default); llm = local LLM, or the OpenAI-compatible server if configured")
    s.add_argument("--out", type=Path, help="output directory (default runs/<UTC time>-<mode>)")
    s.add_argument("--workers", type=int, default=1, help="parallel questions (threads; default 1)")
    s.add_argument("--baselines", action="store_true",
                   help="also score dense-only, BM25-only and the llama-index quickstart (off by default)")
    s.add_argument("--gate", action="store_true", help="then apply the CI gate (exit 1 below the floors)")
    s.add_argument("--floors", type=Path, help="floors file for --gate (default eval/ci_floors.json)")
    s.add_argument("--seed", type=int, default=0, help="bootstrap seed (default 0)")
    s.add_argument("--resamples", type=int, default=1000, help="bootstrap resamples (default 1000)")

    s = sub.add_parser("compare", help="what changed between two runs, per metric and per question")
    s.add_argument("run_a", type=Path)
    s.add_argument("run_b", type=Path)
    s.add_argument("--json", action="store_true")

    s = sub.add_parser("gate", help="exit 1 when a run falls below the floors in eval/ci_floors.json")
    s.add_argument("run_dir", type=Path)
    s.add_argument("--floors", type=Path, help="floors file (default eval/ci_floors.json)")

    s = sub.add_parser("calibrate", help="fit the evidence ranker and abstention model by folds")
    _common(s)
    s.add_argument("--write", type=Path, help="write the ranker file here (then set ranker_path to it; "
                                              "rag/models/ranker.json is the shipped one)")
    s.add_argument("--tune-questions", action="store_true",
                   help="also fit a question tuning (eval/qtune.py) on these questions, per fold, into "
                        "<--write>.questions.npz (minutes on 2 cores; needs --write)")
    s.add_argument("--question-tuning", metavar="PATH|none",
                   help="the question tuning whose vectors choose evidence (default: the ranker file in "
                        "force's; none = the bundled model's own question vectors)")
    s.add_argument("--json", action="store_true")

    s = sub.add_parser("check-fit", help="fit the answer check's threshold (rag/check.py) by folds on a run "
                                         "made with --set answer_check=on --set answer_check_threshold=0")
    s.add_argument("run_dir", type=Path)
    s.add_argument("--write", type=Path, help="write the check file here (rag/models/check.json is the shipped one)")
    s.add_argument("--json", action="store_true")

    from eval.bench import add_parser

    add_parser(sub)
    return p


def cmd_run(args: argparse.Namespace, argv: list[str]) -> int:
    from eval.compare import FLOORS, gate
    from eval.report import summary
    from eval.run import RunOptions, run

    opts = RunOptions(gold=args.gold, mode=args.mode, out=args.out, limit=args.limit,
                      ids=[i.strip() for i in args.ids.split(",") if i.strip()] if args.ids else None,
                      workers=args.workers, data_dir=args.data_dir, chroma_url=args.chroma_url, config=args.config,
                      index=args.index, overrides=_overrides(args.overrides), baselines=args.baselines,
                      bench=args.bench, folds=_folds(args.folds),
                      progress=not args.no_progress, seed=args.seed, resamples=args.resamples,
                      command="python -m eval " + shlex.join(argv))
    result = run(opts)
    print(summary(result.metrics, result.out))
    if args.gate:
        verdict = gate(result.out, args.floors or FLOORS)
        print("\n".join(verdict.lines))
        return 0 if verdict.ok else 1
    return 0


def _question_tuning(args: argparse.Namespace, settings) -> Path | None:
    """The question tuning file calibration uses (see ``--tune-questions``, ``--question-tuning``)."""
    from eval.run import EvalError
    from index.embedder import BUNDLED_ID
    from rag.ranker import Ranker, path_for

    bundled = settings.embed_model == BUNDLED_ID and settings.sentence_vectors == "separate"
    if args.tune_questions:
        if not args.write:
            raise EvalError("--tune-questions writes the tuning next to the ranker file: give --write too")
        if not bundled:
            raise EvalError("--tune-questions tunes the bundled model's questions against its separate "
                            f"sentence vectors; this configuration has {settings.embed_model} with "
                            f"sentence_vectors={settings.sentence_vectors}")
        return args.write.resolve().with_suffix(".questions.npz")
    if args.question_tuning:
        if args.question_tuning.lower() == "none":
            return None
        path = Path(args.question_tuning)
        if not path.is_file():
            raise EvalError(f"--question-tuning {path}: no such file (give a .npz written by --tune-questions, "
                            "or none)")
        return path.resolve()
    if not bundled:
        return None
    tuning = Ranker.load(path_for(settings.ranker_path, settings.sentence_vectors)).question_tuning
    return Path(tuning) if tuning else None


def cmd_calibrate(args: argparse.Namespace, argv: list[str]) -> int:
    from eval.calibrate import calibrate, render
    from eval.gold import load_gold
    from eval.run import RunOptions, apply_bench, load_settings, prepare, select

    opts = apply_bench(RunOptions(gold=args.gold, data_dir=args.data_dir, chroma_url=args.chroma_url,
                                  config=args.config, index=args.index, overrides=_overrides(args.overrides),
                                  bench=args.bench))
    load_gold(opts.gold)
    settings = load_settings(opts)
    tuning = _question_tuning(args, settings)  # before indexing: a wrong option fails at once
    qa = prepare(settings, opts.index)
    ids = [i.strip() for i in args.ids.split(",") if i.strip()] if args.ids else None
    items = select(load_gold(opts.gold, {d.doc_id for d in qa.documents()}), args.limit, ids, _folds(args.folds))
    data = calibrate(qa, items, opts.gold, "python -m eval " + shlex.join(argv), progress=not args.no_progress,
                     tuning=tuning, tune=args.tune_questions)
    if args.write:
        if "question_tuning" in data:  # relative to the ranker file when beside it, so both move together
            where = Path(data["question_tuning"]["path"])
            if where.parent == args.write.resolve().parent:
                data["question_tuning"]["path"] = where.name
        args.write.parent.mkdir(parents=True, exist_ok=True)
        args.write.write_text(json.dumps(data, indent=1) + "\n", encoding="utf-8")
        print(f"wrote {args.write}", file=sys.stderr)
    print(json.dumps(data["meta"]["report"], indent=2) if args.json else render(data))
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point for ``python -m eval`` and ``rag eval``; returns the exit code."""
    from rag.defaults import apply_process_defaults
    from rag.errors import RagError

    apply_process_defaults()
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    try:
        if args.command == "run":
            return cmd_run(args, argv)
        if args.command == "calibrate":
            return cmd_calibrate(args, argv)
        if args.command == "check-fit":
            from eval.checkfit import fit, render

            data = fit(args.run_dir, "python -m eval " + shlex.join(argv))
            if args.write:
                args.write.parent.mkdir(parents=True, exist_ok=True)
                args.write.write_text(json.dumps(data, indent=1) + "\n", encoding="utf-8")
                print(f"wrote {args.write}", file=sys.stderr)
            print(json.dumps(data["report"], indent=2) if args.json else render(data))
            return 0
        if args.command == "bench":
            from eval.bench import run_args

            return run_args(args, argv[1:])
        if args.command == "compare":
            from eval.compare import compare

            cmp = compare(args.run_a, args.run_b)
            print(json.dumps(cmp.to_dict(), indent=2, ensure_ascii=False) if args.json else cmp.text())
            return 0
        from eval.compare import FLOORS, gate

        verdict = gate(args.run_dir, args.floors or FLOORS)
        print("\n".join(verdict.lines))
        return 0 if verdict.ok else 1
    except RagError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
