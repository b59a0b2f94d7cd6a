"""Logging set-up shared by every process.

Levels use notify_push's names (trace, debug, info, warn, error). A
``notify_config`` event can change the level of every process at run time
(:func:`set_level`) and restore the configured one (:func:`restore_level`).
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable

TRACE = 5
_LEVELS = {
    "trace": TRACE,
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warn": logging.WARNING,
    "warning": logging.WARNING,
    "error": logging.ERROR,
    "off": logging.CRITICAL + 10,
}
_configured = logging.WARNING


def parse_level(spec: str) -> int:
    """The level of a notify_push log spec (``debug``, ``notify_push=debug,warn``...).

    Raises ValueError for a spec with no recognised level. A module-filtered
    spec applies its most verbose level to the whole gateway: our components
    are not named like notify_push's Rust modules.
    """
    levels = []
    for part in spec.split(","):
        name = part.rpartition("=")[2].strip().lower()
        if name in _LEVELS:
            levels.append(_LEVELS[name])
    if not levels:
        raise ValueError(f"no log level in {spec!r}")
    return min(levels)


def setup_logging(level_name: str, process_name: str) -> None:
    """Configure the root logger for one process; ``process_name`` prefixes each line."""
    global _configured
    logging.addLevelName(TRACE, "TRACE")
    _configured = parse_level(level_name)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        logging.Formatter(f"%(asctime)s %(levelname)-5s {process_name} %(name)s: %(message)s")
    )
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(_configured)
    # Libraries log at debug with details we never want (aiohttp headers).
    logging.getLogger("aiohttp").setLevel(max(_configured, logging.INFO))
    # websockets logs every opened connection at info: far too much at scale.
    logging.getLogger("websockets").setLevel(max(_configured, logging.WARNING))


def set_level(spec: str) -> None:
    """Change this process's level at run time. Raises ValueError for a bad spec."""
    logging.getLogger().setLevel(parse_level(spec))


def restore_level() -> None:
    logging.getLogger().setLevel(_configured)


class Throttle:
    """At most one log line per ``interval`` seconds, saying how many were held back.

    For warnings that a flood of bad input would repeat thousands of times a
    second (invalid events, a Redis that keeps failing): the first is logged
    at once, the rest are counted and summed up in the next line that passes.
    """

    __slots__ = ("_clock", "_interval", "_log", "_next", "_suppressed")

    def __init__(
        self,
        log: logging.Logger,
        interval: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._log = log
        self._interval = interval
        self._clock = clock
        self._next = 0.0
        self._suppressed = 0

    def warning(self, message: str, *args: object, exc_info: bool = False) -> None:
        now = self._clock()
        if now < self._next:
            self._suppressed += 1
            return
        self._next = now + self._interval
        if self._suppressed:
            message += " (and %d similar in the last %.0f s)"
            args = (*args, self._suppressed, self._interval)
            self._suppressed = 0
        self._log.warning(message, *args, exc_info=exc_info)
