"""Run the benchmark scenarios and report.

    python -m benchmarks.run {idle,fanout,broadcast,connect,all} [--quick]
        [--target gateway|baseline|both]                    local stack (default: both)
        [--url ws://host:port/ws --credentials FILE --redis-url URL [--server-pids PID,...]]

Writes ``benchmarks/results/<time>-<scenario>.json`` and ``.png``, prints a table
and a one-line summary. See ``benchmarks/README.md`` for what each figure means.
"""

from __future__ import annotations

import argparse
import datetime
import logging
import math
import os
import platform
import sys
import traceback
from pathlib import Path
from typing import Any

import uvloop

from benchmarks import report, scenarios
from benchmarks.scenarios import LoadOptions
from benchmarks.stack import Env, LocalStack, StackError, remote_env

SCENARIOS = ("idle", "fanout", "broadcast", "connect")
RESULTS = Path(__file__).resolve().parent / "results"

# Full runs: the figures of issue 6. Quick runs (`make bench`): every scenario, both
# servers, in well under 3 minutes on a 2-core machine.
DEFAULTS: dict[str, dict[str, Any]] = {
    "idle": {"connections": 30_000, "steps": 3, "idle_seconds": 60.0, "conns_per_user": 1},
    "fanout": {
        "users": 1_000,
        "conns_per_user": 10,
        "rate": 1_000.0,
        "duration": 20.0,
        "idle_extra": 0,
    },
    "broadcast": {"users": 10_000, "conns_per_user": 1, "rounds": 10, "interval": 1.0},
    "connect": {"connections": 10_000, "users": 1_000},
}
QUICK: dict[str, dict[str, Any]] = {
    "idle": {"connections": 1_000, "steps": 2, "idle_seconds": 5.0, "conns_per_user": 1},
    "fanout": {
        "users": 100,
        "conns_per_user": 5,
        "rate": 200.0,
        "duration": 4.0,
        "idle_extra": 0,
    },
    "broadcast": {"users": 1_000, "conns_per_user": 1, "rounds": 5, "interval": 0.3},
    "connect": {"connections": 500, "users": 100},
}


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m benchmarks.run",
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("scenario", choices=[*SCENARIOS, "all"])
    p.add_argument("--quick", action="store_true", help="short version of every scenario")
    t = p.add_argument_group("target")
    t.add_argument(
        "--target",
        choices=["gateway", "baseline", "both"],
        default="both",
        help="local stack to start (default: both, gateway/baseline ratios)",
    )
    t.add_argument("--url", help="a deployed gateway, ws://host:port/ws or wss://…")
    t.add_argument("--credentials", type=Path, help="user:password per line (with --url)")
    t.add_argument("--redis-url", help="the deployment's Redis, to publish events (with --url)")
    t.add_argument(
        "--server-pids", help="comma-separated PIDs of the deployed server's root processes"
    )
    t.add_argument("--insecure", action="store_true", help="wss: do not verify the certificate")
    t.add_argument("--gateway-workers", type=int, default=3)
    t.add_argument(
        "--gateway-instances", type=int, default=1,
        help="gateway instances on the one Redis, sharing the port (default 1)",
    )  # fmt: skip
    t.add_argument(
        "--debounce",
        action="store_true",
        help="keep the gateway's debounce on (default: DEBOUNCE_DISABLE=1, like the baseline)",
    )
    t.add_argument("--keep-stack-dir", action="store_true", help="keep logs and the SQLite file")
    s = p.add_argument_group("scenario sizes (defaults: issue 6 figures; --quick: small)")
    s.add_argument("--connections", type=int, help="idle, connect: connections")
    s.add_argument("--users", type=int, help="fanout, broadcast, connect: distinct users")
    s.add_argument("--conns-per-user", type=int, help="idle, fanout, broadcast")
    s.add_argument("--steps", type=int, help="idle: measure at C/steps, 2C/steps, … C")
    s.add_argument("--idle-seconds", type=float, help="idle: CPU window per step")
    s.add_argument("--rate", type=float, help="fanout: events per second")
    s.add_argument("--duration", type=float, help="fanout: seconds of publishing")
    s.add_argument(
        "--idle-extra",
        type=int,
        help="fanout: idle connections (one per further user) held while publishing",
    )
    s.add_argument("--rounds", type=int, help="broadcast: storage updates")
    s.add_argument("--interval", type=float, help="broadcast: seconds between rounds")
    s.add_argument("--storage", type=int, default=1, help="broadcast: storage id (local stack: 1)")
    s.add_argument("--storage-path", default="files/bench.txt", help="broadcast: path in the event")
    s.add_argument("--modes", default="preauth,password", help="connect: login modes")
    s.add_argument(
        "--login",
        choices=["preauth", "password"],
        default="preauth",
        help="how idle/fanout/broadcast clients log in",
    )
    lg = p.add_argument_group("load generator")
    lg.add_argument("--loadgen-procs", type=int, help="processes (default: one per 18,000 sockets)")
    lg.add_argument("--window", type=int, default=200, help="logins in flight per process")
    o = p.add_argument_group("output")
    o.add_argument("--results-dir", type=Path, default=RESULTS)
    o.add_argument("--no-plot", action="store_true")
    return p


