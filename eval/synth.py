"""Reproducible synthetic corpora for benchmarks, recombined from the sentences of ``corpus/``.

    >>> seeds = seed_sentences(Path("corpus"))                  # 86 sentences, 4 languages
    >>> write_corpus(Path("bench-data/synth-200"), seeds, 200)   # 200 .txt files, same bytes every run
    >>> build_store(settings, seeds, n_chunks=100_000)            # a 100k-chunk store without 1 h of encoding

Document ``i`` depends only on (``seed``, ``i``): it takes 12-20 seed sentences of one language
(en/pt/es/de in turn), shuffled, with every number redrawn (same digit count) and, now and
then, a company name swapped for an invented one, so BM25 sees new terms and figures.

``build_store`` writes through the real code paths: chunk nodes via ``Store.add_nodes``
(llama-index's ``ChromaVectorStore``), every sentence via ``Store.add_sentences``, one registry
record per document, a generation bump, then the real BM25 side index (``Indexer.lexical``).
Only the vectors are derived: each distinct seed sentence is embedded once with the real model;
a sentence's vector is its seed's vector plus small seeded Gaussian noise, a chunk's vector the
normalised mean of its sentences' seed vectors plus the same noise (cosine ~0.97 to the clean
vector). Chunks are 5 consecutive sentences with a stride of 4 (one sentence of overlap; ~200
cl100k tokens, like ``chunk_size=200, chunk_overlap=40``).

CLI (the benchmark runs this in a subprocess to measure the peak RSS of indexing)::

    python -m eval.synth build --chunks 100000 --data-dir bench-data/s100k [--seed 0]
"""

from __future__ import annotations

import argparse
import json
import random
import re
import resource
import sys
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

VERSION = 1
LANGS = ("en", "pt", "es", "de")
CHUNK_SENTENCES, CHUNK_STRIDE = 5, 4
NOISE = 0.0125  # per-dimension sigma: |noise| ~ 0.25 for 384 dims, cosine ~0.97 to the clean vector
NAMES = ("Microsoft", "BlackRock", "Nvidia", "NVIDIA", "xAI", "MGX", "GIP", "NextEra", "Vernova")
INVENTED = ("Norvex", "Quantalis", "Aurelion", "Brightwater", "Kestrel Grid", "Solvane", "Tessaract",
            "Veridia Capital", "Halcyon Power", "Orbis Data", "Lumenfield", "Zephyr Compute")
_NUMBER = re.compile(r"\d+")
REPO = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Seed:
    lang: str
    text: str


@dataclass
class SynthDoc:
    doc_id: str
    lang: str
    title: str
    seeds: list[int]  # seed sentence index of each sentence
    sentences: list[str]  # perturbed sentence texts

    @property
    def text(self) -> str:
        """Title line, then paragraphs of four sentences."""
        paras = [" ".join(self.sentences[i : i + 4]) for i in range(0, len(self.sentences), 4)]
        return "\n\n".join([self.title, *paras]) + "\n"


def seed_sentences(corpus_dir: Path = REPO / "corpus") -> list[Seed]:
    """Every sentence (>= 20 characters) of the corpus, labelled with its document's language."""
    from index.language import detect_language
    from index.sentences import split_sentences

    out: list[Seed] = []
    for path in sorted(Path(corpus_dir).glob("*.txt")):
        text = path.read_text(encoding="utf-8")
        lang = detect_language(text).code
        out += [Seed(lang, s.text) for s in split_sentences(text, language=lang) if len(s.text) >= 20]
    if not {s.lang for s in out} >= set(LANGS):
        raise ValueError(f"{corpus_dir}: need seed sentences in {LANGS}, got {sorted({s.lang for s in out})}")
    return out


def _perturb(text: str, rng: random.Random) -> str:
    text = _NUMBER.sub(lambda m: str(rng.randrange(10 ** (len(m.group()) - 1), 10 ** len(m.group())))
                       if len(m.group()) > 1 else str(rng.randrange(1, 10)), text)
    if rng.random() < 0.3:
        present = [n for n in NAMES if n in text]
        if present:
            text = text.replace(rng.choice(present), rng.choice(INVENTED))
    return text


