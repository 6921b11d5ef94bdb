"""``python -m eval bench``: every performance figure of the service, side by side, in one run.

    $ python -m eval bench [--quick] [--out runs/bench-DATE] [--skip llm,app] [--only latency]
    $ python -m eval bench --publish docs/PERFORMANCE.md      # and refresh the docs' numbers and chart

Sections (each runs its measurements in fresh subprocesses, see ``eval.bench_probe``):
encode (raw encoder vs indexing pipeline), backends (torch / ONNX / int8 x 1-2 threads),
latency (per-stage p50/p95 at 5 documents, ~10k and ~100k chunks; embedded Chroma and a
`chroma run` server), peer (llama-index quickstart), app (HTTP API: memory, 8 concurrent
questions, two apps on one Chroma server, cross-process freshness), llm (bundled models:
prompt tokens, TTFT, tokens/s; evidence sentences vs whole chunks); and, only when asked for
(``--only corpus``, ``make bench-corpus``, about an hour), corpus: 10,000 real Wikipedia summaries
(``eval.wikicorpus``) indexed for real next to the quickstart, the first question on that store,
and the xquad-dev benchmark with and without them as distractors.

Writes ``results.json``, ``report.md`` and ``bench.png`` into ``--out``. Synthetic stores are
cached in ``--data-root`` (default bench-data/, git-ignored) and reused while their manifest
matches. All figures come from one run on a shared machine: compare ratios within a run.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import subprocess
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from eval import bench_sections as sections
from eval.bench_app import child_env

REPO = Path(__file__).resolve().parents[1]
SECTIONS = ("encode", "backends", "latency", "peer", "app", "llm", "corpus")
DEFAULT_SECTIONS = SECTIONS[:-1]  # corpus (~1 h: 12k real documents indexed twice) runs with --only corpus
BUNDLED_LLM, SMOKE_LLM = "qwen2.5-coder-1.5b-instruct-q4_k_m", "qwen2.5-coder-0.5b-instruct-q4_k_m"


@dataclass
class Bench:
    """One benchmark run: options, where things go, and the results gathered so far."""

    out: Path
    model_dir: Path
    data_root: Path
    quick: bool = False
    seed: int = 0
    sizes: list[int] = field(default_factory=lambda: [10_000, 100_000])
    index_docs: int = 16
    questions: int | None = None
    store_questions: int = 30  # questions per synthetic store (latency section)
    llm_models: list[str] = field(default_factory=lambda: [BUNDLED_LLM, SMOKE_LLM])
    llm_questions: int = 3
    rebuild_data: bool = False
    corpus_docs: int = 10_000  # real documents of the corpus section (eval.wikicorpus)
    results: dict[str, Any] = field(default_factory=dict)

    @property
    def work(self) -> Path:
        return self.out / "work"

    def probe(self, kind: str, params: dict[str, Any], timeout: float = 3600) -> dict[str, Any]:
        """Run one probe in a subprocess; its stderr goes to ``out/logs``."""
        logs = self.out / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        log = logs / f"{kind}-{len(list(logs.glob(kind + '-*')))}.log"
        params = {"model_dir": str(self.model_dir), "questions": self.questions, **params}
        with open(log, "w") as err:
            done = subprocess.run([sys.executable, "-m", "eval.bench_probe", kind, json.dumps(params, default=str)],
                                  cwd=REPO, env=child_env(), stdout=subprocess.PIPE, stderr=err, text=True,
                                  timeout=timeout)
        if done.returncode != 0:
            raise RuntimeError(f"{kind} probe exited {done.returncode}: {log.read_text()[-1500:]}")
        return json.loads(done.stdout.strip().splitlines()[-1])


def machine() -> dict[str, Any]:
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), "unknown")
    mem = next((int(line.split()[1]) for line in Path("/proc/meminfo").read_text().splitlines()
                if line.startswith("MemTotal")), 0)
    return {"cores": os.cpu_count(), "cpu": cpu, "memory_gb": round(mem / 1024**2, 1),
            "load_average_at_start": [round(x, 2) for x in os.getloadavg()]}


def run(bench: Bench, chosen: list[str], command: str) -> int:
    from eval.bench_report import write_report
    from eval.run import git_commit, versions

    started = time.perf_counter()
    bench.out.mkdir(parents=True, exist_ok=True)
    meta = {"date": datetime.now(UTC).isoformat(timespec="seconds"), "command": command, "quick": bench.quick,
            "machine": machine(), "git": git_commit(), "versions": versions(), "seed": bench.seed,
            "sizes": bench.sizes, "sections": chosen}
    bench.results = {"schema": 1, "meta": meta}
    failed = []
    for name in SECTIONS:
        if name not in chosen:
            bench.results[name] = {"skipped": True}
            continue
        print(f"[bench] {name} ...", file=sys.stderr, flush=True)
        t = time.perf_counter()
        try:
            bench.results[name] = RUNNERS[name](bench)
        except Exception as exc:  # noqa: BLE001 - one broken section must not lose the others
            failed.append(name)
            bench.results[name] = {"error": f"{type(exc).__name__}: {exc}"[:3000],
                                   "traceback": traceback.format_exc()[-3000:]}
        bench.results[name]["section_seconds"] = round(time.perf_counter() - t, 1)
        print(f"[bench] {name} done in {time.perf_counter() - t:.0f} s", file=sys.stderr, flush=True)
        (bench.out / "results.json").write_text(json.dumps(bench.results, indent=2, ensure_ascii=False) + "\n")
    meta["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
    meta["duration_seconds"] = round(time.perf_counter() - started, 1)
    meta["failed_sections"] = failed
    (bench.out / "results.json").write_text(json.dumps(bench.results, indent=2, ensure_ascii=False) + "\n")
    write_report(bench.out, bench.results)
    shutil.rmtree(bench.work, ignore_errors=True)
    print(f"[bench] wrote {bench.out}/results.json, report.md, bench.png", file=sys.stderr)
    return 1 if failed else 0


RUNNERS: dict[str, Callable[[Bench], dict[str, Any]]] = {
    "encode": sections.encode, "backends": sections.backends, "latency": sections.latency,
    "peer": sections.peer, "app": sections.app, "llm": sections.llm, "corpus": sections.corpus,
}


def _names(value: str) -> list[str]:
    names = [v.strip() for v in value.split(",") if v.strip()]
    bad = sorted(set(names) - set(SECTIONS))
    if bad:
        raise argparse.ArgumentTypeError(f"unknown section(s) {bad}; choose from {', '.join(SECTIONS)}")
    return names


def _arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", type=Path, help="output directory (default runs/bench-<UTC date-time>)")
    p.add_argument("--quick", action="store_true", help="a small, fast run (smoke test): tiny sizes, 8 questions")
    p.add_argument("--only", type=_names, help=f"only these sections, comma-separated ({','.join(SECTIONS)})")
    p.add_argument("--skip", type=_names, default=[], help="skip these sections, comma-separated")
    p.add_argument("--model-dir", type=Path, help="converted-model cache root (default: settings' model root)")
    p.add_argument("--data-root", type=Path, default=REPO / "bench-data",
                   help="where synthetic corpora and stores are cached (default bench-data/)")
    p.add_argument("--sizes", help="synthetic store sizes in chunks, comma-separated (default 10000,100000)")
    p.add_argument("--index-docs", type=int, help="synthetic documents for the encode section (default 16)")
    p.add_argument("--questions", type=int, help="only the first N gold questions (default all)")
    p.add_argument("--store-questions", type=int, help="questions per synthetic store in latency (default 30)")
    p.add_argument("--llm-questions", type=int, help="questions per LLM (default 3)")
    p.add_argument("--corpus-docs", type=int, help="real documents in the corpus section (default 10000)")
    p.add_argument("--seed", type=int, default=0, help="synthetic corpus seed (default 0)")
    p.add_argument("--rebuild-data", action="store_true", help="rebuild cached synthetic stores")
    p.add_argument("--publish", type=Path, metavar="DOC",
                   help="also put the report into DOC's bench section (docs/PERFORMANCE.md) and its chart beside it")
    p.add_argument("--publish-only", type=Path, metavar="RUN_DIR",
                   help="publish an earlier run's report.md/bench.png into --publish DOC, measure nothing")


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register ``bench`` on ``python -m eval``'s subparsers; dispatch with ``run_args(args, argv)``."""
    p = subparsers.add_parser("bench", help="performance benchmark (JSON + markdown + PNG)",
                              description=__doc__.split("\n")[0])
    _arguments(p)
    return p


