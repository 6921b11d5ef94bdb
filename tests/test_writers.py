"""Writers that cannot lose each other's work (issue 15, row 2): the store's write lease.

Real parts: two `rag index` processes against one real `chroma run` server on 127.0.0.1, the
real embedding model; one writer is killed with SIGKILL half-way through its batch."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from conftest import ROOT, run_cli

from index.lease import WriteLease
from index.store import Store

TOPICS = ["the harbour of Sines", "a vineyard in the Douro", "the tram line 28 in Lisbon", "the bakery in Évora",
          "the observatory of Coimbra", "the ferry across the Tagus"]


def _corpus(root: Path) -> list[Path]:
    root.mkdir()
    files = []
    for i, topic in enumerate(TOPICS):
        lines = [f"Report {i} is about {topic}. In year {1900 + 7 * i + k} it recorded {13 * k + i} visitors, "
                 f"and the keeper wrote note number {k} about {topic}." for k in range(40)]
        path = root / f"doc{i}.txt"
        path.write_text("\n".join(lines), encoding="utf-8")
        files.append(path)
    return files


def _store(url: str, prefix: str) -> Store:
    from rag import components
    from rag.settings import Settings

    return Store(Path("/nonexistent"), components.embedder_id(Settings()), chroma_url=url, prefix=prefix)


def _snapshot(store: Store) -> dict:
    """Everything a query can see, in a form two stores can be compared by."""
    docs = sorted((d.doc_id, Path(d.source).name, d.language, d.content_hash, d.chunks, d.chars)
                  for d in store.documents())
    chunks = store.chunks.get(include=["documents", "metadatas"])
    sents = store.sentences.get(include=["metadatas"])
    return {"docs": docs,
            "chunks": sorted((i, t, json.dumps(m, sort_keys=True)) for i, t, m in
                             zip(chunks["ids"], chunks["documents"], chunks["metadatas"])),
            "sentences": sorted((i, json.dumps(m, sort_keys=True)) for i, m in zip(sents["ids"], sents["metadatas"])),
            "journal": store.journal()}


def _env(tmp_path: Path, name: str, url: str, prefix: str, model_dir: Path, **extra: str) -> dict:
    return {**os.environ, "RAG_DATA_DIR": str(tmp_path / name), "RAG_CHROMA_URL": url, "RAG_COLLECTION_PREFIX": prefix,
            "RAG_MODEL_DIR": str(model_dir), "RAG_WRITE_LEASE_SECONDS": "4", **extra}


@pytest.mark.slow
@pytest.mark.server
def test_two_writers_one_killed_mid_batch_equal_a_clean_run(tmp_path, chroma_server, model_dir):
    files = _corpus(tmp_path / "docs")
    first, second = [str(p) for p in files[:4]], [str(p) for p in files[2:]]  # doc2, doc3 in both
    store = _store(chroma_server, "two")
    a = subprocess.Popen([sys.executable, "-m", "rag", "index", "--json", *first], cwd=ROOT, text=True,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         env=_env(tmp_path, "a", chroma_server, "two", model_dir, RAG_FAULT_KILL_AT="after_add:2",
                                  RAG_INDEX_GROUP_DOCS="2"))  # two documents per write: killed in the second
    deadline = time.time() + 120
    while time.time() < deadline and not ((cur := store.lease.latest()) and f"pid {a.pid} " in cur.owner):
        time.sleep(0.2)
    assert store.lease.latest() and f"pid {a.pid} " in store.lease.latest().owner, a.communicate()
    b = subprocess.Popen([sys.executable, "-m", "rag", "index", "--json", *second], cwd=ROOT, text=True,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         env=_env(tmp_path, "b", chroma_server, "two", model_dir))
    a.wait(300)
    assert a.returncode == -9  # SIGKILL after adding the chunks of doc2 and doc3, uncommitted
    half = {d.doc_id for d in store.documents()}
    assert half == {"doc0", "doc1"}, half  # committed before the kill; doc2's chunks are orphans
    out_b, err_b = b.communicate(timeout=300)
    assert b.returncode == 0, err_b
    report_b = json.loads(out_b)
    assert f"pid {a.pid} " in report_b["lease_from"]  # B waited, then took over the dead writer's lease
    assert "waiting for the store's write lease" in err_b
    assert set(report_b["repaired"]) == {"doc0", "doc1", "doc2", "doc3"}  # A's journal, repaired by B
    gen_b = store.generation()
    again = run_cli("index", "--json", *first, env=_env(tmp_path, "a", chroma_server, "two", model_dir))
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout)["counts"] == {"unchanged": 4}
    assert store.generation() >= gen_b  # nothing changed: no bump needed, none lost

    clean = run_cli("index", "--json", *map(str, files), env=_env(tmp_path, "c", chroma_server, "clean", model_dir))
    assert clean.returncode == 0, clean.stderr
    final, reference = _snapshot(store), _snapshot(_store(chroma_server, "clean"))
    assert final["journal"] == [] and len(final["docs"]) == 6
    assert final == reference


def test_lease_excludes_a_second_writer_and_expires_when_its_holder_dies(tmp_path):
    """Two leases on one real (embedded) store: the second waits; a holder that stops renewing
    (as after SIGKILL) loses it within one lease; a paused holder finds out before writing."""
    store = Store(tmp_path / "data", "e5test")
    one = WriteLease(store.registry, store.where, seconds=1.5, wait=10)
    two = WriteLease(store.registry, store.where, seconds=1.5, wait=0.5)
    notes: list[str] = []
    two.on_wait = notes.append
    with one:
        with pytest.raises(Exception, match="holds the write lease"):
            two.acquire()
        assert notes and one.owner in notes[0]
        time.sleep(2)  # the holder renews: still held
        with pytest.raises(Exception, match="holds the write lease"):
            two.acquire()
        one.check()
    two.wait = 5
    with two:  # released: taken at once
        assert two.taken_over is None
        two._stop.set()  # the holder "dies": it stops renewing
        got: list[float] = []
        t = threading.Thread(target=lambda: (one.acquire(), got.append(time.time())))
        started = time.time()
        t.start()
        t.join(10)
        assert got and got[0] - started < 3.5, got
        assert one.taken_over is not None and one.taken_over.owner == two.owner
        with pytest.raises(Exception, match="lost the write lease"):
            two.check()
    one.release()
