"""Chroma clients that fail clearly: every failure a ``StoreError`` naming the store and the fix.

    >>> client = make_client(Path(".rag"))                          # embedded, on disk
    >>> client = make_client(Path(".rag"), "http://127.0.0.1:8000")  # a `chroma run` server

A server that is down or hung fails within the read deadline (80% of ``timeout``) instead of
chroma's own unbounded wait; reads that meet a concurrent delete are retried; a corrupt or missing
local store, or a full disk under it, gets a message that says what to do. ``index.store`` wraps
its collections in ``_Guarded``.
"""

from __future__ import annotations

import errno
import time
from pathlib import Path
from urllib.parse import urlparse

from index.errors import StoreError

_WRITES = {"add", "upsert", "update", "delete"}  # request paths that may carry a big batch
_READS = {"query", "get", "count", "peek"}
_READ_RETRIES = 3  # reads that meet a concurrent delete are retried (see _is_delete_race)
# Chroma's embedded (Rust) writer can hang for good, not fail, when the disk fills under it
# (measured with chromadb 1.x on a full tmpfs: `add` never returned). So a local write needs this
# much free space plus three times its payload before it starts, and fails clearly otherwise.
_WRITE_FLOOR = 16 << 20


def make_client(data_dir: Path, chroma_url: str = "", timeout: float = 5.0):
    """A PersistentClient under ``data_dir/chroma``, or an HttpClient when ``chroma_url`` is set."""
    import chromadb
    from chromadb.config import Settings as ChromaSettings

    settings = ChromaSettings(anonymized_telemetry=False, allow_reset=True)
    if not chroma_url:
        path = Path(data_dir) / "chroma"
        if Path(data_dir).exists() and not Path(data_dir).is_dir():
            raise StoreError(f"the data dir {data_dir} is a file, not a directory; move it away or "
                             "choose another --data-dir / RAG_DATA_DIR, then run `rag index --rebuild`")
        if not (path / "chroma.sqlite3").exists() and any((Path(data_dir) / "bm25").glob("*")):
            raise StoreError(f"the Chroma store at {path} is missing but its side index "
                             f"{Path(data_dir) / 'bm25'} is there; run `rag index --rebuild` to start over")
        try:
            path.mkdir(parents=True, exist_ok=True)
            return chromadb.PersistentClient(path=str(path), settings=settings)
        except Exception as exc:  # chroma raises bare exceptions for a corrupt sqlite file
            from chromadb.api.shared_system_client import SharedSystemClient

            # chroma caches the half-built client per path: forget it, so a rebuild can start over
            SharedSystemClient._identifier_to_system.pop(str(path), None)
            raise StoreError(
                f"cannot open the Chroma store at {path} ({_one_line(exc)}); "
                "run `rag index --rebuild` to start it over"
            ) from exc
    url = urlparse(chroma_url if "://" in chroma_url else f"http://{chroma_url}")
    import httpx

    try:  # fail fast with a clear message instead of hanging in chroma's timeout-less client
        httpx.get(f"{url.scheme}://{url.netloc}/api/v2/heartbeat",
                  timeout=httpx.Timeout(timeout * 0.8, connect=min(timeout, 2.0))).raise_for_status()
        client = chromadb.HttpClient(
            host=url.hostname or "127.0.0.1", port=url.port or 8000, ssl=url.scheme == "https",
            settings=settings,
        )
    except Exception as exc:
        raise StoreError(
            f"Chroma server at {chroma_url} is unreachable ({type(exc).__name__}: {exc}); "
            "start it with `chroma run --path DIR --host 127.0.0.1 --port PORT` or unset chroma_url"
        ) from exc
    session = getattr(getattr(client, "_server", None), "_session", None)
    if session is not None:  # chroma's own client waits forever on a dead or hung server
        session.timeout = httpx.Timeout(timeout * 6, connect=timeout)
        session._transport = _Deadlines(session._transport, timeout)
    return client


class _Deadlines:
    """httpx transport wrapper: reads (queries, gets, counts) give up after 80% of ``timeout``, so
    a question fails within ``timeout`` even on a server that accepts and never answers; writes of
    big batches keep 6x ``timeout``."""

    def __init__(self, inner, timeout: float) -> None:
        import httpx

        self._inner = inner
        self._read = httpx.Timeout(timeout * 0.8, connect=min(timeout, 2.0)).as_dict()
        self._write = httpx.Timeout(timeout * 6, connect=timeout).as_dict()

    def handle_request(self, request):
        write = request.url.path.rstrip("/").rsplit("/", 1)[-1] in _WRITES
        request.extensions = {**request.extensions, "timeout": self._write if write else self._read}
        return self._inner.handle_request(request)

    def close(self) -> None:
        self._inner.close()

    def __enter__(self):
        self._inner.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        self._inner.__exit__(*exc)


def _disk_full(exc: BaseException) -> bool:
    text = str(exc).lower()
    return getattr(exc, "errno", None) == errno.ENOSPC or "disk is full" in text or "no space left" in text


def _low_space(path: Path, below: int = 4 << 20) -> bool:
    """Chroma reports a full disk as e.g. "Failed to apply logs to the metadata segment": when a
    local store fails, a nearly full disk under it is the likely cause."""
    import shutil

    try:
        return shutil.disk_usage(path).free < below
    except OSError:
        return False


def _payload(kwargs: dict) -> int:
    """Rough bytes a write carries: float32 vectors, texts and metadata."""
    vectors = kwargs.get("embeddings")
    size = sum(4 * len(v) for v in vectors) if vectors is not None else 0
    size += sum(len(d or "") for d in kwargs.get("documents") or [])
    return size + sum(len(str(m)) for m in kwargs.get("metadatas") or [])


def _one_line(exc: BaseException, limit: int = 200) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text[:limit]


def _is_delete_race(exc: BaseException) -> bool:
    """Chroma's reader met a record deleted while it ran (a version being pruned under a query):
    "Error finding id". The same read a moment later sees a consistent collection."""
    return "Error finding id" in str(exc)


def _is_failure(exc: BaseException) -> bool:
    """Failures of the store itself (unreachable, hung, corrupt), not mistakes in our own calls."""
    import httpx
    from chromadb import errors

    if isinstance(exc, errors.InvalidArgumentError | errors.InvalidDimensionException | errors.DuplicateIDError):
        return False
    return isinstance(exc, httpx.HTTPError | errors.ChromaError | OSError | TimeoutError) or (
        type(exc) is Exception)  # chroma's HTTP client raises bare Exception(body) on a 5xx


class _Guarded:
    """A Chroma collection whose failures surface as ``StoreError`` naming the store and the fix."""

    def __init__(self, collection, store) -> None:  # store: index.store.Store (its failure())
        self._collection, self._store = collection, store

    def __getattr__(self, name: str):
        attr = getattr(self._collection, name)
        if not callable(attr):
            return attr

        def call(*args, **kwargs):
            if name in _WRITES and not self._store.chroma_url:
                need = _WRITE_FLOOR + 3 * _payload(kwargs)
                if _low_space(self._store.data_dir, need):
                    raise self._store.failure(name, OSError(errno.ENOSPC, f"less than {need >> 20} MB free before writing"))
            for attempt in range(_READ_RETRIES + 1):
                try:
                    return attr(*args, **kwargs)
                except Exception as exc:
                    if name in _READS and attempt < _READ_RETRIES and _is_delete_race(exc):
                        time.sleep(0.05 * (attempt + 1))
                        continue
                    if _is_failure(exc):
                        raise self._store.failure(name, exc) from exc
                    raise

        return call
