"""Benchmark probes, each run in its own subprocess by ``eval.bench`` (fresh threads, own RSS).

    $ python -m eval.bench_probe encode '{"data_dir": "...", "model_dir": "...", "docs": "..."}'

Every probe takes one JSON object of parameters and prints one JSON object as its last stdout
line. ``serve`` is different: a long-lived worker (settings from RAG_* variables) reading JSON
requests from stdin, one per line, used for cross-process tests (tests/test_scaleout.py).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from eval.bench_app import proc_stats

Params = dict[str, Any]


def _settings(p: Params, **over: Any):
    from rag.settings import Settings

    keys = {k: p[k] for k in ("data_dir", "model_dir", "chroma_url", "embed_backend", "threads") if p.get(k)}
    return Settings.load(mode="extractive", **keys, **over)


def _assistant(p: Params):
    """An Assistant over ``p``'s store, after indexing ``p["index"]`` when the store is empty."""
    from rag.assistant import Assistant

    qa = Assistant(_settings(p))
    if p.get("index") and not qa.documents():
        report = qa.index([Path(p["index"])])
        if report.failed:
            raise RuntimeError(f"indexing {p['index']} failed: {report.failed}")
    return qa


def _gold(p: Params) -> list:
    from eval.gold import DEFAULT_GOLD, load_gold

    items = load_gold(p.get("gold") or DEFAULT_GOLD)
    return items[: p["questions"]] if p.get("questions") else items


def _pct(values: list[float]) -> dict[str, float]:
    a = np.asarray(values, dtype=float) * 1000
    return {"p50_ms": round(float(np.percentile(a, 50)), 2), "p95_ms": round(float(np.percentile(a, 95)), 2),
            "n": len(values)} if len(a) else {"n": 0}


def _retrieval(rows: list[dict]) -> dict[str, float]:
    from eval.metrics import add_retrieval

    scored = [r["scores"]["retrieval"] for r in add_retrieval(rows) if r["scores"]["retrieval"]]
    return {k: round(float(np.mean([s[k] for s in scored])), 4) for k in ("recall@5", "hit@1", "mrr")} | {
        "questions": len(scored)}


def probe_encode(p: Params) -> dict:
    """Raw SentenceTransformer.encode on exactly the texts the pipeline embeds, vs the pipeline."""
    from index.embedder import count_tokens
    from index.readers import read_file
    from rag import components

    settings = _settings(p)
    emb = components.get_embedder(settings)
    indexer = components.get_indexer(settings)
    n_chunks, texts = 0, []
    for path in sorted(Path(p["docs"]).glob("*.txt")):  # the pipeline's own order: per doc, chunks then sentences
        doc = read_file(path)
        lang, nodes = indexer._nodes(doc)
        n_chunks += len(nodes)
        texts += [n.text for n in (*nodes, *indexer._sentences(doc, lang))]
    st, batch = emb._model, settings.embed_batch_size
    tokens = count_tokens(emb, texts)
    st.encode(texts[:batch], prompt_name="text", batch_size=batch)  # warm-up

    def raw() -> float:  # sentence-transformers sorts all texts by length, so batches pad little
        t = time.perf_counter()
        st.encode(texts, prompt_name="text", batch_size=batch, normalize_embeddings=True)
        return time.perf_counter() - t

    def in_pipeline_order() -> float:  # document order, chunks and sentences mixed (before the length sort)
        t = time.perf_counter()
        for i in range(0, len(texts), batch):
            st.encode(texts[i : i + batch], prompt_name="text", batch_size=batch, normalize_embeddings=True)
        return time.perf_counter() - t

    raw1 = raw()
    t = time.perf_counter()
    report = indexer.index_paths([Path(p["docs"])])
    pipeline = time.perf_counter() - t
    raw2 = raw()
    ordered = in_pipeline_order()
    limit = (raw1 + raw2) / 2
    rate = {"texts": len(texts), "chunks": n_chunks, "sentences": len(texts) - n_chunks, "tokens": tokens}
    return {**rate, "documents": report.documents, "embedded": report.chunks_embedded,
            "seconds": {"raw_encode": [round(raw1, 2), round(raw2, 2)], "pipeline": round(pipeline, 2),
                        "encode_unsorted_batches": round(ordered, 2)},
            "raw_texts_per_s": round(len(texts) / limit, 1), "raw_tokens_per_s": round(tokens / limit, 1),
            "pipeline_texts_per_s": round(len(texts) / pipeline, 1),
            "pipeline_tokens_per_s": round(tokens / pipeline, 1),
            "unsorted_texts_per_s": round(len(texts) / ordered, 1),
            "ratio_pipeline_to_raw": round(limit / pipeline, 3),
            "ratio_unsorted_batches_to_raw": round(limit / ordered, 3)}


