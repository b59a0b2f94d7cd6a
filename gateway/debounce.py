"""Per-connection debounce of file, activity and notification messages.

A pure, I/O-free scheduler with an injected clock, shared by every connection
of one worker (docs/PROTOCOL.md section 4, checked against notify_push's send
queue).

Rules, per connection and per :class:`MessageKind`:

- a pushed message is queued; a second one of the same kind merges into it
  (file id lists are unioned in first-seen order; unknown ids win);
- the queued message is due once ``QUIET_TIME`` (100 ms) has passed since the
  latest push of that kind *and* at least ``T`` has passed since the previous
  send of that kind, where for files and activities
  ``T = max(1, min(active_connections // 10, max_debounce_time)) * factor``
  (``factor`` is drawn once per connection in [0.5, 1.5)) and for
  notifications ``T`` is a fixed 1 s, not scaled by the factor;
- ``T`` uses the active connection count at the time the message is checked,
  not at the time it was pushed (as notify_push does).

Custom messages are never debounced: callers send them directly and never
pass them here.

Cost model: the worker holds tens of thousands of connections, nearly all
idle. There is no timer, task or object per idle connection. A connection
gets a small ``_Slot`` when a message is queued for it; the slot lives while
something is pending or while a past send can still hold a future message back
(``T`` after it at most); then it is dropped. One heap orders the slots by the
next time they need a look, so :meth:`Debouncer.poll`, called from the
worker's periodic tick, costs O(1) when nothing is due and touches only the
slots that are due. The heap is lazy: a push that makes a slot due *later*
does not touch the heap (the slot is re-examined and re-filed when its old
entry comes up), so the common case of many messages to a busy connection is
a dict lookup and a few assignments.

Times are seconds from a monotonic clock (``time.monotonic()`` in the worker,
plain numbers in tests) and must never decrease between calls.
"""

from __future__ import annotations

import heapq
import math
import random
from collections.abc import Hashable, Iterable
from dataclasses import dataclass
from typing import Final, Generic, TypeVar

from shared.messages import DEBOUNCED_KINDS, MessageKind

__all__ = [
    "FACTOR_MAX",
    "FACTOR_MIN",
    "NOTIFICATION_DEBOUNCE_TIME",
    "QUIET_TIME",
    "UNKNOWN_FILE",
    "DebounceStatistics",
    "Debouncer",
    "PendingFile",
    "debounce_base",
    "debounce_time",
    "random_factor",
]

K = TypeVar("K", bound=Hashable)

#: A queued message waits until no newer message of its kind came for this long.
QUIET_TIME: Final = 0.1
#: Notifications are held back by a fixed time, independent of load and factor.
NOTIFICATION_DEBOUNCE_TIME: Final = 1.0
#: Bounds of the per-connection factor that spreads sends of many connections.
FACTOR_MIN: Final = 0.5
FACTOR_MAX: Final = 1.5
# One second of debounce per this many active connections (integer division,
# as notify_push computes it), clamped to [1, max_debounce_time].
_CONNECTIONS_PER_SECOND: Final = 10
_MIN_BASE: Final = 1.0
# Stale heap entries are tolerated up to this count before a rebuild is
# considered, so small heaps are never rebuilt for a handful of them.
_COMPACT_MIN_STALE: Final = 1024

_INF: Final = math.inf
_NEVER: Final = -math.inf


# Per kind, for the loops in poll: the kind, its plain int index (an IntEnum
# member as a list index is several times slower), its bit in _Slot.pending,
# and whether it is the fixed-time notification.
_KIND_BITS: Final = tuple(
    (kind, int(kind), 1 << kind, kind == MessageKind.NOTIFICATION) for kind in DEBOUNCED_KINDS
)
_FILE: Final = int(MessageKind.FILE)
_NOTIFICATION: Final = int(MessageKind.NOTIFICATION)


