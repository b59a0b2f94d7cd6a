"""The four scenarios. Each takes an :class:`~benchmarks.stack.Env` and returns a JSON-able dict.

Every loop here is bounded in count and in time; waits poll a condition with a deadline.
"""

from __future__ import annotations

import asyncio
import bisect
import json
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import redis.asyncio as aioredis

from benchmarks.loadgen import ClientSpec, LoadGen
from benchmarks.procstats import sockstat
from benchmarks.progress import Progress
from benchmarks.report import latency_summary
from benchmarks.stack import Env

Result = dict[str, Any]


@dataclass(frozen=True, slots=True)
class LoadOptions:
    procs: int | None = None  # None: one per 18,000 connections
    window: int = 200  # logins in flight per load-generator process
    login: str = "preauth"  # or "password"


async def wait_for(
    cond: Callable[[], bool], within: float, tick: Callable[[], None] | None = None
) -> bool:
    """Poll ``cond`` every 20 ms until true or ``within`` s pass; return whether it became true."""
    deadline = time.monotonic() + within
    while True:
        if tick:
            tick()
        if cond():
            return True
        if time.monotonic() >= deadline:
            return False
        await asyncio.sleep(0.02)


async def sleep_with_progress(
    seconds: float, label: str, extra: Callable[[], str] = lambda: ""
) -> None:
    with Progress(label, seconds, "s") as bar:
        t0 = time.monotonic()
        while (elapsed := time.monotonic() - t0) < seconds:
            bar.update(elapsed, extra())
            await asyncio.sleep(min(0.2, seconds - elapsed))
        bar.update(seconds, extra(), force=True)


