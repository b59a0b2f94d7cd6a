"""Minimal HTTP/1.1 request-head parsing and plain responses, without I/O.

The public port serves both websocket upgrades and a few plain HTTP
endpoints (/healthz, /readyz, /test/...). The head is parsed here with strict
limits; websocket upgrades are then handed to the websockets package's
sans-I/O server protocol.
"""

from __future__ import annotations

from dataclasses import dataclass

from shared.errors import HttpRequestError

MAX_HEAD_SIZE = 8192
MAX_HEADERS = 64


@dataclass(frozen=True, slots=True)
class RequestHead:
    method: str
    target: str
    headers: tuple[tuple[str, str], ...]  # names lower-cased

    @property
    def path(self) -> str:
        return self.target.split("?", 1)[0]

    def header(self, name: str) -> str | None:
        """The first value of header ``name`` (lower case), or None."""
        for key, value in self.headers:
            if key == name:
                return value
        return None

    @property
    def is_websocket_upgrade(self) -> bool:
        upgrade = self.header("upgrade") or ""
        return self.method == "GET" and upgrade.strip().lower() == "websocket"


def find_head_end(buffer: bytes | bytearray) -> int:
    """Index just past the blank line ending the head, or -1 if not complete.

    Raises HttpRequestError once the buffer exceeds MAX_HEAD_SIZE without one.
    """
    end = buffer.find(b"\r\n\r\n", 0, MAX_HEAD_SIZE + 4)
    if end >= 0:
        return end + 4
    if len(buffer) > MAX_HEAD_SIZE:
        raise HttpRequestError("request head too large")
    return -1


def parse_head(raw: bytes) -> RequestHead:
    """Parse a complete request head (ending in a blank line)."""
    try:
        text = raw.decode("latin-1")
    except UnicodeDecodeError as exc:  # pragma: no cover - latin-1 decodes anything
        raise HttpRequestError("undecodable request head") from exc
    lines = text.split("\r\n")
    parts = lines[0].split(" ")
    if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
        raise HttpRequestError("malformed request line")
    method, target, _version = parts
    if not method.isalpha() or not target.startswith("/"):
        raise HttpRequestError("malformed request line")
    headers: list[tuple[str, str]] = []
    for line in lines[1:]:
        if not line:
            continue
        name, sep, value = line.partition(":")
        if not sep or not name or name != name.strip():
            raise HttpRequestError("malformed header line")
        headers.append((name.lower(), value.strip()))
        if len(headers) > MAX_HEADERS:
            raise HttpRequestError("too many headers")
    return RequestHead(method, target, tuple(headers))


_REASONS = {
    200: "OK",
    400: "Bad Request",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    426: "Upgrade Required",
    431: "Request Header Fields Too Large",
    500: "Internal Server Error",
    502: "Bad Gateway",
    503: "Service Unavailable",
}


def response(
    status: int, body: str | bytes, content_type: str = "text/plain; charset=utf-8"
) -> bytes:
    """A complete response that closes the connection."""
    payload = body.encode() if isinstance(body, str) else body
    head = (
        f"HTTP/1.1 {status} {_REASONS.get(status, 'Unknown')}\r\n"
        f"Content-Type: {content_type}\r\n"
        f"Content-Length: {len(payload)}\r\n"
        "Connection: close\r\n\r\n"
    )
    return head.encode("latin-1") + payload
