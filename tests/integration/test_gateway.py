"""The whole gateway as processes: real redis-server, stub Nextcloud, SQLite."""

from __future__ import annotations

import contextlib
import json
import secrets

import pytest
import redis

from tests.integration.conftest import USERS
from tests.support.client import Client
from tests.support.processes import Gateway, Stub, http_get, wait_for

pytestmark = pytest.mark.integration


def login(stack: contextlib.ExitStack, gateway: Gateway, user: str, *early: str) -> Client:
    client = Client(stack, gateway.ws_url)
    assert client.login(user, USERS[user], *early) == "authenticated"
    return client


def sentinel(publisher: redis.Redis, user: str) -> str:
    """Publish a unique custom event to ``user``: anything routed before it arrives first."""
    marker = f"sentinel-{secrets.token_hex(4)}"
    publisher.publish("notify_custom", json.dumps({"user": user, "message": marker}))
    return marker


def test_login_ok_and_wrong_password(gateway: Gateway, clients: contextlib.ExitStack) -> None:
    login(clients, gateway, "alice")
    wrong = Client(clients, gateway.ws_url)
    assert wrong.login("alice", "not-her-password") == "err: Invalid credentials"
    assert wrong.wait_closed() is not None


def test_login_on_push_prefix_with_whitespace(
    gateway: Gateway, clients: contextlib.ExitStack
) -> None:
    client = Client(clients, gateway.ws_url.replace("/ws", "/push/ws"))
    assert client.login("  alice\n", f" {USERS['alice']} ") == "authenticated"


def test_each_event_kind_reaches_only_its_user(
    gateway: Gateway, clients: contextlib.ExitStack, publisher: redis.Redis
) -> None:
    alice = login(clients, gateway, "alice", "listen notify_file_id")
    bob = login(clients, gateway, "bob")
    events = [
        ("notify_activity", {"user": "alice"}, "notify_activity"),
        ("notify_notification", {"user": "alice"}, "notify_notification"),
        ("notify_custom", {"user": "alice", "message": "plain"}, "plain"),
        ("notify_custom", {"user": "alice", "message": "typed", "body": {"b": [1, "é"], "a": 2}},
         'typed {"a":2,"b":[1,"é"]}'),
        ("notify_user_share_created", {"user": "alice"}, "notify_file"),
        ("notify_group_membership_update", {"user": "alice", "group": "g"}, "notify_file"),
    ]  # fmt: skip
    for channel, payload, expected in events:
        publisher.publish(channel, json.dumps(payload))
        assert alice.recv() == expected
    marker = sentinel(publisher, "bob")
    assert bob.recv_until(marker) == []


def test_malformed_events_are_dropped_and_later_ones_delivered(
    gateway: Gateway, clients: contextlib.ExitStack, publisher: redis.Redis
) -> None:
    alice = login(clients, gateway, "alice")
    bad = [
        ("notify_custom", b"not json"),
        ("notify_custom", b'{"user": 5, "message": "x"}'),
        ("notify_activity", b'{"nobody": "alice"}'),
        ("notify_storage_update", b'{"storage": "one", "path": "files", "file_id": 1}'),
        ("notify_storage_update", b'{"storage": 1, "path": "' + b"x" * 20000 + b'", "file_id": 1}'),
        ("notify_test_cookie", b"-1"),
        ("notify_pre_auth", b'{"user": "alice"}'),
        ("notify_signal", b'"explode"'),
    ]
    for channel, payload in bad:
        publisher.publish(channel, payload)
    marker = sentinel(publisher, "alice")
    assert alice.recv_until(marker) == []
    # Warned about, at most one line per 10 s (a flood of bad events must not flood
    # the log); the rest are counted in events_dropped_total{reason="invalid"}.
    wait_for(lambda: "dropping invalid event" in gateway.log(), 10, "the warning")


