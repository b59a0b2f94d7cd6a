"""The browser demo page of the stub Nextcloud, and the ``pre_auth`` endpoint it uses.

A stand-in for a Nextcloud web page, for the browser tests (``tests/browser``)
and for people trying the gateway with ``make run``. The page runs
``@nextcloud/notify_push`` (bundled from ``tests/browser/src`` into
``tests/browser/dist``) the way Nextcloud's web apps do:

- the capabilities are in the ``initial-state-core-capabilities`` element
  (base64 of JSON, as Nextcloud renders initial state), with the
  ``notify_push.endpoints.websocket`` and ``.pre_auth`` URLs that the
  notify_push app derives from its ``base_endpoint``;
- the request token is in the head's ``data-requesttoken``;
- ``POST /index.php/apps/notify_push/pre_auth`` (same origin as the page)
  checks the request token, publishes ``notify_pre_auth`` to Redis and only
  then answers with the token as plain text, as the app's PreAuthController
  does; the library then logs in with an empty username and that token.

It is a test double, not Nextcloud: there is no login. The page's user comes
from its ``?user=`` query parameter (any user the stub knows; ``alice`` when
left out) and the request token stands for the session, so tabs of several
users can share one browser. ``?listen=a,b`` adds custom message types the
page listens for. ``POST /stub/notify_push_setup?base_endpoint=URL`` plays
``occ notify_push:setup URL``: until it is called the capabilities carry no
notify_push entry and the library reports push as unavailable.
"""

from __future__ import annotations

import base64
import html
import json
import secrets
import shlex
import string
from collections import OrderedDict
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from aiohttp import web

PRE_AUTH_PATH = "/index.php/apps/notify_push/pre_auth"
PAGE_PATH = "/demo"
SETUP_PATH = "/stub/notify_push_setup"
BUNDLE_DIR = Path(__file__).resolve().parents[2] / "browser" / "dist"
ASSETS = ("push-demo.js", "push-demo.css")
# The custom message types the page always listens for (the commands it shows use them).
CUSTOM_TYPES = ("hello", "ping")
MAX_SESSIONS = 10_000
_TOKEN_ALPHABET = string.ascii_letters + string.digits


