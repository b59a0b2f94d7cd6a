"""Smoke test of the benchmark tooling: baseline server + load generator over real processes.

Starts redis-server, the stub Nextcloud and ``benchmarks.baseline_server``; logs 20
clients in through two load-generator processes (half pre-auth, half password);
publishes custom events and checks each reached exactly its user's connections.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import time
from collections.abc import Callable

import pytest
import redis.asyncio as aioredis

from benchmarks.loadgen import ClientSpec, LoadGen, wsframes
from benchmarks.scenarios import check_deliveries
from benchmarks.stack import Env, LocalStack

USERS = 5
PER_USER = 4
EVENTS = 3 * USERS  # a multiple of USERS, so the fence seq EVENTS + k is user k's
DEADLINE = 20.0


def test_frames_round_trip_through_parser() -> None:
    # A server frame is the unmasked form of what we send; check header sizes 7/16/64 bit.
    for size in (0, 5, 125, 126, 70_000):
        frame = bytes([0x81, size]) if size < 126 else b""
        if size >= 126:
            frame = (
                bytes([0x81, 126]) + size.to_bytes(2, "big")
                if size < 65536
                else bytes([0x81, 127]) + size.to_bytes(8, "big")
            )
        frame += b"x" * size
        out: list[wsframes.Frame] = []
        assert wsframes.parse_frames(frame[:-1] if size else frame[:1], out) == 0
        assert wsframes.parse_frames(frame + b"\x89", out) == len(frame)
        assert out == [wsframes.Frame(True, wsframes.OP_TEXT, b"x" * size)]


def test_masked_server_frame_is_rejected() -> None:
    with pytest.raises(wsframes.WsProtocolError):
        wsframes.parse_frames(wsframes.text("hello"), [])


POLL_INTERVAL = 0.02  # how often wait_until looks; the deadline is what bounds it


async def wait_until(cond: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + DEADLINE
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(POLL_INTERVAL)


@pytest.mark.integration
@pytest.mark.skipif(shutil.which("redis-server") is None, reason="needs redis-server")
def test_custom_events_reach_exactly_their_users_connections() -> None:
    with LocalStack("baseline", users=USERS) as env:
        asyncio.run(_exercise(env))


async def _exercise(env: Env) -> None:
    specs = [
        ClientSpec(user, None if n % 2 else password)
        for user, password in env.users
        for n in range(PER_USER)
    ]
    async with LoadGen(env.target, redis_url=env.redis_url, procs=2, window=8) as lg:
        result = await lg.connect(specs)
        assert (result.ok, result.failed) == (len(specs), 0), result.errors
        names = [u for u, _ in env.users]
        r = aioredis.Redis.from_url(env.redis_url)
        try:
            for seq in range(EVENTS):
                body = {"t": time.time(), "seq": seq}
                await r.publish(
                    "notify_custom",
                    json.dumps({"user": names[seq % USERS], "message": "bench", "body": body}),
                )
            # A fence: one more event per user. Redis and each connection keep order,
            # so once every connection has its fence, nothing sent earlier is in flight.
            for k, user in enumerate(names):
                seq = EVENTS + k
                body = {"t": time.time(), "seq": seq}
                await r.publish(
                    "notify_custom", json.dumps({"user": user, "message": "bench", "body": body})
                )
        finally:
            await r.aclose()
        total = EVENTS + USERS
        expected = total * PER_USER
        await wait_until(lambda: lg.counters()["bench"] >= expected, "every delivery")
        got = await lg.collect()
        fences = {(i, s) for i, s in zip(got.bench_idx, got.bench_seq, strict=True) if s >= EVENTS}
        assert len(fences) == len(specs)
        report = check_deliveries(lg.user_of, got.bench_idx, got.bench_seq, names, USERS, expected)
        assert report == {
            "expected": expected,
            "deliveries": expected,
            "loss": 0,
            "duplicates": 0,
            "misdelivered": 0,
        }
        wanted = {
            (i, s) for s in range(total) for i, u in enumerate(lg.user_of) if u == names[s % USERS]
        }
        assert set(zip(got.bench_idx, got.bench_seq, strict=True)) == wanted
        assert sorted(got.open_idx) == list(range(len(specs)))
        assert await lg.close_all(grace=DEADLINE) == 0


def test_kernel_send_floor_reports_a_cost_per_send() -> None:
    # benchmarks.kernel_send is what the README's fan-out analysis quotes: a real
    # sender and reader process over loopback, no gateway involved.
    from benchmarks.kernel_send import measure

    res = measure(connections=50, burst=10, rate=200.0, seconds=0.5)
    assert res["sends"] >= 10 and res["sends"] % 10 == 0
    assert res["kernel_us_per_send"] >= 0
    assert res["kernel_us_per_event"] == pytest.approx(res["kernel_us_per_send"] * 10, rel=0.01)
