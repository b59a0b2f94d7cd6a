"""Keepalive and login edge cases on a real socket against an in-process worker.

The router (and so Nextcloud) is replaced by a small fake that accepts any
password: these tests are about the worker's own timers and
frame handling, driven tick by tick instead of waiting 30 s per ping.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import threading
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import pytest

from gateway.connection import ClientConnection
from gateway.session import SessionState
from gateway.worker import MAX_UNAUTHENTICATED, PING_INTERVAL, Worker
from shared.config import Config, parse_redis_url
from tests.support.processes import timeout, wait_for
from tests.support.rawws import OP_CLOSE, OP_PING, OP_PONG, OP_TEXT, RawClient
from tests.support.waiting import wait_until

T = TypeVar("T")


class Harness:
    def __init__(
        self, max_connection_time: int = 0, max_unauthenticated: int = MAX_UNAUTHENTICATED
    ) -> None:
        config = Config(nextcloud_url="http://127.0.0.1:9",
                        redis=(parse_redis_url("redis://127.0.0.1:9"),),
                        workers=1, bind="127.0.0.1",
                        max_connection_time=max_connection_time)  # fmt: skip
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.worker = Worker(
            config, 1, "/nonexistent/router.sock", max_unauthenticated=max_unauthenticated
        )
        self.clients: list[RawClient] = []
        self.sockets: list[socket.socket] = []
        # Login checks wait for this (set: they pass at once); clear it to hold them.
        self.logins_pass = asyncio.Event()
        self.logins_pass.set()

        async def any_password(username: str, password: str, forwarded: str) -> str:
            await self.logins_pass.wait()
            return username

        self.worker.link.check_login = any_password  # type: ignore[method-assign]

        self.accepted: list[ClientConnection] = []

        def accept() -> ClientConnection:
            conn = ClientConnection(self.worker)
            self.accepted.append(conn)
            return conn

        async def listen() -> asyncio.AbstractServer:
            return await self.loop.create_server(accept, "127.0.0.1", 0)

        self.server = self.run(listen)
        self.port: int = self.server.sockets[0].getsockname()[1]

    def run(self, make: Callable[[], Any]) -> Any:
        return asyncio.run_coroutine_threadsafe(make(), self.loop).result(timeout(10))

    def call(self, fn: Callable[..., T], *args: Any) -> T:
        async def wrapper() -> T:
            return fn(*args)

        result: T = self.run(wrapper)
        return result

    def connect(self) -> RawClient:
        client = RawClient("127.0.0.1", self.port)
        self.clients.append(client)
        return client

    def idle_socket(self) -> socket.socket:
        """A TCP connection that sends nothing (its session stays in HANDSHAKE)."""
        sock = socket.create_connection(("127.0.0.1", self.port), timeout=timeout(10))
        self.sockets.append(sock)
        return sock

    def logged_in(self, user: str) -> RawClient:
        client = self.connect()
        client.send_text(user)
        client.send_text("password")
        assert client.recv() == (OP_TEXT, b"authenticated")
        return client

    def full_ping_round(self) -> None:
        for _ in range(PING_INTERVAL):
            self.call(self.worker.tick, 0.0)

    def close(self) -> None:
        for client in self.clients:
            client.close()
        for sock in self.sockets:
            sock.close()

        async def shut() -> None:
            self.server.close()
            for conn in self.accepted:
                conn.abort()
            await wait_until(
                lambda: all(c.state is SessionState.CLOSED for c in self.accepted),
                "every transport's connection_lost",
            )

        self.run(shut)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout(10))
        self.loop.close()


@pytest.fixture
def harness() -> Iterator[Harness]:
    h = Harness()
    yield h
    h.close()


def test_ping_answered_keeps_the_connection(harness: Harness) -> None:
    client = harness.logged_in("alice")
    for _ in range(3):
        harness.full_ping_round()
        opcode, payload = client.recv()
        assert opcode == OP_PING and len(payload) == 4
        client.send(OP_PONG, payload)
        wait_for(lambda: harness.call(lambda: next(iter(harness.worker.users["alice"])).ping_payload) is None,
                 5, "the pong to be taken")  # fmt: skip
    assert harness.call(lambda: len(harness.worker.users.get("alice", ()))) == 1


def test_missing_pong_closes_at_the_next_ping(harness: Harness) -> None:
    client = harness.logged_in("bob")
    harness.full_ping_round()
    assert client.recv()[0] == OP_PING
    harness.full_ping_round()  # no pong was sent
    assert client.closed()
    wait_for(lambda: harness.call(lambda: "bob" not in harness.worker.users), 5, "unregistration")


def test_wrong_pong_closes(harness: Harness) -> None:
    client = harness.logged_in("carol")
    harness.full_ping_round()
    opcode, payload = client.recv()
    assert opcode == OP_PING
    client.send(OP_PONG, bytes(b ^ 0xFF for b in payload))
    assert client.closed()


def test_pong_storm_and_frames_after_close_are_ignored_quietly(
    harness: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)
    client = harness.logged_in("dave")
    for _ in range(500):
        client.send(OP_PONG, b"zzzz")  # unsolicited pongs are allowed (RFC 6455 5.5.3)
    client.send_text("listen notify_file_id")
    client.send(OP_CLOSE, b"\x03\xe8")
    client.send_text("after close")
    client.send(OP_PONG, b"late")
    assert client.closed()
    wait_for(lambda: harness.call(lambda: "dave" not in harness.worker.users), 5, "unregistration")
    assert [r for r in caplog.records if r.levelno >= logging.WARNING] == []


def test_binary_login_frame_is_an_invalid_login(harness: Harness) -> None:
    client = harness.connect()
    client.send(0x2, b"\x00\x01")
    assert client.recv() == (OP_TEXT, b"err: Invalid credentials")
    assert client.closed()


@pytest.fixture
def small() -> Iterator[Harness]:
    """A harness whose worker holds at most 3 connections that have not logged in."""
    h = Harness(max_unauthenticated=3)
    yield h
    h.close()


def unauthenticated(harness: Harness) -> int:
    return harness.call(lambda: harness.worker.unauthenticated)


def dropped_counts(harness: Harness) -> tuple[int, int]:
    """(evicted, refused) connections that had not logged in."""
    stats = harness.worker.stats
    return harness.call(lambda: (stats.unauthenticated_evicted, stats.unauthenticated_rejected))


def dropped(sock: socket.socket) -> bool:
    """True once the server has closed ``sock`` without sending anything more."""
    return sock.recv(16) == b""


def test_a_new_connection_evicts_the_oldest_that_has_not_sent_its_login(small: Harness) -> None:
    oldest = small.idle_socket()  # in its handshake
    wait_for(lambda: unauthenticated(small) == 1, 5, "the first connection")
    second = small.connect()  # websocket open, no login sent
    wait_for(lambda: unauthenticated(small) == 2, 5, "the second connection")
    third = small.connect()
    second.send_text("bob")  # a username only: still no login to check
    wait_for(lambda: unauthenticated(small) == 3, 5, "the third connection")
    # The bound is reached: each new connection drops the oldest waiting one.
    newest = small.connect()
    assert dropped(oldest)
    again = small.connect()
    assert dropped(second.sock)
    newest.send_text("alice")
    newest.send_text("password")
    assert newest.recv() == (OP_TEXT, b"authenticated")
    third.send_text("carol")
    third.send_text("password")
    assert third.recv() == (OP_TEXT, b"authenticated")
    wait_for(lambda: unauthenticated(small) == 1, 5, "the evicted ones to be forgotten")
    assert dropped_counts(small) == (2, 0)
    again.close()
    wait_for(lambda: unauthenticated(small) == 0, 5, "the counter to return to zero")


def test_connections_whose_login_is_being_checked_are_never_evicted(small: Harness) -> None:
    small.call(small.logins_pass.clear)
    checked = [small.connect() for _ in range(3)]
    for client in checked:
        client.send_text("alice")
        client.send_text("password")
    wait_for(lambda: small.call(lambda: sum(c.state is SessionState.LOGIN for c in small.accepted)) == 3,
             5, "three logins being checked")  # fmt: skip
    extra = small.idle_socket()
    assert dropped(extra)  # refused: nothing may be evicted
    wait_for(lambda: unauthenticated(small) == 3, 5, "the refused connection to be forgotten")
    small.call(small.logins_pass.set)
    for client in checked:
        assert client.recv() == (OP_TEXT, b"authenticated")
    assert dropped_counts(small) == (0, 1)
    assert unauthenticated(small) == 0


def test_no_task_or_coroutine_per_open_connection(harness: Harness) -> None:
    def tasks() -> int:
        return harness.call(lambda: len(asyncio.all_tasks(harness.loop)))

    idle = tasks()
    for i in range(50):
        harness.logged_in(f"user{i}")
    # Each login ran as a short task that ended with it; nothing stays per connection.
    wait_for(lambda: tasks() == idle, 5, "the login tasks to finish")
    assert harness.call(lambda: harness.worker.connections) == 50


def test_closed_connections_leave_nothing_in_the_worker_timers() -> None:
    # With MAX_CONNECTION_TIME set, reconnect churn must not grow the deadline
    # queues: a closed connection is forgotten at once, not at its deadline.
    harness = Harness(max_connection_time=3600)
    try:
        for i in range(20):
            harness.logged_in(f"churn{i}").close()
            harness.connect().close()  # never logs in: only in the auth deadlines
        wait_for(lambda: harness.call(lambda: harness.worker.unauthenticated) == 0
                 and harness.call(lambda: harness.worker.connections) == 0,
                 5, "every connection to be closed")  # fmt: skip
        worker = harness.worker
        assert harness.call(lambda: len(worker._max_time or ())) == 0
        assert harness.call(lambda: len(worker._auth_deadlines)) == 0
    finally:
        harness.close()
