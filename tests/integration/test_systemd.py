"""Type=notify: the gateway tells a socket playing systemd when it is ready, how it is, when it stops."""

from __future__ import annotations

import contextlib
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.conftest import USERS
from tests.support.client import Client
from tests.support.processes import RedisServer, Stub, http_get, start_gateway, timeout

pytestmark = pytest.mark.integration


class FakeSystemd:
    def __init__(self, path: Path) -> None:
        self.path = str(path)
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(self.path)
        self.messages: list[str] = []

    def wait_for(self, predicate: str, seconds: float = 20) -> str:
        """The first datagram (from now on) containing ``predicate``; fail after the deadline."""
        deadline = time.monotonic() + timeout(seconds)
        while time.monotonic() < deadline:
            self.sock.settimeout(max(0.01, deadline - time.monotonic()))
            try:
                message = self.sock.recv(4096).decode()
            except TimeoutError:
                break
            self.messages.append(message)
            if predicate in message:
                return message
        raise AssertionError(f"no {predicate!r} from the gateway; got {self.messages}")


@pytest.fixture
def systemd(tmp_path: Path) -> Iterator[FakeSystemd]:
    fake = FakeSystemd(tmp_path / "notify.sock")
    yield fake
    fake.sock.close()


def test_ready_status_watchdog_and_stopping(
    systemd: FakeSystemd, tmp_path: Path, redis_server: RedisServer, stub: Stub, database: Path,
    clients: contextlib.ExitStack,
) -> None:  # fmt: skip
    gateway = start_gateway(
        tmp_path, redis_url=redis_server.url, nextcloud_url=stub.url,
        database_url=f"sqlite://{database}", workers=2,
        env={"NOTIFY_SOCKET": systemd.path, "WATCHDOG_USEC": "2000000"},
    )  # fmt: skip
    try:
        ready = systemd.wait_for("READY=1")
        assert "STATUS=0 connections on 2 workers" in ready
        assert http_get(f"{gateway.http_url}/readyz")[0] == 200  # ready means ready
        systemd.wait_for("WATCHDOG=1")
        systemd.wait_for("WATCHDOG=1")  # again: fed from the supervisor's loop
        alice = Client(clients, gateway.ws_url)
        assert alice.login("alice", USERS["alice"]) == "authenticated"
        systemd.wait_for("STATUS=1 connections on 2 workers")
        gateway.process.terminate()
        systemd.wait_for("STOPPING=1")
        assert gateway.process.wait(timeout(20)) == 0
    finally:
        clients.close()
        gateway.stop()
    assert sum("READY=1" in m for m in systemd.messages) == 1
