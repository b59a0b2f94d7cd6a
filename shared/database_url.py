"""The parsed form of ``--database-url`` and the table prefix, checked without I/O.

The configuration checks them at start-up (a bad value is exit 2, naming the
option) and the router's storage mapping opens its database from them. Parsing
imports no driver, so an admin on SQLite never needs asyncpg or asyncmy.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from typing import Literal
from urllib.parse import parse_qsl, unquote, urlsplit

from shared.errors import ConfigError
from shared.urls import mask_url

log = logging.getLogger("shared.database_url")

Dialect = Literal["postgres", "mysql", "sqlite"]

_SCHEMES: dict[str, Dialect] = {
    "postgres": "postgres",
    "postgresql": "postgres",
    "mysql": "mysql",
    "mariadb": "mysql",
    "sqlite": "sqlite",
}
_DEFAULT_PORTS = {"postgres": 5432, "mysql": 3306}
# Query parameters each dialect understands; others are ignored with a warning,
# as notify_push's driver does, so an admin's existing URL keeps working.
_KNOWN_PARAMS = {"postgres": {"host", "port", "sslmode"}, "mysql": {"socket"}, "sqlite": set()}
_SSLMODES = {"disable", "allow", "prefer", "require", "verify-ca", "verify-full"}
_PREFIX_RE = re.compile(r"[A-Za-z0-9_]{0,64}")


@dataclass(frozen=True, slots=True)
class DatabaseTarget:
    """Where the database is; ``socket`` replaces host and port when set.

    For PostgreSQL ``socket`` is the directory holding ``.s.PGSQL.<port>``
    (libpq's meaning of ``host=/run/postgresql``); for MySQL it is the socket
    file itself. For SQLite only ``database`` (the absolute file path) is used.
    """

    dialect: Dialect
    database: str
    host: str | None = None
    port: int | None = None
    user: str | None = None
    password: str | None = None
    socket: str | None = None
    sslmode: str | None = None
    masked_url: str = ""

    def __repr__(self) -> str:
        # The default repr would print the password.
        return f"DatabaseTarget({self.masked_url!r})"


def validate_prefix(prefix: str) -> str:
    """Return ``prefix`` if it is safe to paste into SQL, else raise ConfigError.

    Table names cannot be bound as parameters, so the prefix is interpolated;
    restricting it to letters, digits and underscores keeps that safe.
    """
    if not _PREFIX_RE.fullmatch(prefix):
        raise ConfigError(
            "--database-prefix",
            "config",
            f"{prefix!r} may contain only letters, digits and '_' (at most 64)",
        )
    return prefix


def parse_database_url(url: str, *, warn: bool = True) -> DatabaseTarget:
    """Parse ``--database-url``; raise ConfigError naming the option when it is unusable.

    ``warn=False`` for the configuration's check: the router warns about ignored
    parameters once, when it opens the database.
    """

    def bad(message: str) -> ConfigError:
        return ConfigError("--database-url", "config", message)

    try:
        parts = urlsplit(url.strip())
        port_text = parts.port  # raises ValueError for a non-numeric or out-of-range port
    except ValueError as exc:
        raise bad(f"{mask_url(url)} is not a valid URL: {exc}") from None
    masked = mask_url(url)
    dialect = _SCHEMES.get(parts.scheme.lower())
    if dialect is None:
        raise bad(
            f"unsupported scheme {parts.scheme!r} in {masked}; use postgres://, mysql:// or sqlite://"
        )
    params: dict[str, str] = {}
    for key, value in parse_qsl(parts.query, keep_blank_values=True):
        if key in _KNOWN_PARAMS[dialect]:
            params[key] = value
        elif warn:
            log.warning("ignoring unknown parameter %r in database URL %s", key, masked)

    if dialect == "sqlite":
        # sqlite:///abs/path gives netloc "" and path "/abs/path".
        path = unquote(parts.path)
        if parts.netloc or not path.startswith("/") or path == "/":
            raise bad(f"{masked}: use sqlite:///absolute/path/to/file.db")
        return DatabaseTarget(dialect="sqlite", database=path, masked_url=masked)

    database = unquote(parts.path.lstrip("/"))
    if "/" in database:
        raise bad(f"{masked}: the path must be just the database name")
    user = unquote(parts.username) if parts.username else None
    password = unquote(parts.password) if parts.password is not None else None
    host = parts.hostname or None
    port = port_text
    socket: str | None = None
    sslmode: str | None = None

    if dialect == "postgres":
        query_host = params.get("host")
        if query_host:
            if query_host.startswith("/"):
                socket = query_host
            else:
                host = query_host
        if "port" in params:
            try:
                port = int(params["port"])
            except ValueError:
                raise bad(f"{masked}: port {params['port']!r} is not a number") from None
        sslmode = params.get("sslmode")
        if sslmode is not None and sslmode not in _SSLMODES:
            raise bad(f"{masked}: unknown sslmode {sslmode!r}")
        if not database:
            # libpq's default: the database named like the user.
            database = user or "postgres"
    else:
        socket = params.get("socket") or None
        if socket is not None and not socket.startswith("/"):
            raise bad(f"{masked}: socket must be an absolute path")
        if not database:
            raise bad(f"{masked}: no database name (mysql://user:pass@host:port/dbname)")

    if port is not None and not 0 < port < 65536:
        raise bad(f"{masked}: {port} is not a TCP port")
    if socket is None and host is None:
        host = "localhost"
    return DatabaseTarget(
        dialect=dialect,
        database=database,
        host=host,
        port=port if port is not None else _DEFAULT_PORTS[dialect],
        user=user,
        password=password,
        socket=socket,
        sslmode=sslmode,
        masked_url=masked,
    )
