from __future__ import annotations

import pytest

from gateway.http import MAX_HEAD_SIZE, find_head_end, parse_head, response
from shared.errors import HttpRequestError


def test_parse_websocket_upgrade_head() -> None:
    raw = (
        b"GET /push/ws?x=1 HTTP/1.1\r\nHost: h\r\nUpgrade: WebSocket\r\n"
        b"X-Forwarded-For: 10.0.0.1, 10.0.0.2\r\n\r\n"
    )
    assert find_head_end(raw) == len(raw)
    head = parse_head(raw)
    assert head.path == "/push/ws"
    assert head.is_websocket_upgrade
    assert head.header("x-forwarded-for") == "10.0.0.1, 10.0.0.2"


def test_incomplete_head_waits_and_oversized_head_is_refused() -> None:
    assert find_head_end(b"GET / HTTP/1.1\r\nHost: h\r\n") == -1
    with pytest.raises(HttpRequestError):
        find_head_end(b"GET / HTTP/1.1\r\n" + b"X: y\r\n" * (MAX_HEAD_SIZE // 6))


@pytest.mark.parametrize(
    "raw",
    [
        b"GARBAGE\r\n\r\n",
        b"GET noslash HTTP/1.1\r\n\r\n",
        b"GET / SPDY/3\r\n\r\n",
        b"GET / HTTP/1.1\r\nno colon here\r\n\r\n",
        b"GET / HTTP/1.1\r\n" + b"X: y\r\n" * 65 + b"\r\n",
    ],
)
def test_malformed_heads_raise_http_request_error(raw: bytes) -> None:
    with pytest.raises(HttpRequestError):
        parse_head(raw)


def test_response_has_length_and_closes() -> None:
    out = response(503, "router link down\n")
    assert out.startswith(b"HTTP/1.1 503 Service Unavailable\r\n")
    assert b"Content-Length: 17\r\n" in out and b"Connection: close\r\n" in out