def run_args(args: argparse.Namespace, argv: list[str] | None = None) -> int:
    from eval.bench_report import publish, write_report
    from rag.settings import Settings

    if args.publish_only:  # re-render from results.json (the report's format may have changed), then publish
        results = Path(args.publish_only) / "results.json"
        if results.exists():
            write_report(Path(args.publish_only), json.loads(results.read_text(encoding="utf-8")))
        publish(Path(args.publish_only), args.publish or REPO / "docs" / "PERFORMANCE.md")
        return 0

    model_dir = args.model_dir or Settings.load().model_root
    bench = Bench(out=args.out or REPO / "runs" / f"bench-{datetime.now(UTC):%Y%m%d-%H%M%S}",
                  model_dir=Path(model_dir).resolve(), data_root=args.data_root.resolve(), quick=args.quick,
                  seed=args.seed, rebuild_data=args.rebuild_data)
    if args.quick:
        bench.sizes, bench.index_docs, bench.questions = [300], 3, 8
        bench.llm_models, bench.llm_questions, bench.corpus_docs = [SMOKE_LLM], 1, 300
    if args.sizes:
        bench.sizes = [int(x) for x in args.sizes.split(",") if x.strip()]
    bench.index_docs = args.index_docs or bench.index_docs
    bench.corpus_docs = args.corpus_docs or bench.corpus_docs
    bench.questions = args.questions or bench.questions
    bench.llm_questions = args.llm_questions or bench.llm_questions
    bench.store_questions = args.store_questions or bench.store_questions
    chosen = [s for s in (args.only or DEFAULT_SECTIONS) if s not in set(args.skip)]
    command = "python -m eval bench" + (" " + shlex.join(argv) if argv else "")
    if args.model_dir:  # the published command must run anywhere: this machine's cache is not part of it
        command = command.replace(shlex.quote(str(args.model_dir)), "<model cache>")
    code = run(bench, chosen, command)
    if args.publish:
        publish(bench.out, args.publish)
    return code


def main(argv: list[str] | None = None) -> int:
    """``python -m eval bench ARGS`` (``argv`` without "bench"), also ``python -m eval.bench ARGS``."""
    argv = list(sys.argv[1:] if argv is None else argv)
    p = argparse.ArgumentParser(prog="python -m eval bench", description=__doc__.split("\n")[0])
    _arguments(p)
    return run_args(p.parse_args(argv), argv)


if __name__ == "__main__":
    sys.exit(main())
