"""Routing in the router: one batch per worker, only the users it holds."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest

from router.links import WorkerLink
from router.router import Router
from shared import ipc
from shared.config import Config, parse_redis_url
from shared.messages import MessageKind
from tests.router.conftest import RecordingTransport
from tests.support.waiting import wait_until


@pytest.fixture
def loop() -> Iterator[asyncio.AbstractEventLoop]:
    loop = asyncio.new_event_loop()
    yield loop
    loop.close()


def make_router(loop: asyncio.AbstractEventLoop) -> tuple[Router, dict[int, RecordingTransport]]:
    config = Config(nextcloud_url="http://x", redis=(parse_redis_url("redis://x"),), workers=3)
    router = Router(config, "/nonexistent/router.sock")
    transports = {}
    for worker in (1, 2, 3):
        link = WorkerLink(router, loop)
        transports[worker] = RecordingTransport()
        link.connection_made(transports[worker])  # type: ignore[arg-type]
        link.worker_id = worker
        router.links[worker] = link
    return router, transports


def flush(router: Router) -> None:
    """Write what each link queued (the loop does it at the end of the turn)."""
    for link in router.links.values():
        link.flush()


def delivered(router: Router, transport: RecordingTransport) -> list[ipc.Message]:
    flush(router)
    return ipc.FrameDecoder().feed(b"".join(transport.chunks))


def test_storage_update_reaches_each_worker_once_with_its_users(
    loop: asyncio.AbstractEventLoop,
) -> None:
    router, transports = make_router(loop)
    holders = {f"u{i}": 1 + i % 3 for i in range(1000)}
    for user, worker in holders.items():
        router.interest.admit(worker, user)
    router.interest.admit(2, "u0")  # u0 also has a connection on worker 2
    router.route([*holders, "nobody"], ipc.Deliver((), MessageKind.FILE, (7,), published=1.0))
    for worker, transport in transports.items():
        messages = delivered(router, transport)
        assert len(messages) == 1, f"worker {worker} got {len(messages)} messages"
        (message,) = messages
        assert isinstance(message, ipc.Deliver) and message.file_ids == (7,)
        expected = {u for u, w in holders.items() if w == worker} | (
            {"u0"} if worker == 2 else set()
        )
        assert set(message.users) == expected


def test_event_for_unconnected_user_is_dropped_and_counted(
    loop: asyncio.AbstractEventLoop,
) -> None:
    router, transports = make_router(loop)
    router.on_redis_message(b"notify_activity", b'{"user": "ghost"}')
    assert router.dropped["no_connection"] == 1
    assert all(delivered(router, t) == [] for t in transports.values())


def test_one_user_event_is_encoded_once_for_all_its_workers(
    loop: asyncio.AbstractEventLoop,
) -> None:
    router, transports = make_router(loop)
    for worker in (1, 3):
        router.interest.admit(worker, "alice")
    router.on_redis_message(b"notify_custom", b'{"user": "alice", "message": "hi"}')
    flush(router)
    assert transports[1].chunks == transports[3].chunks != []
    assert transports[2].chunks == []
    (message,) = delivered(router, transports[1])
    assert isinstance(message, ipc.Deliver) and message.text == "hi"


def test_storage_updates_are_routed_in_published_order(
    loop: asyncio.AbstractEventLoop,
) -> None:
    router, transports = make_router(loop)
    router.interest.admit(1, "alice")
    release_first = asyncio.Event()

    first_started = asyncio.Event()

    class SlowFirstMapping:
        """Storage 1 answers only when released; storage 2 at once."""

        async def users_for(self, storage: int, path: str) -> list[str]:
            if storage == 1:
                first_started.set()
                await release_first.wait()
            return ["alice"]

    router.mapping = SlowFirstMapping()  # type: ignore[assignment]

    async def scenario() -> list[ipc.Message]:
        consumer = asyncio.ensure_future(router._map_storage_updates_forever())
        for storage, file_id in ((1, 10), (2, 20)):
            payload = f'{{"storage": {storage}, "path": "files/x", "file_id": {file_id}}}'
            router.on_redis_message(b"notify_storage_update", payload.encode())
        await wait_until(first_started.is_set, "the first mapping to start")
        # The second update waits behind the first instead of overtaking it.
        assert router.pending_storage_updates == 2
        release_first.set()
        await wait_until(lambda: router.pending_storage_updates == 0, "both mappings")
        consumer.cancel()
        return ipc.FrameDecoder().feed(b"".join(transports[1].chunks))

    messages = loop.run_until_complete(scenario())
    assert [m.file_ids for m in messages if isinstance(m, ipc.Deliver)] == [(10,), (20,)]


def test_status_after_a_lost_worker_no_longer_counts_its_connections(
    loop: asyncio.AbstractEventLoop,
) -> None:
    router, transports = make_router(loop)
    router.interest.admit(1, "alice")
    router.interest.admit(3, "bob")
    router.interest.admit(3, "carol")
    router.link_lost(router.links[3])
    (status,) = delivered(router, transports[1])
    assert isinstance(status, ipc.Status)
    assert (status.active_connections, status.workers_linked) == (1, 2)
