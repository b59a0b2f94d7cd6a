"""The Nextcloud HTTP client: the login check and the notify_push app's endpoints.

Both processes use it: the router checks logins for the whole gateway and
answers the self-test endpoints; a worker checks a login itself only while
its router link is down (docs/PROTOCOL.md section 2).

``GET {nextcloud}/index.php/apps/notify_push/uid`` with HTTP Basic auth and
``X-Forwarded-For``: 200 gives the user id, 401 means invalid. Identical
logins in flight share one request, at most ``max_concurrent`` requests run at
once, and a verified credential is remembered for a short time under a keyed
hash (never the password itself; failures are never remembered), so a
reconnect storm costs Nextcloud one request per credential.
"""

from __future__ import annotations

import asyncio
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
from shared.statistics import LOGIN_BUCKETS, Histogram

log = logging.getLogger("shared.nextcloud")

REQUEST_TIMEOUT = 10.0
CACHE_TTL = 60.0
CACHE_SIZE = 50_000
INVALID_CREDENTIALS = "Invalid credentials"
APP_PATH = "index.php/apps/notify_push"


@dataclass(slots=True)
class LoginStatistics:
    requests: int = 0
    request_errors: int = 0
    cache_hits: int = 0


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
        self._in_flight: dict[bytes, asyncio.Future[str]] = {}
        self._session: aiohttp.ClientSession | None = None
        self.statistics = LoginStatistics()
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
        if self._session is not None:
            await self._session.close()

    async def verify(self, username: str, password: str, forwarded_for: str) -> str:
        """The Nextcloud user id for these credentials.

        Raises :class:`LoginRefused` (wrong credentials, a bad answer) or
        :class:`NextcloudUnavailable` (no answer, an HTTP error status).
        """
        key = hmac.new(self._key, f"{username}\0{password}".encode(), hashlib.sha256).digest()
        now = time.monotonic()
        cached = self._cache.get(key)
        if cached is not None:
            if cached[1] > now:
                self.statistics.cache_hits += 1
                return cached[0]
            del self._cache[key]
        pending = self._in_flight.get(key)
        if pending is not None:
            return await asyncio.shield(pending)
        future: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        self._in_flight[key] = future
        try:
            uid = await self._request(username, password, forwarded_for)
        except asyncio.CancelledError:
            future.cancel()  # sharers are cancelled too rather than left waiting
            raise
        except Exception as exc:
            # Whatever failed, every login sharing this check gets the same answer.
            future.set_exception(exc)
            future.exception()  # mark retrieved: sharers may not exist
            raise
        else:
            future.set_result(uid)
            self._remember(key, uid)
            return uid
        finally:
            del self._in_flight[key]

    def _remember(self, key: bytes, uid: str) -> None:
        self._cache[key] = (uid, time.monotonic() + self._cache_ttl)
        while len(self._cache) > CACHE_SIZE:
            self._cache.popitem(last=False)

    async def _request(self, username: str, password: str, forwarded_for: str) -> str:
        auth = aiohttp.BasicAuth(username, password)
        async with self._limit:
            started = time.monotonic()
            self.statistics.requests += 1
            try:
                session = self._session_or_new()
                async with session.get(
                    self._uid_url, auth=auth, headers={"X-Forwarded-For": forwarded_for}
                ) as resp:
                    status = resp.status
                    body = await resp.text() if status == 200 else ""
            except (TimeoutError, aiohttp.ClientError, UnicodeDecodeError) as exc:
                self.statistics.request_errors += 1
                log.warning("login check with Nextcloud failed: %s", exc.__class__.__name__)
                raise NextcloudUnavailable("Error while communicating with nextcloud") from exc
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
