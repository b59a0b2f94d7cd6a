"""The thin asyncio adapter around a :class:`gateway.session.ClientSession`.

One object per connection: :class:`ClientConnection` *is* the session (a
subclass, so no second object per connection) and an ``asyncio.Protocol``.
It feeds the loop's bytes to the session and replaces the session's three
I/O methods: output is written to the transport at once, closing closes it,
events go straight to the owner. No task, coroutine or queue exists per
connection; timers run worker-wide (:mod:`gateway.timers`).

Every byte the session writes (handshake answer, pongs, ``err:`` frames, close
frames, pings, HTTP responses) obeys the bound fan-out frames obey: a write
that finds more than :data:`MAX_OUTGOING_BYTES` unread drops the connection.
Before login it is lower: the transport's high-water mark (64 KiB over plain
TCP, :meth:`ClientConnection.pause_writing`). So what a client sends (a ping
flood) can never make the worker buffer without bound.

The adapter talks to its owner (the worker) only through
:class:`ConnectionOwner`, so it can be tested over a real socket with a small
fake owner.
"""

from __future__ import annotations

import asyncio
from typing import Protocol, cast

from gateway.http import RequestHead
from gateway.session import ClientSession, HttpRequest, LoginRequest, SessionEvent, SessionState

# Bytes a client may leave unread before it is considered dead: many
# thousands of our frames, far more than any live client lags behind.
MAX_OUTGOING_BYTES = 256 * 1024


class ConnectionOwner(Protocol):
    """What a connection needs from the process that holds it."""

    def connection_opened(self, conn: ClientConnection) -> None:
        """A client connected (the owner may refuse it with :meth:`ClientConnection.abort`)."""

    def connection_closed(self, conn: ClientConnection) -> None:
        """The transport is gone, whoever closed it."""

    def login_requested(self, conn: ClientConnection, request: LoginRequest) -> None:
        """Check the credentials; answer with ``accept_login`` or ``refuse_login``."""

    def http_requested(self, conn: ClientConnection, head: RequestHead) -> None:
        """Answer a plain HTTP request with ``respond``."""

    def slow_client(self, conn: ClientConnection) -> None:
        """The client does not read what it is sent (events, pongs...); it has been dropped."""


class ClientConnection(ClientSession, asyncio.Protocol):
    __slots__ = ("debounce_factor", "owner", "ping_slot", "transport")

    def __init__(self, owner: ConnectionOwner) -> None:
        super().__init__()
        self.owner = owner
        self.transport: asyncio.Transport | None = None
        # Kept here for the owner, so it needs no table keyed by connection:
        # the connection's debounce factor and its slot in the ping wheel.
        self.debounce_factor = 1.0
        self.ping_slot = -1

    # --- asyncio.Protocol -----------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio.Transport without subclassing it.
        self.transport = cast(asyncio.Transport, transport)
        peer = transport.get_extra_info("peername")
        self.set_peer(peer[0] if isinstance(peer, tuple) else "unix")
        self.owner.connection_opened(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        self.connection_ended()
        self.owner.connection_closed(self)

    def data_received(self, data: bytes) -> None:
        self.receive_data(data)

    def eof_received(self) -> bool | None:
        return False  # close our side too

    def pause_writing(self) -> None:
        # asyncio's flow control: more than the transport's high-water mark (64 KiB
        # over plain TCP) of our bytes is waiting, on top of a full kernel buffer.
        if self.state < SessionState.OPEN:
            # Before login we write a handshake answer, pongs and at most a
            # refusal: a client that leaves this much of it unread sends
            # requests (pings) without reading the answers. Dropped at once, so
            # it holds no place among the connections waiting to log in.
            self._drop_slow()
        # A logged-in client may lag that far behind a burst of messages; it
        # is dropped only past MAX_OUTGOING_BYTES, at its next write.

    # --- the session's I/O ------------------------------------------------------
    def _output(self, data: bytes) -> None:
        transport = self.transport
        if transport is None or transport.is_closing():
            return
        # The bound fan-out frames obey (send()), for everything else we write.
        if transport.get_write_buffer_size() > MAX_OUTGOING_BYTES:
            self._drop_slow()
            return
        transport.write(data)

    def _finish(self, abort: bool) -> None:
        transport = self.transport
        if transport is not None:
            # Bytes still waiting here mean the kernel's send buffer is full: the
            # client is not reading, and close() would wait for it to drain for
            # as long as it likes (there is no close timeout per connection).
            if abort or transport.get_write_buffer_size():
                transport.abort()
            else:
                transport.close()

    def _drop_slow(self) -> None:
        self.abort()
        self.owner.slow_client(self)

    def _event(self, event: SessionEvent) -> None:
        if isinstance(event, LoginRequest):
            self.owner.login_requested(self, event)
        elif isinstance(event, HttpRequest):
            self.owner.http_requested(self, event.head)

    # --- for the owner ------------------------------------------------------------
    def send(self, frame: bytes) -> bool:
        """Write an already encoded frame to a logged-in client; False if not written.

        A client that does not read what it is sent is dropped here (and the
        owner told), rather than buffered for without bound.
        """
        transport = self.transport
        if transport is None or self.state is not SessionState.OPEN:
            return False
        if transport.get_write_buffer_size() > MAX_OUTGOING_BYTES:
            self._drop_slow()
            return False
        transport.write(frame)
        return True
