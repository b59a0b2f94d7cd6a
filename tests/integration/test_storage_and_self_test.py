"""Storage updates through the database, and the self-test endpoints."""

from __future__ import annotations

import contextlib
import json
import socket
import urllib.request

import pytest
import redis

from tests.integration.conftest import USERS
from tests.support.client import Client
from tests.support.processes import Gateway, Stub, http_get, timeout

pytestmark = pytest.mark.integration

SHARED_STORAGE = 1  # every stub user is mounted at its root (tests.support.stub_nextcloud)
PRIVATE_STORAGE_BASE = 1000


def test_storage_update_reaches_every_mapped_user_once(
    gateway: Gateway, clients: contextlib.ExitStack, publisher: redis.Redis
) -> None:
    listeners = {}
    for user in ("alice", "bob", "carol"):
        for n in range(2):
            client = Client(clients, gateway.ws_url)
            early = ("listen notify_file_id",) if n == 0 else ()
            assert client.login(user, USERS[user], *early) == "authenticated"
            listeners[(user, n)] = client
    publisher.publish(
        "notify_storage_update",
        json.dumps({"storage": SHARED_STORAGE, "path": "files/report.odt", "file_id": 42}),
    )
    for (_user, n), client in listeners.items():
        assert client.recv() == ("notify_file_id [42]" if n == 0 else "notify_file")


def test_storage_update_on_private_storage_reaches_only_its_owner(
    gateway: Gateway, clients: contextlib.ExitStack, publisher: redis.Redis
) -> None:
    # The stub mounts storage 1000+i for the i-th user it knows; alice is user index 60
    # after the 60 generated users (see tests.support.stub_nextcloud).
    alice = Client(clients, gateway.ws_url)
    assert alice.login("alice", USERS["alice"]) == "authenticated"
    bob = Client(clients, gateway.ws_url)
    assert bob.login("bob", USERS["bob"]) == "authenticated"
    publisher.publish(
        "notify_storage_update",
        json.dumps({"storage": PRIVATE_STORAGE_BASE + 60, "path": "files/x", "file_id": 1}),
    )
    assert alice.recv() == "notify_file"
    publisher.publish("notify_custom", json.dumps({"user": "bob", "message": "marker"}))
    assert bob.recv_until("marker") == []


def _post(url: str, headers: dict[str, str]) -> tuple[int, str]:
    request = urllib.request.Request(url, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=timeout(10)) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def test_self_test_endpoints(gateway: Gateway, stub: Stub, publisher: redis.Redis) -> None:
    publisher.set("test-token", "the-token")
    ok = {"token": "the-token"}
    for prefix in ("", "/push"):
        base = f"{gateway.http_url}{prefix}/test"
        publisher.publish("notify_test_cookie", "987654")
        from tests.support.processes import wait_for

        wait_for(lambda base=base: http_get(f"{base}/cookie", ok) == (200, "987654"), 10, "cookie")
        assert http_get(f"{base}/mapping/{SHARED_STORAGE}", ok) == (200, "63")
        assert http_get(f"{base}/mapping/abc", ok)[0] == 400
        # A raw byte 0xB2 reads as "²": a digit to str.isdigit() that int() refuses.
        # Still a clear 400, not a task that dies and leaves the client waiting.
        with socket.create_connection(("127.0.0.1", gateway.port), timeout=timeout(10)) as sock:
            sock.sendall(b"GET /push/test/mapping/\xb2 HTTP/1.1\r\ntoken: the-token\r\n\r\n")
            assert sock.recv(64).startswith(b"HTTP/1.1 400 ")
        assert http_get(f"{base}/remote/198.51.100.7", ok) == (200, "198.51.100.7")
        assert http_get(f"{base}/remote/notanip", ok)[0] == 400
        assert http_get(f"{base}/reverse_cookie", ok) == (200, "0")
        assert _post(f"{base}/version", ok) == (200, "set")
        assert publisher.get("notify_push_version") == b"1.4.0"
        publisher.delete("notify_push_version")


@pytest.mark.parametrize("headers", [{}, {"token": ""}, {"token": "wrong"}])
def test_self_test_refuses_bad_tokens_without_asking_nextcloud(
    gateway: Gateway, stub: Stub, publisher: redis.Redis, headers: dict[str, str]
) -> None:
    publisher.set("test-token", "the-token")
    before = stub.stats()
    for path in ("cookie", "reverse_cookie", "mapping/1", "remote/1.2.3.4"):
        assert http_get(f"{gateway.http_url}/test/{path}", headers)[0] == 403
    assert _post(f"{gateway.http_url}/test/version", headers)[0] == 403
    assert stub.stats() == before