def test_pre_auth_token_works_once_across_workers(
    gateway: Gateway, clients: contextlib.ExitStack, publisher: redis.Redis
) -> None:
    token = secrets.token_hex(16)
    publisher.publish("notify_pre_auth", json.dumps({"user": "carol", "token": token}))
    first = Client(clients, gateway.ws_url)

    def consumed() -> bool:
        # The token may reach the router a moment after PUBLISH returns.
        answer = Client(clients, gateway.ws_url).login("", token)
        return answer == "authenticated"

    wait_for(consumed, 10, "the pre-auth token to log in once")
    # Every later try, whichever worker takes it, is refused.
    for _ in range(2 * gateway.workers):
        assert Client(clients, gateway.ws_url).login("", token) == "err: Invalid credentials"
    assert first.login("", token) == "err: Invalid credentials"


def test_many_users_each_get_exactly_their_messages(
    gateway: Gateway, clients: contextlib.ExitStack, publisher: redis.Redis
) -> None:
    users = [f"user{i}" for i in range(50)]
    conns: dict[str, list[Client]] = {}
    for user in users:
        for _ in range(3):
            client = Client(clients, gateway.ws_url)
            assert client.login(user, f"password-{user}") == "authenticated"
            conns.setdefault(user, []).append(client)
    for round_ in range(3):
        for user in users:
            publisher.publish(
                "notify_custom", json.dumps({"user": user, "message": f"for-{user}-{round_}"})
            )
    for user in users:
        for client in conns[user]:
            assert [client.recv() for _ in range(3)] == [f"for-{user}-{r}" for r in range(3)]
    for user in users:
        marker = sentinel(publisher, user)
        for client in conns[user]:
            assert client.recv_until(marker) == []


def test_binary_and_oversized_login_frames_close_only_that_connection(
    gateway: Gateway, clients: contextlib.ExitStack, publisher: redis.Redis
) -> None:
    alice = login(clients, gateway, "alice")
    binary = Client(clients, gateway.ws_url)
    binary.send(b"\x00\x01binary")
    assert binary.recv() == "err: Invalid credentials"
    assert binary.wait_closed() is not None
    huge = Client(clients, gateway.ws_url)
    huge.send("u" * 100_000)
    assert huge.wait_closed() == 1009  # RFC 6455 7.4.1: message too big
    marker = sentinel(publisher, "alice")
    assert alice.recv_until(marker) == []


def test_nextcloud_errors_fail_the_login_with_err(
    gateway: Gateway, stub: Stub, clients: contextlib.ExitStack
) -> None:
    stub.fail_logins(503)
    try:
        client = Client(clients, gateway.ws_url)
        answer = client.login("bob", USERS["bob"] + "-unique-" + secrets.token_hex(4))
        assert answer.startswith("err: ")
    finally:
        stub.fail_logins(None)


def test_health_and_readiness(gateway: Gateway) -> None:
    assert http_get(f"{gateway.http_url}/healthz") == (200, "ok\n")
    assert http_get(f"{gateway.http_url}/readyz") == (200, "ready\n")
    assert http_get(f"{gateway.http_url}/push/readyz") == (200, "ready\n")
    assert http_get(f"{gateway.http_url}/nothing-here")[0] == 404


def test_identical_logins_share_requests_to_nextcloud(
    gateway: Gateway, stub: Stub, clients: contextlib.ExitStack
) -> None:
    before = stub.stats()["uid_requests"]
    assert isinstance(before, int)
    conns = [Client(clients, gateway.ws_url) for _ in range(12)]
    for client in conns:  # all credentials in flight before any answer is read
        client.send("user55")
        client.send("password-user55")
    assert [c.recv() for c in conns] == ["authenticated"] * 12
    after = stub.stats()["uid_requests"]
    assert isinstance(after, int)
    # Checked by the router for the whole gateway: one request, whatever the workers.
    assert after - before == 1


def test_forwarded_for_chain_reaches_nextcloud(
    gateway: Gateway, stub: Stub, clients: contextlib.ExitStack
) -> None:
    from websockets.sync.client import connect

    ws = clients.enter_context(
        connect(gateway.ws_url, additional_headers={"X-Forwarded-For": "203.0.113.9"})
    )
    ws.send("carol")
    ws.send(USERS["carol"] + "-wrong")
    assert ws.recv(timeout=10) == "err: Invalid credentials"
    chains = stub.stats()["forwarded_for"]
    assert isinstance(chains, list)
    assert "203.0.113.9, 127.0.0.1" in chains
