"""One client connection: a lean ``asyncio.Protocol`` fed bytes by the loop.

No task, coroutine or queue exists per connection. The opening handshake is
done by websockets' sans-I/O ``ServerProtocol``, which is dropped as soon as
the connection is open; from then on frames are parsed by
:mod:`gateway.wsframes` and the only per-connection state is this object's
slots. Frames to clients are encoded once by the worker for all recipients.
Timers (auth timeout, pings, maximum connection time) run worker-wide in
:mod:`gateway.timers`.
"""

from __future__ import annotations

import asyncio
import enum
import logging
from typing import TYPE_CHECKING, cast

from websockets.http11 import Request
from websockets.server import ServerProtocol

from gateway import frames
from gateway.http import find_head_end, parse_head, response
from gateway.wsframes import (
    CLOSE_PROTOCOL_ERROR,
    CLOSE_TOO_BIG,
    OP_BINARY,
    OP_CLOSE,
    OP_CONTINUATION,
    OP_PING,
    OP_PONG,
    OP_TEXT,
    parse_close,
    parse_frames,
)
from shared.errors import HttpRequestError, WebSocketProtocolError

if TYPE_CHECKING:
    from gateway.worker import Worker

log = logging.getLogger("gateway.connection")

WEBSOCKET_PATHS = frozenset(("/ws", "/push/ws"))
# Logins and `listen ...` commands are tiny; anything larger is not a client of ours.
MAX_FRAME_SIZE = 4096
# Frames a client may send after its password and before the login answer
# (the web library sends `listen notify_file_id` there).
MAX_EARLY_FRAMES = 8
# Bytes a client may leave unread before it is considered dead: many
# thousands of our frames, far more than any live client lags behind.
MAX_OUTGOING_BYTES = 256 * 1024


class ConnState(enum.IntEnum):
    HANDSHAKE = 0
    AUTH = 1  # websocket open, waiting for username and password
    LOGIN = 2  # credentials received, being checked
    OPEN = 3
    CLOSING = 4
    CLOSED = 5


class Login:
    """What a connection needs only until it is logged in."""

    __slots__ = ("early_frames", "forwarded_for", "username")

    def __init__(self, forwarded_for: str) -> None:
        self.forwarded_for = forwarded_for
        self.username: str | None = None
        self.early_frames: list[str] = []


