"""One client's session without I/O: bytes in, events and bytes out (docs/PROTOCOL.md section 2).

:class:`ClientSession` follows the contract of websockets' sans-I/O
``protocol.py``: feed it what the client sent with :meth:`receive_data`, then
read what happened with :meth:`events_received` (a plain HTTP request, a
login to check) and what to write back with :meth:`data_to_send`;
:meth:`close_expected` says the transport should be closed once that is
written. The owner answers events with :meth:`accept_login`,
:meth:`refuse_login`, :meth:`respond` and :meth:`close`, which queue more
output. No loop, socket or clock is involved, so tests drive it byte by byte.

The opening handshake is validated and answered by websockets'
``ServerProtocol``, dropped as soon as the connection is open; after that
frames are parsed by :mod:`gateway.wsframes` and the only per-connection state
is this object's slots, because a push server holds tens of thousands of idle
sessions.

The three ``_output``/``_finish``/``_event`` methods are the session's whole
I/O boundary: here they buffer for ``data_to_send``/``close_expected``/
``events_received``; :class:`gateway.connection.ClientConnection` (the thin
asyncio adapter, the same object: one per connection) overrides them to
write, close and dispatch at once.
"""

from __future__ import annotations

import enum
import logging
import os
from dataclasses import dataclass, replace

from websockets.frames import CloseCode
from websockets.http11 import Request
from websockets.server import ServerProtocol