def params(name: str, args: argparse.Namespace) -> dict[str, Any]:
    out = dict((QUICK if args.quick else DEFAULTS)[name])
    for key in out:
        v = getattr(args, key, None)
        if v is not None:
            out[key] = v
    return out


def users_needed(name: str, p: dict[str, Any]) -> int:
    if name == "idle":
        connections: int = p["connections"]
        per_user: int = p["conns_per_user"]
        return math.ceil(connections / per_user)
    return int(p["users"]) + int(p.get("idle_extra", 0))


async def run_one(name: str, env: Env, args: argparse.Namespace) -> dict[str, Any]:
    p = params(name, args)
    opts = LoadOptions(procs=args.loadgen_procs, window=args.window, login=args.login)
    if name == "idle":
        return await scenarios.idle(
            env,
            connections=p["connections"],
            steps=p["steps"],
            idle_seconds=p["idle_seconds"],
            per_user=p["conns_per_user"],
            opts=opts,
        )
    if name == "fanout":
        return await scenarios.fanout(
            env,
            users=p["users"],
            per_user=p["conns_per_user"],
            rate=p["rate"],
            duration=p["duration"],
            opts=opts,
            idle_extra=p["idle_extra"],
        )
    if name == "broadcast":
        return await scenarios.broadcast(
            env,
            users=p["users"],
            per_user=p["conns_per_user"],
            rounds=p["rounds"],
            interval=p["interval"],
            storage=args.storage,
            path=args.storage_path,
            opts=opts,
        )
    return await scenarios.connect(
        env,
        connections=p["connections"],
        users=p["users"],
        modes=[m.strip() for m in args.modes.split(",") if m.strip()],
        opts=opts,
    )


async def run_local(name: str, target: str, args: argparse.Namespace) -> dict[str, Any]:
    print(f"== {name} on {target}", file=sys.stderr)
    stack = LocalStack(
        target,
        users=users_needed(name, params(name, args)),
        gateway_workers=args.gateway_workers,
        gateway_instances=args.gateway_instances,
        gateway_env={} if args.debounce else {"DEBOUNCE_DISABLE": "1"},
        keep_dir=args.keep_stack_dir,
    )
    try:
        env = stack.start()
    except StackError as e:
        return {"error": f"{target} did not start: {e}"}
    try:
        result = await run_one(name, env, args)
        result["server"] = {"name": target, **env.notes}
        return result
    except Exception as e:  # one failed scenario must not lose the others' figures
        traceback.print_exc()
        return {"error": f"{type(e).__name__}: {e}"}
    finally:
        stack.stop()


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    names = list(SCENARIOS) if args.scenario == "all" else [args.scenario]
    started = datetime.datetime.now().astimezone()
    run: dict[str, Any] = {
        "started": started.isoformat(timespec="seconds"),
        "argv": sys.argv[1:],
        "quick": args.quick,
        "host": {
            "cpus": os.cpu_count(),
            "kernel": platform.release(),
            "python": platform.python_version(),
        },
        "scenarios": {},
    }
    if args.url:
        run["targets"] = ["remote"]
        pids = [int(x) for x in args.server_pids.split(",")] if args.server_pids else None
        with remote_env(args.url, args.credentials, args.redis_url, pids, args.insecure) as env:
            for name in names:
                print(f"== {name} on {args.url}", file=sys.stderr)
                try:
                    run["scenarios"][name] = {"remote": await run_one(name, env, args)}
                except Exception as e:
                    traceback.print_exc()
                    run["scenarios"][name] = {"remote": {"error": f"{type(e).__name__}: {e}"}}
    else:
        targets = ["gateway", "baseline"] if args.target == "both" else [args.target]
        run["targets"] = targets
        for name in names:
            run["scenarios"][name] = {t: await run_local(name, t, args) for t in targets}
    run["finished"] = datetime.datetime.now().astimezone().isoformat(timespec="seconds")
    report.add_ratios(run)
    return run


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.url and not (args.credentials and args.redis_url):
        parser.error("--url needs --credentials and --redis-url")
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    run = uvloop.run(main_async(args))
    args.results_dir.mkdir(parents=True, exist_ok=True)
    stamp = run["started"].replace(":", "").replace("-", "")[:15]
    base = args.results_dir / f"{stamp}-{args.scenario}{'-quick' if args.quick else ''}"
    report.write_json(run, base.with_suffix(".json"))
    plotted = not args.no_plot and report.plot(run, base.with_suffix(".png"))
    print(report.table(run))
    print(
        f"results: {base.with_suffix('.json')}"
        + (f" and {base.with_suffix('.png')}" if plotted else "")
    )
    print(report.summary_line(run))
    failed = any(
        "error" in (res.get(t) or {}) for res in run["scenarios"].values() for t in run["targets"]
    )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
