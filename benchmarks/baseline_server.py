"""The comparison baseline: notify_push's protocol in one process, the straightforward way.

One process, the websockets package's high-level asyncio server (a coroutine
per connection), its own Redis subscription, logins checked with Nextcloud over
HTTP (aiohttp), per-user connection sets and ``websockets.asyncio.server.broadcast``
for fan-out. Storage updates are mapped to users with the SQLite query of
docs/PROTOCOL.md section 3 behind a simple per-storage cache. No debounce.

It is deliberately the implementation a competent engineer writes first, not a
strawman: the gateway's benchmark figures are reported as ratios to it.

    python -m benchmarks.baseline_server --nextcloud-url http://127.0.0.1:P \
        --redis-url redis://127.0.0.1:R --database-url sqlite:///path.db --port G
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import random
import resource
import sqlite3
import time
from collections import defaultdict
from typing import Any, Final

import aiohttp
import redis.asyncio as aioredis
import uvloop
from websockets.asyncio.server import ServerConnection, broadcast, serve
from websockets.exceptions import ConnectionClosed

log = logging.getLogger("baseline")

CHANNELS: Final = (
    "notify_storage_update",
    "notify_group_membership_update",
    "notify_user_share_created",
    "notify_activity",
    "notify_notification",
    "notify_custom",
    "notify_pre_auth",
    "notify_test_cookie",
    "notify_config",
    "notify_query",
    "notify_signal",
)
MAX_CONNECTIONS_PER_USER: Final = 64
AUTH_TIMEOUT: Final = 15.0
PRE_AUTH_TTL: Final = 15.0


class Baseline:
    def __init__(self, nextcloud_url: str, redis_url: str, sqlite_path: str, prefix: str) -> None:
        self.nextcloud_url = nextcloud_url.rstrip("/")
        self.redis = aioredis.Redis.from_url(redis_url)
        self.sqlite_path = sqlite_path
        self.prefix = prefix
        self.by_user: defaultdict[str, set[ServerConnection]] = defaultdict(set)
        self.file_id_listeners: set[ServerConnection] = set()
        self.tokens: dict[str, tuple[str, float]] = {}
        self.mapping: dict[int, tuple[float, list[tuple[str, str]]]] = {}
        self.http: aiohttp.ClientSession | None = None

    # --- login -------------------------------------------------------------------

    async def authenticate(self, ws: ServerConnection, username: str, password: str) -> str | None:
        if not username:
            entry = self.tokens.pop(password, None)
            if entry is not None and entry[1] > time.monotonic():
                return entry[0]
            return None
        assert self.http is not None
        peer = ws.remote_address[0] if ws.remote_address else ""
        forwarded = ws.request.headers.get("X-Forwarded-For") if ws.request else None
        async with self.http.get(
            f"{self.nextcloud_url}/index.php/apps/notify_push/uid",
            auth=aiohttp.BasicAuth(username, password),
            headers={"X-Forwarded-For": f"{forwarded}, {peer}" if forwarded else peer},
        ) as resp:
            if resp.status == 200:
                return (await resp.text()).strip()
            if resp.status == 401:
                return None
            raise RuntimeError(f"Nextcloud answered {resp.status}")

    async def handler(self, ws: ServerConnection) -> None:
        if ws.request is None or ws.request.path not in ("/ws", "/push/ws"):
            await ws.close(1008, "not found")
            return
        try:
            async with asyncio.timeout(AUTH_TIMEOUT):
                username = await ws.recv()
                password = await ws.recv()
        except TimeoutError:
            await ws.send("err: Authentication timeout")
            return
        except ConnectionClosed:
            return
        if not isinstance(username, str) or not isinstance(password, str):
            await ws.send("err: Invalid credentials")
            return
        try:
            user = await self.authenticate(ws, username.strip(), password.strip())
        except (aiohttp.ClientError, RuntimeError) as e:
            await ws.send(f"err: {e}")
            return
        if user is None:
            await ws.send("err: Invalid credentials")
            return
        conns = self.by_user[user]
        if len(conns) >= MAX_CONNECTIONS_PER_USER:
            await ws.send("err: Too many connections for this user")
            return
        conns.add(ws)
        try:
            await ws.send("authenticated")
            # Keep reading: the high-level server stops reading (and so stops
            # seeing pongs) once its incoming queue is full.
            async for message in ws:
                if message == "listen notify_file_id":
                    self.file_id_listeners.add(ws)
        except ConnectionClosed:
            pass
        finally:
            conns.discard(ws)
            if not conns:
                del self.by_user[user]
            self.file_id_listeners.discard(ws)

    # --- events ------------------------------------------------------------------

    def send_to(self, users: list[str], message: str) -> None:
        targets = [ws for u in users for ws in self.by_user.get(u, ())]
        if targets:
            broadcast(targets, message)

    def query_mapping(self, storage: int) -> list[tuple[str, str]]:
        db = sqlite3.connect(f"file:{self.sqlite_path}?mode=ro", uri=True)
        try:
            p = self.prefix
            rows = db.execute(
                f"SELECT m.user_id, f.path FROM {p}mounts m "
                f"INNER JOIN {p}filecache f ON m.root_id = f.fileid WHERE m.storage_id = ?",
                (storage,),
            ).fetchall()
        finally:
            db.close()
        return [(str(u), str(path or "")) for u, path in rows]

    async def users_for_storage(self, storage: int, path: str) -> list[str]:
        now = time.monotonic()
        cached = self.mapping.get(storage)
        if cached is None or cached[0] < now:
            rows = await asyncio.to_thread(self.query_mapping, storage)
            self.mapping[storage] = (now + random.uniform(240, 300), rows)
        else:
            rows = cached[1]
        return [u for u, root in rows if path.startswith(root)]

    async def storage_update(self, storage: int, path: str, file_id: int) -> None:
        users = await self.users_for_storage(storage, path)
        targets = [ws for u in users for ws in self.by_user.get(u, ())]
        plain = [ws for ws in targets if ws not in self.file_id_listeners]
        with_ids = [ws for ws in targets if ws in self.file_id_listeners]
        if plain:
            broadcast(plain, "notify_file")
        if with_ids:
            broadcast(with_ids, f"notify_file_id [{file_id}]")

    async def on_event(self, channel: str, data: Any) -> None:
        if channel == "notify_custom":
            body = data.get("body")
            message = str(data["message"])
            text = message if body is None else f"{message} {json.dumps(body)}"
            self.send_to([str(data["user"])], text)
        elif channel == "notify_activity":
            self.send_to([str(data["user"])], "notify_activity")
        elif channel == "notify_notification":
            self.send_to([str(data["user"])], "notify_notification")
        elif channel in ("notify_group_membership_update", "notify_user_share_created"):
            self.send_to([str(data["user"])], "notify_file")
        elif channel == "notify_storage_update":
            await self.storage_update(int(data["storage"]), str(data["path"]), int(data["file_id"]))
        elif channel == "notify_pre_auth":
            self.tokens[str(data["token"])] = (str(data["user"]), time.monotonic() + PRE_AUTH_TTL)
            if len(self.tokens) > 10_000:
                now = time.monotonic()
                self.tokens = {k: v for k, v in self.tokens.items() if v[1] > now}
        elif channel == "notify_signal" and data == "reset":
            for conns in list(self.by_user.values()):
                for ws in list(conns):
                    await ws.close(1001)

    async def consume_redis(self) -> None:
        pubsub = self.redis.pubsub()
        await pubsub.subscribe(*CHANNELS)
        async for msg in pubsub.listen():
            if msg.get("type") != "message":
                continue
            channel = msg["channel"].decode()
            try:
                await self.on_event(channel, json.loads(msg["data"]))
            except (ValueError, KeyError, TypeError, AttributeError) as e:
                log.warning("dropping malformed event on %s: %s", channel, e)
            except sqlite3.Error as e:
                log.warning("storage mapping failed for %s: %s", channel, e)

    async def run(self, host: str, port: int) -> None:
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=100)) as self.http:
            consumer = asyncio.create_task(self.consume_redis())
            try:
                async with serve(
                    self.handler,
                    host,
                    port,
                    compression=None,  # as notify_push: messages are tiny
                    ping_interval=30,
                    ping_timeout=30,
                    max_size=64 * 1024,
                    backlog=4096,
                ) as server:
                    log.warning("baseline listening on %s:%d", host, port)
                    await asyncio.gather(server.serve_forever(), consumer)
            finally:
                consumer.cancel()


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description="Single-process notify_push baseline")
    p.add_argument("--nextcloud-url", required=True)
    p.add_argument("--redis-url", required=True)
    p.add_argument("--database-url", required=True, help="sqlite:///absolute/path.db")
    p.add_argument("--database-prefix", default="oc_")
    p.add_argument("--bind", default="127.0.0.1")
    p.add_argument("-p", "--port", type=int, default=7867)
    args = p.parse_args(argv)
    if not args.database_url.startswith("sqlite://"):
        p.error("--database-url: the baseline supports only sqlite:///path")
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(message)s")
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    # sqlite:///abs/path.db (the gateway's documented form) and sqlite:////abs/path.db.
    path = args.database_url[len("sqlite://") :].split("?", 1)[0]
    if path.startswith("//"):
        path = path[1:]
    server = Baseline(args.nextcloud_url, args.redis_url, path, args.database_prefix)
    with contextlib.suppress(KeyboardInterrupt):
        uvloop.run(server.run(args.bind, args.port))


if __name__ == "__main__":
    main()
