"""A stub Nextcloud for development, tests and benchmarks.

It answers the few endpoints of the notify_push app that the gateway calls
(docs/PROTOCOL.md sections 2 and 5) from an in-memory user table, and can create
the Nextcloud tables with demo mounts in a SQLite file (:mod:`.schema`). It
is not Nextcloud; it exists because Nextcloud cannot run here.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import sqlite3
from collections.abc import Iterable, Mapping

from aiohttp import web
from aiohttp.typedefs import Handler

from tests.support.stub_nextcloud.schema import Mount, create_sqlite, seed_sqlite

APP = "/index.php/apps/notify_push"
# The storage every demo user has mounted at its root, so one storage update
# reaches everyone; user i also has storage PRIVATE_STORAGE_BASE + i alone.
SHARED_STORAGE = 1
PRIVATE_STORAGE_BASE = 1000
APP_VERSION = "1.4.0"


def generated_users(count: int) -> dict[str, str]:
    """``user0 … user{count-1}`` with passwords ``password-user0`` …"""
    return {f"user{i}": f"password-user{i}" for i in range(count)}


def create_demo_database(path: str, users: Iterable[str], prefix: str = "oc_") -> None:
    """A SQLite Nextcloud database: every user on the shared storage and on its own."""
    mounts = []
    for i, user in enumerate(users):
        mounts.append(Mount(user, SHARED_STORAGE, ""))
        mounts.append(Mount(user, PRIVATE_STORAGE_BASE + i, ""))
    conn = sqlite3.connect(path)
    try:
        create_sqlite(conn, prefix)
        seed_sqlite(conn, mounts, prefix)
    finally:
        conn.close()


class StubNextcloud:
    """The stub server. ``uid_requests`` counts login checks (for single-flight tests).

    Basic credentials are decoded as UTF-8, as Nextcloud does. ``login_names``
    lists the user name of every login check in arrival order. While
    :meth:`hang_logins` is on, login checks get no answer until it is turned
    off (or the stub stops); ``hung_requests`` counts them.
    """

    def __init__(self, users: Mapping[str, str], redis_url: str | None = None) -> None:
        self.users = dict(users)
        self.redis_url = redis_url
        self.uid_requests = 0
        self.app_requests = 0  # every notify_push app endpoint, logins included
        self.forwarded_for: list[str] = []
        self.test_cookie = 0
        self.fail_logins_with: int | None = None  # e.g. 500 to simulate a broken Nextcloud
        self.login_names: list[str] = []
        self.hung_requests = 0
        self._hanging = False
        self._unhang = asyncio.Event()
        self.app_version = APP_VERSION
        # Whether the stub, as Nextcloud's trusted_proxies would, believes X-Forwarded-For.
        self.trusts_proxy = True
        self._runner: web.AppRunner | None = None
        self.url = ""

    @web.middleware
    async def _count(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.path.startswith(APP):
            self.app_requests += 1
        return await handler(request)

    def _app(self) -> web.Application:
        app = web.Application(middlewares=[self._count])
        app.router.add_get(f"{APP}/uid", self._uid)
        app.router.add_get(f"{APP}/test/cookie", self._cookie)
        app.router.add_get(f"{APP}/test/remote", self._remote)
        app.router.add_get(f"{APP}/test/version", self._version)
        # Test hooks, not Nextcloud: read counters, make logins fail.
        app.router.add_get("/stub/stats", self._stats)
        app.router.add_post("/stub/fail", self._set_failure)
        app.router.add_post("/stub/hang", self._set_hang)
        app.router.add_post("/stub/app_version", self._set_app_version)
        app.router.add_post("/stub/proxy", self._set_proxy)
        # The browser demo page and its pre_auth endpoint (tests/browser, make run).
        from tests.support.stub_nextcloud import web as demo_page

        demo_page.add_routes(app, self.users, self.redis_url)
        return app

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> str:
        self._runner = web.AppRunner(self._app(), access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, host, port)
        await site.start()
        server = site._server
        assert server is not None and server.sockets  # type: ignore[attr-defined]
        bound = server.sockets[0].getsockname()[1]  # type: ignore[attr-defined]
        self.url = f"http://{host}:{bound}"
        return self.url

    async def stop(self) -> None:
        self.hang_logins(False)  # hung handlers would hold up the shutdown
        if self._runner is not None:
            await self._runner.cleanup()

    def hang_logins(self, on: bool) -> None:
        """Make login checks wait without an answer (on) or answer again (off, releasing them)."""
        self._hanging = on
        if on:
            self._unhang.clear()
        else:
            self._unhang.set()

    async def _uid(self, request: web.Request) -> web.Response:
        self.uid_requests += 1
        self.forwarded_for.append(request.headers.get("X-Forwarded-For", ""))
        credentials = _basic_auth(request.headers.get("Authorization", ""))
        self.login_names.append(credentials[0] if credentials is not None else "")
        if self._hanging:
            self.hung_requests += 1
            await self._unhang.wait()
        if self.fail_logins_with is not None:
            return web.Response(status=self.fail_logins_with, text="stub failure")
        if credentials is None or self.users.get(credentials[0]) != credentials[1]:
            return web.Response(status=401, text="Unauthorized")
        return web.Response(text=credentials[0])

    async def _stats(self, request: web.Request) -> web.Response:
        return web.json_response(
            {
                "uid_requests": self.uid_requests,
                "app_requests": self.app_requests,
                "forwarded_for": self.forwarded_for[-100:],
                "hung_requests": self.hung_requests,
            }
        )

    async def _set_failure(self, request: web.Request) -> web.Response:
        status = request.query.get("status", "")
        self.fail_logins_with = int(status) if status.isdigit() else None
        return web.Response(text="ok")

    async def _set_hang(self, request: web.Request) -> web.Response:
        self.hang_logins(request.query.get("on", "") == "1")
        return web.Response(text="ok")

    async def _set_app_version(self, request: web.Request) -> web.Response:
        self.app_version = request.query.get("version", APP_VERSION)
        return web.Response(text="ok")

    async def _set_proxy(self, request: web.Request) -> web.Response:
        self.trusts_proxy = request.query.get("trusted", "1") == "1"
        return web.Response(text="ok")

    async def _token_ok(self, request: web.Request) -> bool:
        """The app's rule: the ``token`` header must equal Redis' ``test-token``."""
        if not self.redis_url:
            return True
        import redis.asyncio as aioredis

        client = aioredis.Redis.from_url(self.redis_url)
        try:
            expected = await client.get("test-token")
        finally:
            await client.aclose()
        if isinstance(expected, bytes):
            expected = expected.decode()
        return expected is not None and expected == request.headers.get("token")

    async def _cookie(self, request: web.Request) -> web.Response:
        if not await self._token_ok(request):
            return web.Response(status=403)
        return web.Response(text=str(self.test_cookie))

    async def _remote(self, request: web.Request) -> web.Response:
        if not await self._token_ok(request):
            return web.Response(status=403)
        forwarded = request.headers.get("X-Forwarded-For", "") if self.trusts_proxy else ""
        remote = forwarded.split(",")[0].strip() or (request.remote or "")
        return web.Response(text=remote)

    async def _version(self, request: web.Request) -> web.Response:
        # The real app SETs its version in Redis so the push server can compare.
        if self.redis_url:
            import redis.asyncio as aioredis

            client = aioredis.Redis.from_url(self.redis_url)
            try:
                await client.set("notify_push_app_version", self.app_version)
            finally:
                await client.aclose()
        return web.Response(text="")


def _basic_auth(header: str) -> tuple[str, str] | None:
    """(user, password) of a Basic ``Authorization`` header decoded as UTF-8, as Nextcloud reads it."""
    scheme, _, encoded = header.partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(encoded, validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return None
    name, sep, password = decoded.partition(":")
    return (name, password) if sep else None
