"""Router CPU time per cached storage update mapped to 1,000 users.

Builds a SQLite Nextcloud database (Nextcloud's real tables) holding 1,000
users on one storage, warms the mapping's cache with one query, then calls
``StorageMapping.users_for`` many times and divides the process CPU time
(``time.process_time``) by the number of calls. That is the mapping's share of
the router's work for one ``notify_storage_update`` on a hot storage; decoding
the event and fanning out to workers come on top.

Scenarios:
  root      every user has the storage mounted at its root (a group folder, or
            many users on one external storage): one prefix check per event.
  shares    the 1,000 users reach the storage through 100 different shared
            folders (10 users each); the event's path is inside one of them.

The ``router`` line then measures the router's whole path for the same event:
``notify_storage_update`` payload in, JSON decoded, mapping (cached), the
users split over 3 workers and one length-prefixed msgpack batch encoded and
written per worker (to in-memory transports), on uvloop.

Run:  .venv/bin/python benchmarks/bench_mapping.py [--events N] [--batches B]
"""

from __future__ import annotations

import argparse
import asyncio
import sqlite3
import statistics
import sys
import tempfile
import time
from collections.abc import Coroutine
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from router.storage_mapping import StorageMapping
from shared.config import parse_database_url
from tests.support.stub_nextcloud import schema

USERS = 1000
STORAGE = 42


def build_database(path: Path, scenario: str) -> str:
    """Create the tables and mounts; return the path of a file in the event."""
    users = [f"user{i:04}" for i in range(USERS)]
    if scenario == "root":
        mounts = [schema.Mount(u, STORAGE, "") for u in users]
        event_path = "files/Projects/plan.md"
    else:
        mounts = [schema.Mount(u, STORAGE, f"files/share{i // 10:03}") for i, u in enumerate(users)]
        event_path = "files/share057/report.odt"
    conn = sqlite3.connect(path)
    try:
        schema.create_sqlite(conn)
        schema.seed_sqlite(conn, mounts)
    finally:
        conn.close()
    return event_path


async def measure(url: str, event_path: str, events: int, batches: int) -> list[float]:
    """Per-event CPU microseconds for each batch."""
    mapping = StorageMapping.from_target(parse_database_url(url), "oc_")
    try:
        expected = await mapping.users_for(STORAGE, event_path)  # warm the cache
        per_event: list[float] = []
        for batch in range(batches):
            start = time.process_time()
            for _ in range(events):
                users = await mapping.users_for(STORAGE, event_path)
            elapsed = time.process_time() - start
            per_event.append(elapsed / events * 1e6)
            if batch % max(1, batches // 10) == 0:
                print(f"  batch {batch + 1}/{batches}: {per_event[-1]:.2f} us/event", flush=True)
        assert users == expected
        assert mapping.statistics().query_count == 1, "cache was not warm"
        return per_event
    finally:
        await mapping.close()


class _NullTransport:
    """Stands in for a worker's Unix socket: counts bytes, keeps nothing."""

    def __init__(self) -> None:
        self.written = 0

    def write(self, data: bytes) -> None:
        self.written += len(data)

    def get_write_buffer_size(self) -> int:
        return 0

    def close(self) -> None:
        pass


async def measure_router(url: str, event_path: str, events: int, batches: int) -> list[float]:
    """Per-event CPU microseconds of the router's full path, for each batch."""
    import json

    from router.links import WorkerLink
    from router.router import Router
    from shared.config import Config, parse_redis_url

    target = parse_database_url(url)
    config = Config(nextcloud_url="http://127.0.0.1:9", redis=(parse_redis_url("redis://127.0.0.1:9"),),
                    database=target, workers=3)  # fmt: skip
    router = Router(config, "/nonexistent/router.sock")
    router.mapping = StorageMapping.from_target(target, "oc_")
    loop = asyncio.get_running_loop()
    transports = {}
    for worker in (1, 2, 3):
        link = WorkerLink(router, loop)
        transports[worker] = _NullTransport()
        link.connection_made(transports[worker])  # type: ignore[arg-type]
        link.worker_id = worker
        router.links[worker] = link
    for i in range(USERS):
        router.interest.admit(1 + i % 3, f"user{i:04}")
    payload = json.dumps({"storage": STORAGE, "path": event_path, "file_id": 7}).encode()
    await router.mapping.users_for(STORAGE, event_path)  # warm the cache
    per_event: list[float] = []
    try:
        for _ in range(batches):
            start = time.process_time()
            for _ in range(events):
                router.on_redis_message(b"notify_storage_update", payload)
                await router._resolve_storage_update(*router._storage_updates.popleft())
            await asyncio.sleep(0)  # the per-turn flush to the workers
            per_event.append((time.process_time() - start) / events * 1e6)
        assert all(t.written > 0 for t in transports.values())
        return per_event
    finally:
        await router.mapping.close()


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def run(coro: Coroutine[Any, Any, list[float]]) -> list[float]:
    """Run on uvloop, as the router does, when it is installed."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coro)
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(coro)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=2000, help="calls per batch")
    parser.add_argument("--batches", type=int, default=50)
    parser.add_argument("--scenario", choices=["root", "shares", "all"], default="all")
    args = parser.parse_args()
    scenarios = ["root", "shares"] if args.scenario == "all" else [args.scenario]
    with tempfile.TemporaryDirectory() as tmp:
        for scenario in scenarios:
            db = Path(tmp) / f"{scenario}.db"
            event_path = build_database(db, scenario)
            print(f"scenario {scenario}: {USERS} users, {args.batches} x {args.events} events")
            samples = run(measure(f"sqlite://{db}", event_path, args.events, args.batches))
            print(
                f"scenario {scenario}: CPU per cached storage update -> {USERS} users: "
                f"mean {statistics.fmean(samples):.2f} us, p50 {percentile(samples, 0.5):.2f} us, "
                f"p95 {percentile(samples, 0.95):.2f} us, p99 {percentile(samples, 0.99):.2f} us "
                "(per-batch means)"
            )
            routed = run(measure_router(f"sqlite://{db}", event_path, args.events // 10,
                                        max(5, args.batches // 5)))  # fmt: skip
            print(
                f"scenario {scenario}: router CPU per event, decode + mapping + 3 worker "
                f"batches: mean {statistics.fmean(routed):.1f} us, "
                f"p99 {percentile(routed, 0.99):.1f} us (per-batch means)"
            )


if __name__ == "__main__":
    main()
