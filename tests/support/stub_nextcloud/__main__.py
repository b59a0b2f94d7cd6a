"""``python -m tests.support.stub_nextcloud``: run the stub Nextcloud until interrupted.

Prints ``ready http://HOST:PORT`` on stdout once listening.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys

from tests.support.stub_nextcloud.server import StubNextcloud, create_demo_database, generated_users


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.support.stub_nextcloud")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--redis-url")
    parser.add_argument("--sqlite", help="create the Nextcloud tables with demo mounts here")
    parser.add_argument("--generated-users", type=int, default=0)
    parser.add_argument("--user", action="append", default=[], metavar="NAME:PASSWORD")
    args = parser.parse_args()
    users = generated_users(args.generated_users)
    for item in args.user:
        name, sep, password = item.partition(":")
        if not sep or not name:
            parser.error(f"--user {item!r} is not NAME:PASSWORD")
        users[name] = password
    if args.sqlite:
        create_demo_database(args.sqlite, users)

    async def serve() -> None:
        stub = StubNextcloud(users, args.redis_url)
        url = await stub.start(args.host, args.port)
        print(f"ready {url}", flush=True)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop.set)
        await stop.wait()
        await stub.stop()

    asyncio.run(serve())
    return 0


if __name__ == "__main__":
    sys.exit(main())
