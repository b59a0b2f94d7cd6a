"""Tests of the pure debounce scheduler, all on an injected clock (plain floats)."""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.debounce import (
    FACTOR_MAX,
    FACTOR_MIN,
    QUIET_TIME,
    UNKNOWN_FILE,
    Debouncer,
    PendingFile,
    debounce_base,
    debounce_time,
    random_factor,
)
from shared.messages import DEBOUNCED_KINDS, MessageKind

FILE = MessageKind.FILE
ACTIVITY = MessageKind.ACTIVITY
NOTIFICATION = MessageKind.NOTIFICATION

Sent = list[tuple[str, MessageKind, PendingFile | None]]


def make(n: int = 1, max_debounce_time: float = 15, **kwargs: object) -> Debouncer[str]:
    d: Debouncer[str] = Debouncer(max_debounce_time=max_debounce_time, **kwargs)  # type: ignore[arg-type]
    d.set_active_connections(n)
    return d


def files(*ids: int) -> PendingFile:
    return PendingFile.of(ids)


def assert_empty(d: Debouncer[str]) -> None:
    """Nothing at all is held: the memory bound of an idle worker."""
    stats = d.statistics()
    assert stats.tracked_connections == 0
    assert stats.pending_messages == 0
    assert stats.scheduled_entries == 0
    assert d.next_due() is None


# -- notify_push's own send-queue sequences ---------------------------------


@pytest.mark.parametrize("n", [100, 1])
def test_notify_push_send_queue_sequence(n: int) -> None:
    # notify_push's message.rs tests, with its factor 1.0: T is 10 s for 100
    # connections and 1 s for 1 connection.
    d = make(n)
    t = debounce_base(n, 15)
    assert t == (10.0 if n == 100 else 1.0)
    assert not d.push("c", 1.0, ACTIVITY, None, 0.0)
    assert not d.push("c", 1.0, FILE, files(1), 0.0)
    assert not d.push("c", 1.0, FILE, files(2), 0.010)

    # Within 100 ms: merged, nothing sent.
    assert d.poll(0.020) == []
    # After 100 ms: the merged file message, then the activity.
    assert d.poll(0.200) == [("c", FILE, files(1, 2)), ("c", ACTIVITY, None)]

    # Pushed within T of the last send: held back, and merged.
    p1, p2 = (5.0, 6.0) if n == 100 else (1.2, 1.3)
    d.push("c", 1.0, FILE, files(3), p1)
    d.push("c", 1.0, FILE, files(4), p2)
    assert d.poll(10.0 if n == 100 else 1.0) == []
    # Once T has passed: one merged message.
    assert d.poll(70.0 if n == 100 else 3.0) == [("c", FILE, files(3, 4))]
    # Nothing left, and no memory either once the last send stops mattering.
    assert d.poll(300.0 if n == 100 else 5.0) == []
    # The last send is kept for the largest T (15 s here) in case the
    # connection count grows, then dropped.
    assert d.poll(400.0) == []
    assert_empty(d)


def test_quiet_time_restarts_with_each_push() -> None:
    d = make()
    d.push("c", 1.0, ACTIVITY, None, 0.0)
    d.push("c", 1.0, ACTIVITY, None, 0.08)
    d.push("c", 1.0, ACTIVITY, None, 0.16)
    assert d.poll(0.20) == []
    assert d.poll(0.2599) == []
    assert d.poll(0.26) == [("c", ACTIVITY, None)]
    assert d.statistics().merged_total == 2


def test_first_message_waits_only_the_quiet_time() -> None:
    # No earlier send: T does not apply, even at the largest T.
    d = make(n=10_000)
    d.push("c", 1.4, FILE, files(7), 100.0)
    assert d.next_due() == pytest.approx(100.1)
    assert d.poll(100.09) == []
    assert d.poll(100.1) == [("c", FILE, files(7))]


def test_release_exactly_after_t() -> None:
    d = make(n=50)  # base 5 s
    f = 1.2
    d.push("c", f, ACTIVITY, None, 0.0)
    assert d.poll(0.1) == [("c", ACTIVITY, None)]
    d.push("c", f, ACTIVITY, None, 0.5)
    due = 0.1 + 5 * f
    assert d.next_due() == pytest.approx(due)
    assert d.poll(due - 0.001) == []
    assert d.poll(due) == [("c", ACTIVITY, None)]


