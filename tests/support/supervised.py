"""The real supervisor over dummy children, for tests/shared/test_supervisor.py.

Run as ``python -m tests.support.supervised EVENTS SOCKET_PATH [options]`` in
its own process: the supervisor installs signal handlers, which only the main
thread may do. No router, worker, Redis or network: each child appends
``EVENT NAME PID [listener]`` lines to EVENTS (first ``deathsig NAME PID
SIGNAL``, the parent-death signal it runs with, 0 for none) and heartbeats
until told otherwise by a signal from the test:

- SIGUSR1: exit with status 3 (a crash);
- SIGUSR2: stop heartbeating, keep running (a stuck event loop);
- SIGTERM: append ``stop NAME PID`` and exit 0, unless NAME is ``--stubborn``,
  which appends ``ignore NAME PID`` and keeps running.

The child named by ``--no-deathsig`` turns off the parent-death signal the
supervisor asked the kernel for, so only its heartbeat's check on the
supervisor can stop it once the supervisor is gone.
"""

from __future__ import annotations

import argparse
import ctypes
import os
import signal
import socket
import sys
import time
from types import FrameType

from shared import logs
from shared.config import Config, parse_redis_url
from shared.heartbeat import Heartbeat
from shared.supervisor import Supervisor

# Far below the heartbeat timeout the test sets, so a healthy child is never
# taken for a stuck one.
BEAT_INTERVAL = 0.02
CRASH_STATUS = 3
PR_SET_PDEATHSIG = 1
PR_GET_PDEATHSIG = 2


class Dummy:
    """The children's targets; the options are inherited through fork."""

    def __init__(self, events: str, stubborn: str | None, no_deathsig: str | None) -> None:
        self.events = events
        self.stubborn = stubborn
        self.no_deathsig = no_deathsig

    def router(self, config: Config, ipc_path: str, heartbeat: Heartbeat) -> None:
        self._serve("router", heartbeat, "")

    def worker(
        self,
        config: Config,
        worker_id: int,
        ipc_path: str,
        heartbeat: Heartbeat,
        listener: socket.socket | None,
    ) -> None:
        self._serve(f"worker-{worker_id}", heartbeat, "listener" if listener is not None else "")

    def _record(self, *words: str) -> None:
        # One write() on an O_APPEND file: lines from several children never interleave.
        fd = os.open(self.events, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            os.write(fd, (" ".join(w for w in words if w) + "\n").encode())
        finally:
            os.close(fd)

    def _serve(self, name: str, heartbeat: Heartbeat, extra: str) -> None:
        pid = str(os.getpid())
        beating = True

        def crash(_signum: int, _frame: FrameType | None) -> None:
            os._exit(CRASH_STATUS)

        def hang(_signum: int, _frame: FrameType | None) -> None:
            nonlocal beating
            beating = False

        def stop(_signum: int, _frame: FrameType | None) -> None:
            if name == self.stubborn:
                self._record("ignore", name, pid)
                return
            self._record("stop", name, pid)
            os._exit(0)

        signal.signal(signal.SIGUSR1, crash)
        signal.signal(signal.SIGUSR2, hang)
        signal.signal(signal.SIGTERM, stop)
        libc = ctypes.CDLL(None, use_errno=True)
        if name == self.no_deathsig:
            libc.prctl(PR_SET_PDEATHSIG, 0, 0, 0, 0)
        deathsig = ctypes.c_int(0)
        libc.prctl(PR_GET_PDEATHSIG, ctypes.byref(deathsig), 0, 0, 0)
        self._record("deathsig", name, pid, str(deathsig.value))
        # Only now: the test signals a child once it has seen this line.
        self._record("start", name, pid, extra)
        while True:
            if beating:
                heartbeat.beat()
            time.sleep(BEAT_INTERVAL)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("events")
    parser.add_argument("socket_path")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--stubborn", help="the child (router, worker-N) that ignores SIGTERM")
    parser.add_argument("--no-deathsig", help="the child that turns off its parent-death signal")
    parser.add_argument("--heartbeat-timeout", type=float, required=True)
    parser.add_argument("--kill-grace", type=float, required=True)
    args = parser.parse_args()
    config = Config(
        nextcloud_url="http://nextcloud.invalid",
        redis=(parse_redis_url("redis://127.0.0.1:1/0"),),  # never used: the children are dummies
        socket_path=args.socket_path,
        workers=args.workers,
        drain_time=0.0,
    )
    dummy = Dummy(args.events, args.stubborn, args.no_deathsig)
    logs.setup_logging("info", "supervisor")
    supervisor = Supervisor(
        config,
        router=dummy.router,
        worker=dummy.worker,
        loop_interval=0.05,
        heartbeat_timeout=args.heartbeat_timeout,
        startup_grace=0.0,
        kill_grace=args.kill_grace,
    )
    return supervisor.run()


if __name__ == "__main__":
    sys.exit(main())
