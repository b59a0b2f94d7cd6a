"""The client-frame parser, fed bytes (RFC 6455 section 5)."""

from __future__ import annotations

import os
import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st
from websockets.frames import CloseCode

from gateway.wsframes import (
    OP_BINARY,
    OP_CLOSE,
    OP_PING,
    OP_TEXT,
    ClientFrame,
    parse_close,
    parse_frames,
)
from shared.errors import WebSocketProtocolError

CLOSE_PROTOCOL_ERROR = CloseCode.PROTOCOL_ERROR
CLOSE_TOO_BIG = CloseCode.MESSAGE_TOO_BIG


def client_frame(opcode: int, payload: bytes, *, fin: bool = True, masked: bool = True,
                 rsv: int = 0) -> bytes:  # fmt: skip
    first = (0x80 if fin else 0) | rsv | opcode
    n = len(payload)
    if n < 126:
        head = bytes([first, (0x80 if masked else 0) | n])
    elif n < 65536:
        head = bytes([first, (0x80 if masked else 0) | 126]) + struct.pack(">H", n)
    else:
        head = bytes([first, (0x80 if masked else 0) | 127]) + struct.pack(">Q", n)
    if not masked:
        return head + payload
    mask = os.urandom(4)
    return head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


def test_frames_of_every_length_form_round_trip() -> None:
    payloads = [b"", b"alice", b"x" * 125, b"y" * 126, b"z" * 70000]
    data = b"".join(client_frame(OP_TEXT, p) for p in payloads)
    frames, used = parse_frames(data, max_size=100_000)
    assert used == len(data)
    assert [f.payload for f in frames] == payloads


def test_partial_frames_wait_for_more_bytes() -> None:
    data = client_frame(OP_TEXT, b"password") + client_frame(OP_PING, b"1234")
    for cut in range(len(data)):
        frames, used = parse_frames(data[:cut], max_size=4096)
        rest, used2 = parse_frames(data[used:], max_size=4096)
        assert frames + rest == [ClientFrame(True, OP_TEXT, b"password"),
                                 ClientFrame(True, OP_PING, b"1234")]  # fmt: skip
        assert used + used2 == len(data)


def test_oversized_frame_is_refused_from_its_header() -> None:
    header_only = client_frame(OP_TEXT, b"x" * 5000)[:8]
    with pytest.raises(WebSocketProtocolError) as info:
        parse_frames(header_only, max_size=4096)
    assert info.value.code == CLOSE_TOO_BIG


@pytest.mark.parametrize(
    "data",
    [
        client_frame(OP_TEXT, b"hi", masked=False),
        client_frame(OP_TEXT, b"hi", rsv=0x40),
        client_frame(0x3, b"hi"),
        client_frame(OP_PING, b"p" * 126),
        client_frame(OP_CLOSE, b"\x03\xe8", fin=False),
    ],
    ids=["unmasked", "rsv1", "reserved-opcode", "long-ping", "fragmented-close"],
)
def test_protocol_violations(data: bytes) -> None:
    with pytest.raises(WebSocketProtocolError) as info:
        parse_frames(data, max_size=4096)
    assert info.value.code == CLOSE_PROTOCOL_ERROR


def test_close_payloads() -> None:
    assert parse_close(b"") == (1005, "")
    assert parse_close(b"\x03\xe8bye") == (1000, "bye")
    with pytest.raises(WebSocketProtocolError):
        parse_close(b"\x03")
    with pytest.raises(WebSocketProtocolError):
        parse_close(b"\x03\xe8\xff")
    assert parse_close((1014).to_bytes(2, "big")) == (1014, "")
    assert parse_close((4999).to_bytes(2, "big")) == (4999, "")
    for invalid in (0, 999, 1004, 1005, 1006, 1015, 1016, 2999, 5000, 65535):
        with pytest.raises(WebSocketProtocolError):
            parse_close(invalid.to_bytes(2, "big"))


@given(st.binary(max_size=300))
def test_arbitrary_bytes_raise_only_protocol_errors(data: bytes) -> None:
    try:
        frames, used = parse_frames(data, max_size=64)
    except WebSocketProtocolError:
        return
    assert 0 <= used <= len(data)
    assert all(len(f.payload) <= 64 for f in frames)


@given(st.lists(st.tuples(st.sampled_from([OP_TEXT, OP_BINARY, OP_PING]), st.binary(max_size=125)),
                max_size=10))  # fmt: skip
def test_any_sequence_of_valid_frames_parses_back(items: list[tuple[int, bytes]]) -> None:
    data = b"".join(client_frame(op, p) for op, p in items)
    frames, used = parse_frames(data, max_size=4096)
    assert used == len(data)
    assert [(f.opcode, f.payload) for f in frames] == items