def make_specs(env: Env, count: int, per_user: int, login: str, start: int = 0) -> list[ClientSpec]:
    """``count`` clients, client ``n`` (from ``start``) belonging to user ``n // per_user``."""
    users = env.users
    need = (start + count + per_user - 1) // per_user
    if need > len(users):
        raise ValueError(f"{need} users needed, {len(users)} available")
    out = []
    for n in range(start, start + count):
        user, password = users[n // per_user]
        out.append(ClientSpec(user, None if login == "preauth" else password))
    return out


async def connect_with_bar(lg: LoadGen, specs: list[ClientSpec], label: str) -> Any:
    before = lg.counters()
    with Progress(label, len(specs)) as bar:

        def tick() -> None:
            c = lg.counters()
            ok, failed = c["ok"] - before["ok"], c["failed"] - before["failed"]
            bar.update(ok + failed, f"failed {failed}")

        res = await lg.connect(specs, on_tick=tick)
        tick()
    return res


def loadgen_for(env: Env, connections: int, opts: LoadOptions) -> LoadGen:
    return LoadGen(
        env.target,
        redis_url=env.redis_url,
        procs=opts.procs or LoadGen.procs_for(connections),
        window=opts.window,
    )


# --- idle ------------------------------------------------------------------------


async def idle(
    env: Env, *, connections: int, steps: int, idle_seconds: float, per_user: int, opts: LoadOptions
) -> Result:
    """C idle authenticated connections; PSS growth / C, socket memory, idle CPU over a window."""
    probe = env.probe
    out: Result = {
        "params": {
            "connections": connections,
            "steps": steps,
            "idle_seconds": idle_seconds,
            "conns_per_user": per_user,
            "login": opts.login,
        },
        "steps": [],
    }
    async with loadgen_for(env, connections, opts) as lg:
        await asyncio.sleep(1.0)  # let the server finish start-up allocations
        pss0 = probe.pss()
        sock0 = sockstat()
        out["pss_before_bytes"] = pss0
        opened = 0
        for k in range(1, steps + 1):
            goal = round(connections * k / steps)
            specs = make_specs(env, goal - opened, per_user, opts.login, start=opened)
            res = await connect_with_bar(lg, specs, f"idle: connect {goal:,}")
            opened = goal
            # Not a synchronisation: give allocators a moment so PSS reflects steady state.
            await asyncio.sleep(2.0)
            held = lg.open_connections
            pss = probe.pss()
            sock = sockstat()
            split0 = probe.cpu_split()
            cpu0 = probe.cpu()
            t0 = time.monotonic()
            await sleep_with_progress(
                idle_seconds, f"idle: hold {held:,}", lambda: f"pings {lg.counters()['pings']:,}"
            )
            cpu1 = probe.cpu()
            split1 = probe.cpu_split()
            wall = time.monotonic() - t0
            step: Result = {
                "connections": held,
                "login_failed": res.failed,
                "login_errors": res.errors,
                "kernel_sock_mem_bytes": sock.tcp_mem_bytes - sock0.tcp_mem_bytes,
                "kernel_sock_mem_per_conn_bytes": round(
                    (sock.tcp_mem_bytes - sock0.tcp_mem_bytes) / max(held, 1)
                ),
                "tcp_sockets_in_use": sock.tcp_inuse,
                "cpu_by_process": cpu_split_delta(split0, split1),
            }
            if pss is not None and pss0 is not None:
                step["pss_bytes"] = pss
                step["pss_per_conn_bytes"] = round((pss - pss0) / max(held, 1))
            if cpu0 is not None and cpu1 is not None:
                step["cpu_seconds"] = round(cpu1 - cpu0, 3)
                step["cpu_percent"] = round((cpu1 - cpu0) / wall * 100, 3)
                step["cpu_us_per_conn_s"] = round((cpu1 - cpu0) / wall / max(held, 1) * 1e6, 4)
            out["steps"].append(step)
        out["final"] = out["steps"][-1]
        await lg.close_all()
    return out


# --- fanout -----------------------------------------------------------------------


async def publish_paced(
    r: aioredis.Redis,
    count: int,
    rate: float,
    make: Callable[[int], tuple[str, str]],
    label: str,
    received: Callable[[], int],
) -> float:
    """PUBLISH ``count`` messages at ``rate`` per second, pipelined every 10 ms; returns seconds."""
    t0 = time.monotonic()
    sent = 0
    with Progress(label, count) as bar:
        while sent < count:
            due = min(count, int((time.monotonic() - t0) * rate) + 1)
            if due > sent:
                pipe = r.pipeline(transaction=False)
                for n in range(sent, due):
                    channel, payload = make(n)
                    pipe.publish(channel, payload)
                await pipe.execute()
                sent = due
            bar.update(sent, f"received {received():,}")
            await asyncio.sleep(0.01)
    return time.monotonic() - t0


async def fanout(
    env: Env,
    *,
    users: int,
    per_user: int,
    rate: float,
    duration: float,
    opts: LoadOptions,
    idle_extra: int = 0,
) -> Result:
    """notify_custom to single users at a fixed rate; every user holds ``per_user`` connections.

    ``idle_extra`` more connections, one per further user (users ``users`` and up), are
    logged in before publishing and receive nothing: the cost per delivery with many
    idle connections held (issue 6, target 7).
    """
    total = users * per_user
    events = max(1, int(rate * duration))
    out: Result = {
        "params": {
            "users": users,
            "conns_per_user": per_user,
            "rate": rate,
            "duration": duration,
            "events": events,
            "idle_extra": idle_extra,
        }
    }
    async with loadgen_for(env, total + idle_extra, opts) as lg:
        res = await connect_with_bar(
            lg, make_specs(env, total, per_user, opts.login), f"fanout: connect {total:,}"
        )
        out["login_failed"] = res.failed
        if idle_extra:
            extra = make_specs(env, idle_extra, 1, opts.login, start=users)
            res = await connect_with_bar(lg, extra, f"fanout: connect {idle_extra:,} idle")
            out["idle_login_failed"] = res.failed
        opened = await lg.collect()
        out["connected"] = len(opened.open_idx)
        open_by_user: Counter[str] = Counter(lg.user_of[i] for i in opened.open_idx)
        user_names = [env.users[u][0] for u in range(users)]
        expected = sum(open_by_user[user_names[n % users]] for n in range(events))
        await lg.reset()
        r = aioredis.Redis.from_url(env.redis_url)
        try:

            def make(n: int) -> tuple[str, str]:
                body = {"t": time.time(), "seq": n}
                return "notify_custom", json.dumps(
                    {"user": user_names[n % users], "message": "bench", "body": body}
                )

            # The shared counters are cumulative: measure from here.
            base = lg.counters()["bench"]
            split0 = env.probe.cpu_split()
            cpu0, kcpu0 = env.probe.cpu(), env.probe.kernel_cpu()
            t0 = time.monotonic()
            seconds = await publish_paced(
                r, events, rate, make, "fanout: publish", lambda: lg.counters()["bench"] - base
            )
            with Progress("fanout: drain", expected) as bar:
                await wait_for(
                    lambda: lg.counters()["bench"] - base >= expected,
                    10.0,
                    lambda: bar.update(lg.counters()["bench"] - base),
                )
            wall = time.monotonic() - t0
            cpu1, kcpu1 = env.probe.cpu(), env.probe.kernel_cpu()
            split1 = env.probe.cpu_split()
        finally:
            await r.aclose()
        got = await lg.collect()
        out["server_cpu_by_process"] = cpu_split_delta(split0, split1)
        out.update(
            check_deliveries(lg.user_of, got.bench_idx, got.bench_seq, user_names, users, expected)
        )
        out["publish_seconds"] = round(seconds, 3)
        out["wall_seconds"] = round(wall, 3)
        out["latency"] = latency_summary(got.bench_lat)
        add_cpu(out, cpu0, cpu1, out["deliveries"], kcpu0, kcpu1)
        await lg.close_all()
    return out


def check_deliveries(
    user_of: list[str],
    idx: list[int],
    seqs: list[int],
    user_names: list[str],
    users: int,
    expected: int,
) -> Result:
    """Deliveries counted once per (connection, event); wrong-user and duplicate ones apart."""
    seen: set[tuple[int, int]] = set()
    dup = wrong = 0
    for i, s in zip(idx, seqs, strict=True):
        if user_of[i] != user_names[s % users]:
            wrong += 1
        elif (i, s) in seen:
            dup += 1
        else:
            seen.add((i, s))
    return {
        "expected": expected,
        "deliveries": len(seen),
        "loss": expected - len(seen),
        "duplicates": dup,
        "misdelivered": wrong,
    }


def cpu_split_delta(
    before: dict[str, float] | None, after: dict[str, float] | None
) -> dict[str, float] | None:
    """CPU seconds per server process name between two samples."""
    if before is None or after is None:
        return None
    return {k: round(v - before.get(k, 0.0), 3) for k, v in sorted(after.items())}


def add_cpu(
    out: Result,
    cpu0: float | None,
    cpu1: float | None,
    deliveries: int,
    kcpu0: float | None = None,
    kcpu1: float | None = None,
) -> None:
    if kcpu0 is not None and kcpu1 is not None and deliveries:
        # The kernel's share: on loopback the sender also pays the receiver's TCP work,
        # a floor no server can go under (see benchmarks/kernel_send.py).
        out["server_kernel_cpu_s"] = round(kcpu1 - kcpu0, 3)
        out["kernel_cpu_us_per_delivery"] = round((kcpu1 - kcpu0) / deliveries * 1e6, 3)
    if cpu0 is None or cpu1 is None:
        out["server_cpu_s"] = None
        out["deliveries_per_cpu_s"] = None
        return
    cpu = cpu1 - cpu0
    out["server_cpu_s"] = round(cpu, 3)
    out["deliveries_per_cpu_s"] = round(deliveries / cpu) if cpu > 0 else None
    out["cpu_us_per_delivery"] = round(cpu / deliveries * 1e6, 3) if deliveries else None


# --- broadcast --------------------------------------------------------------------


async def broadcast(
    env: Env,
    *,
    users: int,
    per_user: int,
    rounds: int,
    interval: float,
    storage: int,
    path: str,
    opts: LoadOptions,
) -> Result:
    """Storage updates mapped to every connected user; one round at a time, each drained."""
    total = users * per_user
    out: Result = {
        "params": {
            "users": users,
            "conns_per_user": per_user,
            "rounds": rounds,
            "interval": interval,
            "storage": storage,
        }
    }
    async with loadgen_for(env, total, opts) as lg:
        res = await connect_with_bar(
            lg, make_specs(env, total, per_user, opts.login), f"broadcast: connect {total:,}"
        )
        out["login_failed"] = res.failed
        held = len((await lg.collect()).open_idx)
        await lg.reset()
        r = aioredis.Redis.from_url(env.redis_url)
        published: list[float] = []
        try:
            # One warm-up round so the mapping query and cache fill are not measured.
            await r.publish(
                "notify_storage_update",
                json.dumps({"storage": storage, "path": path, "file_id": 0}),
            )
            await wait_for(lambda: lg.counters()["file"] >= held, 10.0)
            await lg.reset()
            base = lg.counters()["file"]
            cpu0 = env.probe.cpu()
            with Progress("broadcast: rounds", rounds * held) as bar:
                for n in range(rounds):
                    t_round = time.monotonic()
                    published.append(time.time())
                    await r.publish(
                        "notify_storage_update",
                        json.dumps({"storage": storage, "path": path, "file_id": n + 1}),
                    )
                    goal = (n + 1) * held

                    def round_done(goal: int = goal) -> bool:
                        return lg.counters()["file"] - base >= goal

                    await wait_for(
                        round_done, 10.0, lambda: bar.update(lg.counters()["file"] - base)
                    )
                    rest = interval - (time.monotonic() - t_round)
                    if rest > 0 and n + 1 < rounds:
                        await asyncio.sleep(rest)
            cpu1 = env.probe.cpu()
        finally:
            await r.aclose()
        got = await lg.collect()
        lat: list[float] = []
        per_round: defaultdict[int, int] = defaultdict(int)
        for t in got.file_t:
            k = bisect.bisect_right(published, t) - 1
            if k >= 0:
                per_round[k] += 1
                lat.append(t - published[k])
        out["connections"] = held
        out["expected"] = rounds * held
        out["deliveries"] = len(lat)
        out["loss"] = rounds * held - len(lat)
        out["latency"] = latency_summary(lat)
        add_cpu(out, cpu0, cpu1, len(lat))
        await lg.close_all()
    return out


# --- connect ----------------------------------------------------------------------


async def connect(
    env: Env, *, connections: int, users: int, modes: list[str], opts: LoadOptions
) -> Result:
    """A login storm per mode: logins per second, server CPU per login, requests to Nextcloud."""
    per_user = max(1, connections // users)
    out: Result = {"params": {"connections": connections, "users": users, "modes": modes}}
    for mode in modes:
        async with loadgen_for(env, connections, opts) as lg:
            specs = make_specs(env, connections, per_user, mode)
            req0 = env.stub_uid_requests()
            redis0 = env.redis_probe.cpu() if env.redis_probe is not None else None
            cpu0 = env.probe.cpu()
            res = await connect_with_bar(lg, specs, f"connect: {mode}")
            cpu1 = env.probe.cpu()
            redis1 = env.redis_probe.cpu() if env.redis_probe is not None else None
            req1 = env.stub_uid_requests()
            lat = latency_summary(res.login_latency, cdf_points=50)
            lat.pop("cdf_ms", None)
            m: Result = {
                "ok": res.ok,
                "failed": res.failed,
                "errors": res.errors,
                "seconds": round(res.seconds, 3),
                "logins_per_s": round(res.ok / res.seconds, 1) if res.seconds else None,
                "login_latency": lat,
                "distinct_credentials": len({s.user for s in specs}),
                "nextcloud_requests": (req1 - req0)
                if req0 is not None and req1 is not None
                else None,
            }
            if cpu0 is not None and cpu1 is not None:
                m["server_cpu_s"] = round(cpu1 - cpu0, 3)
                m["cpu_ms_per_login"] = round((cpu1 - cpu0) / res.ok * 1000, 4) if res.ok else None
            if redis0 is not None and redis1 is not None and res.ok:
                # The shared state's cost in Redis itself (claims, closes, the events).
                m["redis_cpu_ms_per_login"] = round((redis1 - redis0) / res.ok * 1000, 4)
            out[mode] = m
            await lg.close_all()
            # Not a synchronisation: let the server finish tearing the closed connections
            # down so that work is not charged to the next mode.
            await asyncio.sleep(1.0)
    return out
