"""The load generator's controller: spreads clients over worker processes and collects.

Each worker process stays under ``MAX_PER_PROCESS`` sockets (this host's hard
limit is 20,000 open files per process) and gets its own loopback source
addresses, so a run of 60,000 connections to one ``127.0.0.1:port`` never runs
out of ephemeral ports (about 28,000 per source address and destination).
"""

from __future__ import annotations

import array
import asyncio
import contextlib
import math
import multiprocessing
import multiprocessing.connection
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, TypeVar

from benchmarks.loadgen.client import (
    C_BENCH,
    C_CLOSED,
    C_FAILED,
    C_FILE,
    C_OK,
    C_OTHER,
    C_PINGS,
    N_COUNTERS,
    Target,
)
from benchmarks.loadgen.worker import worker_main

__all__ = ["ClientSpec", "Collected", "LoadGen", "Target"]

T = TypeVar("T")

MAX_PER_PROCESS: Final = 18_000
# Connections per loopback source address; well below the ~28,000 ephemeral ports.
PER_SOURCE_ADDR: Final = 10_000


class LoadGenError(Exception):
    """A load-generator process failed or reported an error."""


@dataclass(frozen=True, slots=True)
class ClientSpec:
    """One connection to open: ``password=None`` means a pre-auth token login."""

    user: str
    password: str | None = None


@dataclass(slots=True)
class ConnectResult:
    ok: int
    failed: int
    seconds: float
    errors: dict[str, int]
    login_latency: list[float]


@dataclass(slots=True)
class Collected:
    """What every client received since the last reset; indices are global client indices."""

    bench_idx: list[int] = field(default_factory=list)
    bench_seq: list[int] = field(default_factory=list)
    bench_lat: list[float] = field(default_factory=list)
    file_idx: list[int] = field(default_factory=list)
    file_t: list[float] = field(default_factory=list)
    other: Counter[str] = field(default_factory=Counter)
    open_idx: list[int] = field(default_factory=list)  # clients logged in and still open


def _unpack(code: str, raw: bytes) -> list[Any]:
    a = array.array(code)
    a.frombytes(raw)
    return a.tolist()


