"""Telling systemd how the gateway is doing (``Type=notify``), without a dependency.

systemd passes the path of a datagram socket in ``$NOTIFY_SOCKET``; the
service writes ``KEY=value`` lines to it (sd_notify(3)): ``READY=1`` once it
serves, ``STOPPING=1`` when the drain starts, ``STATUS=...`` for
``systemctl status``, ``WATCHDOG=1`` at least every half of ``WatchdogSec``
when the unit asks for a watchdog (``$WATCHDOG_USEC``, for ``$WATCHDOG_PID``).
Without ``$NOTIFY_SOCKET`` every call does nothing, so the supervisor calls
them unconditionally.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from collections.abc import Callable, Mapping

log = logging.getLogger("shared.systemd")


class Notifier:
    """The supervisor's side of sd_notify. Never raises: a lost datagram is only logged."""

    def __init__(
        self,
        environ: Mapping[str, str] = os.environ,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._clock = clock
        self._address = _address(environ.get("NOTIFY_SOCKET", ""))
        self._socket: socket.socket | None = None
        if self._address is not None:
            self._socket = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
            self._socket.setblocking(False)
        self.watchdog_interval = _watchdog_interval(environ)
        self._next_watchdog = 0.0
        self._status = ""

    @property
    def enabled(self) -> bool:
        return self._socket is not None

    def ready(self, status: str) -> None:
        self._status = status
        self._send(f"READY=1\nSTATUS={status}")

    def stopping(self, status: str = "draining client connections") -> None:
        self._status = status
        self._send(f"STOPPING=1\nSTATUS={status}")

    def status(self, status: str) -> None:
        """``STATUS=``, sent only when the text changed."""
        if status != self._status:
            self._status = status
            self._send(f"STATUS={status}")

    def watchdog(self) -> None:
        """``WATCHDOG=1`` when due (twice per ``WatchdogSec``); cheap to call every loop."""
        if self.watchdog_interval is None:
            return
        now = self._clock()
        if now >= self._next_watchdog:
            self._next_watchdog = now + self.watchdog_interval
            self._send("WATCHDOG=1")

    def close(self) -> None:
        if self._socket is not None:
            self._socket.close()
            self._socket = None

    def _send(self, message: str) -> None:
        if self._socket is None or self._address is None:
            return
        try:
            self._socket.sendto(message.encode(), self._address)
        except OSError as exc:
            log.warning("could not notify systemd: %s", exc.__class__.__name__)


def _address(path: str) -> str | bytes | None:
    if not path:
        return None
    if path.startswith("@"):
        return b"\0" + path[1:].encode()  # Linux abstract namespace
    if not path.startswith("/"):
        log.warning("ignoring NOTIFY_SOCKET %r: not a socket path", path)
        return None
    return path


def _watchdog_interval(environ: Mapping[str, str]) -> float | None:
    """Half of ``WATCHDOG_USEC`` in seconds, if the watchdog is meant for this process."""
    usec = environ.get("WATCHDOG_USEC", "")
    pid = environ.get("WATCHDOG_PID", "")
    if not (usec.isascii() and usec.isdigit()) or int(usec) == 0:
        return None
    if pid and (not (pid.isascii() and pid.isdigit()) or int(pid) != os.getpid()):
        return None
    return int(usec) / 2 / 1_000_000