@dataclass(frozen=True, slots=True)
class PendingFile:
    """A file message: the changed file ids, or ``None`` when they are unknown.

    ``ids`` is a tuple without duplicates in first-seen order rather than a set
    because notify_push keeps that order, and it shows in the
    ``notify_file_id [..]`` frame.
    """

    ids: tuple[int, ...] | None

    @classmethod
    def of(cls, ids: Iterable[int]) -> PendingFile:
        """A file message for ``ids``, duplicates removed, first-seen order kept."""
        return cls(tuple(dict.fromkeys(ids)))


#: The file message with unknown ids (sent as plain ``notify_file``).
UNKNOWN_FILE: Final = PendingFile(None)


@dataclass(frozen=True, slots=True)
class DebounceStatistics:
    """A snapshot of a :class:`Debouncer`'s state and counters."""

    enabled: bool
    #: The gateway-wide active connection count last given.
    active_connections: int
    #: ``T`` for files and activities before the per-connection factor, seconds.
    debounce_base: float
    #: Connections with a slot: something pending or a send recent enough to matter.
    tracked_connections: int
    #: Queued (connection, kind) messages not yet sent.
    pending_messages: int
    #: Heap entries, stale ones included.
    scheduled_entries: int
    #: Messages pushed while enabled.
    pushed_total: int
    #: Pushes folded into an already queued message of the same kind.
    merged_total: int
    #: Debounced messages handed back by ``poll``.
    sent_total: int
    #: Pushes handed straight back because debouncing is disabled.
    immediate_total: int
    #: Merged file messages turned into unknown ids by ``max_file_ids``.
    file_ids_overflow_total: int