def generate(seeds: list[Seed], n_docs: int, seed: int = 0, start: int = 0) -> Iterator[SynthDoc]:
    """Documents ``start`` .. ``start + n_docs - 1``; each depends only on (seed, its number)."""
    by_lang = {lang: [i for i, s in enumerate(seeds) if s.lang == lang] for lang in LANGS}
    for i in range(start, start + n_docs):
        rng = random.Random(f"synth-{VERSION}-{seed}-{i}")
        lang = LANGS[i % len(LANGS)]
        picks = rng.sample(by_lang[lang], min(len(by_lang[lang]), rng.randint(12, 20)))
        yield SynthDoc(f"synth_{i:06d}", lang, f"Synthetic report {i:06d} ({lang})", picks,
                       [_perturb(seeds[j].text, rng) for j in picks])


def write_corpus(out: Path, seeds: list[Seed], n_docs: int, seed: int = 0) -> list[Path]:
    """``n_docs`` .txt files in ``out`` (rewritten only when their bytes differ)."""
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for doc in generate(seeds, n_docs, seed):
        path = out / f"{doc.doc_id}.txt"
        data = doc.text.encode("utf-8")
        if not path.is_file() or path.read_bytes() != data:
            path.write_bytes(data)
        paths.append(path)
    return paths


def pipeline_texts(paths: list[Path], chunk_size: int = 200, chunk_overlap: int = 40) -> list[str]:
    """The texts indexing embeds for these files: every chunk, then every sentence, per document."""
    from index.chunking import Chunker
    from index.readers import read_file
    from index.sentences import split_sentences

    chunker, out = Chunker(chunk_size, chunk_overlap), []
    for path in paths:
        text = read_file(path).text
        out += [c.text for c in chunker.split(text)] + [s.text for s in split_sentences(text)]
    return out


def _unit(v: np.ndarray) -> np.ndarray:
    return v / np.maximum(np.linalg.norm(v, axis=-1, keepdims=True), 1e-12)


def _doc_parts(doc: SynthDoc, text: str):
    """(sentence spans, chunk spans) with exact offsets into ``text``."""
    from index.chunking import Span

    spans, pos = [], 0
    for s in doc.sentences:
        pos = text.index(s, pos)
        spans.append(Span(s, pos, pos + len(s)))
        pos += len(s)
    chunks = []
    for a in range(0, max(1, len(spans) - CHUNK_SENTENCES + CHUNK_STRIDE), CHUNK_STRIDE):
        b = min(a + CHUNK_SENTENCES, len(spans))
        lo, hi = spans[a].char_start, spans[b - 1].char_end
        chunks.append((a, b, Span(text[lo:hi], lo, hi)))
    return spans, chunks


