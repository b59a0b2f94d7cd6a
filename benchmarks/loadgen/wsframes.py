"""Minimal sans-I/O WebSocket client framing (RFC 6455), for the load generator.

Only what a push client needs: a fixed opening handshake, masked client frames
and a parser for the unmasked frames a server sends. No extensions (we never
offer permessage-deflate), no I/O: feed bytes in, read frames out.
"""

from __future__ import annotations

import base64
import hashlib
import os
import struct
from typing import Final, NamedTuple

OP_CONT: Final = 0x0
OP_TEXT: Final = 0x1
OP_BINARY: Final = 0x2
OP_CLOSE: Final = 0x8
OP_PING: Final = 0x9
OP_PONG: Final = 0xA

# Push messages are tiny; anything bigger than this from the server is a bug.
MAX_FRAME: Final = 1 << 20
MAX_HANDSHAKE: Final = 16 * 1024

# A fixed key: the load generator needs no secrecy, and a constant lets the
# expected Sec-WebSocket-Accept be computed once (RFC 6455 section 4.2.2).
_KEY: Final = base64.b64encode(b"notify-push-benc").decode()
_GUID: Final = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
EXPECTED_ACCEPT: Final = base64.b64encode(
    hashlib.sha1((_KEY + _GUID).encode(), usedforsecurity=False).digest()
)


class WsProtocolError(Exception):
    """The server sent something this client cannot accept (bad handshake or frame)."""


class Frame(NamedTuple):
    fin: bool
    opcode: int
    payload: bytes


def handshake_request(host: str, path: str) -> bytes:
    """The opening handshake (RFC 6455 section 4.1), the same bytes for every client."""
    return (
        f"GET {path} HTTP/1.1\r\n"
        f"Host: {host}\r\n"
        "Upgrade: websocket\r\n"
        "Connection: Upgrade\r\n"
        f"Sec-WebSocket-Key: {_KEY}\r\n"
        "Sec-WebSocket-Version: 13\r\n"
        "\r\n"
    ).encode()


def parse_handshake_response(buf: bytes) -> int:
    """Return the length of a complete, valid 101 response head in ``buf``, or 0 if incomplete.

    Raises :class:`WsProtocolError` when the head is complete but not an accepted upgrade,
    or when it grows past ``MAX_HANDSHAKE`` without ending.
    """
    end = buf.find(b"\r\n\r\n")
    if end < 0:
        if len(buf) > MAX_HANDSHAKE:
            raise WsProtocolError("handshake response too long")
        return 0
    head = buf[:end]
    status = head.split(b"\r\n", 1)[0]
    if not status.startswith(b"HTTP/1.1 101"):
        raise WsProtocolError(f"handshake refused: {status[:80]!r}")
    if EXPECTED_ACCEPT not in head:
        raise WsProtocolError("wrong Sec-WebSocket-Accept")
    return end + 4


def _mask(payload: bytes, key: bytes) -> bytes:
    n = len(payload)
    if n == 0:
        return payload
    # XOR as one big integer: far faster in CPython than a per-byte loop.
    keystream = (key * (n // 4 + 1))[:n]
    return (int.from_bytes(payload, "big") ^ int.from_bytes(keystream, "big")).to_bytes(n, "big")


def encode_frame(opcode: int, payload: bytes) -> bytes:
    """One final client frame; RFC 6455 section 5.3 requires clients to mask every frame."""
    key = os.urandom(4)
    n = len(payload)
    if n < 126:
        header = struct.pack("!BB", 0x80 | opcode, 0x80 | n)
    elif n < 65536:
        header = struct.pack("!BBH", 0x80 | opcode, 0x80 | 126, n)
    else:
        header = struct.pack("!BBQ", 0x80 | opcode, 0x80 | 127, n)
    return header + key + _mask(payload, key)


def text(s: str) -> bytes:
    return encode_frame(OP_TEXT, s.encode())


def close_frame(code: int = 1000) -> bytes:
    return encode_frame(OP_CLOSE, struct.pack("!H", code))


def parse_frames(buf: bytes, frames: list[Frame]) -> int:
    """Append every complete server frame in ``buf`` to ``frames``; return bytes consumed.

    Raises :class:`WsProtocolError` for a masked server frame (RFC 6455 section 5.1),
    reserved bits (no extension was negotiated, section 5.2) or a frame over ``MAX_FRAME``.
    """
    pos = 0
    size = len(buf)
    while size - pos >= 2:
        b0 = buf[pos]
        b1 = buf[pos + 1]
        if b0 & 0x70:
            raise WsProtocolError("reserved bits set")
        if b1 & 0x80:
            raise WsProtocolError("server frame is masked")
        n = b1 & 0x7F
        head = 2
        if n == 126:
            if size - pos < 4:
                break
            n = (buf[pos + 2] << 8) | buf[pos + 3]
            head = 4
        elif n == 127:
            if size - pos < 10:
                break
            (n,) = struct.unpack_from("!Q", buf, pos + 2)
            head = 10
        if n > MAX_FRAME:
            raise WsProtocolError(f"frame of {n} bytes is over the limit")
        if size - pos < head + n:
            break
        start = pos + head
        frames.append(Frame(bool(b0 & 0x80), b0 & 0x0F, bytes(buf[start : start + n])))
        pos = start + n
    return pos
