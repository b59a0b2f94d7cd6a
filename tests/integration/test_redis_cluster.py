"""Two gateway instances on a real three-master Redis Cluster (docs/PROTOCOL.md section 9)."""

from __future__ import annotations

import contextlib
import json
import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from tests.integration.conftest import USERS
from tests.support.client import Client
from tests.support.processes import Gateway, Stub, start_gateway, wait_for
from tests.support.redis_cluster import ClusterNodes, start_redis_cluster

pytestmark = pytest.mark.integration

PREFIX = "cluster-test:"


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ClusterNodes]:
    nodes = start_redis_cluster(tmp_path_factory.mktemp("cluster"))
    yield nodes
    nodes.stop()


@pytest.fixture(scope="module")
def cluster_instances(
    cluster: ClusterNodes, stub: Stub, database: Path, workdir: Path
) -> Iterator[list[Gateway]]:
    args = [arg for url in cluster.urls[1:] for arg in ("--redis-url", url)]

    def instance() -> Gateway:
        return start_gateway(
            workdir, redis_url=cluster.urls[0], nextcloud_url=stub.url,
            database_url=f"sqlite://{database}", workers=2, args=args,
            env={"REDIS_KEY_PREFIX": PREFIX},
        )  # fmt: skip

    gateways = [instance(), instance()]
    for gw in gateways:
        gw.wait_ready()
    yield gateways
    for gw in gateways:
        assert gw.stop() == 0, gw.log()


def publish(cluster: ClusterNodes, channel: str, payload: object) -> None:
    client = cluster.client()
    try:
        client.publish(channel, json.dumps(payload))
    finally:
        client.close()


def test_events_tokens_and_limits_hold_on_a_cluster(
    cluster: ClusterNodes, cluster_instances: list[Gateway], clients: contextlib.ExitStack
) -> None:
    first, second = cluster_instances
    conns = {}
    for user, gw in (("alice", first), ("bob", second), ("carol", first)):
        conns[user] = Client(clients, gw.ws_url)
        assert conns[user].login(user, USERS[user]) == "authenticated"
    for user in conns:
        publish(cluster, "notify_custom", {"user": user, "message": f"to-{user}"})
    for user, client in conns.items():
        assert client.recv() == f"to-{user}"

    token = secrets.token_hex(16)
    publish(cluster, "notify_pre_auth", {"user": "bob", "token": token})
    wait_for(lambda: Client(clients, first.ws_url).login("", token) == "authenticated", 10,
             "the token to log in once")  # fmt: skip
    assert Client(clients, second.ws_url).login("", token) == "err: Invalid credentials"

    with contextlib.ExitStack() as stack:
        for i in range(63):  # carol already holds one
            client = Client(stack, cluster_instances[i % 2].ws_url)
            assert client.login("carol", USERS["carol"]) == "authenticated", i
        for gw in cluster_instances:
            answer = Client(stack, gw.ws_url).login("carol", USERS["carol"])
            assert answer == "err: Too many connections for this user"

    node = cluster.client()
    try:
        keys = [k.decode() for k in node.scan_iter(match=f"{PREFIX}*", target_nodes="all")]
        assert keys and all(node.ttl(key) > 0 for key in keys), keys
    finally:
        node.close()


def test_notify_query_sums_on_a_cluster(
    cluster: ClusterNodes, cluster_instances: list[Gateway], clients: contextlib.ExitStack
) -> None:
    for gw in cluster_instances:
        assert Client(clients, gw.ws_url).login("alice", USERS["alice"]) == "authenticated"
    node = cluster.client()
    try:

        def summed() -> bool:
            node.publish("notify_query", '"metrics"')
            raw = node.get("notify_push_metrics")
            return raw is not None and json.loads(raw)["active_connection_count"] == 2

        wait_for(summed, 10, "the sums of both instances")
    finally:
        node.close()


def test_losing_the_subscribed_node_resubscribes_on_another(
    cluster: ClusterNodes, cluster_instances: list[Gateway], clients: contextlib.ExitStack
) -> None:
    conns = []
    for gw in cluster_instances:
        client = Client(clients, gw.ws_url)
        assert client.login("bob", USERS["bob"]) == "authenticated"
        conns.append(client)
    cluster.kill(cluster.ports[0])  # every router subscribed there first
    survivor = redis.Redis(port=cluster.ports[1])
    try:

        def delivered() -> bool:
            survivor.publish("notify_custom", json.dumps({"user": "bob", "message": "moved"}))
            try:
                return all(client.recv(seconds=1) == "moved" for client in conns)
            except TimeoutError:
                return False

        wait_for(delivered, 15, "events through another node")
    finally:
        survivor.close()
