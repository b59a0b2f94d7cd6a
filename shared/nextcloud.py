"""The Nextcloud HTTP client: the login check and the notify_push app's endpoints.

Both processes use it: the router checks logins for the whole gateway and
answers the self-test endpoints; a worker checks a login itself only while
its router link is down (docs/PROTOCOL.md section 2).

``GET {nextcloud}/index.php/apps/notify_push/uid`` with HTTP Basic auth
(UTF-8, as Nextcloud decodes it) and ``X-Forwarded-For``: 200 gives the user
id, 401 means invalid. Identical logins in flight share one request, at most
``max_concurrent`` requests run at once, and a verified credential is
remembered for a short time under a keyed hash (never the password itself;
failures are never remembered), so a reconnect storm costs Nextcloud one
request per credential.

Every login is answered within its timeout, queue and request together, and
a check that no login waits for any more is abandoned: never sent while it
still waits for a request slot, cancelled when under way. A hung Nextcloud so
costs each client an ``err:`` answer before its authentication timeout, and
requests nobody needs cannot fill the slots.
"""

from __future__ import annotations

import asyncio
import base64
import functools
import hashlib
import hmac
import logging
import os
import ssl
import time
from collections import OrderedDict
from dataclasses import dataclass

import aiohttp

from shared.errors import LoginRefused, NextcloudUnavailable
from shared.logs import Throttle
from shared.statistics import LOGIN_BUCKETS, Histogram

log = logging.getLogger("shared.nextcloud")

REQUEST_TIMEOUT = 10.0
#: The longest a login waits for Nextcloud, for a request slot and the request together.
LOGIN_TIMEOUT = REQUEST_TIMEOUT
# What a login check leaves of the client's authentication timeout, so that
# its answer reaches the client before the worker times the client out (the
# worker looks once a second).
AUTH_TIMEOUT_MARGIN = 2.0
CACHE_TTL = 60.0
CACHE_SIZE = 50_000
INVALID_CREDENTIALS = "Invalid credentials"
COMMUNICATION_ERROR = "Error while communicating with nextcloud"
APP_PATH = "index.php/apps/notify_push"


def login_timeout(auth_timeout: float) -> float:
    """How long a login may wait for Nextcloud when its client has ``auth_timeout`` to log in.

    :data:`LOGIN_TIMEOUT` at most, :data:`AUTH_TIMEOUT_MARGIN` below
    ``auth_timeout`` (half of it when that is very short), so the client is
    told ``err: Error while communicating with nextcloud``, not
    ``Authentication timeout``.
    """
    return min(LOGIN_TIMEOUT, max(auth_timeout - AUTH_TIMEOUT_MARGIN, auth_timeout / 2))


def basic_authorization(credentials: bytes) -> str:
    """The ``Authorization`` header for ``user:password`` already encoded as UTF-8.

    UTF-8 is what Nextcloud decodes Basic credentials as (RFC 7617 section 2.1,
    ``charset="UTF-8"``); aiohttp's BasicAuth defaults to Latin-1.
    """
    return "Basic " + base64.b64encode(credentials).decode("ascii")


@dataclass(slots=True)
class LoginStatistics:
    requests: int = 0
    request_errors: int = 0
    cache_hits: int = 0


class _Check:
    """One credential's check with Nextcloud, and how many logins wait for its answer."""

    __slots__ = ("task", "waiters")

    def __init__(self, task: asyncio.Task[str]) -> None:
        self.task = task
        self.waiters = 0