def test_kinds_are_independent_and_ordered() -> None:
    d = make()
    d.push("c", 1.0, NOTIFICATION, None, 0.0)
    d.push("c", 1.0, ACTIVITY, None, 0.0)
    d.push("c", 1.0, FILE, UNKNOWN_FILE, 0.0)
    assert d.poll(0.1) == [
        ("c", FILE, UNKNOWN_FILE),
        ("c", ACTIVITY, None),
        ("c", NOTIFICATION, None),
    ]
    # A file send does not hold back an activity pushed later.
    d.push("c", 1.0, FILE, files(1), 0.2)
    assert d.poll(0.3) == []
    d2 = make()
    d2.push("c", 1.0, FILE, files(1), 0.0)
    assert d2.poll(0.1) == [("c", FILE, files(1))]
    d2.push("c", 1.0, ACTIVITY, None, 0.2)
    assert d2.poll(0.31) == [("c", ACTIVITY, None)]


def test_connections_are_independent() -> None:
    d = make()
    d.push("a", 1.0, FILE, files(1), 0.0)
    d.push("b", 1.0, FILE, files(2), 0.05)
    assert d.poll(0.1) == [("a", FILE, files(1))]
    assert d.poll(0.16) == [("b", FILE, files(2))]


# -- file id merging --------------------------------------------------------


def test_file_ids_union_in_first_seen_order() -> None:
    d = make()
    d.push("c", 1.0, FILE, files(3, 1), 0.0)
    d.push("c", 1.0, FILE, files(1, 2, 3), 0.01)
    d.push("c", 1.0, FILE, files(5, 2), 0.02)
    assert d.poll(1.0) == [("c", FILE, PendingFile((3, 1, 2, 5)))]


@pytest.mark.parametrize("unknown_at", [0, 1, 2])
def test_unknown_ids_make_the_merged_message_unknown(unknown_at: int) -> None:
    d = make()
    for i in range(3):
        d.push("c", 1.0, FILE, UNKNOWN_FILE if i == unknown_at else files(i), i * 0.01)
    assert d.poll(1.0) == [("c", FILE, UNKNOWN_FILE)]


def test_file_none_means_unknown_ids() -> None:
    d = make()
    d.push("c", 1.0, FILE, files(1), 0.0)
    d.push("c", 1.0, FILE, None, 0.0)
    assert d.poll(1.0) == [("c", FILE, UNKNOWN_FILE)]


def test_after_a_send_merging_starts_afresh() -> None:
    d = make()
    d.push("c", 1.0, FILE, UNKNOWN_FILE, 0.0)
    assert d.poll(0.1) == [("c", FILE, UNKNOWN_FILE)]
    d.push("c", 1.0, FILE, files(9), 0.2)
    assert d.poll(2.0) == [("c", FILE, files(9))]


def test_max_file_ids_turns_large_merges_unknown() -> None:
    d = make(max_file_ids=3)
    d.push("c", 1.0, FILE, files(1, 2), 0.0)
    d.push("c", 1.0, FILE, files(2, 3), 0.0)
    assert d.poll(0.1) == [("c", FILE, files(1, 2, 3))]
    d.push("c", 1.0, FILE, files(1, 2), 2.0)
    d.push("c", 1.0, FILE, files(3, 4), 2.0)
    assert d.poll(2.1) == [("c", FILE, UNKNOWN_FILE)]
    d.push("c", 1.0, FILE, files(1, 2, 3, 4), 4.0)
    assert d.poll(4.1) == [("c", FILE, UNKNOWN_FILE)]
    assert d.statistics().file_ids_overflow_total == 2


def test_pending_file_of_removes_duplicates() -> None:
    assert PendingFile.of([4, 4, 1, 4, 2, 1]).ids == (4, 1, 2)
    assert PendingFile.of([]).ids == ()


