"""Shared fixtures: the real converted embedding model (built once per session), real Chroma in
temp dirs, and a real `chroma run` server for server-mode tests.

Test isolation: RAG_* variables from the developer's shell are dropped, so a local config never
changes what a test sees; subprocesses get RAG_MODEL_DIR so they reuse the session's model.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CORPUS = ROOT / "corpus"

for _name in [k for k in os.environ if k.startswith("RAG_")]:
    os.environ.pop(_name)
os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"
from rag.defaults import apply_process_defaults  # noqa: E402 - the suite is an entry point too

apply_process_defaults()

# No per-example deadlines: a busy 2-core machine makes them flaky, and speed lives in benchmarks.
from hypothesis import settings as _hypothesis_settings  # noqa: E402

_hypothesis_settings.register_profile("rag", deadline=None)
_hypothesis_settings.load_profile("rag")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def model_dir(tmp_path_factory) -> Path:
    """A model cache root holding the converted e5-small (models/multilingual-e5-small)."""
    from index.e5convert import ensure_model

    root = Path(os.environ.get("RAG_TEST_MODEL_DIR") or tmp_path_factory.mktemp("model-cache"))
    ensure_model(root)
    os.environ["RAG_MODEL_DIR"] = str(root)
    return root


@pytest.fixture
def make_settings(tmp_path, model_dir):
    """Settings for a fresh data dir under tmp_path, extractive mode, shared model cache."""
    from rag.settings import Settings

    def make(name: str = "data", **over):
        return Settings.load(data_dir=tmp_path / name, model_dir=model_dir, mode="extractive", **over)

    return make


@pytest.fixture(scope="session")
def corpus_qa(tmp_path_factory, model_dir):
    """An Assistant over the five corpus documents, indexed once per session."""
    from rag import Assistant, Settings

    data = tmp_path_factory.mktemp("corpus-index")
    qa = Assistant(Settings.load(data_dir=data, model_dir=model_dir, mode="extractive"))
    report = qa.index([CORPUS])
    assert not report.failed, report.failed
    return qa


def run_cli(*args: str, env: dict | None = None, timeout: float = 600) -> subprocess.CompletedProcess:
    full = {**os.environ, **(env or {})}
    return subprocess.run([sys.executable, "-m", "rag", *args], cwd=ROOT, env=full, capture_output=True,
                          text=True, timeout=timeout)


@pytest.fixture(scope="session")
def chroma_server(tmp_path_factory):
    """A real `chroma run` server on 127.0.0.1:<free port>; yields its URL."""
    exe = shutil.which("chroma") or str(Path(sys.executable).parent / "chroma")
    port = free_port()
    path = tmp_path_factory.mktemp("chroma-server")
    log = open(path / "server.log", "w")
    proc = subprocess.Popen([exe, "run", "--path", str(path / "db"), "--host", "127.0.0.1", "--port", str(port)],
                            stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    import httpx

    deadline = time.time() + 60
    while time.time() < deadline:
        try:
            if httpx.get(f"{url}/api/v2/heartbeat", timeout=1).status_code == 200:
                break
        except httpx.HTTPError:
            time.sleep(0.3)
    else:
        proc.kill()
        raise RuntimeError(f"chroma server did not start: {(path / 'server.log').read_text()[-2000:]}")
    yield url
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
    log.close()