class NextcloudClient:
    """Talks to one Nextcloud for the whole process: logins and the app endpoints."""

    def __init__(
        self,
        nextcloud_url: str,
        *,
        user_agent: str | None = None,
        allow_self_signed: bool = False,
        max_concurrent: int = 32,
        cache_ttl: float = CACHE_TTL,
    ) -> None:
        self._app_url = f"{nextcloud_url.rstrip('/')}/{APP_PATH}"
        self._uid_url = f"{self._app_url}/uid"
        self._user_agent = user_agent
        self._allow_self_signed = allow_self_signed
        self._limit = asyncio.Semaphore(max_concurrent)
        self._cache_ttl = cache_ttl
        # A per-process random key: the cache holds HMACs that are useless outside.
        self._key = os.urandom(32)
        self._cache: OrderedDict[bytes, tuple[str, float]] = OrderedDict()
        self._in_flight: dict[bytes, _Check] = {}
        # Every check task, abandoned ones included until they have ended: close() awaits them.
        self._tasks: set[asyncio.Task[str]] = set()
        self._session: aiohttp.ClientSession | None = None
        self.statistics = LoginStatistics()
        # A hanging Nextcloud abandons every login at once: one line per 10 s.
        self._abandoned = Throttle(log)
        self.login_seconds = Histogram(LOGIN_BUCKETS)

    def _session_or_new(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            ssl_option: ssl.SSLContext | bool = True
            if self._allow_self_signed:
                ssl_option = False
            headers = {"User-Agent": self._user_agent} if self._user_agent else None
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(ssl=ssl_option, limit=0),
                timeout=aiohttp.ClientTimeout(total=REQUEST_TIMEOUT),
                headers=headers,
            )
        return self._session

    async def close(self) -> None:
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self._session is not None:
            await self._session.close()

    async def verify(
        self,
        username: str,
        password: str,
        forwarded_for: str,
        *,
        within: float = LOGIN_TIMEOUT,
    ) -> str:
        """The Nextcloud user id for these credentials, answered ``within`` seconds.

        ``within`` covers the wait for a request slot and the request. A login
        identical to one in flight shares its check and waits for its answer,
        up to its own ``within``. When every login waiting for a check has
        stopped (timed out or cancelled), the check is abandoned.

        Raises :class:`LoginRefused` (wrong credentials, a user name Basic auth
        cannot carry, a bad answer) or :class:`NextcloudUnavailable` (no answer
        ``within`` that time, an HTTP error status, any other failure); never
        anything else, so whoever waits can always answer its client.
        """
        if ":" in username:
            # RFC 7617 section 2: the user-id cannot hold a colon, since the
            # first one ends it; Nextcloud would read another user's name.
            raise LoginRefused(INVALID_CREDENTIALS)
        # Exactly what Basic auth sends: unambiguous, since the name has no colon.
        credentials = f"{username}:{password}".encode()
        key = hmac.new(self._key, credentials, hashlib.sha256).digest()
        now = time.monotonic()
        cached = self._cache.get(key)
        if cached is not None:
            if cached[1] > now:
                self.statistics.cache_hits += 1
                return cached[0]
            del self._cache[key]
        check = self._in_flight.get(key)
        if check is None:
            check = self._start_check(key, credentials, forwarded_for)
        check.waiters += 1
        timed_out = False
        try:
            async with asyncio.timeout(within):
                # Shielded: one login giving up must not cancel the others' check.
                return await asyncio.shield(check.task)
        except TimeoutError:
            # The check raises only LoginRefused or NextcloudUnavailable: this is our deadline.
            timed_out = True
            raise NextcloudUnavailable(COMMUNICATION_ERROR) from None
        finally:
            check.waiters -= 1
            if check.waiters == 0 and not check.task.done():
                self._abandon(key, check, within if timed_out else None)

    def _start_check(self, key: bytes, credentials: bytes, forwarded_for: str) -> _Check:
        task = asyncio.ensure_future(self._check(key, credentials, forwarded_for))
        check = _Check(task)
        self._in_flight[key] = check
        self._tasks.add(task)
        task.add_done_callback(functools.partial(self._check_done, key, check))
        return check

    def _check_done(self, key: bytes, check: _Check, task: asyncio.Task[str]) -> None:
        self._tasks.discard(task)
        if self._in_flight.get(key) is check:
            del self._in_flight[key]
        if not task.cancelled():
            task.exception()  # mark retrieved: every waiter may have gone

    def _abandon(self, key: bytes, check: _Check, waited: float | None) -> None:
        """Nobody waits for ``check`` any more: drop it before it is sent, or cancel it."""
        if self._in_flight.get(key) is check:
            del self._in_flight[key]  # an identical login arriving now starts afresh
        check.task.cancel()
        if waited is not None:
            self._abandoned.warning(
                "login check abandoned: no answer from Nextcloud within %.1f s", waited
            )

    async def _check(self, key: bytes, credentials: bytes, forwarded_for: str) -> str:
        try:
            uid = await self._request(credentials, forwarded_for)
        except (LoginRefused, NextcloudUnavailable):
            raise
        except Exception as exc:
            # Not foreseen, yet every login sharing this check must be answered.
            log.error("login check with Nextcloud failed unexpectedly", exc_info=True)
            raise NextcloudUnavailable(COMMUNICATION_ERROR) from exc
        self._remember(key, uid)
        return uid

    def _remember(self, key: bytes, uid: str) -> None:
        self._cache[key] = (uid, time.monotonic() + self._cache_ttl)
        while len(self._cache) > CACHE_SIZE:
            self._cache.popitem(last=False)

    async def _request(self, credentials: bytes, forwarded_for: str) -> str:
        headers = {
            "Authorization": basic_authorization(credentials),
            "X-Forwarded-For": forwarded_for,
        }
        async with self._limit:
            started = time.monotonic()
            self.statistics.requests += 1
            try:
                session = self._session_or_new()
                async with session.get(self._uid_url, headers=headers) as resp:
                    status = resp.status
                    body = await resp.text() if status == 200 else ""
            # ValueError: a header aiohttp will not send (a control character in
            # the client's X-Forwarded-For), or a body that is not text.
            except (TimeoutError, aiohttp.ClientError, ValueError) as exc:
                self.statistics.request_errors += 1
                log.warning("login check with Nextcloud failed: %s", exc.__class__.__name__)
                raise NextcloudUnavailable(COMMUNICATION_ERROR) from exc
            finally:
                self.login_seconds.observe(time.monotonic() - started)
        if status == 200:
            uid = body.strip()
            if not uid:
                raise LoginRefused("Invalid response from nextcloud")
            return uid
        if status == 401:
            raise LoginRefused(INVALID_CREDENTIALS)
        self.statistics.request_errors += 1
        log.warning("login check with Nextcloud answered HTTP %d", status)
        kind = "Server error" if status >= 500 else "Client error" if status >= 400 else "Error"
        raise NextcloudUnavailable(f"{kind}: {status}")

    async def get_app_endpoint(self, endpoint: str, headers: dict[str, str]) -> tuple[int, str]:
        """``GET`` one of the notify_push app's endpoints (``test/cookie``...).

        Returns the status and the body. Raises :class:`NextcloudUnavailable`
        when Nextcloud cannot be reached or its answer cannot be read.
        """
        try:
            session = self._session_or_new()
            async with session.get(f"{self._app_url}/{endpoint}", headers=headers) as resp:
                return resp.status, await resp.text()
        except (TimeoutError, aiohttp.ClientError, UnicodeDecodeError) as exc:
            raise NextcloudUnavailable(exc.__class__.__name__) from exc
