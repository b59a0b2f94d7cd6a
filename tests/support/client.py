"""A blocking websocket test client speaking the notify_push client protocol."""

from __future__ import annotations

import contextlib

from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection, connect

from tests.support.processes import timeout


class Client:
    def __init__(self, stack: contextlib.ExitStack, url: str) -> None:
        self.ws: ClientConnection = stack.enter_context(
            connect(url, open_timeout=timeout(10), close_timeout=timeout(2), max_size=2**20)
        )

    def login(self, username: str, password: str, *early: str) -> str:
        """Send the two login frames (and any early frames); return the server's answer."""
        self.ws.send(username)
        self.ws.send(password)
        for text in early:
            self.ws.send(text)
        return self.recv()

    def send(self, text: str | bytes) -> None:
        self.ws.send(text)

    def recv(self, seconds: float = 10) -> str:
        message = self.ws.recv(timeout=timeout(seconds))
        assert isinstance(message, str), f"expected a text frame, got {message!r}"
        return message

    def recv_until(self, sentinel: str, seconds: float = 10) -> list[str]:
        """Every message up to and excluding ``sentinel``."""
        seen: list[str] = []
        while (message := self.recv(seconds)) != sentinel:
            seen.append(message)
        return seen

    def wait_closed(self, seconds: float = 10) -> int | None:
        """Read until the server closes; return its close code."""
        try:
            while True:
                self.ws.recv(timeout=timeout(seconds))
        except ConnectionClosed as exc:
            return exc.rcvd.code if exc.rcvd is not None else None
