"""Several gateway instances on one redis-server act as one push server (docs/PROTOCOL.md section 9).

Three instances of two workers each, started with the same settings and the
same key prefix, all on the session's Redis, stub Nextcloud and database.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from tests.integration.conftest import USERS, ready_gateway
from tests.support.client import Client
from tests.support.processes import Gateway, RedisServer, Stub, wait_for

pytestmark = pytest.mark.integration

INSTANCES = 3
PREFIX = "scale-out-test:"
LIMIT = 64


def start_instances(
    workdir: Path, redis_server: RedisServer, stub: Stub, database: Path, count: int
) -> list[Gateway]:
    return [
        ready_gateway(workdir, redis_server, stub, database, 2, env={"REDIS_KEY_PREFIX": PREFIX})
        for _ in range(count)
    ]


@pytest.fixture(scope="module")
def instances(
    workdir: Path, redis_server: RedisServer, stub: Stub, database: Path
) -> Iterator[list[Gateway]]:
    gateways = start_instances(workdir, redis_server, stub, database, INSTANCES)
    yield gateways
    for gw in gateways:
        assert gw.stop() == 0, gw.log()


def kill_hard(gateway: Gateway) -> None:
    """kill -9 of a whole instance, as when its node is lost."""
    pids = [*gateway.children().values(), gateway.process.pid]
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    gateway.process.wait()


def live_instances(publisher: redis.Redis) -> int:
    return publisher.zcount(f"{PREFIX}{{notify_push_metrics}}:instances", "(0", "+inf")


def test_each_client_gets_exactly_its_own_events_on_any_instance(
    instances: list[Gateway], clients: contextlib.ExitStack, publisher: redis.Redis
) -> None:
    conns: dict[str, list[Client]] = {user: [] for user in USERS}
    for i, gw in enumerate(instances * 2):
        user = list(USERS)[i % len(USERS)]
        client = Client(clients, gw.ws_url)
        assert client.login(user, USERS[user]) == "authenticated"
        conns[user].append(client)
    for user in USERS:
        publisher.publish("notify_custom", json.dumps({"user": user, "message": f"for-{user}"}))
    for user in USERS:
        publisher.publish("notify_custom", json.dumps({"user": user, "message": "end"}))
    for user, mine in conns.items():
        for client in mine:
            assert client.recv_until("end") == [f"for-{user}"]


def test_a_pre_auth_token_logs_in_once_across_instances(
    instances: list[Gateway], clients: contextlib.ExitStack, publisher: redis.Redis
) -> None:
    token = secrets.token_hex(16)
    publisher.publish("notify_pre_auth", json.dumps({"user": "bob", "token": token}))
    first, *others = instances

    def logged_in_once() -> bool:
        # The token reaches every router a moment after PUBLISH returns.
        return Client(clients, first.ws_url).login("", token) == "authenticated"

    wait_for(logged_in_once, 10, "the token to log in on the first instance")
    for gw in [*others, first]:
        assert Client(clients, gw.ws_url).login("", token) == "err: Invalid credentials"


def test_the_limit_of_64_holds_over_all_instances(
    instances: list[Gateway], clients: contextlib.ExitStack, publisher: redis.Redis
) -> None:
    held: list[Client] = []
    with contextlib.ExitStack() as stack:
        for i in range(LIMIT):
            client = Client(stack, instances[i % INSTANCES].ws_url)
            assert client.login("carol", USERS["carol"]) == "authenticated", i
            held.append(client)
        for gw in instances:
            refused = Client(stack, gw.ws_url)
            assert (
                refused.login("carol", USERS["carol"]) == "err: Too many connections for this user"
            )
        publisher.publish("notify_custom", json.dumps({"user": "carol", "message": "all"}))
        for client in held:
            assert client.recv() == "all"
    # Closed (the stack): every instance gave its places back.

    def admitted() -> bool:
        with contextlib.ExitStack() as stack:
            return Client(stack, instances[0].ws_url).login("carol", USERS["carol"]) == (
                "authenticated"
            )

    wait_for(admitted, 10, "carol's places to be free again")


def test_notify_query_stores_the_sums_of_every_instance(
    instances: list[Gateway], clients: contextlib.ExitStack, publisher: redis.Redis
) -> None:
    for i in range(6):
        client = Client(clients, instances[i % INSTANCES].ws_url)
        assert client.login("alice", USERS["alice"]) == "authenticated"
    publisher.delete("notify_push_metrics")

    def summed() -> bool:
        publisher.publish("notify_query", '"metrics"')
        raw = publisher.get("notify_push_metrics")
        return raw is not None and json.loads(raw)["active_connection_count"] == 6

    wait_for(summed, 10, "notify_push_metrics to count the connections of all instances")
    stored = json.loads(publisher.get("notify_push_metrics") or b"{}")
    assert stored["active_user_count"] == INSTANCES  # alice, counted once per instance


def test_reset_closes_every_client_on_every_instance(
    instances: list[Gateway], clients: contextlib.ExitStack, publisher: redis.Redis
) -> None:
    conns = []
    for gw in instances:
        client = Client(clients, gw.ws_url)
        assert client.login("bob", USERS["bob"]) == "authenticated"
        conns.append(client)
    publisher.publish("notify_signal", '"reset"')
    for client in conns:
        assert client.wait_closed() == 1000


def test_a_killed_instance_stops_counting_and_the_others_keep_delivering(
    workdir: Path,
    redis_server: RedisServer,
    stub: Stub,
    database: Path,
    clients: contextlib.ExitStack,
    publisher: redis.Redis,
) -> None:
    survivor, doomed = start_instances(workdir, redis_server, stub, database, 2)
    try:
        wait_for(lambda: live_instances(publisher) >= 2, 10, "both instances to register")
        kept = []
        for i in range(LIMIT):
            gw = survivor if i % 2 else doomed
            client = Client(clients, gw.ws_url)
            assert client.login("alice", USERS["alice"]) == "authenticated"
            if gw is survivor:
                kept.append(client)
        refused = Client(clients, survivor.ws_url)
        assert refused.login("alice", USERS["alice"]).startswith("err: Too many")
        kill_hard(doomed)

        def admitted_again() -> bool:
            with contextlib.ExitStack() as stack:
                answer = Client(stack, survivor.ws_url).login("alice", USERS["alice"])
                return answer == "authenticated"

        wait_for(admitted_again, 30, "the dead instance's places to be free")
        publisher.publish("notify_custom", json.dumps({"user": "alice", "message": "still"}))
        for client in kept:
            assert client.recv() == "still"
    finally:
        assert survivor.stop() == 0, survivor.log()
