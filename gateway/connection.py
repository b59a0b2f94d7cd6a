"""One client connection: a lean ``asyncio.Protocol`` around websockets' sans-I/O core.

No task, coroutine or queue exists per connection: this object is fed bytes
by the loop, hands complete frames to the worker, and writes frames the
worker encoded once for all recipients. Timers (auth timeout, pings,
maximum connection time) are run worker-wide by :mod:`gateway.timers`.
"""

from __future__ import annotations

import asyncio
import enum
import logging
from typing import TYPE_CHECKING, cast

from websockets.frames import Frame, Opcode
from websockets.http11 import Request
from websockets.server import ServerProtocol

from gateway import frames
from gateway.http import find_head_end, parse_head, response
from shared.errors import HttpRequestError

if TYPE_CHECKING:
    from gateway.worker import Worker

log = logging.getLogger("gateway.connection")

WEBSOCKET_PATHS = frozenset(("/ws", "/push/ws"))
# Logins and `listen ...` commands are tiny; anything larger is not a client of ours.
MAX_FRAME_SIZE = 4096
# Frames a client may send after its password and before the login answer
# (the web library sends `listen notify_file_id` there).
MAX_EARLY_FRAMES = 8


class ConnState(enum.IntEnum):
    HANDSHAKE = 0
    AUTH = 1  # websocket open, waiting for username and password
    LOGIN = 2  # credentials received, being checked
    OPEN = 3
    CLOSING = 4
    CLOSED = 5


