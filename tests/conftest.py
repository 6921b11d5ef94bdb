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


def app_env(data: Path, model_dir: Path, **extra: str) -> dict[str, str]:
    """The environment of an ``app.py`` or ``rag`` child: ours without RAG_* / GRADIO_*, offline,
    extractive, on ``data`` with the session's model, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RAG_", "GRADIO_"))}
    env.update(RAG_DATA_DIR=str(data), RAG_MODEL_DIR=str(model_dir), RAG_MODE="extractive",
               GRADIO_ANALYTICS_ENABLED="False", HF_HUB_OFFLINE="1", ANONYMIZED_TELEMETRY="False")
    env.update(extra)  # may override the mode
    return env


def start_app(env: dict[str, str], log_path: Path, *args: str, ready: str = "/gradio_api/info",
              ) -> tuple[subprocess.Popen, str]:
    """``python app.py --port <free port> *args``; returns (process, url) once ``ready`` answers
    (200, or 401/403 behind a login). Fails the test with the log's tail if the app exits or is not
    up within 300 s."""
    import httpx

    port = free_port()
    with open(log_path, "w") as log:
        proc = subprocess.Popen([sys.executable, "app.py", "--port", str(port), *args], cwd=ROOT, env=env,
                                stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 300
    while True:
        if proc.poll() is not None or time.time() > deadline:
            proc.kill()
            pytest.fail(f"app did not start: {log_path.read_text()[-3000:]}")
        try:
            if httpx.get(url + ready, timeout=2).status_code in (200, 401, 403):
                return proc, url
        except httpx.HTTPError:
            time.sleep(0.5)


def stop_app(proc: subprocess.Popen, wait: float = 15) -> None:
    """Terminate (the app stops its llama.cpp child on exit), then kill after ``wait`` seconds."""
    proc.terminate()
    try:
        proc.wait(wait)
    except subprocess.TimeoutExpired:
        proc.kill()


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
