"""The gateway's one validated, frozen configuration object.

Every default is the field's default and every bound is checked once, at
construction, whoever builds the object (the command line, a test). The
command line (:mod:`shared.config.cli`) turns the admin's text into typed
values and names the option when :class:`InvalidValue` says one is out of
bounds. Built once by the supervisor, pickled or inherited by every child.
"""

from __future__ import annotations

import os
import re
import socket
from dataclasses import Field, dataclass, field, fields

from shared.config.urls import DatabaseTarget, RedisTarget, mask_url

LOG_LEVELS = ("trace", "debug", "info", "warn", "error")
MAX_WORKERS = 1024
# A year is far beyond any sensible debounce or connection limit, and bounding
# it keeps timer arithmetic in range.
_YEAR = 86400 * 365
_PREFIX_RE = re.compile(r"[A-Za-z0-9_]{0,64}")

# Field metadata keys: the rule a value must keep (a function saying what is
# wrong with it), and how --dump-config shows a field (under another key, or
# through a function).
_CHECK = "check"
_DUMP_KEY = "dump_key"
_DUMP_AS = "dump_as"


class InvalidValue(ValueError):
    """A :class:`Config` field is out of its bounds; ``field`` names it, ``reason`` says why."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason


@dataclass(frozen=True, slots=True)
class Bounds:
    """The closed range ``low..high`` a number must be in (``low`` excluded with ``above``)."""

    low: float
    high: float
    unit: str = ""
    above: bool = False

    def __call__(self, value: object) -> str | None:
        """Why ``value`` is out of bounds, or None (also for None: the field is unset)."""
        if not isinstance(value, int | float):
            return None
        if self.above and not self.low < value <= self.high:
            return f"{value} is not more than {self.low} and at most {self.high}{self.unit}"
        if not self.low <= value <= self.high:
            return f"{value} is not in {self.low}..{self.high}{self.unit}"
        return None


def validate_prefix(prefix: str) -> str:
    """Return ``prefix`` if it is safe to paste into SQL, else raise ValueError.

    Table names cannot be bound as parameters, so the prefix is interpolated;
    restricting it to letters, digits and underscores keeps that safe.
    """
    if not _PREFIX_RE.fullmatch(prefix):
        raise ValueError(f"{prefix!r} may contain only letters, digits and '_' (at most 64)")
    return prefix


def _prefix_problem(value: object) -> str | None:
    try:
        validate_prefix(str(value))
    except ValueError as exc:
        return str(exc)
    return None


def _key_prefix_problem(value: object) -> str | None:
    text = str(value)
    # Braces would make the prefix a Redis Cluster hash tag and move keys that
    # must share a slot apart; whitespace and control bytes make keys unreadable.
    if not 0 < len(text) <= 64 or any(
        c in "{}" or not c.isprintable() or c.isspace() for c in text
    ):
        return f"{text!r} must be 1 to 64 printable characters without spaces or braces"
    return None


def _log_level_problem(value: object) -> str | None:
    if value in LOG_LEVELS:
        return None
    return f"unknown log level {value!r} (one of {', '.join(LOG_LEVELS)})"


def default_bind() -> str:
    """``::`` when this host can listen on IPv6 (which also takes IPv4), else ``0.0.0.0``."""
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as probe:
            probe.bind(("::", 0))
    except OSError:
        return "0.0.0.0"
    return "::"


def _cpu_count() -> int:
    return os.cpu_count() or 1


def _octal(mode: int) -> str:
    return f"{mode:04o}"


_PORT = {_CHECK: Bounds(1, 65535)}
_SECONDS = {_CHECK: Bounds(0, 3600, " seconds")}


@dataclass(frozen=True, slots=True, repr=False)
class Config:
    """Effective configuration. Secrets live only inside the targets."""

    nextcloud_url: str = field(metadata={_DUMP_AS: mask_url})
    redis: tuple[RedisTarget, ...] = field(metadata={_DUMP_KEY: "redis_urls"})
    database: DatabaseTarget | None = field(default=None, metadata={_DUMP_KEY: "database_url"})
    database_prefix: str = field(default="oc_", metadata={_CHECK: _prefix_problem})
    redis_tls_cert: str | None = None
    redis_tls_key: str | None = None
    redis_tls_ca: str | None = None
    redis_tls_dont_validate_hostname: bool = False
    redis_tls_insecure: bool = False
    # Every key the gateway writes starts with this (several instances share them).
    redis_key_prefix: str = field(
        default="notify_push_gateway:", metadata={_CHECK: _key_prefix_problem}
    )
    bind: str = field(default_factory=default_bind)
    port: int = field(default=7867, metadata=_PORT)
    socket_path: str | None = None
    socket_permissions: int = field(default=0o660, metadata={_DUMP_AS: _octal})
    metrics_port: int | None = field(default=None, metadata=_PORT)
    metrics_socket_path: str | None = None
    tls_cert: str | None = None
    tls_key: str | None = None
    allow_self_signed: bool = False
    user_agent: str | None = None
    log_level: str = field(default="warn", metadata={_CHECK: _log_level_problem})
    no_ansi: bool = False
    max_debounce_time: int = field(default=15, metadata={_CHECK: Bounds(0, _YEAR)})
    max_connection_time: int = field(default=0, metadata={_CHECK: Bounds(0, _YEAR)})
    debounce_disable: bool = False
    workers: int = field(default_factory=_cpu_count, metadata={_CHECK: Bounds(1, MAX_WORKERS)})
    # Seconds over which client connections are closed on shutdown, so that
    # clients do not all reconnect in the same second.
    drain_time: float = field(default=3.0, metadata=_SECONDS)
    # Seconds a client has to send its credentials after the handshake.
    auth_timeout: float = field(
        default=15.0, metadata={_CHECK: Bounds(0, 3600, " seconds", above=True)}
    )
    config_file: str | None = None

    def __post_init__(self) -> None:
        """Raises :class:`InvalidValue` naming the first field out of its bounds."""
        for spec in fields(self):
            problem = _problem(spec, getattr(self, spec.name))
            if problem is not None:
                raise InvalidValue(spec.name, problem)
        if not self.redis:
            raise InvalidValue("redis", "no Redis server configured")
        if (self.tls_cert is None) != (self.tls_key is None):
            given = "tls_cert" if self.tls_cert is not None else "tls_key"
            raise InvalidValue(given, "TLS needs both --tls-cert and --tls-key")

    def dump(self) -> dict[str, object]:
        """The configuration as JSON-able data with every secret replaced by ``***``."""
        return {
            str(spec.metadata.get(_DUMP_KEY, spec.name)): _shown(spec, getattr(self, spec.name))
            for spec in fields(self)
        }

    def __repr__(self) -> str:
        # The dataclass repr would show the Nextcloud URL as written; this one
        # shows every field as --dump-config does, secrets masked.
        shown = (f"{spec.name}={_shown(spec, getattr(self, spec.name))!r}" for spec in fields(self))
        return f"Config({', '.join(shown)})"


_FIELDS = {spec.name: spec for spec in fields(Config)}


def field_problem(name: str, value: object) -> str | None:
    """Why ``value`` cannot be Config field ``name``, or None.

    The rule :class:`Config` applies at construction, for a builder that wants
    to name the option as soon as it has converted the admin's text.
    """
    return _problem(_FIELDS[name], value)


def _problem(spec: Field[object], value: object) -> str | None:
    check = spec.metadata.get(_CHECK)
    problem = check(value) if callable(check) else None
    return None if problem is None else str(problem)


def _shown(spec: Field[object], value: object) -> object:
    """``value`` of field ``spec`` as --dump-config shows it."""
    dump_as = spec.metadata.get(_DUMP_AS)
    if callable(dump_as):
        return dump_as(value)
    if isinstance(value, DatabaseTarget | RedisTarget):
        return value.masked
    if isinstance(value, tuple):
        return [_shown(spec, item) for item in value]
    return value