class ClientConnection(asyncio.Protocol):
    __slots__ = (
        "_head",
        "_username",
        "debounce_factor",
        "early_frames",
        "forwarded_for",
        "listen_file_id",
        "peer",
        "ping_payload",
        "ping_slot",
        "state",
        "transport",
        "user",
        "worker",
        "ws",
    )

    def __init__(self, worker: Worker) -> None:
        self.worker = worker
        self.transport: asyncio.Transport | None = None
        self.state = ConnState.HANDSHAKE
        self._head: bytearray | None = bytearray()
        self.ws: ServerProtocol | None = None
        self._username: str | None = None
        self.early_frames: list[str] | None = None
        # The X-Forwarded-For chain sent to Nextcloud at login; cleared afterwards.
        self.forwarded_for: str | None = None
        self.user: str | None = None
        self.peer = ""
        self.listen_file_id = False
        self.ping_payload: bytes | None = None
        self.ping_slot = -1
        self.debounce_factor = 1.0

    def __repr__(self) -> str:
        return f"<ClientConnection {self.peer} {self.state.name} {self.user or ''}>"

    def set_state(self, state: ConnState) -> None:
        if log.isEnabledFor(logging.DEBUG):
            log.debug("%s: %s -> %s", self.peer, self.state.name, state.name)
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
        self.ws = None
        self.worker.connection_closed(self)

    def data_received(self, data: bytes) -> None:
        if self.state is ConnState.HANDSHAKE:
            self._receive_head(data)
        elif self.ws is not None and self.state < ConnState.CLOSED:
            self.ws.receive_data(data)
            self._process_ws()

    def eof_received(self) -> bool | None:
        return False  # close our side too

    # --- handshake -------------------------------------------------------
    def _receive_head(self, data: bytes) -> None:
        assert self._head is not None
        self._head += data
        try:
            end = find_head_end(self._head)
            if end < 0:
                return
            head = parse_head(bytes(self._head[:end]))
        except HttpRequestError as exc:
            self.respond_and_close(response(400, f"{exc}\n"))
            return
        raw, self._head = bytes(self._head), None
        if not head.is_websocket_upgrade:
            self.worker.handle_http(self, head)
            return
        if head.path not in WEBSOCKET_PATHS:
            self.respond_and_close(response(404, "not found\n"))
            return
        ws = ServerProtocol(max_size=MAX_FRAME_SIZE)
        ws.receive_data(raw)
        request = next((e for e in ws.events_received() if isinstance(e, Request)), None)
        if request is None:
            self.respond_and_close(response(400, "invalid websocket handshake\n"))
            return
        reply = ws.accept(request)
        ws.send_response(reply)
        self.ws = ws
        if reply.status_code != 101:
            self._flush_ws()
            self.close_transport()
            return
        forwarded = head.header("x-forwarded-for")
        self.forwarded_for = f"{forwarded}, {self.peer}" if forwarded else self.peer
        self.set_state(ConnState.AUTH)
        self._process_ws()

    def respond_and_close(self, payload: bytes) -> None:
        if self.transport is not None:
            self.transport.write(payload)
        self.close_transport()

    # --- websocket frames --------------------------------------------------
    def _process_ws(self) -> None:
        ws = self.ws
        if ws is None:
            return
        for frame in ws.events_received():
            if self.state >= ConnState.CLOSING:
                break
            if not isinstance(frame, Frame):
                continue  # only the handshake yields other events
            opcode = frame.opcode
            if opcode is Opcode.TEXT:
                try:
                    text = bytes(frame.data).decode("utf-8")
                except UnicodeDecodeError:
                    self._bad_frame()
                    continue
                self._text(text)
            elif opcode is Opcode.BINARY:
                self._bad_frame()
            elif opcode is Opcode.PONG:
                self.worker.pong_received(self, bytes(frame.data))
            # PING is answered by ServerProtocol itself; CLOSE is handled below;
            # continuation frames are ignored (no client of ours fragments).
        self._flush_ws()
        if ws.close_expected() and self.state < ConnState.CLOSED:
            self.close_transport()

    def _flush_ws(self) -> None:
        ws, transport = self.ws, self.transport
        if ws is None or transport is None:
            return
        for chunk in ws.data_to_send():
            if chunk:
                transport.write(chunk)
            else:  # websockets asks for the TCP connection to be closed (EOF)
                self.close_transport()
                return

    def _bad_frame(self) -> None:
        # Binary (or invalid UTF-8) before the login is an invalid login;
        # afterwards it is ignored like any other unknown client frame.
        if self.state is ConnState.AUTH:
            self.fail_login("Invalid credentials")

    def _text(self, text: str) -> None:
        state = self.state
        if state is ConnState.OPEN:
            self.apply_command(text)
        elif state is ConnState.AUTH:
            if self._username is None:
                self._username = text.strip()
            else:
                username, self._username = self._username, None
                self.set_state(ConnState.LOGIN)
                self.worker.start_login(self, username, text.strip())
        elif state is ConnState.LOGIN:
            early = self.early_frames
            if early is None:
                early = self.early_frames = []
            if len(early) < MAX_EARLY_FRAMES:
                early.append(text)

    def apply_command(self, text: str) -> None:
        if text.strip() == "listen notify_file_id":
            self.listen_file_id = True

    # --- output ----------------------------------------------------------
    def send(self, frame: bytes) -> None:
        """Write an already encoded frame; a client that does not read is closed."""
        transport = self.transport
        if transport is None or self.ws is None or self.state >= ConnState.CLOSING:
            return  # no websocket (yet, or any more): nothing can be framed
        if transport.get_write_buffer_size() > self.worker.max_outgoing_bytes:
            self.worker.slow_client(self)
            self.abort()
            return
        transport.write(frame)

    def authenticated(self, user: str) -> None:
        self.user = user
        self.set_state(ConnState.OPEN)
        self.send(frames.AUTHENTICATED)
        early, self.early_frames = self.early_frames, None
        for text in early or ():
            self.apply_command(text)

    def fail_login(self, reason: str) -> None:
        self.send(frames.error_frame(reason))
        self.close(1008, "")

    def close(self, code: int = 1000, reason: str = "") -> None:
        """Start the closing handshake (RFC 6455 section 7) and drop the TCP connection."""
        if self.state >= ConnState.CLOSING:
            return
        if self.ws is not None and self.transport is not None:
            self.transport.write(frames.close_frame(code, reason))
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
