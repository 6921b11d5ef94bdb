"""What writing the sentence collection costs in Chroma, by how the rows are laid out.

    $ python -m eval.store_bench --rows 12000

Writes ``--rows`` sentence-like rows (384-dim unit vectors, the metadata keys the indexer writes,
text of ~150 characters) into fresh on-disk collections, 500 rows per upsert, the way
``Store.add_sentences`` does, and prints the seconds for each layout: text as the Chroma document
(which Chroma also indexes for full-text search) or as a metadata field, and the default HNSW
graph or the sparse one the sentence collection is made with (it is never searched by vector).
"""

from __future__ import annotations

import argparse
import random
import tempfile
import time
from pathlib import Path

_WORDS = "the of and a to in is was for on as with by at from that which this an are be".split()


def _write(root: Path, name: str, rows: int, vecs, hnsw: dict, text_as_metadata: bool) -> float:
    import chromadb
    from chromadb.config import Settings as ChromaSettings

    client = chromadb.PersistentClient(str(root / name), settings=ChromaSettings(anonymized_telemetry=False))
    coll = client.create_collection("sentences", metadata={"hnsw:space": "cosine", **hnsw}, embedding_function=None)
    texts = [" ".join(random.Random(i).choices(_WORDS, k=25)) + f" {i}." for i in range(rows)]
    metas = [{"doc_id": f"d{i // 4}", "doc_hash": "0" * 16, "language": "en", "char_start": i, "char_end": i + 150,
              "page": 0, "line": 1, "is_heading": False} for i in range(rows)]
    if text_as_metadata:
        metas = [{**m, "text": t} for m, t in zip(metas, texts)]
    t = time.perf_counter()
    for i in range(0, rows, 500):
        j = slice(i, i + 500)
        coll.upsert(ids=[f"s{k}" for k in range(i, min(rows, i + 500))], embeddings=vecs[j], metadatas=metas[j],
                    documents=None if text_as_metadata else texts[j])
    return time.perf_counter() - t


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m eval.store_bench", description=__doc__.split("\n")[0])
    p.add_argument("--rows", type=int, default=12000)
    args = p.parse_args(argv)
    import numpy as np

    from index.store import _SENTENCE_HNSW

    vecs = np.random.default_rng(0).standard_normal((args.rows, 384)).astype("float32")
    vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
    layouts = [("text as document, default HNSW (before)", {}, False),
               ("text as document, sparse HNSW", _SENTENCE_HNSW, False),
               ("text as metadata, default HNSW", {}, True),
               ("text as metadata, sparse HNSW (the store's layout)", _SENTENCE_HNSW, True)]
    with tempfile.TemporaryDirectory(prefix="store-bench-") as tmp:
        for n, (label, hnsw, as_meta) in enumerate(layouts):
            took = _write(Path(tmp), f"c{n}", args.rows, vecs, hnsw, as_meta)
            print(f"{label}: {took:.2f} s for {args.rows} rows ({args.rows / took:.0f} rows/s)", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
