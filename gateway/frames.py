"""Server-to-client websocket frames, encoded once and reused.

Server frames are never masked and this gateway negotiates no extensions
(RFC 6455 section 5.1), so a frame's bytes are the same for every recipient:
encode once, write the same bytes to each transport.
"""

from __future__ import annotations

from functools import lru_cache

from websockets.frames import Close, Frame, Opcode


def text_frame(text: str) -> bytes:
    return Frame(Opcode.TEXT, text.encode("utf-8")).serialize(mask=False)


def ping_frame(payload: bytes) -> bytes:
    return Frame(Opcode.PING, payload).serialize(mask=False)


def pong_frame(payload: bytes) -> bytes:
    return Frame(Opcode.PONG, payload).serialize(mask=False)


def close_frame(code: int, reason: str = "") -> bytes:
    return Frame(Opcode.CLOSE, Close(code, reason).serialize()).serialize(mask=False)


AUTHENTICATED = text_frame("authenticated")
NOTIFY_FILE = text_frame("notify_file")
NOTIFY_ACTIVITY = text_frame("notify_activity")
NOTIFY_NOTIFICATION = text_frame("notify_notification")
AUTH_TIMEOUT = text_frame("Authentication timeout")


@lru_cache(maxsize=1024)
def error_frame(reason: str) -> bytes:
    """``err: <reason>``, the only error form clients understand."""
    return text_frame(f"err: {reason}")
