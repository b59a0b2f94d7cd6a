"""The router answers every login check, whatever happens while Nextcloud is asked."""

from __future__ import annotations

import asyncio

import pytest

from router.links import WorkerLink
from router.router import Router
from shared import ipc
from shared.config import Config, parse_redis_url
from shared.nextcloud import COMMUNICATION_ERROR
from tests.router.conftest import RecordingTransport
from tests.support.processes import timeout


def test_an_unforeseen_error_while_verifying_still_answers_the_login(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async def scenario() -> list[ipc.Message]:
        config = Config(nextcloud_url="http://x", redis=(parse_redis_url("redis://x"),))
        router = Router(config, "/nonexistent/router.sock")
        link = WorkerLink(router, asyncio.get_running_loop())
        transport = RecordingTransport()
        link.connection_made(transport)  # a stand-in: only write() and friends are used
        link.worker_id = 1
        router.links[1] = link

        async def broken(username: str, password: str, forwarded: str, **_: float) -> str:
            raise RuntimeError("a bug nobody foresaw")

        monkeypatch.setattr(router.nextcloud, "verify", broken)
        async with asyncio.timeout(timeout(10)):
            await router._check_login(link, ipc.CheckLogin(7, "alice", "secret", "192.0.2.1"))
        link.flush()
        await router.nextcloud.close()
        return ipc.FrameDecoder().feed(b"".join(transport.chunks))

    assert asyncio.run(scenario()) == [ipc.LoginResult(7, None, COMMUNICATION_ERROR)]
