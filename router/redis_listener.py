"""The router's Redis subscription: subscribe, read, ping, reconnect.

Runs forever: a lost or failing connection is retried with exponential
backoff (through every configured node in turn, since PUBLISH reaches every
node of a cluster), resubscribed, and reported through ``on_state`` so the
workers' ``/readyz`` and the metrics can show it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from router.resp_subscriber import Subscription
from shared.config import Config, RedisTarget
from shared.errors import RedisUnavailable
from shared.events import CHANNELS
from shared.redis_connection import RedisTls

log = logging.getLogger("router.redis")

PING_INTERVAL = 15.0
# A subscription that answered nothing (not even a pong) for this long is dead.
SILENCE_LIMIT = 2 * PING_INTERVAL + 5.0
BACKOFF_START = 0.25
# Retries stay this close together however long Redis is away, so the
# subscription is back within about a second of Redis.
BACKOFF_MAX = 1.0


class RedisListener:
    """Delivers every (channel, payload) of the eleven channels to ``on_message``."""

    def __init__(
        self,
        config: Config,
        on_message: Callable[[bytes, bytes], None],
        on_state: Callable[[bool], None],
    ) -> None:
        self._targets = config.redis
        self._tls = RedisTls.from_config(config)
        self._on_message = on_message
        self._on_state = on_state
        self.reconnects = 0
        self.subscribed = False

    async def run(self) -> None:
        backoff = BACKOFF_START
        node = 0
        targets = self._targets
        failing = False
        while True:
            target = targets[node % len(targets)]
            try:
                await self._listen(target)
            except (RedisUnavailable, OSError, TimeoutError) as exc:
                if self.subscribed:
                    failing = False  # it was up: this is a new outage, worth a warning
                # One warning per outage; the retries that follow log at debug.
                level = logging.DEBUG if failing else logging.WARNING
                log.log(level, "Redis subscription on %s failed: %s", target.describe(), exc)
                failing = True
            except Exception:
                # A bug or an unexpected reply must not end the subscription for good:
                # log it in full and retry like any other failure.
                log.exception("unexpected error in the Redis subscription on %s", target.describe())
                failing = True
            finally:
                if self.subscribed:
                    backoff = BACKOFF_START  # it was up: retry fast, whatever came before
                self._set_subscribed(False)
            self.reconnects += 1
            node += 1
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, BACKOFF_MAX)

    async def _listen(self, target: RedisTarget) -> None:
        subscription = await Subscription.open(target, self._tls, CHANNELS, self._on_message)
        loop = asyncio.get_running_loop()
        try:
            log.info("subscribed to %d channels on %s", len(CHANNELS), target.describe())
            self._set_subscribed(True)
            while True:
                try:
                    async with asyncio.timeout(PING_INTERVAL):
                        await asyncio.shield(subscription.closed)
                except TimeoutError:
                    pass
                else:
                    raise RedisUnavailable("connection closed by Redis")
                subscription.drain_replies()
                if loop.time() - subscription.last_heard > SILENCE_LIMIT:
                    raise TimeoutError("no answer to pings on the subscription")
                subscription.ping()
        finally:
            subscription.close()

    def _set_subscribed(self, value: bool) -> None:
        if value != self.subscribed:
            self.subscribed = value
            self._on_state(value)
