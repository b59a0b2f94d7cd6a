"""The worker's end of its link to the router.

Connects to the router's Unix socket, announces every user this worker holds
(``Hello``), and keeps doing so after every reconnect: a restarted router
rebuilds its interest table from these announcements while the worker keeps
its client connections. Requests (admission, pre-auth tokens) are matched to
answers by id; when the link drops they fail at once.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import os
from collections.abc import Callable
from typing import Protocol

from shared import ipc
from shared.errors import FrameError, LoginRefused, RouterUnavailable

log = logging.getLogger("gateway.link")

# Self-test answers may wait for Nextcloud (10 s) or the database.
REQUEST_TIMEOUT = 15.0
BACKOFF_START = 0.05
BACKOFF_MAX = 2.0


class LinkState(enum.Enum):
    CONNECTING = "connecting"
    READY = "ready"
    DRAINING = "draining"


class RouterHandler(Protocol):
    def router_message(self, message: ipc.Message) -> None: ...
    def registered_users(self) -> dict[str, int]: ...
    def link_state_changed(self, state: LinkState) -> None: ...


class _LinkProtocol(asyncio.Protocol):
    def __init__(self, owner: RouterLink) -> None:
        self._owner = owner
        self._decoder = ipc.FrameDecoder()
        self.closed: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def data_received(self, data: bytes) -> None:
        try:
            messages = self._decoder.feed(data)
        except FrameError as exc:
            log.error("malformed frame from the router, reconnecting: %s", exc)
            self._owner._drop()
            return
        for message in messages:
            self._owner._dispatch(message)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.closed.done():
            self.closed.set_result(None)


class RouterLink:
    def __init__(self, socket_path: str, worker_id: int, handler: RouterHandler) -> None:
        self._path = socket_path
        self._worker_id = worker_id
        self._handler = handler
        self._transport: asyncio.Transport | None = None
        self._next_id = 0
        self._pending: dict[int, asyncio.Future[object]] = {}
        self.state = LinkState.CONNECTING
        self.reconnects = 0

    @property
    def is_ready(self) -> bool:
        return self.state is LinkState.READY

    def _set_state(self, state: LinkState) -> None:
        if state is not self.state:
            log.debug("router link %s -> %s", self.state.value, state.value)
            self.state = state
            self._handler.link_state_changed(state)

    async def run(self) -> None:
        """Stay linked until cancelled, reconnecting with backoff."""
        loop = asyncio.get_running_loop()
        backoff = BACKOFF_START
        while True:
            try:
                transport, protocol = await loop.create_unix_connection(
                    lambda: _LinkProtocol(self), self._path
                )
            except OSError as exc:
                log.debug("router not reachable at %s: %s", self._path, exc)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, BACKOFF_MAX)
                continue
            self._transport = transport
            hello = ipc.Hello(self._worker_id, os.getpid(), self._handler.registered_users())
            transport.write(ipc.encode(hello))
            self._set_state(LinkState.READY)
            backoff = BACKOFF_START
            try:
                await protocol.closed
            finally:
                self._transport = None
                self._fail_pending()
                if self.state is LinkState.READY:
                    self._set_state(LinkState.CONNECTING)
            self.reconnects += 1
            log.warning("router link lost; reconnecting")

    def _drop(self) -> None:
        if self._transport is not None:
            self._transport.close()

    def _fail_pending(self) -> None:
        pending, self._pending = self._pending, {}
        for future in pending.values():
            if not future.done():
                future.set_exception(RouterUnavailable("router link lost"))
                future.exception()

    def _dispatch(self, message: ipc.Message) -> None:
        match message:
            case ipc.HttpAnswer(request_id) | ipc.LoginResult(request_id):
                self._resolve(request_id, message)
            case _:
                self._handler.router_message(message)

    def _resolve(self, request_id: int, value: object) -> None:
        future = self._pending.pop(request_id, None)
        if future is not None and not future.done():
            future.set_result(value)
        elif isinstance(value, ipc.LoginResult) and value.user is not None:
            # An answer after we stopped waiting: the router has counted a
            # connection that will never be registered here, so give it back.
            self.send(ipc.Release(value.user))

    def send(self, message: ipc.Message) -> bool:
        """Send if linked; False when the link is down (the next Hello resyncs state)."""
        if self._transport is None:
            return False
        self._transport.write(ipc.encode(message))
        return True

    async def _request(self, make: Callable[[int], ipc.Message]) -> object:
        if self._transport is None:
            raise RouterUnavailable("router link is down")
        self._next_id += 1
        request_id = self._next_id
        future: asyncio.Future[object] = asyncio.get_running_loop().create_future()
        self._pending[request_id] = future
        self._transport.write(ipc.encode(make(request_id)))
        try:
            async with asyncio.timeout(REQUEST_TIMEOUT):
                return await future
        except TimeoutError:
            raise RouterUnavailable("router did not answer") from None
        finally:
            self._pending.pop(request_id, None)

    async def check_login(self, username: str, password: str, forwarded_for: str) -> str:
        """The user id for these credentials, verified and admitted by the router.

        Raises LoginRefused (refused, over the per-user limit, or Nextcloud
        failed: the reason is the router's) or RouterUnavailable (no router to ask).
        """
        return await self._login(lambda rid: ipc.CheckLogin(rid, username, password, forwarded_for))

    async def consume_token(self, token: str) -> str:
        """The user of a pre-auth token, consumed and admitted by the router.

        Raises LoginRefused or RouterUnavailable like :meth:`check_login`.
        """
        return await self._login(lambda rid: ipc.ConsumeToken(rid, token))

    async def _login(self, make: Callable[[int], ipc.Message]) -> str:
        result = await self._request(make)
        assert isinstance(result, ipc.LoginResult)
        if result.user is None:
            raise LoginRefused(result.error)
        return result.user

    async def http_query(self, method: str, path: str, token: str) -> ipc.HttpAnswer:
        """Have the router answer a self-test request. Raises RouterUnavailable."""
        result = await self._request(lambda rid: ipc.HttpQuery(rid, method, path, token))
        assert isinstance(result, ipc.HttpAnswer)
        return result

    def close(self) -> None:
        self._set_state(LinkState.DRAINING)
        self._drop()
