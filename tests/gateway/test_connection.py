"""The asyncio adapter over a real socket pair, with a small fake owner (no worker, no thread)."""

from __future__ import annotations

import asyncio
import base64
import os
import socket
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TypeVar

from gateway.connection import MAX_OUTGOING_BYTES, ClientConnection
from gateway.http import RequestHead
from gateway.session import LoginRequest, SessionState
from tests.support.processes import timeout
from tests.support.waiting import wait_until

T = TypeVar("T")


@dataclass
class FakeOwner:
    """Records what the connection tells its owner; answers nothing by itself."""

    opened: list[ClientConnection] = field(default_factory=list)
    closed: list[ClientConnection] = field(default_factory=list)
    logins: list[LoginRequest] = field(default_factory=list)
    requests: list[RequestHead] = field(default_factory=list)
    slow: list[ClientConnection] = field(default_factory=list)

    def connection_opened(self, conn: ClientConnection) -> None:
        self.opened.append(conn)

    def connection_closed(self, conn: ClientConnection) -> None:
        self.closed.append(conn)

    def login_requested(self, conn: ClientConnection, request: LoginRequest) -> None:
        self.logins.append(request)

    def http_requested(self, conn: ClientConnection, head: RequestHead) -> None:
        self.requests.append(head)

    def slow_client(self, conn: ClientConnection) -> None:
        self.slow.append(conn)


def masked(opcode: int, payload: bytes) -> bytes:
    mask = os.urandom(4)
    return (
        bytes((0x80 | opcode, 0x80 | len(payload)))
        + mask
        + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    )


def masked_text(value: str) -> bytes:
    return masked(0x1, value.encode())


# The largest ping a client may send, and the pong that answers it (2 + 125 bytes).
PING = masked(0x9, b"p" * 125)
PONG_SIZE = 127


class MeteredConnection(ClientConnection):
    """Records the most bytes ever left waiting in its transport after one of its writes."""

    __slots__ = ("peak",)

    def __init__(self, owner: FakeOwner) -> None:
        super().__init__(owner)
        self.peak = 0

    def _output(self, data: bytes) -> None:
        super()._output(data)
        if self.transport is not None:
            self.peak = max(self.peak, self.transport.get_write_buffer_size())


async def flood_pings(writer: asyncio.StreamWriter, conn: MeteredConnection) -> None:
    """Send pings and never read, until the server drops us (or buffers far too much)."""
    chunk = PING * 64
    try:
        while conn.peak <= 8 * MAX_OUTGOING_BYTES:  # without a bound: stop, and fail
            writer.write(chunk)
            await writer.drain()
    except ConnectionError:
        pass  # dropped


UPGRADE = (
    "GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    f"Sec-WebSocket-Key: {base64.b64encode(os.urandom(16)).decode()}\r\n"
    "Sec-WebSocket-Version: 13\r\n\r\n"
).encode()


def run(scenario: Callable[[], Awaitable[T]]) -> T:
    async def bounded() -> T:
        async with asyncio.timeout(timeout(10)):
            return await scenario()

    return asyncio.run(bounded())


async def connected(
    owner: FakeOwner, factory: Callable[[FakeOwner], ClientConnection] = ClientConnection
) -> tuple[ClientConnection, asyncio.StreamReader, asyncio.StreamWriter]:
    server_side, client_side = socket.socketpair()
    loop = asyncio.get_running_loop()
    _, conn = await loop.connect_accepted_socket(lambda: factory(owner), server_side)
    reader, writer = await asyncio.open_connection(sock=client_side)
    return conn, reader, writer


