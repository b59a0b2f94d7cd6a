"""A supervisor killed outright (kill -9) leaves nothing serving and nothing a new start trips on."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import tempfile
from pathlib import Path

import pytest

from tests.support.processes import (
    Gateway,
    RedisServer,
    Stub,
    http_get,
    start_gateway,
    timeout,
    wait_for,
)

pytestmark = pytest.mark.integration


def _gone(pid: int) -> bool:
    """True once ``pid`` has exited (a zombie not yet reaped by init counts as gone)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat.rsplit(")", 1)[1].split()[0] in ("Z", "X")


def _ipc_dirs(folder: Path, gateway: Gateway) -> list[Path]:
    return sorted(folder.glob(f"notify-push-gateway-{gateway.process.pid}-*"))


def test_a_killed_supervisor_takes_its_children_along_and_a_new_start_cleans_up(
    workdir: Path, redis_server: RedisServer, stub: Stub, database: Path
) -> None:
    # Short, so the router's socket path inside it fits a Unix socket address.
    temp_dir = Path(tempfile.mkdtemp(prefix="npg-orphans-"))
    env = {"TMPDIR": str(temp_dir)}
    children: dict[str, int] = {}
    started: list[Gateway] = []

    def start(workers: int) -> Gateway:
        gateway = start_gateway(
            workdir, redis_url=redis_server.url, nextcloud_url=stub.url,
            database_url=f"sqlite://{database}", workers=workers, env=env,
        )  # fmt: skip
        started.append(gateway)
        gateway.wait_ready()
        return gateway

    try:
        first = start(2)
        children = first.children()
        assert sorted(children) == ["npg-router", "npg-worker-1", "npg-worker-2"]
        (left,) = _ipc_dirs(temp_dir, first)
        first.process.kill()
        first.process.wait(timeout(10))
        wait_for(
            lambda: all(_gone(pid) for pid in children.values()), 10, "router and workers to end"
        )
        # Nothing of the old instance still accepts on its port, and its
        # children stopped the ordinary way, without a traceback.
        assert http_get(f"{first.http_url}/healthz")[0] == 0
        assert "Traceback" not in first.log(), first.log()
        assert left.is_dir()  # nothing cleans up after a SIGKILL
        second = start(1)
        assert not left.exists()
        assert len(_ipc_dirs(temp_dir, second)) == 1
        assert second.stop() == 0, second.log()
    finally:
        for gateway in started:
            if gateway.process.poll() is None:
                gateway.process.kill()
                gateway.process.wait()
        for pid in children.values():
            with contextlib.suppress(ProcessLookupError):
                if not _gone(pid):
                    os.kill(pid, signal.SIGKILL)
        shutil.rmtree(temp_dir, ignore_errors=True)
