"""Starting what a scenario talks to: the local stack, or a description of a deployment.

Local stack: a private ``redis-server``, the stub Nextcloud (which also writes the
SQLite database with the Nextcloud tables) and the server under test, either the
gateway or :mod:`benchmarks.baseline_server`. Everything listens on 127.0.0.1
ports picked free at start; everything is stopped by PID on exit.
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import redis

from benchmarks.loadgen import Target
from benchmarks.procstats import ServerProbe, process_tree
from tests.support.devstack import free_port

REPO = Path(__file__).resolve().parent.parent
START_DEADLINE = 30.0


class StackError(Exception):
    """A process of the local stack did not start; the message carries its log tail."""


@dataclass(slots=True)
class Env:
    """What a scenario needs to know about the server under test."""

    name: str  # "gateway", "baseline" or "remote"
    target: Target
    redis_url: str
    users: list[tuple[str, str]]  # (user, password)
    probe: ServerProbe
    stub_url: str | None = None
    # The local stack's redis-server, to report its CPU too (None: not measurable).
    redis_probe: ServerProbe | None = None
    notes: dict[str, object] = field(default_factory=dict)

    def stub_uid_requests(self) -> int | None:
        """Requests the stub Nextcloud answered, where the stub exposes a counter."""
        if self.stub_url is None:
            return None
        try:
            with urllib.request.urlopen(f"{self.stub_url}/stub/stats", timeout=2) as r:
                return int(json.loads(r.read())["uid_requests"])
        except (OSError, ValueError, KeyError):
            return None


# The project's stub Nextcloud: logins, and the SQLite database with the demo mounts
# (storage 1 at root "" for every user, storage 1000 + i for user i alone).
STUB_MODULE = "tests.support.stub_nextcloud"


def gateway_command() -> list[str]:
    script = Path(sys.executable).parent / "notify-push-gateway"
    if script.exists():
        return [str(script)]
    return [sys.executable, "-m", "shared"]


def _tail(path: Path, n: int = 20) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-n:])
    except OSError:
        return ""


def _wait_port(host: str, port: int, proc: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + START_DEADLINE
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise StackError(f"exited with {proc.returncode}:\n{_tail(log)}")
        with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=0.5):
            return
        time.sleep(0.05)
    raise StackError(f"not listening on {host}:{port} after {START_DEADLINE:.0f} s:\n{_tail(log)}")


def _wait_ready(url: str, proc: subprocess.Popen[bytes], log: Path) -> None:
    """Wait for /readyz = 200; a 404 means a server without the endpoint, accept it."""
    deadline = time.monotonic() + START_DEADLINE
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise StackError(f"exited with {proc.returncode}:\n{_tail(log)}")
        try:
            with urllib.request.urlopen(url, timeout=1) as r:
                if r.status == 200:
                    return
        except urllib.error.HTTPError as e:
            if e.code == 404:
                return
        except OSError:
            pass
        time.sleep(0.1)
    raise StackError(f"{url} not ready after {START_DEADLINE:.0f} s:\n{_tail(log)}")


def _stop(proc: subprocess.Popen[bytes], grace: float = 10.0) -> None:
    """SIGTERM the process, wait, then SIGKILL it and any descendants it left behind."""
    if proc.poll() is not None:
        return
    descendants = [p for p in process_tree([proc.pid]) if p != proc.pid]
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(grace)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)
    for pid in descendants:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)


class LocalStack:
    """redis-server + stub Nextcloud + one server under test, in a private temp dir."""

    def __init__(
        self,
        server: str,
        *,
        users: int,
        gateway_workers: int = 3,
        gateway_instances: int = 1,
        gateway_env: dict[str, str] | None = None,
        keep_dir: bool = False,
    ) -> None:
        if server not in ("gateway", "baseline"):
            raise ValueError(f"unknown server {server!r}")
        self.server = server
        self.n_users = users
        self.gateway_workers = gateway_workers
        self.gateway_instances = gateway_instances
        self.gateway_env = gateway_env or {}
        self.keep_dir = keep_dir
        self.dir = Path(tempfile.mkdtemp(prefix=f"bench-{server}-"))
        self._procs: list[subprocess.Popen[bytes]] = []
        self.server_proc: subprocess.Popen[bytes] | None = None

    def _spawn(
        self,
        name: str,
        argv: Sequence[str],
        env: dict[str, str] | None = None,
        stdout: int | None = None,
    ) -> tuple[subprocess.Popen[bytes], Path]:
        log = self.dir / f"{name}.log"
        with open(log, "wb") as f:
            proc = subprocess.Popen(
                argv,
                cwd=REPO,
                stdin=subprocess.DEVNULL,
                stdout=stdout if stdout is not None else f,
                stderr=f,
                env={**os.environ, **(env or {})},
            )
        self._procs.append(proc)
        return proc, log

    def start(self) -> Env:
        try:
            return self._start()
        except BaseException:
            self.stop()
            raise

    def _start(self) -> Env:
        redis_port = free_port()
        redis_url = f"redis://127.0.0.1:{redis_port}"
        if shutil.which("redis-server") is None:
            raise StackError("redis-server is not installed")
        rproc, rlog = self._spawn(
            "redis",
            [
                "redis-server",
                "--port",
                str(redis_port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--maxclients",
                "1000",
            ],
        )
        client = redis.Redis(port=redis_port, socket_connect_timeout=0.5)
        deadline = time.monotonic() + START_DEADLINE
        while True:
            try:
                client.ping()
                break
            except redis.RedisError as e:
                if rproc.poll() is not None or time.monotonic() > deadline:
                    raise StackError(f"redis-server did not answer PING:\n{_tail(rlog)}") from e
                time.sleep(0.05)
        client.close()

        stub_port = free_port()
        sqlite = self.dir / "nextcloud.db"
        sproc, slog = self._spawn(
            "stub",
            [
                sys.executable,
                "-m",
                STUB_MODULE,
                "--host",
                "127.0.0.1",
                "--port",
                str(stub_port),
                "--redis-url",
                redis_url,
                "--sqlite",
                str(sqlite),
                "--generated-users",
                str(self.n_users),
            ],
            stdout=subprocess.PIPE,
        )
        stub_url = self._wait_stub_ready(sproc, slog)

        port = free_port()
        common = [
            "--nextcloud-url",
            stub_url,
            "--redis-url",
            redis_url,
            "--database-url",
            f"sqlite://{sqlite}",
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
        ]
        roots: list[int] = []
        if self.server == "gateway":
            # Several instances share the port (SO_REUSEPORT: the kernel spreads the
            # clients over every instance's workers) and, as in production, the Redis.
            argv = [*gateway_command(), *common, "--workers", str(self.gateway_workers)]
            for i in range(self.gateway_instances):
                proc, log = self._spawn(f"gateway-{i}", argv, env=self.gateway_env)
                self.server_proc = proc
                roots.append(proc.pid)
                _wait_port("127.0.0.1", port, proc, log)
                _wait_ready(f"http://127.0.0.1:{port}/readyz", proc, log)
                self._wait_registered(redis_port, i + 1, proc, log)
        else:
            argv = [sys.executable, "-m", "benchmarks.baseline_server", *common]
            proc, log = self._spawn("baseline", argv)
            self.server_proc = proc
            roots.append(proc.pid)
            _wait_port("127.0.0.1", port, proc, log)
        users = [(f"user{i}", f"password-user{i}") for i in range(self.n_users)]
        return Env(
            name=self.server,
            target=Target("127.0.0.1", port, "/ws"),
            redis_url=redis_url,
            users=users,
            probe=ServerProbe(roots),
            stub_url=stub_url,
            redis_probe=ServerProbe([rproc.pid]),
            notes={
                "workers": self.gateway_workers if self.server == "gateway" else 1,
                "instances": self.gateway_instances if self.server == "gateway" else 1,
                **({"env": self.gateway_env} if self.server == "gateway" else {}),
            },
        )

    def _wait_registered(
        self, redis_port: int, instances: int, proc: subprocess.Popen[bytes], log: Path
    ) -> None:
        """Wait until ``instances`` gateways are live in the shared registry in Redis."""
        prefix = self.gateway_env.get("REDIS_KEY_PREFIX", "notify_push_gateway:")
        key = f"{prefix}{{notify_push_metrics}}:instances"
        client = redis.Redis(port=redis_port)
        deadline = time.monotonic() + START_DEADLINE
        try:
            while client.zcount(key, time.time(), "+inf") < instances:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise StackError(f"gateway {instances} did not register:\n{_tail(log)}")
                time.sleep(0.1)
        finally:
            client.close()

    def _wait_stub_ready(self, proc: subprocess.Popen[bytes], log: Path) -> str:
        assert proc.stdout is not None
        deadline = time.monotonic() + START_DEADLINE
        line = b""
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise StackError(f"stub Nextcloud exited:\n{_tail(log)}")
            ready, _, _ = select.select([proc.stdout], [], [], 0.2)
            if ready:
                line = proc.stdout.readline()
                if line.startswith(b"ready "):
                    return line.split()[1].decode()
        raise StackError(f"stub Nextcloud not ready (last line {line!r}):\n{_tail(log)}")

    def stop(self) -> None:
        for proc in reversed(self._procs):
            _stop(proc)
            if proc.stdout is not None:
                proc.stdout.close()
        self._procs.clear()
        if not self.keep_dir:
            shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> Env:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def read_credentials(path: Path) -> list[tuple[str, str]]:
    """``user:password`` per line (``#`` comments and blank lines ignored)."""
    out = []
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if line and not line.startswith("#"):
            user, sep, password = line.partition(":")
            if not sep:
                raise ValueError(f"{path}: expected user:password, got {line[:40]!r}")
            out.append((user, password))
    if not out:
        raise ValueError(f"{path}: no credentials")
    return out


@contextlib.contextmanager
def remote_env(
    url: str, credentials: Path, redis_url: str, server_pids: list[int] | None, insecure: bool
) -> Iterator[Env]:
    """A deployed gateway: nothing is started; CPU/memory only with ``server_pids``."""
    parts = urlsplit(url)
    if parts.scheme not in ("ws", "wss") or not parts.hostname:
        raise ValueError(f"--url must be ws://host:port/path or wss://…, got {url!r}")
    target = Target(
        parts.hostname,
        parts.port or (443 if parts.scheme == "wss" else 80),
        parts.path or "/ws",
        tls=parts.scheme == "wss",
        insecure=insecure,
    )
    yield Env("remote", target, redis_url, read_credentials(credentials), ServerProbe(server_pids))
