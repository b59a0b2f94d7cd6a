"""Server-to-client websocket frames, encoded once and reused.

Server frames are never masked and this gateway negotiates no extensions
(RFC 6455 section 5.1), so a frame's bytes are the same for every recipient:
encode once, write the same bytes to each transport. The header layout is
section 5.2: FIN + opcode, then the payload length in 7, 7+16 or 7+64 bits.
"""

from __future__ import annotations

from functools import lru_cache

from gateway.wsframes import OP_CLOSE, OP_PING, OP_PONG, OP_TEXT


def frame(opcode: int, payload: bytes) -> bytes:
    """One final, unmasked frame."""
    n = len(payload)
    first = 0x80 | opcode
    if n < 126:
        return bytes((first, n)) + payload
    if n < 65536:
        return bytes((first, 126)) + n.to_bytes(2, "big") + payload
    return bytes((first, 127)) + n.to_bytes(8, "big") + payload


def text_frame(text: str) -> bytes:
    return frame(OP_TEXT, text.encode("utf-8"))


def ping_frame(payload: bytes) -> bytes:
    return frame(OP_PING, payload)


def pong_frame(payload: bytes) -> bytes:
    return frame(OP_PONG, payload)


def close_frame(code: int, reason: str = "") -> bytes:
    """Close frame with a status code (section 5.5.1); the reason is cut to fit 125 bytes."""
    return frame(OP_CLOSE, code.to_bytes(2, "big") + reason.encode("utf-8")[:123])


AUTHENTICATED = text_frame("authenticated")
NOTIFY_FILE = text_frame("notify_file")
NOTIFY_ACTIVITY = text_frame("notify_activity")
NOTIFY_NOTIFICATION = text_frame("notify_notification")
AUTH_TIMEOUT = text_frame("Authentication timeout")


@lru_cache(maxsize=1024)
def error_frame(reason: str) -> bytes:
    """``err: <reason>``, the only error form clients understand."""
    return text_frame(f"err: {reason}")