class ClientConnection(asyncio.Protocol):
    __slots__ = (
        "_buffer",
        "_fragment",
        "debounce_factor",
        "listen_file_id",
        "login",
        "peer",
        "ping_payload",
        "ping_slot",
        "state",
        "transport",
        "user",
        "worker",
    )

    def __init__(self, worker: Worker) -> None:
        self.worker = worker
        self.transport: asyncio.Transport | None = None
        self.state = ConnState.HANDSHAKE
        # Unparsed input: the request head during the handshake, then frame bytes.
        self._buffer: bytes | None = None
        # A fragmented text message being reassembled (rare: our clients don't fragment).
        self._fragment: bytearray | None = None
        self.login: Login | None = None
        self.user: str | None = None
        self.peer = ""
        self.listen_file_id = False
        self.ping_payload: bytes | None = None
        self.ping_slot = -1
        self.debounce_factor = 1.0

    def __repr__(self) -> str:
        return f"<ClientConnection {self.state.name} {self.user or self.peer}>"

    def set_state(self, state: ConnState) -> None:
        if log.isEnabledFor(logging.DEBUG):
            log.debug("%s: %s -> %s", self.user or self.peer, self.state.name, state.name)
        self.state = state

    # --- asyncio.Protocol ------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio.Transport without subclassing it.
        self.transport = cast(asyncio.Transport, transport)
        peer = transport.get_extra_info("peername")
        self.peer = peer[0] if isinstance(peer, tuple) else "unix"
        self.worker.connection_opened(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self.state = ConnState.CLOSED
        self.transport = None
        self._buffer = self._fragment = None
        self.login = None
        self.worker.connection_closed(self)

    def data_received(self, data: bytes) -> None:
        state = self.state
        if state is ConnState.HANDSHAKE:
            self._receive_head(data)
        elif state < ConnState.CLOSING:
            self._receive_frames(data)

    def eof_received(self) -> bool | None:
        return False  # close our side too

    # --- handshake -------------------------------------------------------
    def _receive_head(self, data: bytes) -> None:
        buffered = data if self._buffer is None else self._buffer + data
        try:
            end = find_head_end(buffered)
            if end < 0:
                self._buffer = buffered
                return
            head = parse_head(buffered[:end])
        except HttpRequestError as exc:
            self.respond_and_close(response(400, f"{exc}\n"))
            return
        self._buffer = None
        if not head.is_websocket_upgrade:
            self.worker.handle_http(self, head)
            return
        if head.path not in WEBSOCKET_PATHS:
            self.respond_and_close(response(404, "not found\n"))
            return
        # websockets validates the upgrade request and computes the answer
        # (RFC 6455 section 4.2); no extension is offered, so no compression.
        handshake = ServerProtocol(max_size=MAX_FRAME_SIZE)
        handshake.receive_data(buffered[:end])
        request = next((e for e in handshake.events_received() if isinstance(e, Request)), None)
        if request is None:
            self.respond_and_close(response(400, "invalid websocket handshake\n"))
            return
        reply = handshake.accept(request)
        handshake.send_response(reply)
        assert self.transport is not None
        for chunk in handshake.data_to_send():
            self.transport.write(chunk)
        if reply.status_code != 101:
            self.close_transport()
            return
        forwarded = head.header("x-forwarded-for")
        self.login = Login(f"{forwarded}, {self.peer}" if forwarded else self.peer)
        self.set_state(ConnState.AUTH)
        if end < len(buffered):
            self._receive_frames(buffered[end:])

    def respond_and_close(self, payload: bytes) -> None:
        if self.transport is not None:
            self.transport.write(payload)
        self.close_transport()

    # --- websocket frames --------------------------------------------------
    def _receive_frames(self, data: bytes) -> None:
        buffered = data if self._buffer is None else self._buffer + data
        try:
            parsed, used = parse_frames(buffered, MAX_FRAME_SIZE)
        except WebSocketProtocolError as exc:
            self._buffer = None
            if self.state is ConnState.AUTH and exc.code == CLOSE_TOO_BIG:
                log.info("closing connection from %s: %s", self.peer, exc.reason)
            self.close(exc.code, exc.reason)
            return
        self._buffer = buffered[used:] if used < len(buffered) else None
        for fin, opcode, payload in parsed:
            if self.state >= ConnState.CLOSING:
                return
            if opcode in (OP_TEXT, OP_BINARY, OP_CONTINUATION):
                self._data_frame(fin, opcode, payload)
            elif opcode == OP_PONG:
                self.worker.pong_received(self, payload)
            elif opcode == OP_PING:
                self._write(frames.pong_frame(payload))  # RFC 6455 section 5.5.2
            elif opcode == OP_CLOSE:
                self._close_received(payload)

    def _data_frame(self, fin: bool, opcode: int, payload: bytes) -> None:
        fragment = self._fragment
        if opcode == OP_CONTINUATION:
            if fragment is None:
                self.close(CLOSE_PROTOCOL_ERROR, "unexpected continuation frame")
                return
            if len(fragment) + len(payload) > MAX_FRAME_SIZE:
                self.close(CLOSE_TOO_BIG, "message too big")
                return
            fragment += payload
            if not fin:
                return
            self._fragment = None
            self._text(bytes(fragment))
            return
        if fragment is not None:
            self.close(CLOSE_PROTOCOL_ERROR, "expected a continuation frame")
            return
        if opcode == OP_BINARY:
            # Binary before the login is an invalid login; afterwards it is ignored.
            if self.state is ConnState.AUTH:
                self.fail_login("Invalid credentials")
            return
        if not fin:
            self._fragment = bytearray(payload)
            return
        self._text(payload)

    def _close_received(self, payload: bytes) -> None:
        try:
            code, _reason = parse_close(payload)
        except WebSocketProtocolError as exc:
            self.close(exc.code, exc.reason)
            return
        # Echo the code (section 5.5.1), then drop the TCP connection: the
        # server closes first so clients do not hold TIME_WAIT (section 7.1.1).
        self.close(1000 if code in (1005, 1006) else code)

    def _text(self, raw: bytes) -> None:
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            if self.state is ConnState.AUTH:
                self.fail_login("Invalid credentials")
            else:
                self.close(1007, "invalid UTF-8")  # section 8.1
            return
        state = self.state
        if state is ConnState.OPEN:
            self.apply_command(text)
            return
        login = self.login
        if login is None:
            return
        if state is ConnState.AUTH:
            if login.username is None:
                login.username = text.strip()
            else:
                self.set_state(ConnState.LOGIN)
                self.worker.start_login(self, login.username, text.strip())
        elif state is ConnState.LOGIN and len(login.early_frames) < MAX_EARLY_FRAMES:
            login.early_frames.append(text)

    def apply_command(self, text: str) -> None:
        if text.strip() == "listen notify_file_id":
            self.listen_file_id = True

    # --- output ----------------------------------------------------------
    def _write(self, frame: bytes) -> None:
        if self.transport is not None:
            self.transport.write(frame)

    def send(self, frame: bytes) -> None:
        """Write an already encoded frame; a client that does not read is closed."""
        transport = self.transport
        if transport is None or not ConnState.AUTH <= self.state < ConnState.CLOSING:
            return  # no websocket (yet, or any more): nothing can be framed
        if transport.get_write_buffer_size() > MAX_OUTGOING_BYTES:
            self.worker.slow_client(self)
            return
        transport.write(frame)

    def authenticated(self, user: str) -> None:
        self.user = user
        login, self.login = self.login, None
        self.set_state(ConnState.OPEN)
        self.send(frames.AUTHENTICATED)
        for text in login.early_frames if login is not None else ():
            self.apply_command(text)

    def fail_login(self, reason: str) -> None:
        self.send(frames.error_frame(reason))
        self.close(1008)

    def close(self, code: int = 1000, reason: str = "") -> None:
        """Send a close frame (RFC 6455 section 7) and drop the TCP connection."""
        if self.state >= ConnState.CLOSING:
            return
        if self.state >= ConnState.AUTH:
            self._write(frames.close_frame(code, reason))
        self.close_transport()

    def close_transport(self) -> None:
        if self.state < ConnState.CLOSING:
            self.set_state(ConnState.CLOSING)
        if self.transport is not None:
            self.transport.close()

    def abort(self) -> None:
        if self.state < ConnState.CLOSING:
            self.set_state(ConnState.CLOSING)
        if self.transport is not None:
            self.transport.abort()
