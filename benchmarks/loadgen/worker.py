"""Entry point of one load-generator process: a uvloop loop serving controller commands.

Commands arrive on a ``multiprocessing`` pipe as ``(name, args)`` tuples and are
answered one at a time, in order, with a picklable dict.
"""

from __future__ import annotations

import array
import asyncio
import contextlib
import logging
import resource
from collections.abc import Sequence
from multiprocessing.connection import Connection
from typing import Any, cast

import uvloop

from benchmarks.loadgen.client import Counters, Fleet, State, Target

log = logging.getLogger("benchmarks.loadgen.worker")


def raise_nofile_limit() -> int:
    """Raise the soft RLIMIT_NOFILE to the hard limit; return the new soft limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return hard


def worker_main(
    conn: Connection,
    worker_id: int,
    target: Target,
    source_addrs: Sequence[str],
    redis_url: str | None,
    counter_array: Any,
) -> None:
    raise_nofile_limit()
    with contextlib.suppress(KeyboardInterrupt):
        uvloop.run(
            _serve(conn, Fleet(target, source_addrs, Counters(counter_array, worker_id), redis_url))
        )


async def _serve(conn: Connection, fleet: Fleet) -> None:
    loop = asyncio.get_running_loop()

    def receive() -> tuple[str, Any]:
        try:
            return cast(tuple[str, Any], conn.recv())
        except EOFError:
            # The controller is gone: shut down rather than linger as an orphan.
            return ("quit", None)

    # Wait for commands in a thread, not with loop.add_reader: the loop would make
    # the pipe non-blocking, and a large reply then fails with EAGAIN in send().
    try:
        while True:
            name, args = await loop.run_in_executor(None, receive)
            if name == "quit":
                break
            try:
                reply = await _handle(fleet, name, args)
            except Exception as e:  # reported to the controller, which raises it there
                log.exception("command %s failed", name)
                reply = {"error": f"{type(e).__name__}: {e}"}
            conn.send(reply)
    finally:
        await fleet.aclose()
        conn.close()


async def _handle(fleet: Fleet, name: str, args: Any) -> dict[str, Any]:
    rec = fleet.recorder
    if name == "connect":
        specs, window, timeout = args
        result = await fleet.connect(specs, window, timeout)
        result["lat"] = result["lat"].tobytes()
        return result
    if name == "reset":
        rec.clear()
        return {}
    if name == "collect":
        return {
            "bench_idx": rec.bench_idx.tobytes(),
            "bench_seq": rec.bench_seq.tobytes(),
            "bench_lat": rec.bench_lat.tobytes(),
            "file_idx": rec.file_idx.tobytes(),
            "file_t": rec.file_t.tobytes(),
            "other": dict(rec.other),
            "open_idx": array.array(
                "i", (i for i, c in fleet.clients.items() if c.state == State.OPEN)
            ).tobytes(),
        }
    if name == "close_all":
        left = await fleet.close_all(float(args))
        return {"left": left}
    raise ValueError(f"unknown command {name!r}")
