"""Probe (not a test): how often does a Chroma read fail with "Error finding id" while another
thread deletes rows, and does the same read succeed when retried? See docs/RELIABILITY.md.

    python tests/probe_chroma_delete_race.py 400      # rounds of upsert 40 rows + delete the previous 40
"""

from __future__ import annotations

import sys
import tempfile
import threading
import time

import chromadb
import numpy as np


def main(rounds: int) -> None:
    client = chromadb.PersistentClient(path=tempfile.mkdtemp())
    col = client.get_or_create_collection("race", metadata={"hnsw:space": "cosine"}, embedding_function=None)
    rng = np.random.default_rng(0)
    col.add(ids=[f"base{i}" for i in range(300)], embeddings=rng.normal(size=(300, 384)).tolist(),
            metadatas=[{"doc_id": f"d{i % 20}"} for i in range(300)], documents=[f"text {i}" for i in range(300)])
    stop = threading.Event()
    reads, errors, retried = [0], [], []

    def write() -> None:
        for r in range(rounds):
            col.upsert(ids=[f"r{r}-{i}" for i in range(40)], embeddings=rng.normal(size=(40, 384)).tolist(),
                       metadatas=[{"doc_id": "q"}] * 40, documents=["t"] * 40)
            if r:
                col.delete(ids=[f"r{r - 1}-{i}" for i in range(40)])
        stop.set()

    def read(seed: int) -> None:
        q = np.random.default_rng(seed)
        ops = {"query": lambda: col.query(query_embeddings=q.normal(size=(1, 384)).tolist(), n_results=40,
                                          include=["metadatas", "documents", "distances"]),
               "get": lambda: col.get(where={"doc_id": {"$in": ["q", "d1"]}},
                                      include=["documents", "metadatas", "embeddings"])}
        while not stop.is_set():
            for name, op in ops.items():
                reads[0] += 1
                try:
                    op()
                except Exception as exc:  # noqa: BLE001
                    errors.append(f"{name}: {str(exc)[:80]}")
                    for attempt in range(1, 4):
                        time.sleep(0.05 * attempt)
                        try:
                            op()
                            retried.append(attempt)
                            break
                        except Exception:  # noqa: BLE001, S112
                            continue

    threads = [threading.Thread(target=write)] + [threading.Thread(target=read, args=(k,)) for k in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    print(f"reads {reads[0]}, failed {len(errors)}: {sorted(set(errors))}; "
          f"retries that succeeded (attempt no.): {retried}")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 400)
