"""Parsing client websocket frames after the handshake, without I/O (RFC 6455 section 5).

websockets' ``ServerProtocol`` performs the opening handshake; once the
connection is open this module takes over, because a parser object per
connection (reader, generator, queues) costs kilobytes, and a push server
holds tens of thousands of idle connections. Here the only per-connection
state is the unparsed bytes, kept by the caller (``None`` when empty).

:func:`parse_frames` is fed the buffered bytes and returns complete frames
and the number of bytes consumed. Everything the RFC requires a server to
refuse raises :class:`WebSocketProtocolError` carrying the close code to send.
"""

from __future__ import annotations

from typing import NamedTuple

from websockets.frames import CloseCode

from shared.errors import WebSocketProtocolError

OP_CONTINUATION = 0x0
OP_TEXT = 0x1
OP_BINARY = 0x2
OP_CLOSE = 0x8
OP_PING = 0x9
OP_PONG = 0xA
_KNOWN = frozenset((OP_CONTINUATION, OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG))

_PROTOCOL_ERROR = CloseCode.PROTOCOL_ERROR
_TOO_BIG = CloseCode.MESSAGE_TOO_BIG
# The close codes a peer may put in a close frame (RFC 6455 section 7.4.1 and
# the IANA registry, 1012-1014 included): 1004 is reserved, and 1005, 1006
# and 1015 mean "no frame" and are never sent; 3000-4999 are for libraries,
# frameworks and applications (section 7.4.2). Anything else is a protocol error.
_PEER_CLOSE_CODES = frozenset((*range(1000, 1004), *range(1007, 1015)))


class ClientFrame(NamedTuple):
    fin: bool
    opcode: int
    payload: bytes


def _unmask(payload: bytes, mask: bytes) -> bytes:
    # XOR with the 4-byte key repeated (section 5.3), done on one big integer:
    # far faster in CPython than a byte loop for the small frames clients send.
    n = len(payload)
    if n == 0:
        return b""
    key = (mask * (n // 4 + 1))[:n]
    value = int.from_bytes(payload, "big") ^ int.from_bytes(key, "big")
    return value.to_bytes(n, "big")


def parse_frames(data: bytes, max_size: int) -> tuple[list[ClientFrame], int]:
    """Complete frames at the start of ``data`` and how many bytes they used.

    Raises WebSocketProtocolError for an unmasked frame, reserved bits or
    opcodes, a fragmented or oversized control frame (section 5.5), or a
    payload larger than ``max_size`` (checked before waiting for its bytes).
    """
    frames: list[ClientFrame] = []
    offset = 0
    size = len(data)
    while size - offset >= 2:
        first = data[offset]
        second = data[offset + 1]
        if first & 0x70:
            raise WebSocketProtocolError(_PROTOCOL_ERROR, "reserved bits set")
        opcode = first & 0x0F
        if opcode not in _KNOWN:
            raise WebSocketProtocolError(_PROTOCOL_ERROR, f"unknown opcode {opcode}")
        if not second & 0x80:
            raise WebSocketProtocolError(_PROTOCOL_ERROR, "client frame not masked")
        fin = bool(first & 0x80)
        length = second & 0x7F
        header = 2
        if length == 126:
            if size - offset < 4:
                break
            length = int.from_bytes(data[offset + 2 : offset + 4], "big")
            header = 4
        elif length == 127:
            if size - offset < 10:
                break
            length = int.from_bytes(data[offset + 2 : offset + 10], "big")
            header = 10
        if opcode >= OP_CLOSE and (length > 125 or not fin):
            raise WebSocketProtocolError(_PROTOCOL_ERROR, "invalid control frame")
        if length > max_size:
            raise WebSocketProtocolError(_TOO_BIG, f"frame of {length} bytes is too big")
        start = offset + header + 4
        end = start + length
        if end > size:
            break
        mask = data[start - 4 : start]
        frames.append(ClientFrame(fin, opcode, _unmask(data[start:end], mask)))
        offset = end
    return frames, offset


def parse_close(payload: bytes) -> tuple[int, str]:
    """Code and reason of a close frame (section 5.5.1); 1005 when it has none.

    Raises WebSocketProtocolError (1002) for a payload of one byte, a code a
    peer may not send (section 7.4) or a reason that is not UTF-8.
    """
    if len(payload) == 0:
        return CloseCode.NO_STATUS_RCVD, ""
    if len(payload) == 1:
        raise WebSocketProtocolError(_PROTOCOL_ERROR, "close frame of one byte")
    code = int.from_bytes(payload[:2], "big")
    if code not in _PEER_CLOSE_CODES and not 3000 <= code <= 4999:
        raise WebSocketProtocolError(_PROTOCOL_ERROR, f"invalid close code {code}")
    try:
        reason = payload[2:].decode("utf-8")
    except UnicodeDecodeError:
        raise WebSocketProtocolError(_PROTOCOL_ERROR, "close reason not UTF-8") from None
    return code, reason
