from __future__ import annotations

import pytest

from gateway.http import (
    IMPLEMENTED_METHODS,
    MAX_HEAD_SIZE,
    find_head_end,
    head_only,
    parse_head,
    response,
)
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
        b"GET / HTTP/1.1\r\nX Y: z\r\n\r\n",  # header names are tokens (RFC 9110 5.1)
        b"GET / HTTP/1.1\r\nHost : h\r\n\r\n",  # no white space before the colon (9112 5.1)
        b"GET / HTTP/1.1\r\n Host: h\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: h\r\n folded\r\n\r\n",  # obs-fold (9112 5.2)
        b"GET / HTTP/1.1\r\n: h\r\n\r\n",
        b"GET / HTTP/1.1\r\nX(: y\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: a\rb\r\n\r\n",  # bare CR (9112 2.2)
        b"GET / HTTP/1.1\r\nHost: a\nb\r\n\r\n",  # bare LF
        b"GET / HTTP/1.1\r\nHost: a\x00b\r\n\r\n",  # control character (9110 5.5)
        b"G(T / HTTP/1.1\r\n\r\n",  # the method is a token
        b"GET /a\tb HTTP/1.1\r\n\r\n",
        b"GET / HTTP/1.1 \r\n\r\n",
        b"GET / HTTP/1.x\r\n\r\n",
        b"GET  / HTTP/1.1\r\n\r\n",
    ],
)
def test_malformed_heads_raise_http_request_error(raw: bytes) -> None:
    with pytest.raises(HttpRequestError):
        parse_head(raw)


def test_values_keep_tabs_inside_and_lose_optional_white_space_around() -> None:
    head = parse_head(b"GET / HTTP/1.0\r\nX-A: \t a\tb \r\nX-B:\r\n\r\n")
    assert head.headers == (("x-a", "a\tb"), ("x-b", ""))


@pytest.mark.parametrize(
    "buffer",
    [
        b"GET / HTTP/1.1\n",  # the first line already tells: no need to wait
        b"GET / HTTP/1.1\r\nHost: h\n",
        b"GET / HTTP/1.1\r\nHost: h\r\n\n",
        b"GET / HTTP/1.1\r\nHost: h\n\r\n",
    ],
)
def test_a_bare_lf_in_the_head_is_refused_before_the_head_ends(buffer: bytes) -> None:
    with pytest.raises(HttpRequestError):
        find_head_end(buffer)


def test_bytes_after_the_head_may_hold_any_lf() -> None:
    raw = b"GET / HTTP/1.1\r\nHost: h\r\n\r\n"
    assert find_head_end(raw + b"\n\x81\n") == len(raw)
    assert find_head_end(b"GET / HTTP/1.1\r") == -1  # a CR whose LF is still to come


def test_methods_are_tokens_compared_case_sensitively() -> None:
    head = parse_head(b"get / HTTP/1.1\r\nHost: h\r\n\r\n")
    assert head.method == "get" and head.method not in IMPLEMENTED_METHODS
    assert not parse_head(b"get / HTTP/1.1\r\nUpgrade: websocket\r\n\r\n").is_websocket_upgrade
    assert {"GET", "HEAD", "POST"} == IMPLEMENTED_METHODS


def test_head_only_cuts_the_body_and_keeps_its_length() -> None:
    full = response(404, "not found\n")
    assert head_only(full) == full[: -len(b"not found\n")]
    assert b"Content-Length: 10\r\n" in head_only(full)
    assert response(501, "").startswith(b"HTTP/1.1 501 Not Implemented\r\n")


def test_response_has_length_and_closes() -> None:
    out = response(503, "router link down\n")
    assert out.startswith(b"HTTP/1.1 503 Service Unavailable\r\n")
    assert b"Content-Length: 17\r\n" in out and b"Connection: close\r\n" in out