from gateway import frames
from gateway.http import (
    IMPLEMENTED_METHODS,
    RequestHead,
    find_head_end,
    head_only,
    parse_head,
    response,
)
from gateway.wsframes import (
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

log = logging.getLogger("gateway.session")

WEBSOCKET_PATHS = frozenset(("/ws", "/push/ws"))
# Logins and `listen ...` commands are tiny; anything larger is not a client of ours.
MAX_FRAME_SIZE = 4096
# Frames a client may send after its password and before the login answer
# (the web library sends `listen notify_file_id` there).
MAX_EARLY_FRAMES = 8
LISTEN_FILE_ID = "listen notify_file_id"


class SessionState(enum.IntEnum):
    """The lifecycle of a session; the order matters (``state < CLOSING``...)."""

    HANDSHAKE = 0  # reading the HTTP request head
    HTTP = 1  # a plain HTTP request, being answered
    AUTH = 2  # websocket open, waiting for username and password
    LOGIN = 3  # credentials received, being checked
    OPEN = 4  # logged in: receives messages
    CLOSING = 5  # our last bytes are queued; the transport is to be closed
    CLOSED = 6  # the transport is gone


@dataclass(frozen=True, slots=True)
class HttpRequest:
    """A plain HTTP request (not a websocket upgrade): answer it with :meth:`respond`.

    A HEAD request arrives as a GET; the session sends only the head of the answer.
    """

    head: RequestHead


@dataclass(frozen=True, slots=True)
class LoginRequest:
    """Credentials to check; answer with :meth:`accept_login` or :meth:`refuse_login`.

    An empty ``username`` means ``password`` is a pre-auth token.
    """

    username: str
    password: str
    forwarded_for: str

    def __repr__(self) -> str:  # never show the password, even in a debugger
        return f"LoginRequest({self.username!r}, ***, {self.forwarded_for!r})"


SessionEvent = HttpRequest | LoginRequest


class _Login:
    """What a session needs only until it is logged in (or its HTTP request answered)."""

    __slots__ = ("early_frames", "head_request", "peer", "username")

    def __init__(self, peer: str) -> None:
        self.peer = peer  # the client's address, or the X-Forwarded-For chain ending in it
        self.username: str | None = None
        self.early_frames: list[str] = []
        # A plain HTTP request with the HEAD method: its response goes without the body.
        self.head_request = False


class ClientSession:
    """A client's websocket session: handshake, login, keepalive, commands, close."""

    __slots__ = (
        "_buffer",
        "_events",
        "_fragment",
        "_login",
        "_outgoing",
        "listen_file_id",
        "ping_payload",
        "state",
        "user",
    )

    def __init__(self) -> None:
        self.state = SessionState.HANDSHAKE
        #: The user once logged in (state OPEN); None before.
        self.user: str | None = None
        #: The client asked for ``notify_file_id`` messages.
        self.listen_file_id = False
        #: The payload of the ping waiting for its pong; None when none is.
        self.ping_payload: bytes | None = None
        self._login: _Login | None = _Login("")
        # Unparsed input: the request head during the handshake, then frame bytes.
        self._buffer: bytes | None = None
        # A fragmented text message being reassembled (rare: our clients don't fragment).
        self._fragment: bytearray | None = None
        # Buffered output and events (None when empty: most sessions have neither).
        self._outgoing: list[bytes] | None = None
        self._events: list[SessionEvent] | None = None

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.state.name} {self.user or self.peer}>"

    @property
    def peer(self) -> str:
        """The client's address while it logs in; ``""`` afterwards (logs use the user)."""
        return self._login.peer if self._login is not None else ""

    def set_peer(self, peer: str) -> None:
        """Record the client's address (before any data)."""
        if self._login is not None:
            self._login.peer = peer

    def _set_state(self, state: SessionState) -> None:
        if log.isEnabledFor(logging.DEBUG):
            log.debug("%s: %s -> %s", self.user or self.peer, self.state.name, state.name)
        self.state = state

    # --- the sans-I/O contract ------------------------------------------------
    def receive_data(self, data: bytes) -> None:
        """Take bytes the client sent. Raises nothing: bad input closes the session."""
        state = self.state
        if state is SessionState.HANDSHAKE:
            self._receive_head(data)
        elif SessionState.AUTH <= state < SessionState.CLOSING:
            self._receive_frames(data)

    def events_received(self) -> list[SessionEvent]:
        """What happened since the last call, oldest first."""
        events, self._events = self._events, None
        return events or []

    def data_to_send(self) -> list[bytes]:
        """Bytes to write to the client, in order, since the last call."""
        outgoing, self._outgoing = self._outgoing, None
        return outgoing or []

    def close_expected(self) -> bool:
        """True once the transport should be closed after writing :meth:`data_to_send`."""
        return self.state >= SessionState.CLOSING

    def connection_ended(self) -> None:
        """The transport is gone: forget everything but the state."""
        self._set_state(SessionState.CLOSED)
        self._buffer = self._fragment = None
        self._login = None

    # --- the I/O boundary (overridden by the asyncio adapter) ------------------
    def _output(self, data: bytes) -> None:
        if self._outgoing is None:
            self._outgoing = [data]
        else:
            self._outgoing.append(data)

    def _finish(self, abort: bool) -> None:
        """Our side is done (the state is CLOSING); ``abort``: without waiting for output."""

    def _event(self, event: SessionEvent) -> None:
        if self._events is None:
            self._events = [event]
        else:
            self._events.append(event)

    # --- answers from the owner -----------------------------------------------
    def accept_login(self, user: str) -> None:
        """The login is valid: send ``authenticated`` and apply the commands sent meanwhile."""
        if self.state is not SessionState.LOGIN:
            return
        self.user = user
        login, self._login = self._login, None
        self._set_state(SessionState.OPEN)
        self._output(frames.AUTHENTICATED)
        for text in login.early_frames if login is not None else ():
            self._command(text)

    def refuse_login(self, reason: str) -> None:
        """Send ``err: <reason>`` and close with 1008 (policy violation)."""
        self.send_frame(frames.error_frame(reason))
        self.close(CloseCode.POLICY_VIOLATION)

    def time_out_login(self) -> None:
        """The client did not log in in time (notify_push's text, no ``err:``)."""
        if self.state < SessionState.OPEN:
            self.send_frame(frames.AUTH_TIMEOUT)
            self.close(CloseCode.POLICY_VIOLATION)

    def respond(self, payload: bytes) -> None:
        """Send a complete HTTP response and close (only its head for a HEAD request)."""
        if self.state < SessionState.CLOSING:
            login = self._login
            if login is not None and login.head_request:
                payload = head_only(payload)  # RFC 9110 section 9.3.2
            self._output(payload)
            self._close_transport()

    def send_frame(self, frame: bytes) -> None:
        """Queue an encoded frame, if a websocket is open (not yet closing)."""
        if SessionState.AUTH <= self.state < SessionState.CLOSING:
            self._output(frame)

    def ping(self) -> bool:
        """Send a keepalive ping; False (and nothing sent) when the last one is unanswered."""
        if self.ping_payload is not None:
            return False
        self.ping_payload = os.urandom(4)
        self.send_frame(frames.ping_frame(self.ping_payload))
        return True

    def close(self, code: int = CloseCode.NORMAL_CLOSURE, reason: str = "") -> None:
        """Send a close frame (RFC 6455 section 7) and drop the TCP connection."""
        if self.state >= SessionState.CLOSING:
            return
        if self.state >= SessionState.AUTH:
            self._output(frames.close_frame(code, reason))
        self._close_transport()

    def abort(self) -> None:
        """Drop the connection without a close frame (a dead or hostile client)."""
        if self.state < SessionState.CLOSING:
            self._set_state(SessionState.CLOSING)
        self._finish(abort=True)

    def _close_transport(self) -> None:
        self._set_state(SessionState.CLOSING)
        self._finish(abort=False)

    # --- handshake --------------------------------------------------------------
    def _receive_head(self, data: bytes) -> None:
        buffered = data if self._buffer is None else self._buffer + data
        try:
            end = find_head_end(buffered)
            if end < 0:
                self._buffer = buffered
                return
            head = parse_head(buffered[:end])
        except HttpRequestError as exc:
            self._buffer = None
            self.respond(response(400, f"{exc}\n"))
            return
        self._buffer = None
        if head.method not in IMPLEMENTED_METHODS:
            # A method we do not know, `get` included: methods are case-sensitive
            # (RFC 9110 section 9.1) and an unrecognised one is a 501 (section 15.6.2).
            self.respond(response(501, "method not implemented\n"))
            return
        if not head.is_websocket_upgrade:
            self._set_state(SessionState.HTTP)
            if head.method == "HEAD" and self._login is not None:
                # Answered as a GET of the same target, without the body (RFC 9110
                # section 9.3.2), so the owner needs to know nothing of HEAD.
                self._login.head_request = True
                head = replace(head, method="GET")
            self._event(HttpRequest(head))
            return
        if head.path not in WEBSOCKET_PATHS:
            self.respond(response(404, "not found\n"))
            return
        # websockets validates the upgrade request and computes the answer
        # (RFC 6455 section 4.2); no extension is offered, so no compression.
        handshake = ServerProtocol(max_size=MAX_FRAME_SIZE)
        handshake.receive_data(buffered[:end])
        request = next((e for e in handshake.events_received() if isinstance(e, Request)), None)
        if request is None:
            self.respond(response(400, "invalid websocket handshake\n"))
            return
        reply = handshake.accept(request)
        handshake.send_response(reply)
        for chunk in handshake.data_to_send():
            self._output(chunk)
        if reply.status_code != 101:
            self._close_transport()
            return
        login = self._login
        if login is not None:
            forwarded = head.header("x-forwarded-for")
            if forwarded:
                login.peer = f"{forwarded}, {login.peer}"
        self._set_state(SessionState.AUTH)
        if end < len(buffered):
            self._receive_frames(buffered[end:])

    # --- websocket frames -------------------------------------------------------
    def _receive_frames(self, data: bytes) -> None:
        buffered = data if self._buffer is None else self._buffer + data
        try:
            parsed, used = parse_frames(buffered, MAX_FRAME_SIZE)
        except WebSocketProtocolError as exc:
            self._buffer = None
            if self.state is SessionState.AUTH and exc.code == CloseCode.MESSAGE_TOO_BIG:
                log.info("closing connection from %s: %s", self.peer, exc.reason)
            self.close(exc.code, exc.reason)
            return
        self._buffer = buffered[used:] if used < len(buffered) else None
        for fin, opcode, payload in parsed:
            if self.state >= SessionState.CLOSING:
                return
            if opcode in (OP_TEXT, OP_BINARY, OP_CONTINUATION):
                self._data_frame(fin, opcode, payload)
            elif opcode == OP_PONG:
                self._pong(payload)
            elif opcode == OP_PING:
                self.send_frame(frames.pong_frame(payload))  # RFC 6455 section 5.5.2
            elif opcode == OP_CLOSE:
                self._close_received(payload)

    def _pong(self, payload: bytes) -> None:
        expected = self.ping_payload
        if expected is None:
            return  # unsolicited pong: allowed by RFC 6455 section 5.5.3, ignored
        if payload != expected:
            log.info("%s answered a ping with a wrong payload; closing", self.user)
            self.abort()
            return
        self.ping_payload = None

    def _data_frame(self, fin: bool, opcode: int, payload: bytes) -> None:
        fragment = self._fragment
        if opcode == OP_CONTINUATION:
            if fragment is None:
                self.close(CloseCode.PROTOCOL_ERROR, "unexpected continuation frame")
                return
            if len(fragment) + len(payload) > MAX_FRAME_SIZE:
                self.close(CloseCode.MESSAGE_TOO_BIG, "message too big")
                return
            fragment += payload
            if not fin:
                return
            self._fragment = None
            self._text(bytes(fragment))
            return
        if fragment is not None:
            self.close(CloseCode.PROTOCOL_ERROR, "expected a continuation frame")
            return
        if opcode == OP_BINARY:
            # Binary before the login is an invalid login; afterwards it is ignored.
            if self.state is SessionState.AUTH:
                self.refuse_login("Invalid credentials")
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
        # Echo the code (section 5.5.1; parse_close refused any code a client
        # may not send), then drop the TCP connection: the server closes first
        # so clients do not hold TIME_WAIT (section 7.1.1).
        self.close(CloseCode.NORMAL_CLOSURE if code == CloseCode.NO_STATUS_RCVD else code)

    def _text(self, raw: bytes) -> None:
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            if self.state is SessionState.AUTH:
                self.refuse_login("Invalid credentials")
            else:
                self.close(CloseCode.INVALID_DATA, "invalid UTF-8")  # section 8.1
            return
        state = self.state
        if state is SessionState.OPEN:
            self._command(text)
            return
        login = self._login
        if login is None:
            return
        if state is SessionState.AUTH:
            if login.username is None:
                login.username = text.strip()
            else:
                self._set_state(SessionState.LOGIN)
                self._event(LoginRequest(login.username, text.strip(), login.peer))
        elif state is SessionState.LOGIN and len(login.early_frames) < MAX_EARLY_FRAMES:
            login.early_frames.append(text)

    def _command(self, text: str) -> None:
        if text.strip() == LISTEN_FILE_ID:
            self.listen_file_id = True
