"""Processes the benchmark and the scale-out tests start: a Chroma server, the app, a worker.

    >>> with ChromaServer(Path("bench-data/s100k/chroma")) as db:          # `chroma run` on a free port
    ...     with AppServer(Path("bench-data/app-a"), env={"RAG_CHROMA_URL": db.url}) as app:
    ...         result = ask_http([app.url], questions, parallel=8)        # gradio_client, api "/ask"
    >>> with Worker({"RAG_DATA_DIR": "d", "RAG_CHROMA_URL": url}) as w: w.request({"op": "documents"})

Everything binds 127.0.0.1 only, every wait is bounded, and each process is stopped by its own
pid when its ``with`` block ends.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import numpy as np

REPO = Path(__file__).resolve().parents[1]
_TICK = os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def child_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """Our environment without RAG_* (a developer's config must not leak in), offline, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAG_")}
    env.update(HF_HUB_OFFLINE="1", GRADIO_ANALYTICS_ENABLED="False", ANONYMIZED_TELEMETRY="False")
    env.update(extra or {})
    return env


def proc_stats(pid: int) -> dict[str, float]:
    """CPU seconds (user + system), current and peak RSS (MB) of a live process, from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    status = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines() if ":" in line)
    kb = lambda key: float(status.get(key, "0 kB").split()[0])  # noqa: E731
    return {"cpu_s": (int(fields[11]) + int(fields[12])) / _TICK, "rss_mb": round(kb("VmRSS") / 1024, 1),
            "peak_rss_mb": round(kb("VmHWM") / 1024, 1)}


class _Process:
    """A child process with a log file, started by ``start`` and stopped (by pid) on exit."""

    name = "process"

    def __init__(self, log: Path) -> None:
        self.log, self.proc, self.url = log, None, ""

    def _spawn(self, argv: list[str], env: dict[str, str]) -> None:
        self.log.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log, "w") as out:
            self.proc = subprocess.Popen(argv, cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT)

    def _wait(self, probe: str, timeout: float) -> None:
        self._probe, self._timeout = probe, timeout
        if timeout > 0:
            self.wait_ready()

    def wait_ready(self) -> None:
        """Block until the readiness URL answers 200 (or the process dies / the timeout passes)."""
        probe, timeout = self._probe, self._timeout or 600
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                break
            try:
                if httpx.get(probe, timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.3)
        self.stop()
        raise RuntimeError(f"{self.name} did not start within {timeout:g} s: {self.log.read_text()[-2000:]}")

    @property
    def pid(self) -> int:
        return self.proc.pid

    def stats(self) -> dict[str, float]:
        return proc_stats(self.pid)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)

    def __enter__(self):
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


class ChromaServer(_Process):
    """``chroma run --path PATH --host 127.0.0.1 --port FREE`` (PATH may hold an embedded store)."""

    name = "chroma server"

    def __init__(self, path: Path, timeout: float = 120) -> None:
        super().__init__(Path(path).parent / "chroma-server.log")
        exe = shutil.which("chroma") or str(Path(sys.executable).parent / "chroma")
        port = free_port()
        self._spawn([exe, "run", "--path", str(path), "--host", "127.0.0.1", "--port", str(port)], child_env())
        self.url = f"http://127.0.0.1:{port}"
        self._wait(f"{self.url}/api/v2/heartbeat", timeout)


class AppServer(_Process):
    """``python app.py --data-dir DIR --port FREE`` in extractive mode; ``extra`` adds RAG_* settings.

    ``timeout=0`` returns at once: call ``wait_ready()`` later (to start two apps side by side).
    """

    name = "app"

    def __init__(self, data_dir: Path, model_dir: Path, extra: dict[str, str] | None = None,
                 timeout: float = 600) -> None:
        super().__init__(Path(data_dir) / "app.log")
        port = free_port()
        env = child_env({"RAG_MODEL_DIR": str(model_dir), "RAG_MODE": "extractive", **(extra or {})})
        self._spawn([sys.executable, "app.py", "--data-dir", str(data_dir), "--port", str(port)], env)
        self.url = f"http://127.0.0.1:{port}"
        self._wait(self.url, timeout)


class Worker:
    """``python -m eval.bench_probe serve``: one Assistant in its own process, driven over stdin."""

    def __init__(self, env: dict[str, str], timeout: float = 600) -> None:
        self.timeout = timeout
        self.proc = subprocess.Popen([sys.executable, "-m", "eval.bench_probe", "serve"], cwd=REPO,
                                     env=child_env(env), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.DEVNULL, text=True, bufsize=1)
        self.ready = self._read()

    def _read(self) -> dict[str, Any]:
        box: list[str] = []
        reader = threading.Thread(target=lambda: box.append(self.proc.stdout.readline()), daemon=True)
        reader.start()
        reader.join(self.timeout)
        if not box or not box[0]:
            self.close()
            raise RuntimeError(f"worker gave no reply within {self.timeout:g} s (exit {self.proc.poll()})")
        return json.loads(box[0])

    def request(self, req: dict[str, Any]) -> dict[str, Any]:
        self.proc.stdin.write(json.dumps(req) + "\n")
        self.proc.stdin.flush()
        return self._read()

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.stdin.close()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)

    def __enter__(self) -> Worker:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def ask_http(urls: list[str], questions: list[str], parallel: int) -> dict[str, Any]:
    """Send ``questions`` to the apps' ``/ask`` API, ``parallel`` at a time, round-robin over ``urls``.

    Each thread owns one gradio_client per app, made before the clock starts.
    """
    from gradio_client import Client

    clients = [[Client(u, verbose=False, analytics_enabled=False) for u in urls] for _ in range(parallel)]
    start = threading.Barrier(parallel)
    times: list[float] = []
    errors: list[str] = []

    def run(k: int) -> None:
        start.wait()
        for i in range(k, len(questions), parallel):
            t = time.perf_counter()
            try:
                answer = clients[k][i % len(urls)].predict(questions[i], api_name="/ask")
                if not isinstance(answer, dict) or "text" not in answer:
                    raise ValueError(f"unexpected reply {str(answer)[:200]}")
                times.append(time.perf_counter() - t)
            except Exception as exc:  # noqa: BLE001 - counted, reported
                errors.append(f"{type(exc).__name__}: {exc}"[:300])

    t0 = time.perf_counter()
    with ThreadPoolExecutor(parallel) as pool:
        list(pool.map(run, range(parallel)))
    wall = time.perf_counter() - t0
    for row in clients:
        for c in row:
            c.close()
    ms = np.asarray(times) * 1000
    pct = (lambda q: round(float(np.percentile(ms, q)), 1)) if len(ms) else (lambda q: None)  # noqa: E731
    return {"apps": len(urls), "parallel": parallel, "questions": len(questions), "ok": len(times),
            "errors": len(errors), "error_samples": errors[:3], "p50_ms": pct(50), "p95_ms": pct(95),
            "wall_s": round(wall, 2), "questions_per_s": round(len(times) / wall, 2) if wall else None}
