from __future__ import annotations

from gateway.timers import Deadlines, PingWheel


def test_deadlines_pop_only_what_is_due_in_order() -> None:
    deadlines: Deadlines[str] = Deadlines(15)
    deadlines.add("a", now=0)
    deadlines.add("b", now=5)
    assert list(deadlines.pop_due(14.9)) == []
    assert list(deadlines.pop_due(15)) == ["a"]
    assert list(deadlines.pop_due(100)) == ["b"]
    assert len(deadlines) == 0


def test_deadlines_iterate_oldest_first_and_forget_removed_items() -> None:
    deadlines: Deadlines[str] = Deadlines(15)
    for i, item in enumerate("abcd"):
        deadlines.add(item, now=i)
    deadlines.remove("b")
    deadlines.add("a", now=10)  # re-added: now last
    assert list(deadlines) == ["c", "d", "a"]


def test_ping_wheel_visits_each_member_once_per_interval() -> None:
    wheel: PingWheel[str] = PingWheel(30)
    slot_a = wheel.add("a")
    for _ in range(7):
        wheel.advance()
    wheel.add("b")
    visits: dict[str, int] = {"a": 0, "b": 0}
    for _ in range(30 * 3):
        for member in wheel.advance():
            visits[member] += 1
    assert visits == {"a": 3, "b": 3}
    wheel.remove("a", slot_a)
    assert len(wheel) == 1


def test_new_member_waits_a_full_interval_for_its_first_visit() -> None:
    wheel: PingWheel[str] = PingWheel(30)
    wheel.add("a")
    first = next(i for i in range(1, 31) if "a" in wheel.advance())
    assert first == 30


def test_a_removed_item_is_forgotten_at_once_not_at_its_deadline() -> None:
    deadlines: Deadlines[str] = Deadlines(3600)
    for i in range(1000):
        deadlines.add(f"closed-{i}", now=0)
    deadlines.add("open", now=0)
    for i in range(1000):
        deadlines.remove(f"closed-{i}")
    deadlines.remove("never-added")
    assert len(deadlines) == 1
    assert deadlines.pop_due(3600) == ["open"]


def test_an_item_added_again_expires_last() -> None:
    deadlines: Deadlines[str] = Deadlines(10)
    deadlines.add("a", now=0)
    deadlines.add("b", now=1)
    deadlines.add("a", now=2)
    assert deadlines.pop_due(11) == ["b"]
    assert deadlines.pop_due(12) == ["a"]
