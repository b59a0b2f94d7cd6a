"""The supervisor: the process the admin starts. It serves nothing itself.

A plain synchronous loop: start the router and N workers, restart any child
that dies or stops heartbeating (same slot, with backoff), and on SIGTERM or
SIGINT stop in a fixed, bounded order: workers first (they stop accepting and
close their clients with 1001 over the drain time), then the router, then
SIGKILL for anything past the deadline. Signal handlers only record the
signal; the loop acts on it.
"""

from __future__ import annotations

import contextlib
import ctypes
import gc
import logging
import multiprocessing
import os
import resource
import shutil
import signal
import socket
import stat
import tempfile
import time
from dataclasses import dataclass, field
from multiprocessing.context import ForkProcess
from typing import Any

from gateway.worker import bind_tcp, run_worker
from router.router import run_router
from shared import logs
from shared.config import Config
from shared.errors import ConfigError
from shared.heartbeat import Heartbeat

log = logging.getLogger("supervisor")

ROUTER_SLOT = 0
LOOP_INTERVAL = 0.2
HEARTBEAT_TIMEOUT = 30.0
# A child gets this long after start before heartbeats are expected.
STARTUP_GRACE = 20.0
RESTART_BACKOFF_MAX = 10.0
KILL_GRACE = 5.0


@dataclass
class Slot:
    index: int
    process: ForkProcess | None = None
    started: float = 0.0
    failures: int = 0
    restart_at: float = 0.0
    name: str = field(default="")


def raise_file_limit() -> int:
    """Raise the soft RLIMIT_NOFILE to the hard limit; returns the new soft limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY:
        hard = 1_048_576
    if soft < hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            soft = hard
        except (ValueError, OSError):
            pass
    return soft


class Supervisor:
    def __init__(self, config: Config) -> None:
        self.config = config
        self._ctx = multiprocessing.get_context("fork")
        self._heartbeats: Any = self._ctx.Array(ctypes.c_double, config.workers + 1, lock=False)
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
        self._prepare_listener()
        # mkdtemp creates the directory with mode 0700: only our processes reach the IPC socket.
        self._ipc_dir = tempfile.mkdtemp(prefix="notify-push-gateway-")
        previous = {s: signal.signal(s, self._on_signal) for s in (signal.SIGTERM, signal.SIGINT)}
        try:
            for slot in self._slots:
                self._start(slot)
            while self._stop_signal is None:
                self._check_children()
                time.sleep(LOOP_INTERVAL)
            log.info("signal %d received: shutting down", self._stop_signal)
            self._shutdown()
        finally:
            for signum, handler in previous.items():
                signal.signal(signum, handler)
            shutil.rmtree(self._ipc_dir, ignore_errors=True)
            if self.config.socket_path and self._unix_socket is not None:
                self._unix_socket.close()
                with contextlib.suppress(OSError):
                    os.unlink(self.config.socket_path)
        return 0

    def _on_signal(self, signum: int, _frame: object) -> None:
        self._stop_signal = signum

    def _prepare_listener(self) -> None:
        config = self.config
        if config.socket_path:
            path = config.socket_path
            try:
                if stat.S_ISSOCK(os.stat(path).st_mode):
                    os.unlink(path)  # a stale socket from a previous run
            except FileNotFoundError:
                pass
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                sock.bind(path)
            except OSError as exc:
                raise ConfigError("--socket-path", "config", f"cannot bind {path}: {exc}") from exc
            os.chmod(path, config.socket_permissions)
            sock.listen(4096)
            sock.setblocking(False)
            self._unix_socket = sock
            return
        # Fail early and clearly if the port is taken; workers bind their own sockets.
        try:
            bind_tcp(config.bind, config.port).close()
        except OSError as exc:
            raise ConfigError(
                "--port", "config", f"cannot listen on {config.bind}:{config.port}: {exc}"
            ) from exc

    def _start(self, slot: Slot) -> None:
        self._heartbeats[slot.index] = time.monotonic()
        heartbeat = Heartbeat(self._heartbeats, slot.index)
        if slot.index == ROUTER_SLOT:
            target: Any = _child(slot.name, run_router, self.config, self.ipc_path, heartbeat)
        else:
            target = _child(
                slot.name,
                run_worker,
                self.config,
                slot.index,
                self.ipc_path,
                heartbeat,
                self._unix_socket,
            )
        process = self._ctx.Process(target=target, name=slot.name, daemon=False)
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
                if now - slot.started > STARTUP_GRACE and silent > HEARTBEAT_TIMEOUT:
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

    def _shutdown(self) -> None:
        workers = [s for s in self._slots if s.index != ROUTER_SLOT]
        deadline = time.monotonic() + self.config.drain_time + KILL_GRACE
        self._stop_and_wait(workers, deadline)
        self._stop_and_wait([self._slots[ROUTER_SLOT]], time.monotonic() + KILL_GRACE)

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


def _child(name: str, function: Any, *args: Any) -> Any:
    """Wrap a child entry point: name, default signal dispositions, then run it."""

    def main() -> None:
        _set_process_name(name)
        gc.enable()
        # The supervisor's Python handlers are inherited by fork; each child
        # installs its own on its event loop.
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        function(*args)

    return main


def run_supervisor(config: Config) -> int:
    if config.database_url is not None:
        # Raises ConfigError (exit 2) before any child starts: a router that
        # lacks its driver would otherwise be restarted forever.
        from router.databases import parse_database_url, require_driver

        require_driver(parse_database_url(config.database_url, warn=False))
    # No collections in the parent: children inherit its objects untouched.
    gc.disable()
    logs.setup_logging(config.log_level, "supervisor")
    return Supervisor(config).run()
