"""The self-test endpoints ``occ notify_push:setup`` uses (docs/PROTOCOL.md section 5).

Workers receive the HTTP requests and forward them here, because only the
router holds Redis, the database and the test cookie. Every request needs a
``token`` header equal to the non-empty Redis key ``test-token``; anything
else is refused with 403 before Nextcloud or the database is touched.
"""

from __future__ import annotations

import hmac
import ipaddress
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from shared.config import COMPATIBLE_NOTIFY_PUSH_VERSION
from shared.errors import DatabaseUnavailable, NextcloudUnavailable
from shared.nextcloud import NextcloudClient
from shared.redis_connection import KeyValueClient

log = logging.getLogger("router.self_test")


@dataclass(frozen=True, slots=True)
class Answer:
    status: int
    body: str


class SelfTest:
    def __init__(
        self,
        nextcloud: NextcloudClient,
        redis_client: KeyValueClient,
        test_cookie: Callable[[], int],
        root_user_count: Callable[[int], Awaitable[int]] | None,
    ) -> None:
        self._nextcloud = nextcloud
        self._redis = redis_client
        self._cookie = test_cookie
        self._count = root_user_count

    async def answer(self, method: str, path: str, token: str) -> Answer:
        """Answer one request. ``path`` is without the ``/push`` prefix."""
        if not await self._token_ok(token):
            return Answer(403, "Invalid token")
        parts = path.strip("/").split("/")
        route = parts[1] if len(parts) >= 2 else ""
        argument = parts[2] if len(parts) == 3 else None
        if method == "GET" and route == "cookie" and argument is None:
            return Answer(200, str(self._cookie()))
        if method == "GET" and route == "reverse_cookie" and argument is None:
            return await self._nextcloud_get("test/cookie", token, {})
        if method == "GET" and route == "mapping" and argument is not None:
            return await self._mapping(argument)
        if method == "GET" and route == "remote" and argument is not None:
            try:
                ip = ipaddress.ip_address(argument)
            except ValueError:
                return Answer(400, "Invalid ip address")
            return await self._nextcloud_get("test/remote", token, {"X-Forwarded-For": str(ip)})
        if method == "POST" and route == "version" and argument is None:
            return await self._set_version()
        return Answer(404, "Not found")

    async def _token_ok(self, token: str) -> bool:
        if not token:
            return False
        try:
            client = self._redis
            expected = await client.get("test-token")
        except Exception as exc:  # any Redis failure means: cannot verify
            log.warning("cannot read test-token from Redis: %s", exc.__class__.__name__)
            return False
        if not expected:
            return False
        # Constant-time: the token is a secret shared with Nextcloud.
        if isinstance(expected, str):
            expected = expected.encode()
        return hmac.compare_digest(expected, token.encode())

    async def _mapping(self, argument: str) -> Answer:
        if not (argument.isascii() and argument.isdigit()) or int(argument) >= 2**32:
            return Answer(400, "Invalid storage id")
        if self._count is None:
            return Answer(503, "No database configured")
        try:
            return Answer(200, str(await self._count(int(argument))))
        except DatabaseUnavailable as exc:
            return Answer(502, f"Failed to query database: {exc}")

    async def _nextcloud_get(self, endpoint: str, token: str, headers: dict[str, str]) -> Answer:
        try:
            status, body = await self._nextcloud.get_app_endpoint(
                endpoint, {"token": token, **headers}
            )
        except NextcloudUnavailable as exc:
            return Answer(200, f"Error while communicating with nextcloud: {exc.reason}")
        if status != 200:
            return Answer(200, f"Error while communicating with nextcloud: {status}")
        return Answer(200, body.strip())

    async def _set_version(self) -> Answer:
        try:
            client = self._redis
            await client.set("notify_push_version", COMPATIBLE_NOTIFY_PUSH_VERSION)
        except Exception as exc:  # report, never crash the router
            log.warning("cannot set notify_push_version: %s", exc.__class__.__name__)
            return Answer(200, "error")
        return Answer(200, "set")