def debounce_base(active_connections: int, max_debounce_time: float) -> float:
    """``T`` for files and activities before the per-connection factor, seconds."""
    return max(
        _MIN_BASE, float(min(active_connections // _CONNECTIONS_PER_SECOND, max_debounce_time))
    )


def debounce_time(kind: MessageKind, base: float, factor: float) -> float:
    """The least time between two sends of ``kind`` to one connection, seconds."""
    if kind == _NOTIFICATION:
        return NOTIFICATION_DEBOUNCE_TIME
    return base * factor


def random_factor(rng: random.Random | None = None) -> float:
    """A per-connection factor, uniform in [FACTOR_MIN, FACTOR_MAX).

    Not cryptographic: it only spreads load, nothing is secret about it.
    """
    draw = (rng or random).random()
    factor = FACTOR_MIN + (FACTOR_MAX - FACTOR_MIN) * draw
    # draw < 1, but the sum can round up to FACTOR_MAX; keep the bound open.
    return factor if factor < FACTOR_MAX else math.nextafter(FACTOR_MAX, 0.0)


class _Slot(Generic[K]):
    """Debounce state of one connection that has something pending or recent."""

    __slots__ = ("factor", "file_ids", "key", "pending", "received", "sent", "seq", "wake")

    def __init__(self, key: K, factor: float) -> None:
        self.key = key
        self.factor = factor
        # Bit (1 << kind) is set while a message of that kind is queued.
        self.pending = 0
        # Merged ids of the queued file message (insertion-ordered set);
        # None means unknown ids (or nothing queued).
        self.file_ids: dict[int, None] | None = None
        # Per kind: time of the latest push, time of the latest send (_NEVER
        # once it can no longer hold anything back).
        self.received = [0.0, 0.0, 0.0]
        self.sent = [_NEVER, _NEVER, _NEVER]
        # The single valid heap entry for this slot is (wake, seq, self);
        # seq == -1 means none (new or forgotten slot).
        self.wake = _INF
        self.seq = -1


class Debouncer(Generic[K]):
    """Worker-wide debounce scheduler for the connections (keys ``K``) of one worker.

    Typical use from the worker::

        if debouncer.push(conn, conn.factor, MessageKind.FILE, PendingFile((5,)), now):
            conn.send_file(PendingFile((5,)))  # disabled: send as is
        ...
        # from one periodic tick (e.g. every 50 ms):
        for conn, kind, file in debouncer.poll(time.monotonic()):
            conn.send(kind, file)
        # when a connection closes:
        debouncer.forget(conn)

    The tick period adds to the 100 ms quiet time (a 50 ms tick sends 100 to
    150 ms after the last message); :meth:`next_due` tells an event-driven
    caller when the next look is needed instead.
    """

    __slots__ = (
        "_active",
        "_base",
        "_enabled",
        "_file_overflow",
        "_heap",
        "_immediate",
        "_max_base",
        "_max_debounce_time",
        "_max_file_ids",
        "_merged",
        "_next_seq",
        "_pending",
        "_pushed",
        "_sent",
        "_slots",
        "_stale",
    )

    def __init__(
        self,
        *,
        max_debounce_time: float,
        enabled: bool = True,
        max_file_ids: int | None = None,
    ) -> None:
        """Create an empty scheduler.

        ``max_debounce_time`` is ``MAX_DEBOUNCE_TIME`` in seconds (>= 0).
        ``enabled=False`` is ``DEBOUNCE_DISABLE``: every push is handed back
        for immediate sending. ``max_file_ids`` bounds the ids one merged file
        message may carry; past it the message becomes ``notify_file`` (ids
        unknown), which clients treat as "rescan". ``None`` keeps
        notify_push's unbounded merge.

        Raises ``ValueError`` for a negative or non-finite
        ``max_debounce_time`` or a ``max_file_ids`` below 1.
        """
        if not 0.0 <= max_debounce_time < _INF:
            raise ValueError(f"max_debounce_time must be finite and >= 0, not {max_debounce_time}")
        if max_file_ids is not None and max_file_ids < 1:
            raise ValueError(f"max_file_ids must be >= 1 or None, not {max_file_ids}")
        self._enabled = enabled
        self._max_debounce_time = float(max_debounce_time)
        self._max_file_ids = max_file_ids
        self._active = 0
        self._base = debounce_base(0, self._max_debounce_time)
        # The largest base any connection count can give: a send older than
        # max_base * factor can never hold a message back again.
        self._max_base = max(_MIN_BASE, self._max_debounce_time)
        self._slots: dict[K, _Slot[K]] = {}
        self._heap: list[tuple[float, int, _Slot[K]]] = []
        self._next_seq = 0
        self._stale = 0
        self._pending = 0
        self._pushed = 0
        self._merged = 0
        self._sent = 0
        self._immediate = 0
        self._file_overflow = 0

    @property
    def enabled(self) -> bool:
        """False when debouncing is off (``DEBOUNCE_DISABLE``)."""
        return self._enabled

    def set_active_connections(self, n: int) -> None:
        """Set the gateway-wide active connection count that ``T`` scales with.

        Raises ``ValueError`` for a negative count.
        """
        if n < 0:
            raise ValueError(f"active connection count must be >= 0, not {n}")
        self._active = n
        base = debounce_base(n, self._max_debounce_time)
        old = self._base
        self._base = base
        # A longer T needs nothing: entries that come up early are re-filed
        # lazily. A shorter T makes messages due before their heap entries, so
        # re-file everything. The base moves only while n < 10 *
        # max_debounce_time + 10 (150 by default), so this stays rare and cheap.
        if base < old and self._slots:
            self._rebuild()

    def push(
        self,
        key: K,
        factor: float,
        kind: MessageKind,
        file: PendingFile | None,
        now: float,
    ) -> bool:
        """Queue a message of ``kind`` for connection ``key``.

        ``factor`` is the connection's fixed debounce factor (see
        :func:`random_factor`); the first push of a tracked connection sets
        it. ``file`` is the file message for ``MessageKind.FILE`` (``None``
        there means unknown ids) and must be ``None`` for other kinds.

        Returns True when debouncing is disabled: the caller must send the
        message itself, now. Otherwise returns False and :meth:`poll` hands
        the (possibly merged) message back when it is due.

        Raises ``ValueError`` for a custom message, a ``file`` with a non-file kind, or a factor
        that is not a finite positive number.
        """
        if not self._enabled:
            self._immediate += 1
            return True
        file_msg = UNKNOWN_FILE
        if kind == _FILE:
            if file is not None:
                file_msg = file
        elif file is not None:
            raise ValueError(f"a {kind.name} message carries no file ids")
        elif kind is MessageKind.CUSTOM:
            raise ValueError("custom messages are never debounced")
        if not 0.0 < factor < _INF:
            raise ValueError(f"debounce factor must be finite and > 0, not {factor}")

        slot = self._slots.get(key)
        if slot is None:
            slot = _Slot(key, factor)
            self._slots[key] = slot
        self._pushed += 1
        bit = 1 << kind
        if slot.pending & bit:
            self._merged += 1
            if kind == _FILE:
                self._merge_file(slot, file_msg)
        else:
            slot.pending |= bit
            self._pending += 1
            if kind == _FILE:
                ids = file_msg.ids
                slot.file_ids = None if ids is None else dict.fromkeys(ids)
                self._check_file_bound(slot)
        slot.received[kind] = now

        due = max(
            now + QUIET_TIME,
            slot.sent[kind] + debounce_time(kind, self._base, slot.factor),
        )
        # Only a wake-up that comes earlier needs a heap entry; a later one is
        # found when the current entry comes up (see the module docstring).
        if due < slot.wake:
            if slot.seq >= 0:
                self._stale += 1
            self._schedule(slot, due)
        return False

    def poll(self, now: float) -> list[tuple[K, MessageKind, PendingFile | None]]:
        """Take every message due at ``now``, as ``(key, kind, file)``.

        ``file`` is the merged :class:`PendingFile` for ``MessageKind.FILE``
        and ``None`` otherwise. Within one connection the order is file,
        activity, notification, as notify_push sends them. Also drops the state
        of connections that no longer need any.
        """
        heap = self._heap
        out: list[tuple[K, MessageKind, PendingFile | None]] = []
        # Fast path of the idle tick: nothing to look at yet.
        if not heap or heap[0][0] > now:
            return out
        refile: list[tuple[_Slot[K], float]] = []
        while heap and heap[0][0] <= now:
            _, seq, slot = heapq.heappop(heap)
            if seq != slot.seq:
                self._stale -= 1
                continue
            slot.seq = -1
            slot.wake = _INF
            refile.append((slot, self._visit(slot, now, out)))
        # Re-filed after the loop so each slot is visited at most once per
        # poll, whatever rounding does to its next wake time.
        for slot, wake in refile:
            if wake == _INF:
                # Nothing pending and no send recent enough to matter: the
                # connection costs nothing here any more.
                del self._slots[slot.key]
            else:
                self._schedule(slot, wake)
        self._maybe_compact()
        return out

    def next_due(self) -> float | None:
        """The earliest time :meth:`poll` has work (a send or a clean-up), or None."""
        heap = self._heap
        while heap and heap[0][1] != heap[0][2].seq:
            heapq.heappop(heap)
            self._stale -= 1
        return heap[0][0] if heap else None

    def forget(self, key: K) -> None:
        """Drop everything queued for ``key`` (its connection closed). Idempotent."""
        slot = self._slots.pop(key, None)
        if slot is None:
            return
        self._pending -= slot.pending.bit_count()
        if slot.seq >= 0:
            self._stale += 1
        slot.seq = -1
        slot.wake = _INF
        slot.file_ids = None
        self._maybe_compact()

    def statistics(self) -> DebounceStatistics:
        """A snapshot of the state and counters (trio-style ``statistics()``)."""
        return DebounceStatistics(
            enabled=self._enabled,
            active_connections=self._active,
            debounce_base=self._base,
            tracked_connections=len(self._slots),
            pending_messages=self._pending,
            scheduled_entries=len(self._heap),
            pushed_total=self._pushed,
            merged_total=self._merged,
            sent_total=self._sent,
            immediate_total=self._immediate,
            file_ids_overflow_total=self._file_overflow,
        )

    # -- internals ---------------------------------------------------------

    def _merge_file(self, slot: _Slot[K], file: PendingFile) -> None:
        ids = slot.file_ids
        if ids is None:
            return  # already unknown: unknown absorbs everything
        if file.ids is None:
            slot.file_ids = None
            return
        for file_id in file.ids:
            # Assigning an existing key keeps its position: first-seen order.
            ids[file_id] = None
        self._check_file_bound(slot)

    def _check_file_bound(self, slot: _Slot[K]) -> None:
        limit = self._max_file_ids
        if limit is not None and slot.file_ids is not None and len(slot.file_ids) > limit:
            slot.file_ids = None
            self._file_overflow += 1

    def _schedule(self, slot: _Slot[K], when: float) -> None:
        seq = self._next_seq
        self._next_seq = seq + 1
        slot.seq = seq
        slot.wake = when
        heapq.heappush(self._heap, (when, seq, slot))

    def _visit(
        self,
        slot: _Slot[K],
        now: float,
        out: list[tuple[K, MessageKind, PendingFile | None]],
    ) -> float:
        """Hand out what ``slot`` has due at ``now``; return when it next needs a look.

        Uses the same expressions as :meth:`_next_wake` and :meth:`push`, so
        a slot filed for time t is found due when polled at t.
        """
        factor = slot.factor
        scaled = self._base * factor  # == debounce_time(FILE or ACTIVITY, base, factor)
        longest = self._max_base * factor
        received = slot.received
        sent_at = slot.sent
        wake = _INF
        for kind, index, bit, is_notification in _KIND_BITS:
            sent = sent_at[index]
            if slot.pending & bit:
                t = NOTIFICATION_DEBOUNCE_TIME if is_notification else scaled
                due = max(received[index] + QUIET_TIME, sent + t)
                if now < due:
                    if due < wake:
                        wake = due
                    continue
                file: PendingFile | None = None
                if index == _FILE:
                    ids = slot.file_ids
                    file = UNKNOWN_FILE if ids is None else PendingFile(tuple(ids))
                    slot.file_ids = None
                slot.pending &= ~bit
                self._pending -= 1
                self._sent += 1
                out.append((slot.key, kind, file))
                sent = sent_at[index] = now
            elif sent == _NEVER:
                continue
            # A send holds back the next one by T at most, and T can grow up
            # to the longest value with the connection count: keep it until then.
            forget_at = sent + (NOTIFICATION_DEBOUNCE_TIME if is_notification else longest)
            if now >= forget_at:
                sent_at[index] = _NEVER
            elif forget_at < wake:
                wake = forget_at
        return wake

    def _next_wake(self, slot: _Slot[K]) -> float:
        """When ``slot`` next needs a look: a message due or a send to forget."""
        factor = slot.factor
        scaled = self._base * factor
        longest = self._max_base * factor
        wake = _INF
        for _kind, index, bit, is_notification in _KIND_BITS:
            sent = slot.sent[index]
            if slot.pending & bit:
                t = NOTIFICATION_DEBOUNCE_TIME if is_notification else scaled
                when = max(slot.received[index] + QUIET_TIME, sent + t)
            elif sent != _NEVER:
                when = sent + (NOTIFICATION_DEBOUNCE_TIME if is_notification else longest)
            else:
                continue
            if when < wake:
                wake = when
        return wake

    def _maybe_compact(self) -> None:
        # Superseded and forgotten entries stay in the heap until they come up
        # (at most max T later); rebuild when they outnumber the live ones so
        # churn of closed connections cannot grow the heap.
        if self._stale > _COMPACT_MIN_STALE and self._stale * 2 > len(self._heap):
            self._rebuild()

    def _rebuild(self) -> None:
        """Re-file every slot at its exact next wake time; drops stale entries."""
        heap: list[tuple[float, int, _Slot[K]]] = []
        seq = self._next_seq
        for slot in self._slots.values():
            wake = self._next_wake(slot)
            slot.seq = seq
            slot.wake = wake
            heap.append((wake, seq, slot))
            seq += 1
        self._next_seq = seq
        heapq.heapify(heap)
        self._heap = heap
        self._stale = 0
