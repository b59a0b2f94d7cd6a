"""The router's Redis subscription: subscribe, read, ping, reconnect.

Runs forever: a lost or failing connection is retried with exponential
backoff (through every configured node in turn, since PUBLISH reaches every
node of a cluster), resubscribed, and reported through ``on_state`` so the
workers' ``/readyz`` and the metrics can show it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from shared.config import Config
from shared.events import CHANNELS

log = logging.getLogger("router.redis")

PING_INTERVAL = 15.0
# A subscription that answered nothing (not even a pong) for this long is dead.
SILENCE_LIMIT = 2 * PING_INTERVAL + 5.0
BACKOFF_START = 0.25
BACKOFF_MAX = 10.0


def _client(config: Config, url: str) -> aioredis.Redis:
    # Imported here so the config module can grow its TLS/cluster options freely.
    from shared.redis_connection import redis_from_config

    return redis_from_config(config, url)


def _describe(url: str) -> str:
    from shared.redis_connection import describe_redis_url

    return describe_redis_url(url)


class RedisListener:
    """Delivers every (channel, payload) of the eleven channels to ``on_message``."""

    def __init__(
        self,
        config: Config,
        on_message: Callable[[str, bytes], None],
        on_state: Callable[[bool], None],
    ) -> None:
        self._config = config
        self._on_message = on_message
        self._on_state = on_state
        self.reconnects = 0
        self.subscribed = False
        self._client: aioredis.Redis | None = None

    async def run(self) -> None:
        backoff = BACKOFF_START
        node = 0
        urls = self._config.redis_urls
        failed_since: float | None = None
        while True:
            url = urls[node % len(urls)]
            started = time.monotonic()
            try:
                await self._listen(url)
            except (TimeoutError, RedisError, OSError) as exc:
                if failed_since is None:
                    failed_since = time.monotonic()
                    log.warning("Redis subscription on %s failed: %s", _describe(url), exc)
                else:
                    log.debug("Redis still unavailable on %s: %s", _describe(url), exc)
            finally:
                self._set_subscribed(False)
                await self._close_client()
            if time.monotonic() - started > 5 * PING_INTERVAL:
                backoff = BACKOFF_START  # it was up for a good while: retry fast
            self.reconnects += 1
            node += 1
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, BACKOFF_MAX)
            if self.subscribed:
                failed_since = None

    async def _listen(self, url: str) -> None:
        client = _client(self._config, url)
        self._client = client
        pubsub = client.pubsub()
        await pubsub.subscribe(*CHANNELS)
        log.info("subscribed to %d channels on %s", len(CHANNELS), _describe(url))
        self._set_subscribed(True)
        last_heard = last_ping = time.monotonic()
        while True:
            message = await pubsub.get_message(timeout=1.0)
            now = time.monotonic()
            if message is not None:
                last_heard = now
                if message["type"] == "message":
                    channel = message["channel"]
                    if isinstance(channel, bytes):
                        channel = channel.decode("utf-8", "replace")
                    self._on_message(channel, message["data"])
            if now - last_ping >= PING_INTERVAL:
                last_ping = now
                await pubsub.ping()
            if now - last_heard > SILENCE_LIMIT:
                raise TimeoutError("no answer to pings on the subscription")

    def _set_subscribed(self, value: bool) -> None:
        if value != self.subscribed:
            self.subscribed = value
            self._on_state(value)

    async def _close_client(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            with contextlib.suppress(RedisError, OSError):
                await client.aclose()

    async def publish_client(self) -> aioredis.Redis:
        """A regular (non-pubsub) client for SET/GET on the first node."""
        return _client(self._config, self._config.redis_urls[0])