def _burner(seconds: float = 300) -> subprocess.Popen:
    """A process spinning one core (bounded in time): what another user of the machine looks like."""
    code = f"import time\nend = time.time() + {seconds}\nwhile time.time() < end: pass"
    return subprocess.Popen([sys.executable, "-c", code])


def _query_latency(emb, questions: list[str]) -> tuple[list[float], list]:
    lat, vecs = [], []
    for q in questions:
        t = time.perf_counter()
        vecs.append(emb.get_query_embedding(q))
        lat.append(time.perf_counter() - t)
    return lat, vecs


def probe_backend(p: Params) -> dict:
    """Throughput, single-query latency (and recall@5 on the corpus) for one backend and thread count."""
    from index.embedder import count_tokens
    from rag import components

    settings = _settings(p)
    emb = components.get_embedder(settings)
    texts = json.loads(Path(p["texts"]).read_text())
    questions = [i.question for i in _gold(p)]
    emb.get_text_embedding_batch(texts[:32])
    for q in questions[:3]:
        emb.get_query_embedding(q)
    t = time.perf_counter()
    emb.get_text_embedding_batch(texts)
    took = time.perf_counter() - t
    lat, vecs = _query_latency(emb, questions)
    burner = _burner()
    try:
        time.sleep(0.5)
        busy, _ = _query_latency(emb, questions)
    finally:
        burner.kill()
        burner.wait()
    if p.get("vectors"):
        np.save(p["vectors"], np.asarray(vecs, np.float32))
    out = {"backend": settings.embed_backend, "threads": settings.threads, "texts": len(texts),
           "texts_per_s": round(len(texts) / took, 1), "tokens_per_s": round(count_tokens(emb, texts) / took, 1),
           "query": _pct(lat), "query_one_core_busy": _pct(busy)}
    if p.get("recall"):
        from eval.metrics import score_answer
        from rag.assistant import Assistant

        qa = Assistant(settings)
        t = time.perf_counter()
        qa.index([Path(p["corpus"])])
        out["index_seconds"] = round(time.perf_counter() - t, 2)
        rows = [score_answer(i, qa.ask(i.question, mode="extractive")) for i in _gold(p)]
        out["retrieval"] = _retrieval(rows)
        out["answer_accuracy"] = round(float(np.mean([r["scores"]["correct"] for r in rows])), 4)
    return out


def probe_latency(p: Params) -> dict:
    """Per-stage latency of extractive answers over one store (embedded or a Chroma server)."""
    from eval.metrics import score_answer

    qa = _assistant(p)
    items = _gold(p)
    t = time.perf_counter()
    qa.ask(items[0].question, mode="extractive")  # loads the model, the BM25 index and the vocabulary
    first = time.perf_counter() - t
    qa.ask(items[1].question, mode="extractive")
    stages: dict[str, list[float]] = {}
    rows = []
    docs = {d.doc_id for d in qa.documents()}
    known = all(set(i.sources) <= docs for i in items)  # gold sources exist: recall means something
    server = p.get("server_pid")
    server_cpu = proc_stats(server)["cpu_s"] if server else 0.0
    cpu, wall = time.process_time(), time.perf_counter()
    for item in items:
        answer = qa.ask(item.question, mode="extractive")
        for k, v in answer.timings.items():
            stages.setdefault(k, []).append(v)
        stages.setdefault("retrieval", []).append(sum(answer.timings.get(k, 0.0) for k in
                                                      ("embed", "dense", "bm25", "fuse")))
        rows.append(score_answer(item, answer))
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    extra = {}
    if server:
        now = proc_stats(server)
        extra = {"server_cpu_s_per_query": round((now["cpu_s"] - server_cpu) / len(items), 4),
                 "server_peak_rss_mb": now["peak_rss_mb"]}
    extra["floor"] = _floor(qa, items[:10])
    return {**extra, "chunks": qa.store.count(), "documents": len(qa.documents()), "first_query_s": round(first, 2),
            "stages": {k: _pct(v) for k, v in stages.items()}, "questions": len(items),
            "client_cpu_s_per_query": round(cpu / len(items), 4), "wall_s_per_query": round(wall / len(items), 4),
            "retrieval": _retrieval(rows) if known else None}


