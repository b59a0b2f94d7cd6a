"""A lean Redis subscriber: RESP over one asyncio connection, parsed by hiredis.

The router receives every event of the gateway through one subscription, so
the per-message cost matters: redis-py's ``PubSub.get_message`` spends about
12 µs per message in Python; feeding the socket's bytes straight to
``hiredis.Reader`` costs a small fraction of that. Commands are only AUTH,
SUBSCRIBE and PING; everything else (SET/GET of keys) keeps using redis-py.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any, cast

import hiredis

from shared.config import RedisTarget
from shared.errors import RedisUnavailable
from shared.redis_connection import CONNECT_TIMEOUT, RedisTls


def encode_command(*parts: str | bytes) -> bytes:
    """A RESP array of bulk strings."""
    out = [b"*%d\r\n" % len(parts)]
    for part in parts:
        data = part.encode() if isinstance(part, str) else part
        out.append(b"$%d\r\n%s\r\n" % (len(data), data))
    return b"".join(out)


class _Protocol(asyncio.Protocol):
    def __init__(self, on_message: Callable[[bytes, bytes], None]) -> None:
        self._reader = hiredis.Reader()
        self._on_message = on_message
        self.replies: asyncio.Queue[Any] = asyncio.Queue()
        self.closed: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.heard = 0.0  # loop time of the last bytes received
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        self.heard = asyncio.get_running_loop().time()
        reader = self._reader
        reader.feed(data)
        try:
            while (item := reader.gets()) is not False:
                # Published messages are the hot path: [b"message", channel, payload].
                if type(item) is list and len(item) == 3 and item[0] == b"message":
                    self._on_message(item[1], item[2])
                else:
                    self.replies.put_nowait(item)
        except hiredis.ProtocolError as exc:
            self.replies.put_nowait(RedisUnavailable(f"protocol error: {exc}"))
            if self.transport is not None:
                self.transport.abort()

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.closed.done():
            self.closed.set_result(None)


class Subscription:
    """One open subscription; :meth:`open` connects, authenticates and subscribes."""

    def __init__(self, protocol: _Protocol, target: RedisTarget) -> None:
        self._protocol = protocol
        self.target = target

    @classmethod
    async def open(
        cls,
        target: RedisTarget,
        tls: RedisTls,
        channels: tuple[str, ...],
        on_message: Callable[[bytes, bytes], None],
    ) -> Subscription:
        """Raises OSError (ssl.SSLError included), TimeoutError or RedisUnavailable.

        ``tls`` applies only to a ``rediss://`` target.
        """
        loop = asyncio.get_running_loop()

        def factory() -> _Protocol:
            return _Protocol(on_message)

        async with asyncio.timeout(CONNECT_TIMEOUT):
            if target.unix_socket_path is not None:
                _, protocol = await loop.create_unix_connection(factory, target.unix_socket_path)
            else:
                _, protocol = await loop.create_connection(
                    factory, target.host or "localhost", target.port or 6379,
                    ssl=tls.context() if target.tls else None,
                )  # fmt: skip
            subscription = cls(protocol, target)
            try:
                if target.password is not None:
                    auth = (
                        (target.username, target.password)
                        if target.username
                        else (target.password,)
                    )
                    await subscription._command("AUTH", *auth)
                subscription._send("SUBSCRIBE", *channels)
                for _ in channels:
                    reply = await subscription._reply()
                    if not (isinstance(reply, list) and reply and reply[0] == b"subscribe"):
                        raise RedisUnavailable(f"unexpected answer to SUBSCRIBE: {reply!r}")
            except BaseException:
                subscription.close()
                raise
        return subscription

    def _send(self, *parts: str) -> None:
        transport = self._protocol.transport
        if transport is None or transport.is_closing():
            raise RedisUnavailable("connection closed")
        transport.write(encode_command(*parts))

    async def _reply(self) -> Any:
        getter = asyncio.ensure_future(self._protocol.replies.get())
        done, _ = await asyncio.wait(
            (getter, self._protocol.closed), return_when=asyncio.FIRST_COMPLETED
        )
        if getter not in done:
            getter.cancel()
            raise RedisUnavailable("connection closed")
        reply = getter.result()
        if isinstance(reply, RedisUnavailable):
            raise reply
        if isinstance(reply, hiredis.ReplyError):
            # Redis' error text names the command, never the secret sent.
            raise RedisUnavailable(str(reply).split("\r")[0])
        return reply

    async def _command(self, *parts: str) -> Any:
        self._send(*parts)
        return await self._reply()

    def ping(self) -> None:
        """Send a PING; its answer (a pong array) only refreshes :attr:`last_heard`."""
        self._send("PING")

    def drain_replies(self) -> None:
        """Drop answers nobody waits for (pongs), failing on an error reply."""
        replies = self._protocol.replies
        while not replies.empty():
            reply = replies.get_nowait()
            if isinstance(reply, RedisUnavailable | hiredis.ReplyError):
                raise RedisUnavailable(str(reply))

    @property
    def last_heard(self) -> float:
        return self._protocol.heard

    @property
    def closed(self) -> asyncio.Future[None]:
        return self._protocol.closed

    def close(self) -> None:
        if self._protocol.transport is not None:
            self._protocol.transport.close()