# -- T ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("active", "max_debounce_time", "base"),
    [
        (0, 15, 1.0),  # never below 1 s
        (9, 15, 1.0),
        (15, 15, 1.0),  # integer division, as notify_push: not 1.5
        (19, 15, 1.0),
        (20, 15, 2.0),
        (29, 15, 2.0),
        (100, 15, 10.0),
        (150, 15, 15.0),
        (10**6, 15, 15.0),  # never above max_debounce_time
        (10**6, 3, 3.0),
        (10**6, 0, 1.0),  # ... but the 1 s floor wins over a tiny maximum
        (10**6, 0.5, 1.0),
        (10**6, 2.5, 2.5),
    ],
)
def test_debounce_base(active: int, max_debounce_time: float, base: float) -> None:
    assert debounce_base(active, max_debounce_time) == base
    d = make(active, max_debounce_time)
    assert d.statistics().debounce_base == base


def test_debounce_time_scales_files_and_activities_but_not_notifications() -> None:
    assert debounce_time(FILE, 10.0, 0.5) == 5.0
    assert debounce_time(ACTIVITY, 10.0, 1.4) == pytest.approx(14.0)
    assert debounce_time(NOTIFICATION, 10.0, 1.4) == 1.0
    assert debounce_time(NOTIFICATION, 1.0, 0.5) == 1.0


def test_notification_fixed_one_second() -> None:
    d = make(n=10_000)  # file/activity T would be 15 s * 1.4 = 21 s
    f = 1.4
    d.push("c", f, NOTIFICATION, None, 0.0)
    d.push("c", f, FILE, files(1), 0.0)
    assert d.poll(0.1) == [("c", FILE, files(1)), ("c", NOTIFICATION, None)]
    d.push("c", f, NOTIFICATION, None, 0.2)
    d.push("c", f, FILE, files(2), 0.2)
    assert d.poll(1.0999) == []
    assert d.poll(1.1) == [("c", NOTIFICATION, None)]
    assert d.poll(0.1 + 15 * f - 0.001) == []
    assert d.poll(0.1 + 15 * f) == [("c", FILE, files(2))]


def test_notification_one_second_even_with_a_small_factor() -> None:
    d = make()
    d.push("c", 0.5, NOTIFICATION, None, 0.0)
    d.push("c", 0.5, ACTIVITY, None, 0.0)
    assert len(d.poll(0.1)) == 2
    d.push("c", 0.5, NOTIFICATION, None, 0.2)
    d.push("c", 0.5, ACTIVITY, None, 0.2)
    assert d.poll(0.6) == [("c", ACTIVITY, None)]  # 0.5 s after the last send
    assert d.poll(1.0999) == []
    assert d.poll(1.1) == [("c", NOTIFICATION, None)]


def test_t_uses_the_connection_count_at_release_time() -> None:
    # As notify_push's drain: the count when the message is checked decides.
    d = make(n=150)  # 15 s
    d.push("c", 1.0, FILE, files(1), 0.0)
    assert d.poll(0.1) == [("c", FILE, files(1))]
    d.push("c", 1.0, FILE, files(2), 1.0)
    assert d.poll(1.2) == []
    d.set_active_connections(0)  # 1 s: the held message is overdue now
    assert d.next_due() == pytest.approx(1.1)
    assert d.poll(1.2) == [("c", FILE, files(2))]

    d.push("c", 1.0, FILE, files(3), 1.3)
    d.set_active_connections(50)  # 5 s: no longer due at 1.2 + 1
    assert d.poll(2.3) == []
    assert d.poll(6.1999) == []
    assert d.poll(6.2) == [("c", FILE, files(3))]


def test_a_send_still_holds_back_after_the_count_grows() -> None:
    # Forgetting the last send once the *current* T passed would be wrong: the
    # count, and T with it, may grow before the next message.
    d = make(n=0)
    d.push("c", 1.0, ACTIVITY, None, 0.0)
    assert d.poll(0.1) == [("c", ACTIVITY, None)]
    assert d.poll(5.0) == []  # 1 s T long passed
    d.set_active_connections(1000)  # 15 s
    d.push("c", 1.0, ACTIVITY, None, 5.1)
    assert d.poll(15.0) == []
    assert d.poll(15.1) == [("c", ACTIVITY, None)]