def _floor(qa, items: list) -> dict:
    """The retrieval reads again, straight on the chunk collection (no committed-version filter):
    what Chroma and our BM25 cost by themselves, to tell their cost from ours."""
    store, lex, emb = qa.store, qa._current_lexical(), qa.engine.embed_model
    out: dict[str, list[float]] = {"dense": [], "bm25_search": [], "get_nodes": []}
    for item in items:
        vec = emb.get_query_embedding(item.question)
        t = time.perf_counter()
        store.chunks.query(query_embeddings=[vec], n_results=20, include=["documents", "metadatas", "distances"])
        out["dense"].append(time.perf_counter() - t)
        t = time.perf_counter()
        hits = lex.search(item.question, 20, "en")
        out["bm25_search"].append(time.perf_counter() - t)
        t = time.perf_counter()
        store.chunks.get(ids=[h[0] for h in hits], include=["documents", "metadatas"])
        out["get_nodes"].append(time.perf_counter() - t)
    return {k: _pct(v) for k, v in out.items()}


def probe_llm(p: Params) -> dict:
    """Prompt tokens, TTFT and tokens/s of the bundled models: evidence sentences vs whole chunks."""
    from eval.match import answer_correct
    from rag.llm import LLMGenerator
    from rag.llm_server import LocalLLMServer, assemble_model
    from rag.types import Evidence

    qa = _assistant(p)
    settings = qa.settings
    chosen, langs = [], set()
    for item in _gold(p):  # the first answerable question of each language, up to `llm_questions`
        if item.answerable and item.lang not in langs and len(chosen) < p.get("llm_questions", 3):
            chosen.append(item)
            langs.add(item.lang)
    prompts = []
    for item in chosen:
        events = {e.type: e.payload for e in qa.stream(item.question, mode="extractive")}
        chunks = [Evidence(n=i, doc_id=h.doc_id, source=h.source, title=h.title, chunk_id=h.chunk_id,
                           language=h.language, text=h.text, char_start=h.char_start, char_end=h.char_end,
                           score=h.score) for i, h in enumerate(events["retrieved"], 1)]
        prompts.append((item, events["answer"].language, {"sentences": events["evidence"], "chunks": chunks}))
    out: dict[str, Any] = {"questions": [i.id for i in chosen], "threads": settings.llm_threads, "models": {}}
    for name in p["models"]:
        path = assemble_model(name, Path(p["model_root"]))
        runs = []
        with LocalLLMServer(path, threads=settings.llm_threads, ctx=settings.llm_ctx) as srv:
            gen = LLMGenerator(srv.base_url, path.stem, api_key=srv.api_key, timeout=600,
                               max_tokens=settings.llm_max_tokens)
            gen.generate(chosen[0].question, prompts[0][1], prompts[0][2]["sentences"][:1])  # warm-up
            for item, lang, variants in prompts:
                for variant, evidence in variants.items():
                    d = gen.generate(item.question, lang, evidence)
                    decode = max(d.seconds - d.ttft, 1e-6)
                    runs.append({"id": item.id, "variant": variant, "evidence": len(evidence),
                                 "prompt_tokens": d.prompt_tokens, "completion_tokens": d.completion_tokens,
                                 "ttft_s": round(d.ttft, 2), "seconds": round(d.seconds, 2),
                                 "decode_tok_per_s": round(max(d.completion_tokens - 1, 0) / decode, 2),
                                 "correct": answer_correct(d.text, item.answers), "answer": d.text[:200]})
        out["models"][name] = {"start_seconds": round(srv.start_seconds, 1), "runs": runs}
    return out


def probe_peer(p: Params) -> dict:
    """The llama-index quickstart over the same documents (see eval.peer)."""
    from eval.peer import run_peer

    qa = _assistant(p)
    return run_peer(qa.settings, _gold(p), qa.documents())


def _dir_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in Path(path).rglob("*") if f.is_file())


