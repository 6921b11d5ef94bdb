"""One evaluation run: ask every gold question, score, write metrics.json, results.jsonl, report.md.

    >>> result = run(RunOptions(gold=DEFAULT_GOLD, mode="extractive", out=Path("runs/x"), limit=8))
    >>> result.metrics["overall"]["answer_accuracy"]["value"]

Reproducible: questions are asked in gold order and results sorted by id (workers only
parallelise); the run records its settings (secrets masked), model ids, corpus fingerprint, git
commit, package versions and date in ``metrics.json["meta"]``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import platform
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from eval.gold import BENCH_DIR, GoldItem, benchmark, load_gold, with_subkinds
from eval.metrics import RESAMPLES, SEED, add_retrieval, aggregate, score_answer
from eval.patterns import patterns
from rag.errors import RagError
from rag.settings import Settings

PACKAGES = ("rag-cite", "llama-index-core", "llama-index-vector-stores-chroma", "chromadb", "ranx", "numpy",
            "torch", "transformers", "sentence-transformers", "lingua-language-detector", "xllamacpp")
REPO = Path(__file__).resolve().parents[1]


class EvalError(RagError):
    """Bad evaluation input (unknown --ids, bad --set, missing run directory or floors)."""


@dataclass
class RunOptions:
    """What ``python -m eval run`` was asked to do (see ``--help``)."""

    gold: Path
    mode: str = "extractive"  # extractive | llm | auto
    out: Path | None = None
    limit: int | None = None
    ids: list[str] | None = None
    workers: int = 1
    data_dir: str | None = None
    chroma_url: str | None = None
    config: str | None = None
    index: list[str] | None = None
    overrides: dict[str, str] = field(default_factory=dict)
    baselines: bool = False
    bench: str | None = None  # a shipped benchmark: its gold file, corpus and own data directory
    folds: list[int] | None = None  # only questions of these folds
    progress: bool = True
    seed: int = SEED
    resamples: int = RESAMPLES
    command: str = ""


@dataclass
class RunResult:
    out: Path
    metrics: dict[str, Any]
    rows: dict[str, list[dict[str, Any]]]  # system -> results rows ("full" first)


def resolve_mode(mode: str, settings: Settings) -> str:
    """CLI mode -> answer mode: ``llm`` is "openai" when a server is configured, else "local".

    >>> resolve_mode("llm", Settings())
    'local'
    """
    if mode == "llm":
        return "openai" if settings.llm_base_url else "local"
    if mode not in ("extractive", "auto", "local", "openai"):
        raise EvalError(f"mode must be extractive, llm or auto, got {mode!r}")
    return mode


def apply_bench(opts: RunOptions) -> RunOptions:
    """``--bench NAME``: its gold file, its corpus indexed first, and a data directory of its own
    (``<data_dir>/bench/NAME``, sharing the converted models of ``data_dir``). ``--data-dir`` names
    the user's data directory, never the store to fill: the benchmark's documents never go into
    the store the user's own documents are in. A data directory (``--data-dir`` or ``--set
    data_dir``) that already is a benchmark store (``.../bench/NAME``) is used as it is."""
    if not opts.bench or opts.data_dir and opts.gold == BENCH_DIR / opts.bench / "gold.jsonl":
        return opts  # none asked, or applied already

    b = benchmark(opts.bench)
    given = {k: v for k, v in opts.overrides.items() if k in ("data_dir", "model_dir")}
    if opts.data_dir:
        given["data_dir"] = opts.data_dir
    if "data_dir" in given and Path(given["data_dir"]).parts[-2:] == ("bench", b.name):
        given["data_dir"] = str(Path(given["data_dir"]).parents[1])
    base = Settings.load(opts.config, **given)
    data_dir = str(base.data_dir / "bench" / b.name)
    overrides = {**{k: v for k, v in opts.overrides.items() if k != "data_dir"}, "model_dir": str(base.model_root)}
    return dataclasses.replace(opts, gold=b.gold, index=opts.index or [str(b.corpus)], data_dir=data_dir,
                               overrides=overrides)


def load_settings(opts: RunOptions) -> Settings:
    """Settings from config/env, then --data-dir/--chroma-url, then --set overrides, then the mode."""
    over: dict[str, Any] = {"data_dir": opts.data_dir, "chroma_url": opts.chroma_url, **opts.overrides}
    settings = Settings.load(opts.config, **{k: v for k, v in over.items() if v is not None})
    return dataclasses.replace(settings, mode=resolve_mode(opts.mode, settings)).validate()


def select(items: list[GoldItem], limit: int | None, ids: Sequence[str] | None,
           folds: Sequence[int] | None = None) -> list[GoldItem]:
    """The gold items to run: ``ids`` (in file order) if given, those of ``folds``, then the first ``limit``."""
    if folds:
        items = [i for i in items if i.fold in set(folds)]
        if not items:
            raise EvalError(f"--folds {','.join(map(str, folds))}: no gold question has that fold")
    if ids:
        unknown = sorted(set(ids) - {i.id for i in items})
        if unknown:
            raise EvalError(f"--ids: no gold question with id {', '.join(unknown)}")
        items = [i for i in items if i.id in set(ids)]
    return items[:limit] if limit else items


def prepare(settings: Settings, index_paths: Sequence[str] | None) -> Any:
    """The Assistant, after indexing ``index_paths`` (or the corpus folder when the store is empty)."""
    from rag.assistant import Assistant

    qa = Assistant(settings)
    paths = list(index_paths or [])
    if not paths and not qa.documents():
        paths = [str(settings.corpus_dir)]
    if paths:  # indexed on every core; the questions then run with the settings' own threads
        print(f"indexing {', '.join(paths)} into {settings.data_dir} ...", file=sys.stderr)
        report = Assistant(settings.for_batch_indexing()).index(paths)
        for r in report.failed:
            print(f"  failed {r.path}: {r.reason}", file=sys.stderr)
    return qa


def fitted_on(settings: Settings, gold: Path) -> bool:
    """Was the ranker in force fitted on this very gold file (so each fold must be evaluated with
    the weights fitted without it)?"""
    from rag.ranker import Ranker, path_for

    sha = hashlib.sha256(Path(gold).read_bytes()).hexdigest()
    return Ranker.load(path_for(settings.ranker_path, settings.sentence_vectors)).fitted_on.startswith(sha)


def fold_asker(settings: Settings, cross_fit: bool) -> Callable[[GoldItem], Any]:
    """item -> Answer; with ``cross_fit``, item of fold k is answered by weights fitted without k."""
    from rag.assistant import Assistant

    if not cross_fit:
        qa = Assistant(settings)
        return lambda item: qa.ask(item.question, mode=settings.mode)
    per_fold: dict[int, Any] = {}

    def ask(item: GoldItem) -> Any:
        from eval.calibrate import fold_of

        f = fold_of(item)
        if f not in per_fold:
            per_fold[f] = Assistant(dataclasses.replace(settings, ranker_holdout=f))
        return per_fold[f].ask(item.question, mode=settings.mode)

    return ask


def ask_all(ask: Callable[[GoldItem], Any], items: Sequence[GoldItem], workers: int, label: str,
            progress: bool) -> list[dict[str, Any]]:
    """Score every item; exceptions become "error" rows. Rows come back sorted by id.

    One unscored warm-up question first, so loading models and side indexes is not counted as
    the first question's latency.
    """
    from tqdm import tqdm

    if items:
        try:
            ask(items[0])
        except Exception:  # noqa: BLE001 - the scored pass records the error
            pass

    def one(item: GoldItem) -> dict[str, Any]:
        try:
            return score_answer(item, ask(item))
        except Exception as exc:  # noqa: BLE001 - one broken question must not lose the run
            return score_answer(item, None, error=f"{type(exc).__name__}: {exc}")

    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool, \
            tqdm(total=len(items), desc=f"{label:>10}", unit="q", file=sys.stderr, disable=not progress) as bar:
        futures = [pool.submit(one, item) for item in items]
        for _ in as_completed(futures):
            bar.update(1)
    return add_retrieval(sorted((f.result() for f in futures), key=lambda r: r["id"]))


def corpus_fingerprint(records: Sequence[Any]) -> str:
    """sha256 over the sorted "doc_id content_hash" lines of the indexed documents."""
    lines = sorted(f"{r.doc_id} {r.content_hash}" for r in records)
    return hashlib.sha256("\n".join(lines).encode()).hexdigest()


def git_commit() -> dict[str, Any]:
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True, timeout=10)
        dirty = subprocess.run(["git", "status", "--porcelain"], cwd=REPO, capture_output=True, text=True,
                               timeout=10)
        if head.returncode == 0:
            return {"commit": head.stdout.strip(), "dirty": bool(dirty.stdout.strip())}
    except (OSError, subprocess.SubprocessError):
        pass
    return {"commit": "unknown", "dirty": None}


def versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = "not installed"
    return out


def model_ids(settings: Settings) -> dict[str, Any]:
    from rag.components import embedder_id

    llm: str | None = None
    if settings.mode == "openai" or (settings.mode == "auto" and settings.llm_base_url):
        llm = f"{settings.llm_model} @ {settings.llm_base_url}"
    elif settings.mode in ("local", "auto"):
        llm = Path(settings.llm_model_path).name if settings.llm_model_path else settings.llm_bundled
    return {"embed_model": settings.embed_model, "embed_backend": settings.embed_backend,
            "embedder_id": embedder_id(settings), "llm": llm, "reranker": settings.reranker_model or None}


def run(opts: RunOptions) -> RunResult:
    """Validate the gold file, index if needed, ask, score, write all outputs; return the metrics."""
    from eval.baselines import DESCRIPTIONS, baseline_systems
    from eval.report import write_report

    started = time.perf_counter()
    opts = apply_bench(opts)
    load_gold(opts.gold)  # syntax first: a broken file stops the run before any model loads
    settings = load_settings(opts)
    qa = prepare(settings, opts.index)
    records = qa.documents()
    items = select(load_gold(opts.gold, {r.doc_id for r in records}), opts.limit, opts.ids, opts.folds)
    if opts.bench:  # its meta.jsonl's subkinds, for the breakdown (read before any question is asked)
        items = with_subkinds(items, benchmark(opts.bench).subkinds())
    out = opts.out or REPO / "runs" / f"{datetime.now(UTC):%Y%m%d-%H%M%S}-{opts.mode}"
    out.mkdir(parents=True, exist_ok=True)
    print(f"{len(items)} questions, mode {settings.mode}, {opts.workers} worker(s) -> {out}", file=sys.stderr)

    cross = fitted_on(settings, opts.gold)
    if cross:
        print("the ranker was fitted on this gold file: each fold is answered with the weights fitted "
              "without it", file=sys.stderr)
    rows = {"full": ask_all(fold_asker(settings, cross), items, opts.workers, "full", opts.progress)}
    if opts.baselines:
        for name, (ask, close) in baseline_systems(settings, records, out, cross).items():
            try:
                rows[name] = ask_all(ask, items, opts.workers, name, opts.progress)
            finally:
                close()
    try:  # a diagnostic: if the store cannot say, the answers already scored are kept without it
        where = patterns(qa.store, items)
    except Exception as exc:  # noqa: BLE001
        print(f"no breakdown by pattern (eval/patterns.py): {type(exc).__name__}: {exc}", file=sys.stderr)
        where = None
    for system in rows.values() if where is not None else ():
        for r in system:
            r["pattern"] = where.get(r["id"], "other")

    gold_bytes = Path(opts.gold).read_bytes()
    meta = {"date": datetime.now(UTC).isoformat(timespec="seconds"), "command": opts.command,
            "gold": str(opts.gold), "gold_sha256": hashlib.sha256(gold_bytes).hexdigest(),
            "questions": len(items), "benchmark": opts.bench, "folds": opts.folds, "cross_fitted": cross,
            "limit": opts.limit, "ids": opts.ids, "mode": opts.mode,
            "answer_mode": settings.mode, "workers": opts.workers, "seed": opts.seed, "resamples": opts.resamples,
            "settings": settings.public(), "models": model_ids(settings),
            "corpus": {"fingerprint": corpus_fingerprint(records), "documents": len(records),
                       "doc_ids": [r.doc_id for r in records]},
            "git": git_commit(), "versions": versions(), "systems": {k: DESCRIPTIONS[k] for k in rows}}
    metrics: dict[str, Any] = {"schema": 1, "meta": meta, **aggregate(rows["full"], opts.seed, opts.resamples),
                               "baselines": {name: {"description": DESCRIPTIONS[name],
                                                    **aggregate(r, opts.seed, opts.resamples)}
                                             for name, r in rows.items() if name != "full"}}
    meta["duration_seconds"] = round(time.perf_counter() - started, 1)
    write_rows(out / "results.jsonl", rows["full"])
    for name, r in rows.items():
        if name != "full":
            write_rows(out / "baselines" / f"{name}.jsonl", r)
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    write_report(out, metrics, rows)
    return RunResult(out=out, metrics=metrics, rows=rows)


def write_rows(path: Path, rows: list[dict[str, Any]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")


def read_rows(path: Path) -> list[dict[str, Any]]:
    """Rows of a results.jsonl file."""
    return [json.loads(line) for line in Path(path).read_text(encoding="utf-8").splitlines() if line.strip()]