def test_random_factor_range() -> None:
    rng = random.Random(1234)
    draws = [random_factor(rng) for _ in range(2000)]
    assert all(FACTOR_MIN <= f < FACTOR_MAX for f in draws)
    assert min(draws) < 0.6
    assert max(draws) > 1.4

    class Edge(random.Random):
        def __init__(self, value: float) -> None:
            super().__init__()
            self.value = value

        def random(self) -> float:
            return self.value

    assert random_factor(Edge(0.0)) == FACTOR_MIN
    assert random_factor(Edge(math.nextafter(1.0, 0.0))) < FACTOR_MAX


# -- disabled, forget, validation -------------------------------------------


def test_disabled_sends_everything_immediately() -> None:
    d = make(enabled=False)
    assert not d.enabled
    for i in range(3):
        assert d.push("c", 1.0, FILE, files(i), 0.0)
        assert d.push("c", 1.0, ACTIVITY, None, 0.0)
        assert d.push("c", 1.0, NOTIFICATION, None, 0.0)
    assert d.poll(100.0) == []
    assert_empty(d)
    assert d.statistics().immediate_total == 9
    assert d.statistics().pushed_total == 0


def test_forget_drops_pending_and_history() -> None:
    d = make(n=150)
    d.push("a", 1.0, FILE, files(1), 0.0)
    d.push("a", 1.0, ACTIVITY, None, 0.0)
    d.push("b", 1.0, ACTIVITY, None, 0.0)
    assert d.statistics().pending_messages == 3
    d.forget("a")
    d.forget("a")  # idempotent
    d.forget("never-seen")
    assert d.statistics().pending_messages == 1
    assert d.poll(0.1) == [("b", ACTIVITY, None)]
    d.forget("b")
    assert d.poll(1000.0) == []
    assert_empty(d)

    # A key reused after forget starts with no send history: no T hold.
    d.push("b", 1.0, ACTIVITY, None, 2000.0)
    assert d.poll(2000.1) == [("b", ACTIVITY, None)]
    d.forget("b")
    d.push("b", 1.0, ACTIVITY, None, 2000.2)
    assert d.poll(2000.3) == [("b", ACTIVITY, None)]


@pytest.mark.parametrize("factor", [0.0, -1.0, math.nan, math.inf])
def test_bad_factor_rejected(factor: float) -> None:
    with pytest.raises(ValueError, match="factor"):
        make().push("c", factor, FILE, files(1), 0.0)


@pytest.mark.parametrize("kind", [ACTIVITY, NOTIFICATION])
def test_file_with_other_kind_rejected(kind: MessageKind) -> None:
    with pytest.raises(ValueError, match="file ids"):
        make().push("c", 1.0, kind, files(1), 0.0)


@pytest.mark.parametrize("value", [-1.0, math.nan, math.inf])
def test_bad_max_debounce_time_rejected(value: float) -> None:
    with pytest.raises(ValueError, match="max_debounce_time"):
        Debouncer[str](max_debounce_time=value)


def test_bad_counts_rejected() -> None:
    with pytest.raises(ValueError, match="connection count"):
        make().set_active_connections(-1)
    with pytest.raises(ValueError, match="max_file_ids"):
        Debouncer[str](max_debounce_time=15, max_file_ids=0)


# -- memory and cost --------------------------------------------------------


def test_state_is_dropped_once_the_last_send_no_longer_matters() -> None:
    d = make(n=0, max_debounce_time=15)
    f = 1.25
    d.push("c", f, FILE, files(1), 0.0)
    d.push("c", f, NOTIFICATION, None, 0.0)
    assert len(d.poll(0.1)) == 2
    # Held for the largest T any connection count could give (15 s * f),
    # because the count may grow before the next message.
    assert d.statistics().tracked_connections == 1
    assert d.poll(0.1 + 15 * f - 0.001) == []
    assert d.statistics().tracked_connections == 1
    assert d.poll(0.1 + 15 * f) == []
    assert_empty(d)


def test_idle_poll_touches_nothing() -> None:
    d = make()
    assert d.poll(0.0) == []
    assert d.next_due() is None
    d.push("c", 1.0, ACTIVITY, None, 0.0)
    assert d.poll(0.05) == []
    assert d.statistics().scheduled_entries == 1


