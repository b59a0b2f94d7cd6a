"""``make run``: the gateway on a local stack, for trying it on a fresh machine.

Starts a redis-server on a free port (or uses ``REDIS_URL``), a SQLite
database with the Nextcloud tables and two demo users, the stub Nextcloud for
logins and the browser demo page (``tests/support/stub_nextcloud/web.py``),
and the gateway with 2 workers; prints how to connect; stops everything on
Ctrl-C. Development tooling only: production runs the
``notify-push-gateway`` command against a real Nextcloud.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

DEMO_USERS = {"alice": "alice-password", "bob": "bob-password"}
REPO = Path(__file__).resolve().parents[2]


class StackError(Exception):
    """The local stack could not start; the message says what to do."""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def preferred_port(port: int) -> int:
    """``port`` when nothing listens on it on 127.0.0.1, else any free port."""
    with socket.socket() as probe:
        if probe.connect_ex(("127.0.0.1", port)) == 0:
            return free_port()
    return port


POLL_INTERVAL = 0.05


def wait_until(condition: Callable[[], bool], seconds: float, what: str) -> None:
    """Poll ``condition`` until it holds; StackError after ``seconds``."""
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            raise StackError(f"timed out waiting for {what}")
        time.sleep(POLL_INTERVAL)


def redis_answers(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1) as sock:
            sock.sendall(b"PING\r\n")
            # A server with requirepass answers -NOAUTH: it is up all the same.
            return sock.recv(16).startswith((b"+PONG", b"-NOAUTH"))
    except OSError:
        return False


def start_redis_server(workdir: Path, port: int, *extra: str) -> subprocess.Popen[bytes]:
    """A throw-away redis-server on 127.0.0.1:``port`` that keeps nothing on disk.

    ``extra``: more redis-server options (tests add a Unix socket, a password).
    """
    binary = shutil.which("redis-server")
    if binary is None:
        raise StackError(
            "redis-server is not installed: install it (Debian/Ubuntu: "
            "sudo apt-get install redis-server) or set REDIS_URL"
        )
    process = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
         "--appendonly", "no", "--dir", str(workdir), *extra],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        wait_until(lambda: redis_answers(port), 10, "redis-server to start")
    except StackError:
        process.kill()
        process.wait()
        raise
    return process


def ready(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1) as resp:
            return bool(resp.status == 200)
    except OSError:
        return False


def set_up_push(stub_url: str, base_endpoint: str) -> None:
    """What ``occ notify_push:setup`` does: the stub's capabilities name the gateway."""
    request = urllib.request.Request(
        f"{stub_url}/stub/notify_push_setup?base_endpoint={base_endpoint}", method="POST"
    )
    try:
        with urllib.request.urlopen(request, timeout=5):
            pass
    except OSError as exc:
        raise StackError(f"the stub Nextcloud refused the push setup: {exc}") from exc


def main() -> int:
    workdir = REPO / "run"
    workdir.mkdir(exist_ok=True)
    processes: list[subprocess.Popen[bytes]] = []
    try:
        redis_url = os.environ.get("REDIS_URL")
        if not redis_url:
            redis_port = free_port()
            processes.append(start_redis_server(workdir, redis_port))
            redis_url = f"redis://127.0.0.1:{redis_port}/0"
            redis_cli = f"redis-cli -p {redis_port}"
        else:
            redis_cli = f"redis-cli -u '{redis_url}'"
        database = workdir / "nextcloud.db"
        database.unlink(missing_ok=True)
        stub_port = preferred_port(7868)  # a stable address for the browser page
        stub = subprocess.Popen(
            [sys.executable, "-m", "tests.support.stub_nextcloud", "--port", str(stub_port),
             "--sqlite", str(database), "--redis-url", redis_url,
             *[f"--user={u}:{p}" for u, p in DEMO_USERS.items()]],
            stdout=subprocess.DEVNULL, cwd=REPO,
        )  # fmt: skip
        processes.append(stub)
        stub_url = f"http://127.0.0.1:{stub_port}"
        # 7867 taken (another gateway?): any free port.
        port = preferred_port(int(os.environ.get("PORT", "7867")))
        gateway = subprocess.Popen(
            [str(Path(sys.executable).with_name("notify-push-gateway")),
             "--nextcloud-url", f"http://127.0.0.1:{stub_port}", "--redis-url", redis_url,
             "--database-url", f"sqlite://{database}", "--bind", "127.0.0.1",
             "--port", str(port), "--workers", "2",
             "--log-level", os.environ.get("LOG", "info")],
        )  # fmt: skip
        processes.append(gateway)
        wait_until(lambda: ready(f"http://127.0.0.1:{port}/readyz"), 30, "the gateway")
        wait_until(lambda: ready(f"{stub_url}/stub/stats"), 10, "the stub Nextcloud")
        set_up_push(stub_url, f"http://127.0.0.1:{port}/push")
        print(
            f"""
notify-push-gateway is running with 2 workers.

  websocket:   ws://127.0.0.1:{port}/ws   (also /push/ws)
  demo users:  alice / {DEMO_USERS["alice"]}    bob / {DEMO_USERS["bob"]}
  health:      http://127.0.0.1:{port}/healthz   http://127.0.0.1:{port}/readyz

In a browser (logged in as alice through pre-auth; ?user=bob for bob):
  {stub_url}/demo?user=alice

Connect (type the username, then the password, one per line):
  .venv/bin/python -m websockets ws://127.0.0.1:{port}/ws
Make a message arrive for alice:
  {redis_cli} publish notify_custom '{{"user":"alice","message":"hello","body":{{"n":1}}}}'

Ctrl-C stops everything.
""",
            flush=True,
        )
        gateway.wait()
        return 0
    except StackError as exc:
        print(f"make run: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 0
    finally:
        for process in reversed(processes):
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in reversed(processes):
            try:
                process.wait(15)
            except subprocess.TimeoutExpired:
                process.kill()


if __name__ == "__main__":
    sys.exit(main())