async def read_frame(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    first, second = await reader.readexactly(2)
    return first & 0x0F, await reader.readexactly(second & 0x7F)


def test_login_events_reach_the_owner_and_answers_reach_the_client() -> None:
    async def scenario() -> None:
        owner = FakeOwner()
        conn, reader, writer = await connected(owner)
        assert owner.opened == [conn] and conn.peer == "unix"
        writer.write(UPGRADE + masked_text("alice") + masked_text("pw"))
        await reader.readuntil(b"\r\n\r\n")
        await wait_until(lambda: owner.logins, "the login request")
        assert owner.logins[0].username == "alice"
        assert not conn.send(b"\x81\x02hi")  # not logged in yet: nothing is written
        conn.accept_login("alice")
        assert await read_frame(reader) == (0x1, b"authenticated")
        assert conn.send(b"\x81\x02hi")
        assert await read_frame(reader) == (0x1, b"hi")
        writer.close()
        await wait_until(lambda: owner.closed == [conn], "the close to be reported")
        assert conn.state is SessionState.CLOSED and conn.transport is None

    run(scenario)


def test_a_plain_request_is_answered_and_the_connection_closed() -> None:
    async def scenario() -> None:
        owner = FakeOwner()
        conn, reader, writer = await connected(owner)
        writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        await wait_until(lambda: owner.requests, "the request")
        assert owner.requests[0].path == "/healthz"
        conn.respond(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
        assert await reader.read() == b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"  # then EOF
        await wait_until(lambda: owner.closed == [conn], "the close to be reported")
        writer.close()

    run(scenario)


def test_a_client_that_does_not_read_is_dropped_and_reported() -> None:
    async def scenario() -> None:
        owner = FakeOwner()
        conn, _reader, writer = await connected(owner)
        writer.write(UPGRADE + masked_text("bob") + masked_text("pw"))
        await wait_until(lambda: owner.logins, "the login request")
        conn.accept_login("bob")
        frame = b"\x81\x7e\x10\x00" + b"x" * 4096
        sent = 0
        while conn.send(frame):  # the client reads nothing
            sent += 1
            assert sent * len(frame) < 100 * MAX_OUTGOING_BYTES, "never dropped"
        assert owner.slow == [conn]
        await wait_until(lambda: owner.closed == [conn], "the drop to be reported")
        writer.close()

    run(scenario)


def test_a_client_that_floods_pings_before_login_and_never_reads_is_dropped() -> None:
    async def scenario() -> None:
        owner = FakeOwner()
        conn, _reader, writer = await connected(owner, MeteredConnection)
        assert isinstance(conn, MeteredConnection)
        writer.write(UPGRADE)
        flood = asyncio.create_task(flood_pings(writer, conn))
        await wait_until(lambda: owner.closed or flood.done(), "the flooding client to be dropped")
        assert conn.peak <= MAX_OUTGOING_BYTES + PONG_SIZE
        assert owner.closed == [conn] and owner.slow == [conn]
        await flood
        writer.close()

    run(scenario)


def test_a_logged_in_client_that_floods_pings_and_never_reads_is_dropped() -> None:
    async def scenario() -> None:
        owner = FakeOwner()
        conn, _reader, writer = await connected(owner, MeteredConnection)
        assert isinstance(conn, MeteredConnection)
        writer.write(UPGRADE + masked_text("carol") + masked_text("pw"))
        await wait_until(lambda: owner.logins, "the login request")
        conn.accept_login("carol")
        flood = asyncio.create_task(flood_pings(writer, conn))
        await wait_until(lambda: owner.closed or flood.done(), "the flooding client to be dropped")
        # Pongs obey the bound fan-out frames obey.
        assert conn.peak <= MAX_OUTGOING_BYTES + PONG_SIZE
        assert owner.closed == [conn] and owner.slow == [conn]
        await flood
        writer.close()

    run(scenario)


def test_closing_a_client_that_does_not_read_does_not_wait_for_it() -> None:
    async def scenario() -> None:
        owner = FakeOwner()
        server_side, client_side = socket.socketpair()  # nothing ever reads client_side
        loop = asyncio.get_running_loop()
        _, conn = await loop.connect_accepted_socket(lambda: ClientConnection(owner), server_side)
        client_side.sendall(UPGRADE + masked_text("dave") + masked_text("pw"))
        await wait_until(lambda: owner.logins, "the login request")
        conn.accept_login("dave")
        frame = b"\x81\x7e\x10\x00" + b"x" * 4096
        transport = conn.transport
        assert transport is not None
        while transport.get_write_buffer_size() == 0:  # the kernel's buffers are full
            assert conn.send(frame)
        conn.close()  # a close frame nobody will read: not waited for
        await wait_until(lambda: owner.closed == [conn], "the connection to be closed")
        assert owner.slow == []
        client_side.close()

    run(scenario)