def _raw_seconds(emb, texts: list[str], batch: int, by_tokens: bool = False) -> float:
    """The raw encoder on ``texts`` in batches of ``batch``, longest first: by characters, the
    order ``SentenceTransformer.encode`` uses, or ``by_tokens``, the pipeline's order."""
    from index.embedder import token_lengths

    lengths = token_lengths(emb, texts) if by_tokens else [len(t) for t in texts]
    texts = [t for _, t in sorted(zip(lengths, texts, strict=True), key=lambda p: -p[0])]
    t = time.perf_counter()
    for i in range(0, len(texts), batch):
        emb.get_text_embedding_batch(texts[i : i + batch])
    return time.perf_counter() - t


def probe_corpus_index(p: Params) -> dict:
    """Index real folders (``p["paths"]``) into an empty store for real: wall time, texts/s against
    the raw encoder at the same thread count, store size and peak RSS.

    The raw encoder runs on every text of a random sample of the files (what indexing them
    embeds: chunks and sentences), once just before the run and once just after, in
    sentence-transformers' order (longest first by characters) and in the pipeline's (by tokens,
    the stricter limit); each rate is the mean of its two runs, so a machine whose speed drifts during the run (this VM's does, by 15%
    between runs) biases neither way. The time the run itself spends inside the encoder is
    recorded too: the rest is the pipeline's own cost."""
    import random

    from index.pipeline import discover, read_stable
    from rag import components
    from rag.assistant import Assistant

    settings = _settings(p)
    qa = Assistant(settings)
    emb = components.get_embedder(settings)
    emb.get_text_embedding_batch(["warm-up"])
    files, _ = discover([Path(x) for x in p["paths"]])
    random.Random(0).shuffle(files)
    indexer, texts = components.get_indexer(settings, qa.store), []
    for i, (_, path) in enumerate(files):
        if len(texts) >= int(p.get("sample", 3000)):
            break
        texts += indexer.texts_of(read_stable(path, 1 << 30, f"sample-{i}"))
    batch = settings.embed_batch_size
    before = _raw_seconds(emb, texts, batch), _raw_seconds(emb, texts, batch, by_tokens=True)
    inside = [0.0]
    real = type(emb).get_text_embedding_batch

    def timed(self, *args, **kwargs):
        t = time.perf_counter()
        try:
            return real(self, *args, **kwargs)
        finally:
            inside[0] += time.perf_counter() - t

    type(emb).get_text_embedding_batch = timed
    try:
        t = time.perf_counter()
        report = qa.index([Path(x) for x in p["paths"]])
        seconds = time.perf_counter() - t
    finally:
        type(emb).get_text_embedding_batch = real
    after = _raw_seconds(emb, texts, batch), _raw_seconds(emb, texts, batch, by_tokens=True)
    if report.failed:
        raise RuntimeError(f"{len(report.failed)} files failed, e.g. {report.failed[0]}")
    store = qa.store
    n_chunks, n_sents = store.chunks.count(), store.sentences.count()
    raw_rate, pipe_rate = 2 * len(texts) / (before[0] + after[0]), (n_chunks + n_sents) / seconds
    tok_rate = 2 * len(texts) / (before[1] + after[1])
    return {"documents": report.documents, "chunks": n_chunks, "sentences": n_sents, "texts": n_chunks + n_sents,
            "seconds": round(seconds, 1), "pipeline_texts_per_s": round(pipe_rate, 1),
            "raw_sample": len(texts), "raw_texts_per_s": round(raw_rate, 1),
            "raw_before_texts_per_s": round(len(texts) / before[0], 1),
            "raw_after_texts_per_s": round(len(texts) / after[0], 1),
            "ratio_pipeline_to_raw": round(pipe_rate / raw_rate, 3),
            "raw_token_sorted_texts_per_s": round(tok_rate, 1),
            "ratio_pipeline_to_raw_token_sorted": round(pipe_rate / tok_rate, 3),
            "encoder_seconds": round(inside[0], 1), "encoder_share": round(inside[0] / seconds, 3),
            "chunk_texts_per_s": round(n_chunks / seconds, 1), "threads": settings.threads,
            "backend": settings.embed_backend, "store_mb": round(_dir_bytes(settings.data_dir) / 1e6, 1),
            "peak_rss_mb": proc_stats(os.getpid())["peak_rss_mb"]}


