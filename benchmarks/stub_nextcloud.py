"""Stand-in stub Nextcloud for the benchmarks, used until ``shared.stub_nextcloud`` exists.

Same command line contract as the lead's stub::

    python -m benchmarks.stub_nextcloud --host 127.0.0.1 --port P --redis-url URL \
        --sqlite PATH --generated-users N [--user NAME:PASSWORD ...]

prints ``ready http://127.0.0.1:P`` once listening, answers
``GET /index.php/apps/notify_push/uid`` with HTTP Basic auth (200 + user id,
401 otherwise), and creates the Nextcloud tables in the SQLite file: every user
has a mount of storage 1 at root path "" and user ``i`` alone has storage
``1000 + i``. ``GET /stub/stats`` (this stand-in only) returns how many uid
requests it answered, so the benchmark can count requests per login.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import binascii
import sqlite3
import sys
from pathlib import Path

from aiohttp import web


def create_database(path: Path, users: list[str], prefix: str = "oc_") -> None:
    """(Re)create the two tables the storage mapping query reads (PROTOCOL.md section 3)."""
    path.unlink(missing_ok=True)
    db = sqlite3.connect(path)
    try:
        db.execute(
            f"CREATE TABLE {prefix}filecache (fileid INTEGER PRIMARY KEY, storage INTEGER, "
            "path TEXT NOT NULL DEFAULT '')"
        )
        db.execute(
            f"CREATE TABLE {prefix}mounts (id INTEGER PRIMARY KEY, storage_id INTEGER, "
            "root_id INTEGER, user_id TEXT, mount_point TEXT)"
        )
        db.execute(f"CREATE INDEX {prefix}mounts_storage ON {prefix}mounts (storage_id)")
        # fileid 1: the root of the shared storage 1; 2 + i: the root of storage 1000 + i.
        db.execute(f"INSERT INTO {prefix}filecache VALUES (1, 1, '')")
        db.executemany(
            f"INSERT INTO {prefix}filecache VALUES (?, ?, '')",
            ((2 + i, 1000 + i) for i in range(len(users))),
        )
        db.executemany(
            f"INSERT INTO {prefix}mounts (storage_id, root_id, user_id, mount_point) "
            "VALUES (?, ?, ?, ?)",
            (
                row
                for i, u in enumerate(users)
                for row in ((1, 1, u, f"/{u}/"), (1000 + i, 2 + i, u, f"/{u}/files/own/"))
            ),
        )
        db.commit()
    finally:
        db.close()


def build_app(passwords: dict[str, str]) -> web.Application:
    stats = {"uid_requests": 0}

    async def uid(request: web.Request) -> web.Response:
        stats["uid_requests"] += 1
        header = request.headers.get("Authorization", "")
        if header.startswith("Basic "):
            try:
                user, _, password = base64.b64decode(header[6:]).decode().partition(":")
            except (binascii.Error, UnicodeDecodeError):
                return web.Response(status=400)
            if passwords.get(user) == password:
                return web.Response(text=user)
        return web.Response(status=401)

    async def get_stats(request: web.Request) -> web.Response:
        return web.json_response(stats)

    async def version(request: web.Request) -> web.Response:
        return web.Response(text="")

    app = web.Application()
    app.router.add_get("/index.php/apps/notify_push/uid", uid)
    app.router.add_get("/index.php/apps/notify_push/test/version", version)
    app.router.add_get("/stub/stats", get_stats)
    return app


async def serve(args: argparse.Namespace) -> None:
    users = [f"user{i}" for i in range(args.generated_users)]
    passwords = {u: f"password-{u}" for u in users}
    for spec in args.user:
        name, _, password = spec.partition(":")
        passwords[name] = password
        if name not in users:
            users.append(name)
    create_database(Path(args.sqlite), users)
    runner = web.AppRunner(build_app(passwords), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, args.host, args.port, backlog=4096)
    await site.start()
    print(f"ready http://{args.host}:{args.port}", flush=True)
    try:
        await asyncio.Event().wait()
    finally:
        await runner.cleanup()


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--redis-url", help="accepted for contract compatibility; unused")
    p.add_argument("--sqlite", required=True)
    p.add_argument("--generated-users", type=int, default=0)
    p.add_argument("--user", action="append", default=[], metavar="NAME:PASSWORD")
    args = p.parse_args(argv)
    try:
        asyncio.run(serve(args))
    except KeyboardInterrupt:
        pass
    sys.exit(0)


if __name__ == "__main__":
    main()
