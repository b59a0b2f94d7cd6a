"""Helpers for the configuration tests: run the real command, start a real redis-server."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support.processes import timeout

REPO = Path(__file__).resolve().parents[2]
CONFIGS = Path(__file__).resolve().parent / "configs"
REDIS_SERVER = shutil.which("redis-server") or "/usr/bin/redis-server"
REDIS_CLI = shutil.which("redis-cli") or "/usr/bin/redis-cli"


@dataclass(frozen=True)
class CliResult:
    returncode: int
    stdout: str
    stderr: str

    def json(self) -> dict[str, object]:
        assert self.returncode == 0, self.stderr
        data = json.loads(self.stdout)
        assert isinstance(data, dict)
        return data


def run_cli(*args: str, env: Mapping[str, str] | None = None) -> CliResult:
    """Run ``python -m shared ARGS`` (what the console script runs) with exactly ``env``."""
    environ = {"PATH": os.environ.get("PATH", ""), "PYTHONPATH": str(REPO)}
    environ.update(env or {})
    done = subprocess.run(
        [sys.executable, "-m", "shared", *args],
        cwd=REPO,
        env=environ,
        capture_output=True,
        text=True,
        timeout=timeout(60),
        check=False,
    )
    return CliResult(done.returncode, done.stdout, done.stderr)


POLL_INTERVAL = 0.02


def wait_for_ping(args: list[str], process: subprocess.Popen[bytes], deadline: float) -> None:
    """Poll ``redis-cli ARGS ping`` until PONG; fail at ``deadline`` or if the server died."""
    while True:
        if process.poll() is not None:
            raise RuntimeError(f"redis-server exited with {process.returncode}")
        ping = subprocess.run(
            [REDIS_CLI, *args, "ping"], capture_output=True, text=True, check=False, timeout=5
        )
        if "PONG" in ping.stdout:
            return
        if time.monotonic() > deadline:
            raise RuntimeError(f"redis-server did not answer PING: {ping.stdout}{ping.stderr}")
        # Polling with a deadline, not a fixed sleep standing in for synchronisation.
        time.sleep(POLL_INTERVAL)


@dataclass(frozen=True)
class RedisServer:
    socket_path: str
    password: str


@pytest.fixture
def redis_server() -> Iterator[RedisServer]:
    """A real redis-server on a Unix socket only (no TCP), with a password."""
    if not os.path.exists(REDIS_SERVER):
        pytest.skip("redis-server is not installed")
    with tempfile.TemporaryDirectory(prefix="npg-redis-") as folder:
        socket_path = os.path.join(folder, "redis.sock")
        password = "pa ss:w@rd/?&#"
        process = subprocess.Popen(
            [
                REDIS_SERVER,
                *("--port", "0", "--unixsocket", socket_path, "--unixsocketperm", "700"),
                *("--save", "", "--appendonly", "no", "--dir", folder),
                *("--requirepass", password, "--loglevel", "warning"),
            ],
            stdout=subprocess.DEVNULL,
        )
        try:
            wait_for_ping(
                ["-s", socket_path, "--no-auth-warning", "-a", password],
                process,
                time.monotonic() + timeout(10),
            )
            yield RedisServer(socket_path, password)
        finally:
            process.terminate()
            process.wait(timeout=10)