def probe_corpus_quickstart(p: Params) -> dict:
    """The llama-index quickstart indexing the same folders: reading them with our readers, then
    ``VectorStoreIndex.from_documents`` over a fresh Chroma with the same embedder and threads."""
    from eval.baselines import QuickstartBaseline
    from index.pipeline import discover
    from index.readers import read_file
    from rag import components

    settings = _settings(p)
    components.get_embedder(settings).get_text_embedding_batch(["warm-up"])
    t = time.perf_counter()
    docs = []
    for _, path in discover([Path(x) for x in p["paths"]])[0]:
        docs.append((str(path), str(path), "", read_file(path).text))
    read = time.perf_counter() - t
    qs = QuickstartBaseline(settings, docs, workdir=Path(p["work"]))
    try:
        chunks = qs._client.get_collection("quickstart").count()
    finally:
        qs.close()
    return {"documents": len(docs), "chunks": chunks, "read_seconds": round(read, 1),
            "index_seconds": round(qs.build_seconds, 1), "seconds": round(read + qs.build_seconds, 1),
            "chunk_texts_per_s": round(chunks / qs.build_seconds, 1), "peak_rss_mb": proc_stats(os.getpid())["peak_rss_mb"]}


def probe_corpus_questions(p: Params) -> dict:
    """A fresh process on an indexed store. With ``p["warm"]``, as the app does: build the
    Assistant and run ``warm_up`` (models, store, side indexes, one whole chain), then the first
    question; without, the first question pays for all that. Then per-stage p50/p95 over
    ``p["gold"]``'s questions. Times count from the probe's start (imports included)."""
    t0 = time.perf_counter()
    from rag.assistant import Assistant

    qa = Assistant(_settings(p))
    items = _gold(p)
    if p.get("warm"):
        qa.warm_up(background=False)
    ready = time.perf_counter() - t0
    t = time.perf_counter()
    first = qa.ask(items[0].question)
    first_s = time.perf_counter() - t
    stages: dict[str, list[float]] = {}
    for item in items[1:]:
        tm = qa.ask(item.question).timings
        tm = {**tm, "retrieval": sum(tm.get(k, 0.0) for k in ("embed", "dense", "bm25", "fuse"))}
        for k, v in tm.items():
            stages.setdefault(k, []).append(v)
    return {"warm_up": bool(p.get("warm")), "start_to_ready_s": round(ready, 2), "first_question_s": round(first_s, 3),
            "start_to_first_answer_s": round(ready + first_s, 2),
            "first_question_timings_ms": {k: round(v * 1000, 1) for k, v in first.timings.items()},
            "stages": {k: _pct(v) for k, v in stages.items()}, "questions": len(items) - 1,
            "peak_rss_mb": proc_stats(os.getpid())["peak_rss_mb"]}


def serve() -> int:
    """Long-lived worker over one Assistant (RAG_* settings): JSON requests in, JSON replies out."""
    from rag.assistant import Assistant

    qa = Assistant()
    try:
        qa.ask("AIP", mode="extractive")  # loads the model and side indexes
    except Exception:  # noqa: BLE001 - an empty store is fine for a worker that will index
        pass
    print(json.dumps({"ready": True, "pid": os.getpid()}), flush=True)
    for line in sys.stdin:
        if not line.strip():
            continue
        req = json.loads(line)
        try:
            if req["op"] == "ask":
                a = qa.ask(req["question"], mode="extractive")
                reply = {"ok": True, "text": a.text, "abstained": a.abstained,
                         "retrieved": [h.doc_id for h in a.retrieved], "cited": [c.doc_id for c in a.citations]}
            elif req["op"] == "index":
                reply = {"ok": True, **qa.add_files(req["paths"]).to_dict()}
            else:
                reply = {"ok": True, "documents": [d.doc_id for d in qa.documents()]}
        except Exception as exc:  # noqa: BLE001 - reported to the driving process
            reply = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
        print(json.dumps(reply), flush=True)
    return 0


PROBES = {"encode": probe_encode, "backend": probe_backend, "latency": probe_latency, "peer": probe_peer,
          "llm": probe_llm, "corpus_index": probe_corpus_index, "corpus_quickstart": probe_corpus_quickstart,
          "corpus_questions": probe_corpus_questions}


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["serve"]:
        return serve()
    if len(argv) != 2 or argv[0] not in PROBES:
        print(f"usage: python -m eval.bench_probe {{{','.join(PROBES)}}} JSON | serve", file=sys.stderr)
        return 2
    print(json.dumps(PROBES[argv[0]](json.loads(argv[1]))), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
