"""Metrics: cheap counters in each process, one Prometheus view for the whole gateway.

Workers keep their numbers in a :class:`shared.statistics.WorkerStatistics`
and send it to the router every few seconds; the router sums them with its own
numbers and renders them with prometheus-client. The notify_push names
(docs/PROTOCOL.md section 6) are kept
exactly, including its unlabelled ``message_count_total`` line, so existing
dashboards keep working; everything else is prefixed ``notify_push_gateway_``,
but for the router's own standard ``process_*`` metrics.

Every family's name is the one its samples carry in the text format (a
counter ``x`` is written ``# TYPE x_total counter`` over samples ``x_total``):
``promtool check metrics`` lints only the ``_count`` suffix of the two
notify_push gauges (tests/integration/test_prometheus.py).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from prometheus_client.core import Metric
from prometheus_client.process_collector import ProcessCollector
from prometheus_client.registry import Collector, CollectorRegistry

from shared.messages import MessageKind
from shared.statistics import Histogram, WorkerStatistics

PREFIX = "notify_push_gateway_"


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
    totals: WorkerStatistics  # every worker's, summed, plus the router's logins
    per_worker: dict[int, WorkerStatistics] = field(default_factory=dict)


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
            m.add_sample(m.name, labels, float(values.active_connections))
        yield m
        m = _metric(
            PREFIX + "debounce_base_seconds",
            "Debounce time T before the per-connection factor, per worker", "gauge",
        )  # fmt: skip
        for worker, values in sorted(v.per_worker.items()):
            m.add_sample(m.name, {"worker": str(worker)}, values.debounce_base_seconds)
        yield m
        m = _metric(PREFIX + "debounce_pending", "Messages waiting in debounce", "gauge")
        m.add_sample(m.name, {}, float(t.debounce_pending))
        yield m
        m = _metric(
            PREFIX + "unauthenticated_connections", "Connections not yet logged in", "gauge"
        )
        m.add_sample(m.name, {}, float(t.unauthenticated_connections))
        yield m
        m = _metric(
            PREFIX + "unauthenticated_dropped",
            "Connections dropped before login at the per-worker bound, by reason", "counter",
        )  # fmt: skip
        m.add_sample(m.name + "_total", {"reason": "refused"}, float(t.unauthenticated_rejected))
        m.add_sample(m.name + "_total", {"reason": "evicted"}, float(t.unauthenticated_evicted))
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
        m.add_sample(m.name + "_total", {"reason": "slow_client"}, float(t.slow_clients_closed))
        yield m
        m = _metric(PREFIX + "login_requests", "Login checks sent to Nextcloud", "counter")
        m.add_sample(m.name + "_total", {"result": "error"}, float(t.login_request_errors))
        m.add_sample(m.name + "_total", {"result": "all"}, float(t.login_requests))
        yield m
        m = _metric(PREFIX + "login_cache_hits", "Logins answered from the cache", "counter")
        m.add_sample(m.name + "_total", {}, float(t.login_cache_hits))
        yield m
        yield _histogram(
            PREFIX + "login_request_duration_seconds",
            "Duration of login checks with Nextcloud", t.login_seconds,
        )  # fmt: skip
        yield _histogram(
            PREFIX + "delivery_latency_seconds",
            "From receiving an event from Redis to writing its frames", t.delivery_seconds,
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
    # Counters by meaning, but notify_push's samples have no ``_total``, and a
    # counter family's samples must: prometheus-client writes a counter ``x`` as
    # ``# TYPE x_total counter`` over samples ``x_total``. Declared as counters,
    # these rendered ``# TYPE total_connection_count_total counter`` above a
    # sample of another name. Untyped (``unknown``, written ``untyped``), the
    # family has the sample's name, the sample keeps the name dashboards read,
    # and rate() and increase() work on it as on a counter. promtool lints
    # only the ``_count`` suffix of the two gauges above (kept on purpose).
    for name, doc, value in (
        ("total_connection_count", "Connections authenticated since start (a counter)",
         float(t.total_connections)),
        ("mapping_query_count", "Storage mapping database queries (a counter)",
         float(v.mapping_queries)),
    ):  # fmt: skip
        m = _metric(name, doc, "unknown")
        m.add_sample(name, {}, value)
        yield m
    m = _metric("event_count", "Events received from Redis", "counter")
    m.add_sample("event_count_total", {}, float(v.events_received))
    yield m
    m = _metric("message_count", "Messages sent to clients", "counter")
    m.add_sample("message_count_total", {}, float(sum(t.messages_sent)))
    for kind in MessageKind:
        m.add_sample("message_count_total", {"type": kind.label}, float(t.messages_sent[kind]))
    yield m


def _histogram(name: str, doc: str, histogram: Histogram) -> Metric:
    m = _metric(name, doc, "histogram")
    buckets = histogram.cumulative()
    for le, value in buckets:
        m.add_sample(name + "_bucket", {"le": le}, float(value))
    m.add_sample(name + "_count", {}, float(buckets[-1][1]))
    m.add_sample(name + "_sum", {}, histogram.sum)
    return m


def make_registry(view: Callable[[], GatewayView]) -> CollectorRegistry:
    """The gateway's families, and the standard ``process_*`` ones of the router itself.

    ``process_open_fds`` and ``process_max_fds`` describe the router only (the
    process serving /metrics); its soft open-file limit is every worker's too,
    since the supervisor raises it before starting them.
    """
    registry = CollectorRegistry(auto_describe=False)
    registry.register(GatewayCollector(view))
    ProcessCollector(registry=registry)
    return registry
