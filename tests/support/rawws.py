"""A deliberately dumb blocking websocket client: it does exactly what the test says.

Unlike a real client library it never answers pings by itself, so keepalive
behaviour can be tested (RFC 6455 framing, client frames masked).
"""

from __future__ import annotations

import base64
import os
import socket
import struct

from tests.support.processes import timeout

OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG = 0x1, 0x2, 0x8, 0x9, 0xA


class RawClient:
    def __init__(self, host: str, port: int, path: str = "/ws") -> None:
        self.sock = socket.create_connection((host, port), timeout=timeout(10))
        key = base64.b64encode(os.urandom(16)).decode()
        self.sock.sendall(
            f"GET {path} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
            "Sec-WebSocket-Version: 13\r\n\r\n".encode()
        )
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = self.sock.recv(1)
            if not chunk:
                raise ConnectionError("closed during handshake")
            head += chunk
        assert head.startswith(b"HTTP/1.1 101"), head

    def send(self, opcode: int, payload: bytes) -> None:
        mask = os.urandom(4)
        header = bytes([0x80 | opcode])
        if len(payload) < 126:
            header += bytes([0x80 | len(payload)])
        else:
            header += bytes([0x80 | 126]) + struct.pack(">H", len(payload))
        masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        self.sock.sendall(header + mask + masked)

    def send_text(self, text: str) -> None:
        self.send(OP_TEXT, text.encode())

    def _exact(self, n: int) -> bytes:
        data = b""
        while len(data) < n:
            chunk = self.sock.recv(n - len(data))
            if not chunk:
                raise ConnectionError("closed")
            data += chunk
        return data

    def recv(self) -> tuple[int, bytes]:
        """The next frame as (opcode, payload); ConnectionError once the server closed."""
        first, second = self._exact(2)
        length = second & 0x7F
        if length == 126:
            (length,) = struct.unpack(">H", self._exact(2))
        elif length == 127:
            (length,) = struct.unpack(">Q", self._exact(8))
        return first & 0x0F, self._exact(length)

    def closed(self) -> bool:
        """True once the server has closed (a close frame or EOF is next)."""
        try:
            while True:
                opcode, _ = self.recv()
                if opcode == OP_CLOSE:
                    return True
        except (ConnectionError, OSError):
            return True

    def close(self) -> None:
        self.sock.close()
