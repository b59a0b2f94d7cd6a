"""The client session without I/O: bytes in, events and bytes out (no loop, no socket)."""

from __future__ import annotations

import base64
import os
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from websockets.frames import CloseCode

from gateway.http import response
from gateway.session import (
    ClientSession,
    HttpRequest,
    LoginRequest,
    SessionState,
)

OP_CONT, OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA


def upgrade(path: str = "/ws", extra: str = "") -> bytes:
    key = base64.b64encode(os.urandom(16)).decode()
    return (
        f"GET {path} HTTP/1.1\r\nHost: push.example\r\nUpgrade: websocket\r\n"
        f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
        f"Sec-WebSocket-Version: 13\r\n{extra}\r\n"
    ).encode()


def client_frame(opcode: int, payload: bytes, *, fin: bool = True, masked: bool = True) -> bytes:
    """A frame as a client sends it: masked (RFC 6455 section 5.3)."""
    first = (0x80 if fin else 0) | opcode
    n = len(payload)
    if n < 126:
        header = bytes((first, (0x80 if masked else 0) | n))
    else:
        header = bytes((first, (0x80 if masked else 0) | 126)) + struct.pack(">H", n)
    if not masked:
        return header + payload
    mask = os.urandom(4)
    return header + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


def text(value: str) -> bytes:
    return client_frame(OP_TEXT, value.encode())


def server_frames(data: bytes) -> list[tuple[int, bytes]]:
    """Parse the server's (unmasked) frames."""
    out = []
    offset = 0
    while offset < len(data):
        first, second = data[offset], data[offset + 1]
        assert not second & 0x80, "server frames are never masked"
        length, offset = second & 0x7F, offset + 2
        if length == 126:
            (length,) = struct.unpack_from(">H", data, offset)
            offset += 2
        out.append((first & 0x0F, data[offset : offset + length]))
        offset += length
    return out


def output(session: ClientSession) -> bytes:
    return b"".join(session.data_to_send())


def opened(peer: str = "10.0.0.9", extra: str = "") -> ClientSession:
    session = ClientSession()
    session.set_peer(peer)
    session.receive_data(upgrade(extra=extra))
    assert output(session).startswith(b"HTTP/1.1 101 ")
    assert session.state is SessionState.AUTH
    return session


def login_requested(
    session: ClientSession, user: str = "alice", password: str = "pw"
) -> LoginRequest:
    session.receive_data(text(user) + text(password))
    (event,) = session.events_received()
    assert isinstance(event, LoginRequest)
    assert session.state is SessionState.LOGIN
    return event


def logged_in(user: str = "alice") -> ClientSession:
    session = opened()
    login_requested(session, user)
    session.accept_login(user)
    assert server_frames(output(session)) == [(OP_TEXT, b"authenticated")]
    return session


def close_code(frame: tuple[int, bytes]) -> int:
    opcode, payload = frame
    assert opcode == OP_CLOSE
    return int.from_bytes(payload[:2], "big")


# --- handshake and plain HTTP ---------------------------------------------------


def test_the_handshake_fed_byte_by_byte_opens_the_websocket() -> None:
    session = ClientSession()
    for byte in upgrade():
        assert session.state is SessionState.HANDSHAKE
        session.receive_data(bytes((byte,)))
    answer = output(session)
    assert answer.startswith(b"HTTP/1.1 101 Switching Protocols\r\n")
    assert b"Sec-WebSocket-Accept: " in answer
    assert session.state is SessionState.AUTH and not session.close_expected()


def test_frames_in_the_same_bytes_as_the_handshake_are_read() -> None:
    session = ClientSession()
    session.receive_data(upgrade() + text("alice") + text("pw"))
    assert [type(e) for e in session.events_received()] == [LoginRequest]