class DemoSite:
    """The page, its assets, the pre_auth endpoint and the setup hook, over the stub's users."""

    def __init__(self, users: Mapping[str, str], redis_url: str | None) -> None:
        self.users = users  # the stub's own table (shared, so later changes show)
        self.redis_url = redis_url
        self.base_endpoint = ""
        self.pre_auth_count = 0
        self._sessions: OrderedDict[str, str] = OrderedDict()  # request token -> user
        self._redis: Any = None

    def add_routes(self, app: web.Application) -> None:
        app.router.add_get(PAGE_PATH, self._page)
        for asset in ASSETS:
            app.router.add_get(f"{PAGE_PATH}/{asset}", self._asset)
        app.router.add_post(PRE_AUTH_PATH, self._pre_auth)
        app.router.add_post(SETUP_PATH, self._setup)
        app.on_cleanup.append(self._close)

    def websocket_url(self) -> str:
        """The notify_push app's websocket endpoint: the base endpoint with ws(s) and ``/ws``."""
        if not self.base_endpoint:
            return ""
        url = self.base_endpoint.replace("https://", "wss://").replace("http://", "ws://")
        return f"{url}/ws"

    def capabilities(self, origin: str) -> dict[str, Any]:
        if not self.base_endpoint:
            return {}
        return {
            "notify_push": {
                "type": ["files", "activities", "notifications"],
                "endpoints": {
                    "websocket": self.websocket_url(),
                    "pre_auth": f"{origin}{PRE_AUTH_PATH}",
                },
            }
        }

    def redis_cli(self) -> str:
        """The ``redis-cli`` invocation that reaches the stub's Redis."""
        if not self.redis_url:
            return "redis-cli"
        parts = urlsplit(self.redis_url)
        if parts.scheme == "redis" and not parts.username and not parts.password:
            args = ["redis-cli"]
            if parts.hostname not in (None, "127.0.0.1", "localhost"):
                args += ["-h", parts.hostname]
            if parts.port not in (None, 6379):
                args += ["-p", str(parts.port)]
            db = parts.path.strip("/")
            if db not in ("", "0"):
                args += ["-n", db]
            return shlex.join(args)
        return shlex.join(["redis-cli", "-u", self.redis_url])

    def commands(self, user: str) -> list[dict[str, str]]:
        """What the page shows next to its log: one redis-cli command per kind of event."""
        from tests.support.stub_nextcloud.server import PRIVATE_STORAGE_BASE, SHARED_STORAGE

        names = list(self.users)
        own = PRIVATE_STORAGE_BASE + names.index(user)
        cli = self.redis_cli()

        def publish(channel: str, payload: object) -> str:
            return (
                f"{cli} publish {channel} {shlex.quote(json.dumps(payload, separators=(',', ':')))}"
            )

        return [
            {
                "label": "Custom message with a body",
                "note": "notify_custom; the body arrives parsed",
                "command": publish(
                    "notify_custom", {"user": user, "message": "hello", "body": {"n": 1}}
                ),
            },
            {
                "label": "Custom message without a body",
                "note": "",
                "command": publish("notify_custom", {"user": user, "message": "ping"}),
            },
            {
                "label": "A file changed",
                "note": f"notify_storage_update on storage {own}, which only {user} has "
                "mounted; the gateway finds the users in the database and the page, "
                "which asked for ids, gets notify_file_id",
                "command": publish(
                    "notify_storage_update",
                    {"storage": own, "path": "files/report.odt", "file_id": 42},
                ),
            },
            {
                "label": "A file changed for every demo user",
                "note": f"storage {SHARED_STORAGE} is mounted at every demo user's root",
                "command": publish(
                    "notify_storage_update",
                    {"storage": SHARED_STORAGE, "path": "files/team/plan.md", "file_id": 7},
                ),
            },
            {
                "label": "A share was created",
                "note": "no ids: notify_file",
                "command": publish("notify_user_share_created", {"user": user}),
            },
            {
                "label": "Activity",
                "note": "",
                "command": publish("notify_activity", {"user": user}),
            },
            {
                "label": "Notification",
                "note": "",
                "command": publish("notify_notification", {"user": user}),
            },
            {
                "label": "Every client reconnects",
                "note": "notify_signal reset closes every connection; watch the library come back",
                "command": publish("notify_signal", "reset"),
            },
        ]

    async def _page(self, request: web.Request) -> web.Response:
        user = request.query.get("user") or ("alice" if "alice" in self.users else "")
        if user not in self.users:
            known = ", ".join(sorted(self.users)[:20]) or "none"
            return web.Response(
                status=404,
                text=f"unknown user {user!r}: open {PAGE_PATH}?user=NAME with one of {known}",
            )
        custom = list(CUSTOM_TYPES)
        for name in request.query.get("listen", "").split(","):
            if name.strip() and name.strip() not in custom:
                custom.append(name.strip())
        request_token = secrets.token_urlsafe(32)
        self._sessions[request_token] = user
        while len(self._sessions) > MAX_SESSIONS:
            self._sessions.popitem(last=False)
        origin = f"{request.scheme}://{request.host}"
        capabilities = base64.b64encode(
            json.dumps(self.capabilities(origin)).encode("utf-8")
        ).decode("ascii")
        config = {
            "user": user,
            "websocket": self.websocket_url(),
            "customTypes": custom,
            "commands": self.commands(user),
        }
        # Inside <script>, "</" would end the element: JSON allows escaping "<".
        config_json = json.dumps(config, ensure_ascii=False).replace("<", "\\u003c")
        missing = [a for a in ASSETS if not (BUNDLE_DIR / a).is_file()]
        warning = (
            f"<p>The page's bundle is missing ({', '.join(missing)}): run <code>make bundle</code>.</p>"
            if missing
            else ""
        )
        body = f"""<!DOCTYPE html>
<html lang="en">
<head data-requesttoken="{html.escape(request_token)}">
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>notify-push-gateway · {html.escape(user)}</title>
<link rel="stylesheet" href="{PAGE_PATH}/push-demo.css">
</head>
<body>
<input type="hidden" id="initial-state-core-capabilities" value="{capabilities}">
<script type="application/json" id="push-demo-config">{config_json}</script>
<div id="push-demo">{warning}<noscript>This page needs JavaScript.</noscript></div>
<script src="{PAGE_PATH}/push-demo.js"></script>
</body>
</html>
"""
        return web.Response(
            text=body, content_type="text/html", headers={"Cache-Control": "no-store"}
        )

    async def _asset(self, request: web.Request) -> web.StreamResponse:
        path = BUNDLE_DIR / request.path.rsplit("/", 1)[1]
        if not path.is_file():
            return web.Response(status=404, text=f"{path} is missing: run make bundle")
        return web.FileResponse(path, headers={"Cache-Control": "no-cache"})

    async def _pre_auth(self, request: web.Request) -> web.Response:
        # Nextcloud refuses a request without the session's request token with
        # 412 and this message (which @nextcloud/axios recognises).
        user = self._sessions.get(request.headers.get("requesttoken", ""))
        if user is None:
            return web.json_response({"message": "CSRF check failed"}, status=412)
        if not self.redis_url:
            return web.Response(status=503, text="the stub has no --redis-url")
        token = "".join(secrets.choice(_TOKEN_ALPHABET) for _ in range(32))
        if self._redis is None:
            import redis.asyncio as aioredis

            self._redis = aioredis.Redis.from_url(self.redis_url)
        # Published before the answer, so the token is known when the client uses it.
        await self._redis.publish("notify_pre_auth", json.dumps({"user": user, "token": token}))
        self.pre_auth_count += 1
        return web.Response(text=token)

    async def _setup(self, request: web.Request) -> web.Response:
        self.base_endpoint = request.query.get("base_endpoint", "").rstrip("/")
        return web.Response(text="ok")

    async def _close(self, app: web.Application) -> None:
        if self._redis is not None:
            await self._redis.aclose()
            self._redis = None


def add_routes(app: web.Application, users: Mapping[str, str], redis_url: str | None) -> DemoSite:
    """Serve the demo page, its assets, ``pre_auth`` and the setup hook on ``app``."""
    site = DemoSite(users, redis_url)
    site.add_routes(app)
    return site