def build_store(settings, seeds: list[Seed], n_chunks: int, seed: int = 0, batch_docs: int = 500,
                progress: bool = False) -> dict:
    """Insert ~``n_chunks`` synthetic chunks (and their sentences, registry, BM25) into the store."""
    from llama_index.core.schema import NodeRelationship, RelatedNodeInfo, TextNode

    from index.chunking import chunk_id
    from index.store import DocRecord
    from rag.components import embedder_id, get_embedder, get_indexer, get_store

    t0 = time.perf_counter()
    store, embed = get_store(settings), get_embedder(settings)
    eid = embedder_id(settings)
    base = np.asarray(embed.get_text_embedding_batch([s.text for s in seeds]), np.float32)
    timings = {"seed_embed": time.perf_counter() - t0}
    noise = np.random.default_rng(seed)
    t = time.perf_counter()
    n_docs = chunks = sentences = 0
    while chunks < n_chunks:
        nodes, s_ids, s_texts, s_vecs, s_metas, recs = [], [], [], [], [], []
        for doc in generate(seeds, batch_docs, seed, start=n_docs):
            if chunks >= n_chunks:
                break
            text, source = doc.text, f"synth/{doc.doc_id}.txt"
            h = f"synth{VERSION}-{seed}-{doc.doc_id}"
            spans, parts = _doc_parts(doc, text)
            vecs = _unit(base[doc.seeds] + noise.normal(0, NOISE, (len(spans), base.shape[1])))
            for sp, v in zip(spans, vecs):
                s_ids.append("s:" + chunk_id(doc.doc_id, sp))
                s_texts.append(sp.text)
                s_vecs.append(v.tolist())
                s_metas.append({"doc_id": doc.doc_id, "doc_hash": h, "language": doc.lang,
                                "char_start": sp.char_start, "char_end": sp.char_end})
            for k, (a, b, sp) in enumerate(parts):
                vec = _unit(_unit(base[doc.seeds[a:b]].mean(0)) + noise.normal(0, NOISE, base.shape[1]))
                meta = {"doc_id": doc.doc_id, "source": source, "title": doc.title, "language": doc.lang,
                        "doc_language": doc.lang, "char_start": sp.char_start, "char_end": sp.char_end,
                        "chunk_index": k, "doc_hash": h, "embedder": eid}
                node = TextNode(id_=chunk_id(doc.doc_id, sp), text=sp.text, metadata=meta, embedding=vec.tolist(),
                                start_char_idx=sp.char_start, end_char_idx=sp.char_end,
                                excluded_embed_metadata_keys=list(meta), excluded_llm_metadata_keys=list(meta))
                node.relationships[NodeRelationship.SOURCE] = RelatedNodeInfo(node_id=doc.doc_id)
                nodes.append(node)
            recs.append(DocRecord(doc.doc_id, source, doc.title, doc.lang, h, len(parts), len(text), 0.0))
            n_docs, chunks, sentences = n_docs + 1, chunks + len(parts), sentences + len(spans)
        store.add_nodes(nodes)
        store.add_sentences(s_ids, s_texts, s_vecs, s_metas)
        store.registry.upsert(ids=[r.doc_id for r in recs], embeddings=[[1.0]] * len(recs),
                              metadatas=[asdict(r) for r in recs], documents=[""] * len(recs))
        if progress:
            print(f"\r  synth: {chunks}/{n_chunks} chunks", end="", file=sys.stderr, flush=True)
    if progress:
        print(file=sys.stderr)
    timings["insert"] = time.perf_counter() - t
    store.bump_generation()
    t = time.perf_counter()
    get_indexer(settings, store).lexical(rebuild=True)
    timings["bm25"] = time.perf_counter() - t
    timings["total"] = time.perf_counter() - t0
    return {"version": VERSION, "seed": seed, "documents": n_docs, "chunks": store.count(), "sentences": sentences,
            "distinct_seed_sentences": len(seeds), "noise_sigma": NOISE, "store_bytes": store.size_bytes(),
            "seconds": {k: round(v, 2) for k, v in timings.items()},
            "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m eval.synth", description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="command", required=True)
    b = sub.add_parser("build", help="build a synthetic store of --chunks chunks; prints JSON")
    b.add_argument("--chunks", type=int, required=True)
    b.add_argument("--data-dir", type=Path, required=True)
    b.add_argument("--model-dir", type=Path, help="converted model cache (default: data dir)")
    b.add_argument("--seed", type=int, default=0)
    b.add_argument("--corpus", type=Path, default=REPO / "corpus")
    w = sub.add_parser("corpus", help="write --docs synthetic .txt documents into --out")
    w.add_argument("--docs", type=int, required=True)
    w.add_argument("--out", type=Path, required=True)
    w.add_argument("--seed", type=int, default=0)
    w.add_argument("--corpus", type=Path, default=REPO / "corpus")
    args = p.parse_args(argv)
    seeds = seed_sentences(args.corpus)
    if args.command == "corpus":
        print(len(write_corpus(args.out, seeds, args.docs, args.seed)))
        return 0
    from rag.settings import Settings

    settings = Settings.load(data_dir=args.data_dir, model_dir=args.model_dir or args.data_dir)
    print(json.dumps(build_store(settings, seeds, args.chunks, args.seed, progress=True)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
