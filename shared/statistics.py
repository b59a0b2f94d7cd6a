"""The statistics a worker reports to the router: one typed schema both sides import.

A worker keeps its counters in a :class:`WorkerStatistics` (plain attribute
increments on the hot paths), sends it to the router in a ``Stats`` message
every few seconds, and the router sums every worker's latest one with its own
login numbers for ``/metrics`` and ``notify_query`` (docs/PROTOCOL.md section 6).

On the wire the schema is a flat list in field order (:meth:`to_wire`), checked
field by field on the way back in (:meth:`from_wire`), so a field added here
is added on both sides at once.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass, field, fields
from typing import Final

from shared.messages import MessageKind

# Publish-to-write latency: sub-millisecond to the 15 s of maximal debounce.
LATENCY_BUCKETS: Final = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
                          2.5, 5.0, 15.0, 30.0)  # fmt: skip
LOGIN_BUCKETS: Final = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


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

    def add(self, other: Histogram) -> None:
        """Add ``other``'s observations (same bounds) to this one."""
        for i, count in enumerate(other.counts):
            self.counts[i] += count
        self.sum += other.sum

    def cumulative(self) -> list[tuple[str, int]]:
        """(le, count) pairs as Prometheus wants them, ``+Inf`` last."""
        total = 0
        out = []
        for bound, count in zip((*self.bounds, float("inf")), self.counts, strict=True):
            total += count
            out.append(("+Inf" if bound == float("inf") else repr(bound), total))
        return out

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Histogram) and (self.bounds, self.counts, self.sum) == (
            other.bounds,
            other.counts,
            other.sum,
        )

    def __repr__(self) -> str:
        return f"Histogram(counts={self.counts}, sum={self.sum})"


def _login_histogram() -> Histogram:
    return Histogram(LOGIN_BUCKETS)


def _latency_histogram() -> Histogram:
    return Histogram(LATENCY_BUCKETS)


def _per_kind() -> list[int]:
    return [0] * len(MessageKind)


@dataclass(slots=True, eq=True)
class WorkerStatistics:
    """Counters (since the process started) and gauges (now) of one worker."""

    # gauges
    active_connections: int = 0
    unauthenticated_connections: int = 0
    debounce_pending: int = 0
    debounce_base_seconds: float = 0.0
    # counters
    total_connections: int = 0
    #: Messages written to clients, indexed by :class:`MessageKind`.
    messages_sent: list[int] = field(default_factory=_per_kind)
    slow_clients_closed: int = 0
    #: Connections dropped before login to stay under the per-worker bound:
    #: refused at accept, or evicted (the oldest that had not sent its login).
    unauthenticated_rejected: int = 0
    unauthenticated_evicted: int = 0
    logins_failed: int = 0
    router_reconnects: int = 0
    #: Login checks this process sent to Nextcloud itself.
    login_requests: int = 0
    login_request_errors: int = 0
    login_cache_hits: int = 0
    login_seconds: Histogram = field(default_factory=_login_histogram)
    delivery_seconds: Histogram = field(default_factory=_latency_histogram)

    def add(self, other: WorkerStatistics) -> None:
        """Add ``other`` to this one, field by field (gauges too: sums over workers)."""
        for f in fields(self):
            mine = getattr(self, f.name)
            theirs = getattr(other, f.name)
            if isinstance(mine, Histogram):
                mine.add(theirs)
            elif isinstance(mine, list):
                for i, value in enumerate(theirs):
                    mine[i] += value
            else:
                setattr(self, f.name, mine + theirs)

    def counters(self) -> WorkerStatistics:
        """A copy with the counters only (the gauges at zero): what outlives a process."""
        copy = WorkerStatistics()
        copy.add(self)
        for name in _GAUGES:
            setattr(copy, name, type(getattr(copy, name))())
        return copy

    def to_wire(self) -> list[object]:
        """The fields in declaration order; a histogram as its counts and sum."""
        out: list[object] = []
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, Histogram):
                out.append([*value.counts, value.sum])
            elif isinstance(value, list):
                out.append(list(value))
            else:
                out.append(value)
        return out

    @classmethod
    def from_wire(cls, item: object) -> WorkerStatistics:
        """The inverse of :meth:`to_wire`. Raises ValueError for anything else."""
        template = cls()
        if not isinstance(item, list) or len(item) != len(fields(template)):
            raise ValueError("statistics do not match the schema")
        for f, value in zip(fields(template), item, strict=True):
            current = getattr(template, f.name)
            if isinstance(current, Histogram):
                counts = _numbers(value, len(current.counts) + 1, f.name)
                current.counts = [int(c) for c in counts[:-1]]
                current.sum = float(counts[-1])
            elif isinstance(current, list):
                setattr(template, f.name, [int(v) for v in _numbers(value, len(current), f.name)])
            elif isinstance(current, float):
                setattr(template, f.name, float(_numbers([value], 1, f.name)[0]))
            else:
                setattr(template, f.name, int(_numbers([value], 1, f.name)[0]))
        return template


_GAUGES: Final = (
    "active_connections",
    "unauthenticated_connections",
    "debounce_pending",
    "debounce_base_seconds",
)


def _numbers(value: object, length: int, name: str) -> list[int | float]:
    if (
        not isinstance(value, list)
        or len(value) != length
        or not all(isinstance(v, int | float) and not isinstance(v, bool) for v in value)
    ):
        raise ValueError(f"statistics field {name!r} is malformed")
    return value
