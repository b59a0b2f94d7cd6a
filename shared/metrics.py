"""Metrics: cheap counters in each process, one Prometheus view for the whole gateway.

Workers keep plain numbers and :class:`Histogram` objects and send a flat
snapshot (``dict[str, float]``) to the router every few seconds; the router
sums the snapshots with its own numbers and renders them with
prometheus-client. The notify_push names (PROTOCOL.md section 6) are kept
exactly, including its unlabelled ``message_count_total`` line, so existing
dashboards keep working; everything else is prefixed ``notify_push_gateway_``.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field

from prometheus_client.core import Metric
from prometheus_client.registry import Collector, CollectorRegistry

PREFIX = "notify_push_gateway_"
# Publish-to-write latency: sub-millisecond to the 15 s of maximal debounce.
LATENCY_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
                   2.5, 5.0, 15.0, 30.0)  # fmt: skip
LOGIN_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
MESSAGE_TYPES = ("file", "activity", "notification", "custom")


class Histogram:
    """Fixed buckets; ``observe`` is a bisect and two additions."""

    __slots__ = ("bounds", "counts", "sum")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)  # last: above every bound (+Inf only)
        self.sum = 0.0

    def observe(self, value: float) -> None:
        self.counts[bisect.bisect_left(self.bounds, value)] += 1
        self.sum += value

    def snapshot(self, name: str) -> dict[str, float]:
        out = {f"{name}:sum": self.sum}
        for i, count in enumerate(self.counts):
            out[f"{name}:{i}"] = float(count)
        return out


def histogram_samples(
    name: str, bounds: tuple[float, ...], values: Mapping[str, float]
) -> tuple[list[tuple[str, float]], float, float]:
    """Cumulative (le, count) pairs, total count and sum from summed snapshots."""
    cumulative = 0.0
    buckets = []
    for i, bound in enumerate((*bounds, float("inf"))):
        cumulative += values.get(f"{name}:{i}", 0.0)
        buckets.append(("+Inf" if bound == float("inf") else repr(bound), cumulative))
    return buckets, cumulative, values.get(f"{name}:sum", 0.0)


@dataclass
class GatewayView:
    """Everything /metrics shows, gathered by the router at scrape time."""

    active_connections: int
    active_users: int
    mapping_queries: int
    events_received: int
    redis_subscribed: bool
    redis_reconnects: int
    database_up: bool | None
    workers_configured: int
    dropped: dict[str, int]
    totals: dict[str, float]  # summed worker snapshots
    per_worker: dict[int, dict[str, float]] = field(default_factory=dict)


def _metric(name: str, doc: str, kind: str) -> Metric:
    return Metric(name, doc, kind)


class GatewayCollector(Collector):
    def __init__(self, view: Callable[[], GatewayView]) -> None:
        self._view = view

    def collect(self) -> Iterator[Metric]:
        v = self._view()
        t = v.totals
        yield from _notify_push_metrics(v)

        m = _metric(PREFIX + "worker_connections", "Authenticated connections per worker", "gauge")
        for worker, values in sorted(v.per_worker.items()):
            labels = {"worker": str(worker)}
            m.add_sample(m.name, labels, values.get("active_connection_count", 0.0))
        yield m
        m = _metric(
            PREFIX + "debounce_base_seconds",
            "Debounce time T before the per-connection factor, per worker", "gauge",
        )  # fmt: skip
        for worker, values in sorted(v.per_worker.items()):
            m.add_sample(m.name, {"worker": str(worker)}, values.get("debounce_base_seconds", 0.0))
        yield m
        m = _metric(PREFIX + "debounce_pending", "Messages waiting in debounce", "gauge")
        m.add_sample(m.name, {}, t.get("debounce_pending", 0.0))
        yield m
        m = _metric(
            PREFIX + "unauthenticated_connections", "Connections not yet logged in", "gauge"
        )
        m.add_sample(m.name, {}, t.get("unauthenticated_connections", 0.0))
        yield m
        m = _metric(PREFIX + "workers_linked", "Workers linked to the router", "gauge")
        m.add_sample(m.name, {}, float(len(v.per_worker)))
        yield m
        m = _metric(PREFIX + "workers_configured", "Workers the gateway runs", "gauge")
        m.add_sample(m.name, {}, float(v.workers_configured))
        yield m
        m = _metric(PREFIX + "redis_subscribed", "1 while subscribed to Redis", "gauge")
        m.add_sample(m.name, {}, 1.0 if v.redis_subscribed else 0.0)
        yield m
        m = _metric(PREFIX + "redis_reconnects", "Redis subscription reconnects", "counter")
        m.add_sample(m.name + "_total", {}, float(v.redis_reconnects))
        yield m
        if v.database_up is not None:
            m = _metric(PREFIX + "database_up", "1 while the database answers", "gauge")
            m.add_sample(m.name, {}, 1.0 if v.database_up else 0.0)
            yield m
        m = _metric(PREFIX + "events_dropped", "Events not delivered, by reason", "counter")
        for reason, count in sorted(v.dropped.items()):
            m.add_sample(m.name + "_total", {"reason": reason}, float(count))
        m.add_sample(m.name + "_total", {"reason": "slow_client"}, t.get("slow_clients_closed", 0))
        yield m
        m = _metric(PREFIX + "login_requests", "Login checks sent to Nextcloud", "counter")
        m.add_sample(m.name + "_total", {"result": "error"}, t.get("login_request_errors", 0.0))
        m.add_sample(m.name + "_total", {"result": "all"}, t.get("login_requests", 0.0))
        yield m
        m = _metric(PREFIX + "login_cache_hits", "Logins answered from the cache", "counter")
        m.add_sample(m.name + "_total", {}, t.get("login_cache_hits", 0.0))
        yield m
        yield _histogram(
            PREFIX + "login_request_duration_seconds",
            "Duration of login checks with Nextcloud",
            "login_seconds", LOGIN_BUCKETS, t,
        )  # fmt: skip
        yield _histogram(
            PREFIX + "delivery_latency_seconds",
            "From receiving an event from Redis to writing its frames",
            "delivery_seconds", LATENCY_BUCKETS, t,
        )  # fmt: skip


def _notify_push_metrics(v: GatewayView) -> Iterator[Metric]:
    """The names notify_push exposes, exactly as its dashboards expect them."""
    t = v.totals
    value: float
    for name, doc, value in (
        ("active_connection_count", "Authenticated client connections", v.active_connections),
        ("active_user_count", "Users with at least one connection", v.active_users),
    ):
        m = _metric(name, doc, "gauge")
        m.add_sample(name, {}, float(value))
        yield m
    for name, doc, value in (
        ("total_connection_count", "Connections authenticated since start",
         t.get("total_connection_count", 0.0)),
        ("mapping_query_count", "Storage mapping database queries", float(v.mapping_queries)),
    ):  # fmt: skip
        m = _metric(name, doc, "counter")
        m.add_sample(name, {}, value)
        yield m
    m = _metric("event_count", "Events received from Redis", "counter")
    m.add_sample("event_count_total", {}, float(v.events_received))
    yield m
    m = _metric("message_count", "Messages sent to clients", "counter")
    sent = {kind: t.get(f"messages_sent_{kind}", 0.0) for kind in MESSAGE_TYPES}
    m.add_sample("message_count_total", {}, sum(sent.values()))
    for kind, value in sent.items():
        m.add_sample("message_count_total", {"type": kind}, value)
    yield m


def _histogram(
    name: str, doc: str, key: str, bounds: tuple[float, ...], totals: Mapping[str, float]
) -> Metric:
    m = _metric(name, doc, "histogram")
    buckets, count, total = histogram_samples(key, bounds, totals)
    for le, value in buckets:
        m.add_sample(name + "_bucket", {"le": le}, value)
    m.add_sample(name + "_count", {}, count)
    m.add_sample(name + "_sum", {}, total)
    return m


def make_registry(view: Callable[[], GatewayView]) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(GatewayCollector(view))
    return registry
