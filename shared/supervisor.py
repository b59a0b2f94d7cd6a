"""The supervisor: the process the admin starts. It serves nothing itself.

A plain synchronous loop: start the router and N workers, restart any child
that dies or stops heartbeating (same slot, with backoff), and on SIGTERM or
SIGINT stop in a fixed, bounded order: workers first (they stop accepting and
close their clients with 1001 over the drain time), then the router, then
SIGKILL for anything past the deadline. Signal handlers only record the
signal; the loop acts on it.

A supervisor killed outright (SIGKILL, OOM) leaves no child behind: each
child asks the kernel for SIGTERM when its parent dies (Linux
``PR_SET_PDEATHSIG``) and its heartbeat checks the parent is still the
supervisor (:mod:`shared.heartbeat`). The private IPC directory it leaves
(``notify-push-gateway-<pid>-…`` in the temporary folder) is removed by the
next supervisor that starts there.

What the children run is injected by the entry point (``shared/__main__.py``
passes ``run_router`` and ``run_worker``), so this module, like the rest of
``shared/``, imports nothing from ``router/`` or ``gateway/``; the tests run
it with dummy targets.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import gc
import logging
import multiprocessing
import os
import re
import shutil
import signal
import socket
import stat
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from multiprocessing.context import ForkProcess
from multiprocessing.sharedctypes import SynchronizedArray
from typing import TypeAlias

from shared import logs, systemd
from shared.config import Config
from shared.heartbeat import Heartbeat
from shared.listener import close_listener, open_listener, raise_file_limit

log = logging.getLogger("supervisor")

# The router process: (config, IPC socket path it listens on, its heartbeat).
RouterTarget: TypeAlias = Callable[[Config, str, Heartbeat], None]
# A worker process: (config, worker id 1..N, the router's IPC socket path,
# its heartbeat, the inherited Unix listener or None to bind TCP itself).
WorkerTarget: TypeAlias = Callable[[Config, int, str, Heartbeat, socket.socket | None], None]

ROUTER_SLOT = 0
LOOP_INTERVAL = 0.2
HEARTBEAT_TIMEOUT = 30.0
# A child gets this long after start before heartbeats are expected.
STARTUP_GRACE = 20.0
RESTART_BACKOFF_MAX = 10.0
KILL_GRACE = 5.0
# The private IPC directory: this prefix, the supervisor's pid, "-", random letters.
IPC_DIR_PREFIX = "notify-push-gateway-"
_IPC_DIR_NAME = re.compile(re.escape(IPC_DIR_PREFIX) + r"([0-9]+)-")


@dataclass
class Slot:
    index: int
    process: ForkProcess | None = None
    started: float = 0.0
    failures: int = 0
    restart_at: float = 0.0
    name: str = field(default="")


class Supervisor:
    """Runs the router in slot 0 and worker ``i`` in slot ``i`` until SIGTERM or SIGINT.

    The timing parameters default to what production uses; tests shorten them.
    """

    def __init__(
        self,
        config: Config,
        *,
        router: RouterTarget,
        worker: WorkerTarget,
        loop_interval: float = LOOP_INTERVAL,
        heartbeat_timeout: float = HEARTBEAT_TIMEOUT,
        startup_grace: float = STARTUP_GRACE,
        kill_grace: float = KILL_GRACE,
    ) -> None:
        self.config = config
        self._router = router
        self._worker = worker
        self._loop_interval = loop_interval
        self._heartbeat_timeout = heartbeat_timeout
        self._startup_grace = startup_grace
        self._kill_grace = kill_grace
        self._ctx = multiprocessing.get_context("fork")
        # One monotonic timestamp per slot in shared memory, without a lock:
        # each slot has one writer (its child) and one reader (this loop).
        self._heartbeats: SynchronizedArray[float] = self._ctx.Array(
            ctypes.c_double, config.workers + 1, lock=False
        )
        # Per slot: 1.0 while the child serves, and its connections (Heartbeat.report).
        self._status: SynchronizedArray[float] = self._ctx.Array(
            ctypes.c_double, 2 * (config.workers + 1), lock=False
        )
        self._notifier = systemd.Notifier()
        self._ready_notified = False
        self._slots = [Slot(i, name="router" if i == ROUTER_SLOT else f"worker-{i}")
                       for i in range(config.workers + 1)]  # fmt: skip
        self._stop_signal: int | None = None
        self._ipc_dir = ""
        self._unix_socket: socket.socket | None = None

    @property
    def ipc_path(self) -> str:
        return os.path.join(self._ipc_dir, "router.sock")

    def run(self) -> int:
        limit = raise_file_limit()
        # Logged at warning so it shows at the default level: capacity planning needs it.
        log.warning(
            "open-file limit %d per process: about %d connections per worker, %d in all",
            limit, limit - 64, (limit - 64) * self.config.workers,
        )  # fmt: skip
        self._unix_socket = open_listener(self.config)
        remove_stale_ipc_dirs(tempfile.gettempdir())
        # mkdtemp creates the directory with mode 0700: only our processes reach
        # the IPC socket. The pid in its name tells a later start whether it is stale.
        self._ipc_dir = tempfile.mkdtemp(prefix=f"{IPC_DIR_PREFIX}{os.getpid()}-")
        previous = {s: signal.signal(s, self._on_signal) for s in (signal.SIGTERM, signal.SIGINT)}
        try:
            for slot in self._slots:
                self._start(slot)
            while self._stop_signal is None:
                self._check_children()
                self._tell_systemd()
                time.sleep(self._loop_interval)
            log.info("signal %d received: shutting down", self._stop_signal)
            self._notifier.stopping()
            self._shutdown()
        finally:
            for signum, handler in previous.items():
                signal.signal(signum, handler)
            shutil.rmtree(self._ipc_dir, ignore_errors=True)
            close_listener(self.config, self._unix_socket)
            self._notifier.close()
        return 0

    def _on_signal(self, signum: int, _frame: object) -> None:
        self._stop_signal = signum

    def _start(self, slot: Slot) -> None:
        self._heartbeats[slot.index] = time.monotonic()
        self._status[2 * slot.index] = 0.0  # not serving until the new child says so
        self._status[2 * slot.index + 1] = 0.0
        heartbeat = Heartbeat(self._heartbeats, slot.index, self._status)
        run: Callable[[], None]
        if slot.index == ROUTER_SLOT:
            run = functools.partial(self._router, self.config, self.ipc_path, heartbeat)
        else:
            run = functools.partial(
                self._worker,
                self.config,
                slot.index,
                self.ipc_path,
                heartbeat,
                self._unix_socket,
            )
        process = self._ctx.Process(target=_child(slot.name, run), name=slot.name, daemon=False)
        # Objects inherited through fork stay shared (copy-on-write) only while
        # nothing writes to their pages; the collector's bookkeeping would, so
        # they are moved out of its reach first (see the gc module docs).
        gc.freeze()
        process.start()
        slot.process, slot.started = process, time.monotonic()
        log.info("started %s (pid %s)", slot.name, process.pid)

    def _check_children(self) -> None:
        now = time.monotonic()
        for slot in self._slots:
            process = slot.process
            if process is None:
                if now >= slot.restart_at:
                    self._start(slot)
                continue
            if process.is_alive():
                silent = now - self._heartbeats[slot.index]
                if now - slot.started > self._startup_grace and silent > self._heartbeat_timeout:
                    log.error("%s stopped heartbeating for %.0f s; killing it", slot.name, silent)
                    process.kill()
                continue
            process.join()
            lived = now - slot.started
            slot.failures = 0 if lived > 60 else slot.failures + 1
            delay = min(RESTART_BACKOFF_MAX, 0.1 * 2**slot.failures) if slot.failures else 0.0
            log.error(
                "%s (pid %s) exited with %s; restarting in %.1f s",
                slot.name, process.pid, process.exitcode, delay,
            )  # fmt: skip
            process.close()
            slot.process, slot.restart_at = None, now + delay

    def _tell_systemd(self) -> None:
        """READY=1 once every child serves (what /readyz checks), then STATUS, WATCHDOG."""
        self._notifier.watchdog()
        if not self._notifier.enabled:
            return
        slots = len(self._slots)
        serving = [self._status[2 * i] == 1.0 for i in range(slots)]
        connections = int(sum(self._status[2 * i + 1] for i in range(1, slots)))
        workers = sum(serving[1:])
        if not serving[ROUTER_SLOT]:
            status = "waiting for the router's Redis subscription"
        elif workers < slots - 1:
            status = f"{workers} of {slots - 1} workers linked"
        else:
            status = f"{connections} connections on {workers} workers"
        ready = all(serving)
        if ready and not self._ready_notified:
            self._ready_notified = True
            self._notifier.ready(status)
        else:
            self._notifier.status(status)

    def _shutdown(self) -> None:
        workers = [s for s in self._slots if s.index != ROUTER_SLOT]
        deadline = time.monotonic() + self.config.drain_time + self._kill_grace
        self._stop_and_wait(workers, deadline)
        self._stop_and_wait([self._slots[ROUTER_SLOT]], time.monotonic() + self._kill_grace)

    def _stop_and_wait(self, slots: list[Slot], deadline: float) -> None:
        running = [s.process for s in slots if s.process is not None]
        for process in running:
            if process.is_alive() and process.pid is not None:
                os.kill(process.pid, signal.SIGTERM)
        for process in running:
            process.join(max(0.0, deadline - time.monotonic()))
            if process.is_alive():
                log.warning("%s did not stop in time; killing it", process.name)
                process.kill()
                process.join()


def _set_process_name(name: str) -> None:
    """Name the process in ``ps``/``top`` (Linux ``comm``, 15 bytes).

    Admins, and the tests, tell the router and the workers apart by it.
    """
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        pr_set_name = 15
        libc.prctl(pr_set_name, f"npg-{name}".encode()[:15], 0, 0, 0)
    except (OSError, AttributeError):
        pass  # cosmetic only


def remove_stale_ipc_dirs(folder: str) -> None:
    """Remove the IPC directories in ``folder`` that supervisors no longer running left.

    Only directories named with a supervisor's pid (``notify-push-gateway-<pid>-…``)
    are considered, only ours, and only when no process has that pid: a live
    supervisor's directory, or another user's, is never touched.
    """
    try:
        entries = os.listdir(folder)
    except OSError:
        return
    for entry in entries:
        match = _IPC_DIR_NAME.match(entry)
        if match is None or _pid_alive(int(match.group(1))):
            continue
        path = os.path.join(folder, entry)
        try:
            info = os.lstat(path)
        except OSError:
            continue
        if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.getuid():
            continue  # a link or someone else's: not ours to remove
        shutil.rmtree(path, ignore_errors=True)
        log.info("removed %s, left by a supervisor that no longer runs", path)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True  # exists, but not ours to signal
    return True


def _die_with_parent() -> None:
    """Have the kernel send this child SIGTERM when the supervisor dies (Linux only)."""
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        pr_set_pdeathsig = 1
        libc.prctl(pr_set_pdeathsig, signal.SIGTERM, 0, 0, 0)


def _child(name: str, run: Callable[[], None]) -> Callable[[], None]:
    """Wrap a child entry point: name, default signal dispositions, then run it."""
    supervisor = os.getpid()  # built in the supervisor, before the fork

    def main() -> None:
        _set_process_name(name)
        gc.enable()
        # The supervisor's Python handlers are inherited by fork; each child
        # installs its own on its event loop.
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        _die_with_parent()
        if os.getppid() != supervisor:
            return  # the supervisor died before the death signal was set
        run()

    return main


def run_supervisor(config: Config, *, router: RouterTarget, worker: WorkerTarget) -> int:
    """Run the router and the workers until SIGTERM or SIGINT; returns the exit status.

    Raises ConfigError when the public listener cannot be bound.
    """
    # No collections in the parent: children inherit its objects untouched.
    gc.disable()
    logs.setup_logging(config.log_level, "supervisor")
    return Supervisor(config, router=router, worker=worker).run()
