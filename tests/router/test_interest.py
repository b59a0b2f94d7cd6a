from __future__ import annotations

from router.interest import InterestTable


def test_admit_release_and_limit_across_workers() -> None:
    table = InterestTable(limit=3)
    assert table.admit(1, "u") and table.admit(2, "u") and table.admit(2, "u")
    assert not table.admit(3, "u")  # the 4th connection, whichever worker asks
    assert sorted(table.workers_for("u")) == [1, 2]
    table.release(2, "u")
    assert table.admit(3, "u")
    assert table.active_connections == 3 and table.active_users == 1


def test_replace_worker_rebuilds_its_share_only() -> None:
    table = InterestTable()
    table.admit(1, "a")
    table.admit(2, "b")
    table.replace_worker(1, {"c": 2, "d": 0})
    assert list(table.workers_for("a")) == []
    assert list(table.workers_for("c")) == [1]
    assert list(table.workers_for("b")) == [2]
    assert table.active_connections == 3 and table.active_users == 2


def test_drop_worker_and_unknown_release_never_go_negative() -> None:
    table = InterestTable()
    table.admit(1, "a")
    table.release(2, "a")
    table.release(1, "nobody")
    table.drop_worker(1)
    table.drop_worker(1)
    assert table.active_connections == 0 and table.active_users == 0
    assert list(table.workers_for("a")) == []


def test_compact_single_connection_entries_grow_and_shrink() -> None:
    table = InterestTable()
    table.admit(1, "u")
    assert list(table.workers_for("u")) == [1] and table.connections_of("u") == 1
    table.admit(1, "u")
    table.admit(2, "u")
    assert sorted(table.workers_for("u")) == [1, 2] and table.connections_of("u") == 3
    table.release(1, "u")
    table.release(1, "u")
    assert list(table.workers_for("u")) == [2] and table.connections_of("u") == 1
    table.release(2, "u")
    assert list(table.workers_for("u")) == [] and table.active_users == 0
