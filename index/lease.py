"""One writer at a time per store, across processes and machines: a lease kept in the store.

    >>> with store.write_lease():         # waits while another process holds it
    ...     store.commit(record)

Chroma has no transactions, but ``add`` of an id that already exists is ignored: the first
writer of an id wins. The lease is a chain of registry records ``__lease__:<n>``; the highest
``n`` is the current lease. To take it, a writer finds the highest record; if that one is
released or expired it ``add``s ``n + 1`` with its own name and reads it back: whoever's name is
there owns the lease, everyone else waits. A holder renews its record every third of the lease
(``write_lease_seconds``, 30 s by default) from a background thread and marks it released at the
end, so a writer killed by SIGKILL blocks the others for at most one lease; the next holder
then repairs what the dead writer's journal names (``Store.repair``).

Holders check before each commit that nobody took a newer lease (a process paused past its
lease - SIGSTOP, a hung VM - stops with ``StoreError`` instead of writing beside the new holder).
Expiry compares the waiter's clock with the holder's: machines sharing a server need NTP.
"""

from __future__ import annotations

import os
import socket
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass

from index.errors import StoreError

PREFIX = "__lease__:"


@dataclass(frozen=True)
class LeaseRecord:
    n: int
    owner: str
    expires: float
    released: bool

    @property
    def free(self) -> bool:
        return self.released or self.expires < time.time()


def _rid(n: int) -> str:
    return f"{PREFIX}{n:012d}"


class WriteLease:
    """Mutual exclusion for the writers of one store; re-entrant within one process."""

    def __init__(self, registry, where: str, seconds: float = 30.0, wait: float = 600.0) -> None:
        if seconds <= 0:
            raise ValueError(f"write_lease_seconds must be > 0, got {seconds}")
        self.registry, self.where = registry, where
        self.seconds, self.wait = seconds, wait
        self.owner = f"{socket.gethostname()} pid {os.getpid()} ({uuid.uuid4().hex[:8]})"
        self.on_wait: Callable[[str], None] | None = None
        self.taken_over: LeaseRecord | None = None  # the expired lease of a writer that died
        self._lock = threading.RLock()
        self._depth = 0
        self._n = 0
        self._lost = ""
        self._stop = threading.Event()
        self._beat: threading.Thread | None = None

    # ------------------------------------------------------------------ records
    def latest(self) -> LeaseRecord | None:
        got = self.registry.get(where={"kind": "lease"}, include=["metadatas"])
        recs = [LeaseRecord(int(m["n"]), m["owner"], float(m["expires"]), bool(m["released"]))
                for m in got["metadatas"]]
        return max(recs, key=lambda r: r.n) if recs else None

    def _write(self, n: int, released: bool, add: bool) -> None:
        meta = {"kind": "lease", "n": n, "owner": self.owner, "expires": time.time() + self.seconds,
                "released": released}
        write = self.registry.add if add else self.registry.upsert
        write(ids=[_rid(n)], embeddings=[[1.0]], metadatas=[meta], documents=[""])

    # ------------------------------------------------------------------ taking and giving back
    def acquire(self) -> None:
        with self._lock:
            if self._depth:
                self._depth += 1
                return
            deadline, told = time.monotonic() + self.wait, False
            while True:
                cur = self.latest()
                if cur is None or cur.free:
                    n = (cur.n if cur else 0) + 1
                    self._write(n, released=False, add=True)  # ignored if another writer added n first
                    got = self.registry.get(ids=[_rid(n)], include=["metadatas"])
                    if got["ids"] and got["metadatas"][0]["owner"] == self.owner:
                        self._start(n, cur)
                        return
                elif not told and self.on_wait:
                    self.on_wait(f"waiting for the store's write lease, held by {cur.owner} "
                                 f"(expires in {max(0.0, cur.expires - time.time()):.0f} s unless renewed)")
                    told = True
                # every path waits and honours the deadline: a lost race or a write that did not
                # stick must not spin
                if time.monotonic() > deadline:
                    if cur is None or cur.free:
                        raise StoreError(f"could not take the write lease of {self.where}: writing its record did "
                                         f"not stick for {self.wait:.0f} s (store full or read-only?); try again later")
                    raise StoreError(
                        f"another writer ({cur.owner}) holds the write lease of {self.where} "
                        f"(renewed every {self.seconds / 3:.0f} s); waited {self.wait:.0f} s - try again later. "
                        f"If that process is gone, its lease expires within {self.seconds:.0f} s by itself")
                time.sleep(min(1.0, max(0.1, self.seconds / 20)))

    def _start(self, n: int, previous: LeaseRecord | None) -> None:
        self._n, self._depth, self._lost = n, 1, ""
        self.taken_over = previous if previous is not None and not previous.released else None
        old = self.registry.get(where={"kind": "lease"}, include=[])["ids"]
        stale = [i for i in old if i < _rid(n - 2)]  # keep a short chain, for the record
        if stale:
            self.registry.delete(ids=stale)
        self._stop.clear()
        self._beat = threading.Thread(target=self._renew, name="rag-write-lease", daemon=True)
        self._beat.start()

    def _renew(self) -> None:
        while not self._stop.wait(self.seconds / 3):
            try:
                cur = self.latest()
                if cur is None or cur.n != self._n or cur.owner != self.owner:
                    self._lost = f"{cur.owner if cur else 'nobody'} took it over"
                    return
                self._write(self._n, released=False, add=False)
            except Exception as exc:  # noqa: BLE001 - the next check() reports it
                self._lost = f"renewing failed ({type(exc).__name__}: {exc})"
                return

    def check(self) -> None:
        """Raise StoreError if this process no longer holds the lease (call before a commit)."""
        with self._lock:
            if not self._depth:
                raise StoreError(f"writing to {self.where} without its write lease (a bug: take it first)")
            cur = self.latest()
            if not self._lost and (cur is None or cur.n != self._n):
                self._lost = f"{cur.owner if cur else 'nobody'} took it over"
            if self._lost:
                raise StoreError(f"this process lost the write lease of {self.where} ({self._lost}), probably "
                                 f"after pausing longer than write_lease_seconds ({self.seconds:.0f} s); "
                                 "nothing more is written - run the command again")

    def release(self) -> None:
        with self._lock:
            if not self._depth:
                return
            self._depth -= 1
            if self._depth:
                return
            self._stop.set()
            if self._beat is not None:
                self._beat.join(self.seconds)
            try:
                cur = self.latest()
                if cur is not None and cur.n == self._n and cur.owner == self.owner:
                    self._write(self._n, released=True, add=False)
            except Exception:  # noqa: BLE001 - store down or disk full: the lease expires by itself
                pass

    def __enter__(self) -> WriteLease:
        self.acquire()
        return self

    def __exit__(self, *exc) -> None:
        self.release()
