"""/metrics is fresh at scrape time, and its counters never go back when a worker restarts."""

from __future__ import annotations

import contextlib
import json
import os
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from tests.integration.conftest import USERS, ready_gateway
from tests.support.client import Client
from tests.support.processes import Gateway, RedisServer, Stub, free_port, scrape_metrics, wait_for

pytestmark = pytest.mark.integration


@pytest.fixture
def scraped(
    workdir: Path, redis_server: RedisServer, stub: Stub, database: Path
) -> Iterator[tuple[Gateway, str]]:
    port = free_port()
    gw = ready_gateway(workdir, redis_server, stub, database, 2,
                       args=["--metrics-port", str(port)])  # fmt: skip
    yield gw, f"http://127.0.0.1:{port}/metrics"
    gw.stop()


def sample(url: str, name: str) -> float:
    values = scrape_metrics(url)
    assert name in values, sorted(values)
    return values[name]


def test_a_scrape_right_after_logins_counts_them(
    scraped: tuple[Gateway, str], clients: contextlib.ExitStack
) -> None:
    _gw, url = scraped
    for _ in range(5):
        client = Client(clients, scraped[0].ws_url)
        assert client.login("alice", USERS["alice"]) == "authenticated"
    # No wait: the router asks the workers for their numbers at scrape time.
    assert sample(url, "total_connection_count") == 5
    assert sample(url, "active_connection_count") == 5


def test_counters_carry_on_when_a_worker_is_killed(
    scraped: tuple[Gateway, str], clients: contextlib.ExitStack, publisher: redis.Redis
) -> None:
    gw, url = scraped
    conns = []
    # Until worker 1 holds some: the kernel spreads the connections over the workers.
    while len(conns) < 6 or sample(url, 'notify_push_gateway_worker_connections{worker="1"}') < 1:
        client = Client(clients, gw.ws_url)
        assert client.login("bob", USERS["bob"]) == "authenticated"
        conns.append(client)
        assert len(conns) < 60, "worker 1 got none of 60 connections"
    publisher.publish("notify_custom", json.dumps({"user": "bob", "message": "m"}))
    for client in conns:
        assert client.recv() == "m"
    before = (sample(url, "total_connection_count"),
              sample(url, 'message_count_total{type="custom"}'))  # fmt: skip
    old = gw.children()["npg-worker-1"]
    os.kill(old, signal.SIGKILL)
    wait_for(lambda: gw.children().get("npg-worker-1") not in (None, old), 20, "a new worker 1")
    gw.wait_ready()
    after = (sample(url, "total_connection_count"),
             sample(url, 'message_count_total{type="custom"}'))  # fmt: skip
    assert after >= before and after[0] == before[0], (before, after)


def test_counters_carry_on_when_the_router_is_killed(
    scraped: tuple[Gateway, str], clients: contextlib.ExitStack, publisher: redis.Redis
) -> None:
    gw, url = scraped
    carol = Client(clients, gw.ws_url)
    assert carol.login("carol", USERS["carol"]) == "authenticated"
    for i in range(5):
        publisher.publish("notify_custom", json.dumps({"user": "carol", "message": f"m{i}"}))
    publisher.publish("notify_activity", b"not json")  # counted as dropped
    for i in range(5):
        assert carol.recv() == f"m{i}"
    names = ("total_connection_count", "event_count_total", 'message_count_total{type="custom"}',
             'notify_push_gateway_events_dropped_total{reason="invalid"}')  # fmt: skip
    wait_for(lambda: sample(url, names[3]) >= 1, 10, "the dropped event to be counted")
    before = [sample(url, name) for name in names]  # a scrape saves what it shows
    router = gw.children()["npg-router"]
    os.kill(router, signal.SIGKILL)
    wait_for(lambda: gw.children().get("npg-router") not in (None, router), 20, "a new router")
    gw.wait_ready()
    after = [sample(url, name) for name in names]
    assert all(a >= b for a, b in zip(after, before, strict=True)), (before, after)
