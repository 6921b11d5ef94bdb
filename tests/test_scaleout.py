"""Scale-out for real: several processes sharing one `chroma run` server (tests/conftest.py).

* two worker processes: one indexes, the other sees the new document within a couple of seconds
  (dense search reads Chroma directly; the BM25 side index follows the store's generation, checked
  at most every second);
* ``python -m eval run --workers 2 --chroma-url`` against the server;
* two app processes on the server answering 8 simultaneous questions over the HTTP API.

Each test uses its own collection prefix, so they share the session's server without mixing.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from eval.bench_app import AppServer, Worker, ask_http, child_env

pytestmark = [pytest.mark.server, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[1]
CORPUS = ROOT / "corpus"
NEW_DOC = ("Zyloquent Dynamics announced on Tuesday that it will invest 4,321 million dollars in the "
           "Aurora Fjord data hall, a new AI campus in northern Norway.\n")
NEW_QUESTION = "How much will Zyloquent Dynamics invest in the Aurora Fjord data hall?"
QUESTIONS = ["Which company serves as technology advisor to the AI Infrastructure Partnership?",
             "Quem assessora a AIP?", "¿Quién asesora a la AIP?", "Wer berät die AIP?",
             "Which two energy providers has the alliance partnered with?", "What does AIP stand for?",
             "Quanto a AIP pretende mobilizar?", "Wie viel Kapital will die Partnerschaft mobilisieren?"]


def _env(chroma_url: str, model_dir: Path, data: Path, prefix: str) -> dict[str, str]:
    return {"RAG_CHROMA_URL": chroma_url, "RAG_MODEL_DIR": str(model_dir), "RAG_DATA_DIR": str(data),
            "RAG_COLLECTION_PREFIX": prefix, "RAG_MODE": "extractive"}


def _index(env: dict[str, str], *paths: str) -> None:
    done = subprocess.run([sys.executable, "-m", "rag", "index", *paths], cwd=ROOT, env=child_env(env),
                          capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-2000:]


def test_second_process_sees_a_document_indexed_by_the_first(chroma_server, model_dir, tmp_path):
    env = lambda name: _env(chroma_server, model_dir, tmp_path / name, "scaleout")  # noqa: E731
    with Worker(env("writer")) as writer:
        assert writer.request({"op": "index", "paths": [str(CORPUS)]})["ok"]
        with Worker(env("reader")) as reader:
            assert len(reader.request({"op": "documents"})["documents"]) == 5
            before = reader.request({"op": "ask", "question": NEW_QUESTION})
            assert before["ok"] and "zz_zyloquent" not in before["retrieved"]

            doc = tmp_path / "new" / "zz_zyloquent.txt"
            doc.parent.mkdir()
            doc.write_text(NEW_DOC)
            reply = writer.request({"op": "index", "paths": [str(doc)]})
            assert reply["ok"] and reply["counts"] == {"added": 1}, reply
            t0 = time.monotonic()
            while True:
                got = reader.request({"op": "ask", "question": NEW_QUESTION})
                assert got["ok"], got
                if "zz_zyloquent" in got["cited"] or time.monotonic() - t0 > 10:
                    break
                time.sleep(0.2)
            seen_after = time.monotonic() - t0
            print(f"reader cited the new document {seen_after:.2f} s after the writer indexed it")
            assert "zz_zyloquent" in got["cited"], got
            assert "4,321" in got["text"] or "4321" in got["text"], got["text"]
            assert seen_after < 5  # a couple of seconds (plus one slow question on a busy machine)
            assert len(reader.request({"op": "documents"})["documents"]) == 6


def test_eval_run_with_workers_against_the_server(chroma_server, model_dir, tmp_path):
    env = child_env({"RAG_MODEL_DIR": str(model_dir), "RAG_COLLECTION_PREFIX": "evalrun"})
    out = tmp_path / "run"
    done = subprocess.run([sys.executable, "-m", "eval", "run", "--chroma-url", chroma_server,
                           "--data-dir", str(tmp_path / "data"), "--workers", "2", "--limit", "6",
                           "--out", str(out), "--no-progress"],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=1200)
    assert done.returncode == 0, done.stderr[-3000:]
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["meta"]["workers"] == 2
    assert metrics["meta"]["settings"]["chroma_url"] == chroma_server
    assert metrics["meta"]["corpus"]["documents"] == 5
    rows = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    assert len(rows) == 6 and not [r for r in rows if r["error"]]


def test_two_apps_on_one_server_answer_eight_simultaneous_questions(chroma_server, model_dir, tmp_path):
    _index(_env(chroma_server, model_dir, tmp_path / "indexer", "apps"), str(CORPUS))
    apps = [AppServer(tmp_path / f"app-{k}", model_dir, _env(chroma_server, model_dir, tmp_path / f"app-{k}", "apps"),
                      timeout=0) for k in "ab"]
    try:
        for app in apps:
            app.wait_ready()
        one = ask_http([apps[0].url], QUESTIONS, parallel=8)
        two = ask_http([a.url for a in apps], QUESTIONS, parallel=8)
    finally:
        for app in apps:
            app.stop()
    print(f"8 simultaneous questions: one app p95 {one['p95_ms']} ms, two apps p95 {two['p95_ms']} ms")
    for result in (one, two):
        assert result["errors"] == 0, result["error_samples"]
        assert result["ok"] == 8
