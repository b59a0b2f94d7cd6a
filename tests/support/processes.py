"""Real processes for integration tests: redis-server, the stub Nextcloud, the gateway.

Every wait is for a condition with a deadline scaled by ``TIMEOUT_SCALE``
(env ``TEST_TIMEOUT_SCALE``, for slow machines), never a fixed sleep. It is
the one scale factor of the whole test suite: other tests take it through
:func:`timeout`.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from tests.support.devstack import free_port, start_redis_server

TIMEOUT_SCALE = float(os.environ.get("TEST_TIMEOUT_SCALE", "1"))
POLL_INTERVAL = 0.02
REPO = Path(__file__).resolve().parents[2]


def timeout(seconds: float) -> float:
    return seconds * TIMEOUT_SCALE


def wait_for(condition: Callable[[], object], seconds: float, what: str) -> None:
    """Poll ``condition`` until it is truthy; fail the test after the deadline."""
    deadline = time.monotonic() + timeout(seconds)
    while True:
        if condition():
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {seconds} s waiting for {what}")
        time.sleep(POLL_INTERVAL)


def http_get(url: str, headers: dict[str, str] | None = None) -> tuple[int, str]:
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=timeout(5)) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()
    except OSError:
        return 0, ""


def scrape_metrics(url: str) -> dict[str, float]:
    """Every sample of a /metrics page, by name with its labels as written."""
    status, body = http_get(url)
    assert status == 200, body
    values: dict[str, float] = {}
    for line in body.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            values[name] = float(value)
    return values


@dataclass
class RedisServer:
    port: int
    process: subprocess.Popen[bytes]
    unixsocket: str

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout(10))


def start_redis(workdir: Path, *extra: str) -> RedisServer:
    port = free_port()
    unixsocket = str(workdir / f"redis-{port}.sock")
    process = start_redis_server(
        workdir, port, "--unixsocket", unixsocket, "--unixsocketperm", "700", *extra
    )
    return RedisServer(port, process, unixsocket)


@dataclass
class Stub:
    url: str
    process: subprocess.Popen[str]

    def stats(self) -> dict[str, object]:
        import json

        status, body = http_get(f"{self.url}/stub/stats")
        assert status == 200, body
        result: dict[str, object] = json.loads(body)
        return result

    def fail_logins(self, status: int | None) -> None:
        query = f"?status={status}" if status else ""
        request = urllib.request.Request(f"{self.url}/stub/fail{query}", method="POST")
        with urllib.request.urlopen(request, timeout=timeout(5)):
            pass

    def trust_proxy(self, trusted: bool) -> None:
        """Whether the stub believes X-Forwarded-For (Nextcloud's trusted_proxies)."""
        request = urllib.request.Request(
            f"{self.url}/stub/proxy?trusted={int(trusted)}", method="POST"
        )
        with urllib.request.urlopen(request, timeout=timeout(5)):
            pass

    def set_app_version(self, version: str) -> None:
        """The version the stub's notify_push app reports through Redis."""
        request = urllib.request.Request(
            f"{self.url}/stub/app_version?version={version}", method="POST"
        )
        with urllib.request.urlopen(request, timeout=timeout(5)):
            pass

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout(10))
        if self.process.stdout is not None:
            self.process.stdout.close()


def start_stub(sqlite: Path, redis_url: str, users: dict[str, str], generated: int = 0) -> Stub:
    args = [sys.executable, "-m", "tests.support.stub_nextcloud", "--sqlite", str(sqlite),
            "--redis-url", redis_url, "--generated-users", str(generated)]  # fmt: skip
    for name, password in users.items():
        args += ["--user", f"{name}:{password}"]
    process = subprocess.Popen(args, stdout=subprocess.PIPE, text=True, cwd=REPO)
    assert process.stdout is not None
    line = process.stdout.readline().strip()  # blocks until ready or exit
    if not line.startswith("ready "):
        process.kill()
        raise RuntimeError(f"stub Nextcloud did not start: {line!r}")
    return Stub(line.split(" ", 1)[1], process)


@dataclass
class Gateway:
    port: int
    workers: int
    process: subprocess.Popen[bytes]
    log_path: Path
    extra_env: dict[str, str] = field(default_factory=dict)

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ws"

    @property
    def http_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def children(self) -> dict[str, int]:
        """Process name (``npg-router``, ``npg-worker-1``…) -> pid of the live children."""
        result: dict[str, int] = {}
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                stat = (entry / "stat").read_text()
                comm = (entry / "comm").read_text().strip()
            except OSError:
                continue
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
            if ppid == self.process.pid and comm.startswith("npg-"):
                result[comm] = int(entry.name)
        return result

    def wait_ready(self, seconds: float = 20) -> None:
        wait_for(lambda: http_get(f"{self.http_url}/readyz")[0] == 200, seconds, "/readyz 200")

    def stop(self, sig: int = signal.SIGTERM) -> int:
        """Stop it; the exit status, after checking no process logged a traceback."""
        if self.process.poll() is None:
            self.process.send_signal(sig)
        try:
            status = self.process.wait(timeout(20))
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            raise
        assert "Traceback" not in self.log(), self.log()
        return status


def start_gateway(
    workdir: Path,
    *,
    redis_url: str,
    nextcloud_url: str,
    database_url: str,
    workers: int,
    args: Sequence[str] = (),
    env: dict[str, str] | None = None,
) -> Gateway:
    port = free_port()
    log_path = workdir / f"gateway-{port}.log"
    full_env = {k: v for k, v in os.environ.items() if not k.startswith(("REDIS", "DATABASE"))}
    # Gateways of different tests share the session's Redis: each gets keys of
    # its own unless a test makes several act as one (same prefix).
    full_env["REDIS_KEY_PREFIX"] = f"test-gateway-{port}:"
    full_env.update(env or {})
    command = [
        str(Path(sys.executable).with_name("notify-push-gateway")),
        "--nextcloud-url", nextcloud_url, "--redis-url", redis_url,
        "--database-url", database_url, "--port", str(port), "--bind", "127.0.0.1",
        "--workers", str(workers), "--log-level", "info", *args,
    ]  # fmt: skip
    with log_path.open("wb") as log_file:
        process = subprocess.Popen(command, stdout=log_file, stderr=log_file, env=full_env)
    return Gateway(port, workers, process, log_path, env or {})
