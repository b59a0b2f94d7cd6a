"""Minimal HTTP/1.1 request-head parsing and plain responses, without I/O.

The public port serves both websocket upgrades and a few plain HTTP
endpoints (/healthz, /readyz, /test/...). The head is parsed here with strict
limits and the strict grammar of RFC 9112 (lines end in CRLF, header names
are tokens, methods are case-sensitive); websocket upgrades are then handed
to the websockets package's sans-I/O server protocol.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from shared.errors import HttpRequestError

MAX_HEAD_SIZE = 8192
MAX_HEADERS = 64
#: The methods some endpoint answers (HEAD as GET, without the body); any
#: other method, a lowercase ``get`` included (RFC 9110 section 9.1: methods
#: are case-sensitive), gets 501.
IMPLEMENTED_METHODS = frozenset(("GET", "HEAD", "POST"))

# RFC 9110 section 5.6.2: token = 1*tchar.
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
# RFC 9112 section 3.2: the request target has no white space or control characters.
_TARGET = re.compile(r"/[\x21-\x7e]*")
# RFC 9110 section 5.5: a field value holds no control character but HTAB.
_BAD_VALUE = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")


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

    Raises HttpRequestError once the buffer exceeds MAX_HEAD_SIZE without one,
    or as soon as a line of the head ends in a bare LF: such a head would
    never end in CRLFCRLF, and waiting for it would hold the connection
    until the authentication timeout.
    """
    end = buffer.find(b"\r\n\r\n", 0, MAX_HEAD_SIZE + 4)
    # Only the head itself: bytes after it are websocket frames.
    scanned = end + 4 if end >= 0 else min(len(buffer), MAX_HEAD_SIZE + 4)
    if buffer.count(b"\n", 0, scanned) != buffer.count(b"\r\n", 0, scanned):
        raise HttpRequestError("line not ended by CRLF")  # RFC 9112 section 2.2
    if end >= 0:
        return end + 4
    if len(buffer) > MAX_HEAD_SIZE:
        raise HttpRequestError("request head too large")
    return -1


def parse_head(raw: bytes) -> RequestHead:
    """Parse a complete request head (ending in a blank line).

    Raises HttpRequestError for anything RFC 9112 makes a 400: a malformed
    request line, a bare CR or LF, a header name that is not a token or has
    white space before its colon, obsolete line folding, a control character
    in a value, or more than MAX_HEADERS headers. An unknown method is not an
    error here: the caller answers 501 (see IMPLEMENTED_METHODS).
    """
    try:
        text = raw.decode("latin-1")
    except UnicodeDecodeError as exc:  # pragma: no cover - latin-1 decodes anything
        raise HttpRequestError("undecodable request head") from exc
    if text.endswith("\r\n\r\n"):
        text = text[:-4]
    lines = text.split("\r\n")
    parts = lines[0].split(" ")
    if len(parts) != 3 or parts[2] not in ("HTTP/1.0", "HTTP/1.1"):
        raise HttpRequestError("malformed request line")
    method, target, _version = parts
    if not _TOKEN.fullmatch(method) or not _TARGET.fullmatch(target):
        raise HttpRequestError("malformed request line")
    if len(lines) > MAX_HEADERS + 1:
        raise HttpRequestError("too many headers")
    headers: list[tuple[str, str]] = []
    for line in lines[1:]:
        name, sep, value = line.partition(":")
        # No white space before the colon (RFC 9112 section 5.1) and none at the
        # start of a line: obsolete folding is refused (section 5.2).
        if not sep or not _TOKEN.fullmatch(name):
            raise HttpRequestError("malformed header line")
        if _BAD_VALUE.search(value):
            raise HttpRequestError("control character in a header value")
        headers.append((name.lower(), value.strip(" \t")))
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
    501: "Not Implemented",
    502: "Bad Gateway",
    503: "Service Unavailable",
}


def response(
    status: int, body: str | bytes, content_type: str = "text/plain; charset=utf-8"
) -> bytes:
    """A complete response that closes the connection.

    The head ends at the first blank line, so :func:`head_only` can cut the
    body off for a HEAD request.
    """
    payload = body.encode() if isinstance(body, str) else body
    head = (
        f"HTTP/1.1 {status} {_REASONS.get(status, 'Unknown')}\r\n"
        f"Content-Type: {content_type}\r\n"
        f"Content-Length: {len(payload)}\r\n"
        "Connection: close\r\n\r\n"
    )
    return head.encode("latin-1") + payload


def head_only(payload: bytes) -> bytes:
    """The head of a complete response: what a HEAD request gets (RFC 9110 section 9.3.2)."""
    end = payload.find(b"\r\n\r\n")
    return payload if end < 0 else payload[: end + 4]
