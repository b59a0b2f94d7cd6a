"""--socket-path (shared by every worker) and --metrics-socket-path."""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import socket
import stat
import subprocess
import sys
from pathlib import Path

import pytest
import redis
from websockets.sync.client import unix_connect

from tests.integration.conftest import USERS
from tests.support.processes import RedisServer, Stub, timeout, wait_for

pytestmark = pytest.mark.integration


class UnixHTTPConnection(http.client.HTTPConnection):
    def __init__(self, path: str) -> None:
        super().__init__("localhost", timeout=timeout(5))
        self._path = path

    def connect(self) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.connect(self._path)


def get(path: str, url: str) -> tuple[int, str]:
    conn = UnixHTTPConnection(path)
    try:
        conn.request("GET", url)
        resp = conn.getresponse()
        return resp.status, resp.read().decode()
    except OSError:
        return 0, ""
    finally:
        conn.close()


def test_gateway_on_unix_sockets(
    tmp_path: Path, redis_server: RedisServer, stub: Stub, database: Path,
    publisher: redis.Redis,
) -> None:  # fmt: skip
    push_socket = str(tmp_path / "push.sock")
    metrics_socket = str(tmp_path / "metrics.sock")
    log_path = tmp_path / "gateway.log"
    with log_path.open("wb") as log_file:
        process = subprocess.Popen(
            [str(Path(sys.executable).with_name("notify-push-gateway")),
             "--nextcloud-url", stub.url, "--redis-url", redis_server.url,
             "--database-url", f"sqlite://{database}", "--socket-path", push_socket,
             "--socket-permissions", "0660", "--metrics-socket-path", metrics_socket,
             "--workers", "2"],
            stdout=log_file, stderr=log_file,
        )  # fmt: skip
    try:
        wait_for(lambda: get(push_socket, "/readyz")[0] == 200, 20, "/readyz over the socket")
        assert stat.S_IMODE(os.stat(push_socket).st_mode) == 0o660
        with contextlib.ExitStack() as stack:
            clients = [stack.enter_context(unix_connect(push_socket, uri="ws://localhost/ws"))
                       for _ in range(4)]  # fmt: skip
            for ws in clients:
                ws.send("alice")
                ws.send(USERS["alice"])
                assert ws.recv(timeout=timeout(10)) == "authenticated"
            publisher.publish("notify_custom", json.dumps({"user": "alice", "message": "unix"}))
            for ws in clients:
                assert ws.recv(timeout=timeout(10)) == "unix"

            def counted() -> bool:
                status, body = get(metrics_socket, "/metrics")
                return status == 200 and "\nactive_connection_count 4.0" in body

            wait_for(counted, 15, "4 connections in the metrics over the metrics socket")
    finally:
        process.terminate()
        assert process.wait(timeout(20)) == 0, log_path.read_text()
    assert not os.path.exists(push_socket)  # removed on shutdown