class LoadGen:
    """Client fleet spread over ``procs`` processes; use as ``async with``."""

    def __init__(
        self,
        target: Target,
        *,
        redis_url: str | None,
        procs: int,
        window: int = 200,
        login_timeout: float = 30.0,
        source_addrs: Sequence[str] | None = None,
    ) -> None:
        self.target = target
        self.redis_url = redis_url
        self.procs = max(1, procs)
        self.window = window
        self.login_timeout = login_timeout
        self._explicit_sources = list(source_addrs) if source_addrs is not None else None
        self._ctx = multiprocessing.get_context("spawn")
        self._counters: Any = None
        self._conns: list[multiprocessing.connection.Connection] = []
        self._procs: list[multiprocessing.process.BaseProcess] = []
        self._locks: list[asyncio.Lock] = []
        self.user_of: list[str] = []  # global client index -> user
        self.worker_of: list[int] = []  # global client index -> worker
        self._load: list[int] = []

    @staticmethod
    def procs_for(connections: int) -> int:
        return max(1, math.ceil(connections / MAX_PER_PROCESS))

    def _sources_for(self, worker: int) -> list[str]:
        if self._explicit_sources is not None:
            return self._explicit_sources[worker :: self.procs] or self._explicit_sources
        if not self.target.is_loopback:
            return []
        per = math.ceil(MAX_PER_PROCESS / PER_SOURCE_ADDR)
        # 127.0.0.2 and up: every address in 127.0.0.0/8 is local on Linux.
        return [
            f"127.0.{(n // 250)}.{2 + n % 250}" for n in range(worker * per, (worker + 1) * per)
        ]

    async def __aenter__(self) -> LoadGen:
        self._counters = self._ctx.Array("q", self.procs * N_COUNTERS, lock=False)
        for w in range(self.procs):
            parent, child = self._ctx.Pipe()
            p = self._ctx.Process(
                target=worker_main,
                args=(child, w, self.target, self._sources_for(w), self.redis_url, self._counters),
                name=f"loadgen-{w}",
                daemon=True,
            )
            p.start()
            child.close()
            self._conns.append(parent)
            self._procs.append(p)
            self._locks.append(asyncio.Lock())
            self._load.append(0)
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def stop(self) -> None:
        for c in self._conns:
            with contextlib.suppress(OSError):
                c.send(("quit", None))
        deadline = time.monotonic() + 10
        for p in self._procs:
            await asyncio.to_thread(p.join, max(0.1, deadline - time.monotonic()))
            if p.is_alive():
                p.kill()
                p.join(1)
        for c in self._conns:
            c.close()
        self._conns.clear()
        self._procs.clear()

    async def _call(self, worker: int, name: str, args: Any = None) -> dict[str, Any]:
        conn = self._conns[worker]
        async with self._locks[worker]:
            conn.send((name, args))
            try:
                reply: dict[str, Any] = await asyncio.to_thread(conn.recv)
            except (EOFError, OSError) as e:
                raise LoadGenError(f"load generator process {worker} died") from e
        if "error" in reply:
            raise LoadGenError(f"load generator process {worker}: {reply['error']}")
        return reply

    def counters(self) -> dict[str, int]:
        """Counters summed over all workers, read from shared memory (no round trip)."""
        names = {
            "ok": C_OK,
            "failed": C_FAILED,
            "bench": C_BENCH,
            "file": C_FILE,
            "other": C_OTHER,
            "closed": C_CLOSED,
            "pings": C_PINGS,
        }
        arr = self._counters
        return {
            k: sum(arr[w * N_COUNTERS + i] for w in range(self.procs)) for k, i in names.items()
        }

    @property
    def open_connections(self) -> int:
        c = self.counters()
        return c["ok"] - c["closed"] if c["ok"] >= c["closed"] else 0

    async def connect(
        self,
        specs: Sequence[ClientSpec],
        *,
        on_tick: Callable[[], None] | None = None,
    ) -> ConnectResult:
        """Open and log in every spec; returns once each has succeeded or failed.

        Clients get consecutive global indices (see ``user_of``); they are spread
        over the least-loaded workers, in blocks so each worker's pre-auth tokens
        are published in pipelined batches.
        """
        first = len(self.user_of)
        per_worker: list[list[tuple[int, str, str | None]]] = [[] for _ in range(self.procs)]
        for n, spec in enumerate(specs):
            w = min(range(self.procs), key=lambda i: self._load[i])
            if self._load[w] >= MAX_PER_PROCESS:
                raise LoadGenError(
                    f"more than {self.procs * MAX_PER_PROCESS} connections: use more processes"
                )
            self._load[w] += 1
            per_worker[w].append((first + n, spec.user, spec.password))
            self.user_of.append(spec.user)
            self.worker_of.append(w)
        t0 = time.perf_counter()
        calls = [
            self._call(w, "connect", (chunk, self.window, self.login_timeout))
            for w, chunk in enumerate(per_worker)
            if chunk
        ]
        replies = await _with_ticks(asyncio.gather(*calls), on_tick)
        seconds = time.perf_counter() - t0
        errors: Counter[str] = Counter()
        lat: list[float] = []
        ok = failed = 0
        for r in replies:
            ok += r["ok"]
            failed += r["failed"]
            errors.update(r["errors"])
            lat.extend(_unpack("d", r["lat"]))
        return ConnectResult(ok, failed, seconds, dict(errors), lat)

    async def reset(self) -> None:
        """Forget everything recorded so far (connections stay open)."""
        await asyncio.gather(*(self._call(w, "reset") for w in range(self.procs)))

    async def collect(self) -> Collected:
        out = Collected()
        for r in await asyncio.gather(*(self._call(w, "collect") for w in range(self.procs))):
            out.bench_idx += _unpack("i", r["bench_idx"])
            out.bench_seq += _unpack("q", r["bench_seq"])
            out.bench_lat += _unpack("d", r["bench_lat"])
            out.file_idx += _unpack("i", r["file_idx"])
            out.file_t += _unpack("d", r["file_t"])
            out.other.update(r["other"])
            out.open_idx += _unpack("i", r["open_idx"])
        return out

    async def close_all(self, grace: float = 30.0) -> int:
        """Close every connection; returns how many were still open at the deadline."""
        replies = await asyncio.gather(
            *(self._call(w, "close_all", grace) for w in range(self.procs))
        )
        self._load = [0] * self.procs
        return sum(int(r["left"]) for r in replies)


async def _with_ticks(aw: Awaitable[T], on_tick: Callable[[], None] | None) -> T:
    """Await ``aw``, calling ``on_tick`` every 0.2 s meanwhile (progress bars)."""
    task = asyncio.ensure_future(aw)
    if on_tick is None:
        return await task
    while True:
        done, _ = await asyncio.wait({task}, timeout=0.2)
        on_tick()
        if done:
            return task.result()
