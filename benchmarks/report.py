"""Statistics, the JSON result, the printed table and the PNG plot of a run."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

Result = dict[str, Any]


def percentile(sorted_values: Sequence[float], p: float) -> float | None:
    """Nearest-rank percentile of an already sorted sequence."""
    if not sorted_values:
        return None
    k = max(0, min(len(sorted_values) - 1, math.ceil(p / 100 * len(sorted_values)) - 1))
    return sorted_values[k]


def latency_summary(values: Sequence[float], cdf_points: int = 200) -> dict[str, Any]:
    """p50/p95/p99/max in milliseconds and a down-sampled CDF for the plot."""
    s = sorted(values)
    out: dict[str, Any] = {"count": len(s)}
    for p in (50, 95, 99):
        v = percentile(s, p)
        out[f"p{p}_ms"] = None if v is None else round(v * 1000, 3)
    out["max_ms"] = round(s[-1] * 1000, 3) if s else None
    if s:
        step = max(1, len(s) // cdf_points)
        out["cdf_ms"] = [round(s[i] * 1000, 3) for i in range(0, len(s), step)] + [
            round(s[-1] * 1000, 3)
        ]
    return out


def ratio(a: Any, b: Any) -> float | None:
    if isinstance(a, int | float) and isinstance(b, int | float) and b:
        return round(a / b, 3)
    return None


# (scenario, dotted key, label, unit, "better" direction) of the figures in the table.
HEADLINES: list[tuple[str, str, str]] = [
    ("idle", "final.pss_per_conn_bytes", "idle: PSS per connection (bytes)"),
    ("idle", "final.kernel_sock_mem_per_conn_bytes", "idle: kernel socket mem per conn (bytes)"),
    ("idle", "final.cpu_percent", "idle: server CPU % of one core"),
    ("idle", "final.connections", "idle: connections held"),
    ("fanout", "deliveries", "fanout: deliveries"),
    ("fanout", "loss", "fanout: lost deliveries"),
    ("fanout", "server_cpu_s", "fanout: server CPU seconds"),
    ("fanout", "deliveries_per_cpu_s", "fanout: deliveries per server CPU-s"),
    ("fanout", "cpu_us_per_delivery", "fanout: server CPU µs per delivery"),
    ("fanout", "kernel_cpu_us_per_delivery", "fanout: of which kernel µs per delivery"),
    ("fanout", "connected", "fanout: connections held (incl. --idle-extra)"),
    ("fanout", "latency.p50_ms", "fanout: latency p50 (ms)"),
    ("fanout", "latency.p95_ms", "fanout: latency p95 (ms)"),
    ("fanout", "latency.p99_ms", "fanout: latency p99 (ms)"),
    ("broadcast", "deliveries", "broadcast: deliveries"),
    ("broadcast", "loss", "broadcast: lost deliveries"),
    ("broadcast", "deliveries_per_cpu_s", "broadcast: deliveries per server CPU-s"),
    ("broadcast", "latency.p50_ms", "broadcast: latency p50 (ms)"),
    ("broadcast", "latency.p99_ms", "broadcast: latency p99 (ms)"),
    ("connect", "preauth.logins_per_s", "connect: pre-auth logins/s"),
    ("connect", "preauth.cpu_ms_per_login", "connect: pre-auth server CPU ms/login"),
    ("connect", "password.logins_per_s", "connect: password logins/s"),
    ("connect", "preauth.redis_cpu_ms_per_login", "connect: pre-auth Redis CPU ms/login"),
    ("connect", "password.cpu_ms_per_login", "connect: password server CPU ms/login"),
    ("connect", "password.redis_cpu_ms_per_login", "connect: password Redis CPU ms/login"),
    ("connect", "password.nextcloud_requests", "connect: password requests to Nextcloud"),
]


def dig(d: Any, dotted: str) -> Any:
    for part in dotted.split("."):
        if not isinstance(d, dict):
            return None
        d = d.get(part)
    return d


def add_ratios(run: Result) -> None:
    """For ``--target both``: gateway / baseline for every headline figure, same run."""
    scen = run["scenarios"]
    for name, res in scen.items():
        if "gateway" in res and "baseline" in res:
            res["ratio_gateway_to_baseline"] = {
                key: ratio(dig(res["gateway"], key), dig(res["baseline"], key))
                for s, key, _ in HEADLINES
                if s == name
            }


def _fmt(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:,.3f}" if abs(v) < 100 else f"{v:,.0f}"
    if isinstance(v, int):
        return f"{v:,}"
    return str(v)


def table(run: Result) -> str:
    targets = run["targets"]
    cols = [*targets, *(["gateway/baseline"] if {"gateway", "baseline"} <= set(targets) else [])]
    rows: list[list[str]] = []
    for scen, key, label in HEADLINES:
        res = run["scenarios"].get(scen)
        if not res:
            continue
        vals = [dig(res.get(t), key) for t in targets]
        if all(v is None for v in vals):
            continue
        row = [label, *(_fmt(v) for v in vals)]
        if len(cols) > len(targets):
            row.append(_fmt(ratio(vals[0], vals[1])))
        rows.append(row)
    for scen, res in run["scenarios"].items():
        for t in targets:
            err = (res.get(t) or {}).get("error")
            if err:
                rows.append([f"{scen}: {t} FAILED", err.splitlines()[0][:60]])
    header = ["figure", *cols]
    widths = [
        max(len(r[i]) if i < len(r) else 0 for r in [header, *rows]) for i in range(len(header))
    ]
    lines = ["  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True))]
    lines.append("  ".join("-" * w for w in widths))
    for r in rows:
        lines.append(
            "  ".join(
                c.ljust(w) if i == 0 else c.rjust(w)
                for i, (c, w) in enumerate(zip(r, widths, strict=False))
            )
        )
    return "\n".join(lines)


def summary_line(run: Result) -> str:
    parts: list[str] = []
    for scen, key, short in [
        ("idle", "final.pss_per_conn_bytes", "idle B/conn"),
        ("idle", "final.cpu_percent", "idle CPU%"),
        ("fanout", "deliveries_per_cpu_s", "fanout deliv/CPU-s"),
        ("fanout", "latency.p99_ms", "fanout p99 ms"),
        ("broadcast", "deliveries_per_cpu_s", "bcast deliv/CPU-s"),
        ("broadcast", "latency.p99_ms", "bcast p99 ms"),
        ("connect", "preauth.cpu_ms_per_login", "login CPU ms"),
    ]:
        res = run["scenarios"].get(scen)
        if not res:
            continue
        vals = "/".join(_fmt(dig(res.get(t), key)) for t in run["targets"])
        parts.append(f"{short} {vals}")
    return f"SUMMARY [{'/'.join(run['targets'])}] " + "; ".join(parts)


def write_json(run: Result, path: Path) -> None:
    path.write_text(json.dumps(run, indent=2, sort_keys=False) + "\n")


def plot(run: Result, path: Path) -> bool:
    """Latency CDFs and memory/CPU per connection as C grows; False without matplotlib."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    panels: list[tuple[str, str]] = []
    scen = run["scenarios"]
    for name in ("fanout", "broadcast"):
        if any(dig(scen.get(name, {}).get(t), "latency.cdf_ms") for t in run["targets"]):
            panels.append((name, "cdf"))
    if any(dig(scen.get("idle", {}).get(t), "steps") for t in run["targets"]):
        panels += [("idle", "mem"), ("idle", "cpu")]
    if not panels:
        return False
    cols = min(2, len(panels))
    nrows = math.ceil(len(panels) / cols)
    fig, axes = plt.subplots(nrows, cols, figsize=(6 * cols, 4 * nrows), squeeze=False)
    flat = [ax for row in axes for ax in row]
    for ax in flat[len(panels) :]:
        ax.set_visible(False)
    for ax, (name, kind) in zip(flat, panels, strict=False):
        for t in run["targets"]:
            res = scen.get(name, {}).get(t) or {}
            if kind == "cdf":
                cdf = dig(res, "latency.cdf_ms") or []
                if cdf:
                    ys = [(i + 1) / len(cdf) for i in range(len(cdf))]
                    ax.plot(cdf, ys, label=t)
                ax.set_xscale("log")
                ax.set_xlabel("publish-to-receive latency (ms)")
                ax.set_ylabel("fraction of deliveries")
                ax.set_title(f"{name}: latency CDF")
            else:
                steps = res.get("steps") or []
                xs = [s["connections"] for s in steps]
                if kind == "mem":
                    ax.plot(
                        xs, [s["pss_per_conn_bytes"] / 1024 for s in steps], marker="o", label=t
                    )
                    ax.set_ylabel("server PSS per connection (KiB)")
                    ax.set_ylim(bottom=0)
                    ax.set_title("idle: memory per connection")
                else:
                    ax.plot(xs, [s["cpu_us_per_conn_s"] for s in steps], marker="o", label=t)
                    ax.set_ylabel("server CPU µs per connection per second")
                    ax.set_ylim(bottom=0)
                    ax.set_title("idle: CPU per connection")
                ax.set_xlabel("connections")
        ax.grid(True, alpha=0.3)
        ax.legend()
    fig.suptitle(f"notify-push benchmark {run['started']}", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return True
