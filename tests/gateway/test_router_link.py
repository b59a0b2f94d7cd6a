"""RouterLink's answers: a login answer that comes too late is given back."""

from __future__ import annotations

from gateway.router_link import RouterLink
from shared import ipc


class RecordingTransport:
    def __init__(self) -> None:
        self.chunks: list[bytes] = []

    def write(self, data: bytes) -> None:
        self.chunks.append(data)


class NoHandler:
    def router_message(self, message: ipc.Message) -> None:
        raise AssertionError(f"not for the handler: {message!r}")


def linked() -> tuple[RouterLink, RecordingTransport]:
    link = RouterLink("/nonexistent/router.sock", 1, NoHandler())  # type: ignore[arg-type]
    transport = RecordingTransport()
    link._transport = transport  # type: ignore[assignment]
    return link, transport


def test_a_late_admitted_login_is_released() -> None:
    # The worker stopped waiting (and checked the login itself); the router has
    # counted the connection it admitted, so the worker must give it back.
    link, transport = linked()
    link._dispatch(ipc.LoginResult(42, "alice", ""))
    assert ipc.FrameDecoder().feed(b"".join(transport.chunks)) == [ipc.Release("alice")]


def test_a_late_refusal_needs_nothing_back() -> None:
    link, transport = linked()
    link._dispatch(ipc.LoginResult(42, None, "Invalid credentials"))
    assert transport.chunks == []