def test_a_plain_request_is_an_event_answered_with_respond() -> None:
    session = ClientSession()
    session.receive_data(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
    (event,) = session.events_received()
    assert isinstance(event, HttpRequest) and event.head.path == "/healthz"
    assert session.state is SessionState.HTTP and session.data_to_send() == []
    session.respond(b"HTTP/1.1 200 OK\r\n\r\n")
    assert output(session) == b"HTTP/1.1 200 OK\r\n\r\n"
    assert session.close_expected()


@pytest.mark.parametrize(
    ("request_bytes", "status"),
    [
        (b"BROKEN\r\n\r\n", b"400"),
        (upgrade("/elsewhere"), b"404"),
        (b"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n\r\n", b"426"),
    ],
)
def test_bad_requests_get_an_error_and_a_close(request_bytes: bytes, status: bytes) -> None:
    session = ClientSession()
    session.receive_data(request_bytes)
    assert output(session).startswith(b"HTTP/1.1 " + status)
    assert session.close_expected() and session.events_received() == []


def test_a_head_request_gets_the_status_and_headers_without_the_body() -> None:
    session = ClientSession()
    session.receive_data(b"HEAD /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
    (event,) = session.events_received()
    assert isinstance(event, HttpRequest) and event.head.method == "GET"  # answered as one
    session.respond(response(200, "ok\n"))
    answer = output(session)
    assert answer.startswith(b"HTTP/1.1 200 OK\r\n")
    assert b"Content-Length: 3\r\n" in answer  # the body a GET would get
    assert answer.endswith(b"\r\n\r\n") and b"ok\n" not in answer
    assert session.close_expected()


def test_a_get_request_still_gets_its_body() -> None:
    session = ClientSession()
    session.receive_data(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
    session.events_received()
    session.respond(response(200, "ok\n"))
    assert output(session).endswith(b"\r\n\r\nok\n")


@pytest.mark.parametrize(
    "request_bytes",
    [
        b"GET /healthz HTTP/1.1\nHost: x\n",  # bare LF, the blank line not even sent yet
        b"GET /healthz HTTP/1.1\r\nHost: x\n",
        b"GET /healthz HTTP/1.1\r\nHost: x\r\n\n",
    ],
)
def test_bare_lf_line_endings_get_400_at_once(request_bytes: bytes) -> None:
    session = ClientSession()
    session.receive_data(request_bytes)
    assert output(session).startswith(b"HTTP/1.1 400 ")
    assert session.close_expected() and session.events_received() == []


@pytest.mark.parametrize(
    "request_bytes",
    [
        b"GET /healthz HTTP/1.1\r\nHost: x\r\nX Y: z\r\n\r\n",  # a space in the name
        b"GET /healthz HTTP/1.1\r\nHost : x\r\n\r\n",  # white space before the colon
        b"GET /healthz HTTP/1.1\r\nHost: x\r\n folded\r\n\r\n",  # obsolete line folding
        b"GET /healthz HTTP/1.1\r\nHost: x\ry\r\n\r\n",  # bare CR
    ],
)
def test_header_lines_that_are_not_field_lines_get_400(request_bytes: bytes) -> None:
    session = ClientSession()
    session.receive_data(request_bytes)
    assert output(session).startswith(b"HTTP/1.1 400 ")
    assert session.close_expected() and session.events_received() == []


@pytest.mark.parametrize(
    "request_bytes",
    [
        b"get /healthz HTTP/1.1\r\nHost: x\r\n\r\n",
        upgrade().replace(b"GET ", b"get ", 1),
        b"PUT /healthz HTTP/1.1\r\nHost: x\r\n\r\n",
    ],
)
def test_methods_are_case_sensitive_and_unknown_ones_get_501(request_bytes: bytes) -> None:
    session = ClientSession()
    session.receive_data(request_bytes)
    assert output(session).startswith(b"HTTP/1.1 501 Not Implemented\r\n")
    assert session.close_expected() and session.events_received() == []


def test_an_endless_head_is_refused_once_over_the_limit() -> None:
    session = ClientSession()
    session.receive_data(b"GET / HTTP/1.1\r\n" + b"X: " + b"a" * 9000)
    assert output(session).startswith(b"HTTP/1.1 400")
    assert session.close_expected()


# --- login ----------------------------------------------------------------------


def test_two_text_frames_make_a_login_request_with_the_forwarded_chain() -> None:
    session = opened("127.0.0.1", extra="X-Forwarded-For: 203.0.113.7\r\n")
    request = login_requested(session, " alice ", "secret ")
    assert (request.username, request.password) == ("alice", "secret")
    assert request.forwarded_for == "203.0.113.7, 127.0.0.1"
    assert "secret" not in repr(request)


def test_an_empty_username_asks_for_a_pre_auth_token() -> None:
    request = login_requested(opened(), "", "token-1")
    assert (request.username, request.password) == ("", "token-1")


def test_accepted_login_answers_and_applies_commands_sent_meanwhile() -> None:
    session = opened()
    login_requested(session)
    session.receive_data(text("listen notify_file_id"))
    assert not session.listen_file_id
    session.accept_login("alice")
    assert server_frames(output(session)) == [(OP_TEXT, b"authenticated")]
    assert session.user == "alice" and session.state is SessionState.OPEN
    assert session.listen_file_id


def test_a_refused_login_gets_err_and_1008() -> None:
    session = opened()
    login_requested(session)
    session.refuse_login("Invalid credentials")
    frames = server_frames(output(session))
    assert frames[0] == (OP_TEXT, b"err: Invalid credentials")
    assert close_code(frames[1]) == CloseCode.POLICY_VIOLATION
    assert session.close_expected()


def test_an_answer_after_the_client_left_changes_nothing() -> None:
    session = opened()
    login_requested(session)
    session.connection_ended()
    session.accept_login("alice")
    assert session.state is SessionState.CLOSED and session.data_to_send() == []


def test_binary_before_the_login_is_an_invalid_login() -> None:
    session = opened()
    session.receive_data(client_frame(OP_BINARY, b"\x00\x01"))
    assert server_frames(output(session))[0] == (OP_TEXT, b"err: Invalid credentials")
    assert session.close_expected()


def test_the_authentication_timeout_says_so_and_closes() -> None:
    session = opened()
    session.time_out_login()
    frames = server_frames(output(session))
    assert frames[0] == (OP_TEXT, b"Authentication timeout")
    assert close_code(frames[1]) == CloseCode.POLICY_VIOLATION


def test_the_authentication_timeout_leaves_a_logged_in_session_alone() -> None:
    session = logged_in()
    session.time_out_login()
    assert session.data_to_send() == [] and not session.close_expected()


# --- after login ------------------------------------------------------------------


def test_a_fragmented_command_is_reassembled() -> None:
    session = logged_in()
    session.receive_data(client_frame(OP_TEXT, b"listen notify", fin=False))
    session.receive_data(client_frame(OP_CONT, b"_file_id"))
    assert session.listen_file_id and not session.close_expected()


def test_client_ping_is_answered_with_its_payload() -> None:
    session = logged_in()
    session.receive_data(client_frame(OP_PING, b"abc"))
    assert server_frames(output(session)) == [(OP_PONG, b"abc")]


def test_keepalive_ping_and_its_pong() -> None:
    session = logged_in()
    assert session.ping()
    ((opcode, payload),) = server_frames(output(session))
    assert opcode == OP_PING and len(payload) == 4
    assert not session.ping()  # unanswered: the caller drops the connection
    session.receive_data(client_frame(OP_PONG, payload))
    assert session.ping_payload is None and session.ping()


def test_a_wrong_pong_drops_the_connection_without_a_close_frame() -> None:
    session = logged_in()
    session.ping()
    session.data_to_send()
    session.receive_data(client_frame(OP_PONG, b"nope"))
    assert session.close_expected() and session.data_to_send() == []


def test_unsolicited_pongs_are_ignored() -> None:
    session = logged_in()
    for _ in range(100):
        session.receive_data(client_frame(OP_PONG, b"zzzz"))
    assert session.data_to_send() == [] and not session.close_expected()


def test_a_close_frame_is_echoed_and_later_frames_ignored() -> None:
    session = logged_in()
    session.receive_data(client_frame(OP_CLOSE, b"\x0f\xa0bye") + text("after close"))
    frames = server_frames(output(session))
    assert len(frames) == 1 and close_code(frames[0]) == 4000
    assert session.close_expected()
    session.receive_data(text("more"))
    assert session.data_to_send() == []


@pytest.mark.parametrize(
    "code", [1000, 1001, 1002, 1003, 1007, 1008, 1011, 1012, 1013, 1014, 3000, 4000, 4999]
)
def test_a_close_code_a_client_may_send_is_echoed(code: int) -> None:
    session = logged_in()
    session.receive_data(client_frame(OP_CLOSE, code.to_bytes(2, "big")))
    assert close_code(server_frames(output(session))[0]) == code


# RFC 6455 section 7.4: 1004 is reserved; 1005, 1006 and 1015 are never put in
# a frame; below 1000, 1016-2999 and from 5000 on nothing is defined.
@pytest.mark.parametrize("code", [0, 999, 1004, 1005, 1006, 1015, 1016, 2999, 5000, 65535])
def test_an_invalid_close_code_is_answered_with_1002(code: int) -> None:
    session = logged_in()
    session.receive_data(client_frame(OP_CLOSE, code.to_bytes(2, "big") + b"bye"))
    frames = server_frames(output(session))
    assert len(frames) == 1 and close_code(frames[0]) == CloseCode.PROTOCOL_ERROR
    assert session.close_expected()


def test_an_invalid_close_code_before_the_login_is_answered_with_1002() -> None:
    session = opened()
    session.receive_data(client_frame(OP_CLOSE, (1005).to_bytes(2, "big")))
    assert close_code(server_frames(output(session))[0]) == CloseCode.PROTOCOL_ERROR


def test_an_empty_close_frame_is_answered_with_1000() -> None:
    session = logged_in()
    session.receive_data(client_frame(OP_CLOSE, b""))
    assert close_code(server_frames(output(session))[0]) == CloseCode.NORMAL_CLOSURE


@pytest.mark.parametrize(
    ("frame", "code"),
    [
        (client_frame(OP_TEXT, b"x", masked=False), CloseCode.PROTOCOL_ERROR),
        (client_frame(OP_TEXT, b"x" * 5000), CloseCode.MESSAGE_TOO_BIG),
        (client_frame(OP_CONT, b"x"), CloseCode.PROTOCOL_ERROR),
        (client_frame(OP_TEXT, b"\xff\xfe"), CloseCode.INVALID_DATA),
        (bytes((0x83, 0x80)) + b"\x00" * 4, CloseCode.PROTOCOL_ERROR),  # opcode 3
    ],
)
def test_broken_frames_close_with_their_code(frame: bytes, code: int) -> None:
    session = logged_in()
    session.receive_data(frame)
    assert close_code(server_frames(output(session))[-1]) == code
    assert session.close_expected()


def test_frames_for_the_owner_are_queued_only_while_the_websocket_is_open() -> None:
    session = ClientSession()
    session.send_frame(b"\x81\x01x")  # still in the handshake
    assert session.data_to_send() == []
    session = logged_in()
    session.send_frame(b"\x81\x01x")
    assert session.data_to_send() == [b"\x81\x01x"]
    session.close(CloseCode.GOING_AWAY, "server shutting down")
    assert close_code(server_frames(output(session))[0]) == CloseCode.GOING_AWAY
    session.send_frame(b"\x81\x01x")
    session.close()
    assert session.data_to_send() == []


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=2048))
def test_any_bytes_after_the_handshake_raise_nothing(data: bytes) -> None:
    session = opened()
    session.receive_data(data)
    session.events_received()
    for frame in server_frames(output(session)) if not session.close_expected() else ():
        assert frame[0] in (OP_TEXT, OP_PONG, OP_CLOSE)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=2048))
def test_any_bytes_as_a_request_raise_nothing(data: bytes) -> None:
    session = ClientSession()
    session.receive_data(data)
    session.events_received()
    session.data_to_send()