def test_pushes_to_a_pending_connection_do_not_grow_the_heap() -> None:
    d = make()
    for i in range(1000):
        d.push("c", 1.0, FILE, files(i % 7), i * 0.001)
    stats = d.statistics()
    assert stats.scheduled_entries == 1
    assert stats.pending_messages == 1
    assert stats.merged_total == 999
    assert d.poll(1.1) == [("c", FILE, files(0, 1, 2, 3, 4, 5, 6))]


def test_many_forgotten_connections_do_not_grow_the_heap() -> None:
    d = make()
    keys = [f"k{i}" for i in range(5000)]
    for k in keys:
        d.push(k, 1.0, ACTIVITY, None, 0.0)
    for k in keys:
        d.forget(k)
        stats = d.statistics()
        # Stale entries are compacted away once they outnumber live ones.
        assert stats.scheduled_entries <= 2 * stats.tracked_connections + 1025
    assert d.poll(0.1) == []
    assert_empty(d)


def test_many_connections_release_in_one_poll() -> None:
    d = make(n=30_000)
    for i in range(3000):
        d.push(f"k{i}", 1.0, FILE, files(i), i * 1e-5)
    out = d.poll(0.2)
    assert len(out) == 3000
    assert {o[0] for o in out} == {f"k{i}" for i in range(3000)}
    assert d.poll(0.2 + 15.0) == []
    assert_empty(d)


# -- property: equal to a naive model of notify_push's send queue ------------


@dataclass
class _ModelQueue:
    """notify_push's SendQueue, one per connection, checked at every poll."""

    pending: dict[MessageKind, list[PendingFile | None]] = field(default_factory=dict)
    received: dict[MessageKind, float] = field(default_factory=dict)
    sent: dict[MessageKind, float] = field(default_factory=dict)


def _model_merge(kind: MessageKind, items: list[PendingFile | None]) -> PendingFile | None:
    if kind is not FILE:
        return None
    ids: list[int] = []
    for item in items:
        assert item is not None
        if item.ids is None:
            return UNKNOWN_FILE
        ids.extend(item.ids)
    return PendingFile.of(ids)


@dataclass(frozen=True)
class Push:
    key: str
    kind: MessageKind
    ids: list[int] | None  # None: unknown ids (files only)
    dt_ms: int


@dataclass(frozen=True)
class Poll:
    dt_ms: int


@dataclass(frozen=True)
class Count:
    n: int


@dataclass(frozen=True)
class Forget:
    key: str


Op = Push | Poll | Count | Forget
KEYS = ["a", "b"]

# Step sizes mix round values (which land on the 100 ms and whole-second
# boundaries) with arbitrary ones; the counts cross the T steps (one per 10
# connections) both ways, so a T that shrinks or grows under a pending message
# is common.
_counts = st.one_of(st.sampled_from([0, 10, 20, 50, 1000]), st.integers(0, 300))
_dt_ms = st.one_of(
    st.sampled_from([0, 50, 100, 101, 1000, 2000, 5000, 30_000]), st.integers(0, 3000)
)

ops_strategy = st.lists(
    st.one_of(
        st.builds(
            Push,
            st.sampled_from(KEYS),
            st.sampled_from(DEBOUNCED_KINDS),
            st.one_of(st.none(), st.lists(st.integers(0, 9), max_size=3)),
            _dt_ms,
        ),
        st.builds(Poll, _dt_ms),
        st.builds(Count, _counts),
        st.builds(Forget, st.sampled_from(KEYS)),
    ),
    min_size=10,
    max_size=80,
)

# One connection and one kind, no forget: the sequences that matter for T
# (send, count changes, push within T, poll in between) come up far more often.
single_stream_strategy = st.lists(
    st.one_of(
        st.builds(Push, st.just("a"), st.just(FILE), st.just([1]), _dt_ms),
        st.builds(Poll, _dt_ms),
        st.builds(Count, _counts),
    ),
    min_size=5,
    max_size=40,
)

_factors = st.lists(
    st.floats(FACTOR_MIN, FACTOR_MAX, exclude_max=True), min_size=len(KEYS), max_size=len(KEYS)
)


@settings(max_examples=300, deadline=None)
@given(ops=ops_strategy, max_debounce_time=st.integers(0, 20), factors=_factors)
def test_matches_notify_push_model(
    ops: list[Op], max_debounce_time: int, factors: list[float]
) -> None:
    run_against_model(ops, max_debounce_time, factors)


@settings(max_examples=300, deadline=None)
@given(ops=single_stream_strategy, max_debounce_time=st.integers(0, 20), factors=_factors)
def test_single_stream_matches_notify_push_model(
    ops: list[Op], max_debounce_time: int, factors: list[float]
) -> None:
    run_against_model(ops, max_debounce_time, factors)


def run_against_model(ops: list[Op], max_debounce_time: int, factors: list[float]) -> None:
    """Replay ``ops`` on a Debouncer and on the model; they must agree at every poll."""
    factor = dict(zip(KEYS, factors, strict=True))
    d: Debouncer[str] = Debouncer(max_debounce_time=max_debounce_time)
    model: dict[str, _ModelQueue] = {}
    n = 0
    ms = 0
    # Pushes not yet covered by a send, per (key, kind): each must be
    # delivered exactly once, merged into the next send of its kind.
    uncovered: dict[tuple[str, MessageKind], list[PendingFile | None]] = {}
    last_push: dict[tuple[str, MessageKind], float] = {}
    last_send: dict[tuple[str, MessageKind], float] = {}

    def model_poll(now: float) -> Sent:
        out: Sent = []
        base = debounce_base(n, max_debounce_time)
        for key, q in model.items():
            for kind in DEBOUNCED_KINDS:
                if kind not in q.pending:
                    continue
                t = debounce_time(kind, base, factor[key])
                if now >= q.received[kind] + QUIET_TIME and now >= q.sent.get(kind, -math.inf) + t:
                    out.append((key, kind, _model_merge(kind, q.pending.pop(kind))))
                    q.sent[kind] = now
        return out

    def check_poll(now: float) -> None:
        got = d.poll(now)
        assert sorted(got, key=repr) == sorted(model_poll(now), key=repr)
        base = debounce_base(n, max_debounce_time)
        for key, kind, file in got:
            # Never earlier than 100 ms after the latest push merged into it.
            assert now >= last_push[key, kind] + QUIET_TIME
            # Never two sends of a kind closer than T (at the send's count).
            previous = last_send.get((key, kind))
            if previous is not None:
                assert now - previous >= debounce_time(kind, base, factor[key]) - 1e-9
            last_send[key, kind] = now
            covered = uncovered.pop((key, kind))
            assert covered, "a send with no push behind it"
            assert file == _model_merge(kind, covered)
        # Per connection, kinds come in file, activity, notification order.
        for key in KEYS:
            kinds = [kind for k, kind, _ in got if k == key]
            assert kinds == sorted(kinds)

    for o in ops:
        if isinstance(o, Push):
            ms += o.dt_ms
            now = ms / 1000
            file: PendingFile | None = None
            if o.kind is FILE:
                file = UNKNOWN_FILE if o.ids is None else PendingFile.of(o.ids)
            assert not d.push(o.key, factor[o.key], o.kind, file, now)
            q = model.setdefault(o.key, _ModelQueue())
            q.pending.setdefault(o.kind, []).append(file)
            q.received[o.kind] = now
            uncovered.setdefault((o.key, o.kind), []).append(file)
            last_push[o.key, o.kind] = now
        elif isinstance(o, Poll):
            ms += o.dt_ms
            check_poll(ms / 1000)
        elif isinstance(o, Count):
            n = o.n
            d.set_active_connections(n)
        else:
            d.forget(o.key)
            model.pop(o.key, None)
            for kind in DEBOUNCED_KINDS:
                uncovered.pop((o.key, kind), None)
                last_send.pop((o.key, kind), None)

    # Eventually everything is delivered, and then nothing is held.
    check_poll(ms / 1000 + 100)
    assert not uncovered
    assert d.statistics().pending_messages == 0
    check_poll(ms / 1000 + 200)
    assert_empty(d)
