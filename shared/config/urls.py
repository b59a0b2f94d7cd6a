"""The one grammar of database and Redis URLs, parsed once into frozen targets.

A URL the admin writes (``--database-url``, ``--redis-url`` or their
environment variables) is parsed here into a :class:`DatabaseTarget` or a
:class:`RedisTarget`; config.php's entries are translated into the same
targets. Everything after that (``--dump-config``, the router's database and
Redis clients, the logs) reads the targets and never parses text again.

Forms (DESIGN.md): ``postgres://user:pass@host:port/db``,
``postgres://user:pass@/db?host=/run/postgresql`` (socket folder),
``mysql://user:pass@host:port/db``, ``mysql://user:pass@localhost/db?socket=/path``,
``sqlite:///absolute/path/to/file.db``, ``redis://[user:pass@]host:port/db``,
``rediss://…`` (TLS), ``redis+unix:///path/to/redis.sock?db=N`` (socket). The
aliases sqlx (and so notify_push) accepts are read too: ``postgresql://``,
``mariadb://``, ``unix://``.

A target's ``url`` is that documented form, ``masked`` the same with every
password replaced by ``***``; ``repr()`` shows only the masked form. Parse
errors are ValueError whose message is for the admin and names neither the
option nor the URL (the caller knows both and shows the URL masked).
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal
from urllib.parse import parse_qsl, quote, quote_plus, unquote, urlsplit

Dialect = Literal["postgres", "mysql", "sqlite"]

_SCHEMES: dict[str, Dialect] = {
    "postgres": "postgres",
    "postgresql": "postgres",
    "mysql": "mysql",
    "mariadb": "mysql",
    "sqlite": "sqlite",
}
_DEFAULT_PORTS = {"postgres": 5432, "mysql": 3306}
_SSLMODES = ("disable", "allow", "prefer", "require", "verify-ca", "verify-full")
REDIS_PORT = 6379
# Query parameters that carry a password in the URLs admins write.
_SECRET_QUERY_KEYS = ("password", "pass", "sslpassword")
_MASK = "***"

Params = tuple[tuple[str, str], ...]


# --------------------------------------------------------------------------- pieces


def is_digits(text: str) -> bool:
    """True for ASCII digits only (not str.isdigit(), which accepts "²" that int() rejects)."""
    return re.fullmatch(r"[0-9]+", text) is not None


def port_number(text: str | int, what: str = "port") -> int:
    """Parse a TCP port; raises ValueError with a message for the admin."""
    try:
        port = int(text)
    except (TypeError, ValueError):
        raise ValueError(f"{what} {text!r} is not a number") from None
    if not 0 < port < 65536:
        raise ValueError(f"{what} {port} is not in 1..65535")
    return port


def _userinfo(user: str | None, password: str | None, *, masked: bool) -> str:
    """``user:pass@`` percent-encoded (the password as ``***`` when masked); ``""`` for neither."""
    if not user and not password:
        return ""
    text = quote(user or "", safe="")
    if password:
        text += ":" + (_MASK if masked else quote(password, safe=""))
    return text + "@"


def _host_port(host: str, port: int) -> str:
    shown = f"[{host}]" if ":" in host else host
    return f"{shown}:{port}"


def _query(params: Sequence[tuple[str, str]], *, masked: bool) -> str:
    """``?k=v&…`` as urlencode writes it, with secret values as ``***`` when masked."""
    if not params:
        return ""
    items = []
    for key, value in params:
        secret = masked and key.lower() in _SECRET_QUERY_KEYS
        items.append(
            f"{quote_plus(key, safe='/')}={_MASK if secret else quote_plus(value, safe='/')}"
        )
    return "?" + "&".join(items)


def _split_credentials(url: str) -> tuple[str, str | None, str]:
    """``(head, credentials, rest)`` of URL text, read as warily as a password demands.

    ``head`` is the scheme and ``://`` (or ``:``); ``credentials`` all that
    lies between it and the *last* ``@`` of the text, or None when there is no
    ``@`` after an authority. A password holding an unencoded ``/``, ``?`` or
    ``#`` ends the authority early for a URL parser, which then shows the
    password's tail as a path or query, and its head as a host or port; the
    last ``@`` is where it really ends.
    """
    scheme, sep, rest = url.partition("://")
    if not sep:
        scheme, sep, rest = url.partition(":")
        if not sep or not re.fullmatch(r"[A-Za-z][A-Za-z0-9+.-]*", scheme):
            scheme, sep, rest = "", "", url  # not a URL: any "@" may still end a secret
    head = scheme + sep
    credentials, at, after = rest.rpartition("@")
    if not at or (sep == "://" and credentials.startswith("/")):
        # No authority before the "@" (redis+unix:///path?pass=p@ss): only the query holds secrets.
        return head, None, rest
    return head, credentials, after


def _ambiguous(credentials: str) -> bool:
    """True when a URL parser would not read ``credentials`` as the user and password."""
    return any(c in credentials for c in "/?#")


_UNENCODED = (
    "cannot be read; a user name or password must have any '/', '?', '#', '@', ':'"
    " or '%' percent-encoded (%2F, %3F, %23, %40, %3A, %25)"
)


def _refuse_split_credentials(url: str) -> None:
    """Raise ValueError when an unencoded ``/``, ``?`` or ``#`` cut the credentials off.

    The sign: an ``@`` after the authority and none in it (``redis://u:123#x@host``
    would read as host ``u``, port 123). Parsed, such a URL would show part of
    the password as a host, port or path; refused, it shows none.
    """
    _head, credentials, _rest = _split_credentials(url)
    if credentials is None or not _ambiguous(credentials):
        return
    authority = re.split(r"[/?#]", credentials, maxsplit=1)[0]
    if "@" not in authority:
        raise ValueError(_UNENCODED)


def _mask_query(text: str) -> str:
    """``text`` (a URL past its credentials) with ``pass``/``password`` query values as ``***``."""
    path, question, query_and_fragment = text.partition("?")
    if not question:
        return text
    query, hash_sign, fragment = query_and_fragment.partition("#")
    items = []
    secrets = False
    for item in query.split("&"):
        key, eq, _value = item.partition("=")
        secret = bool(eq) and unquote(key).lower() in _SECRET_QUERY_KEYS
        secrets = secrets or secret
        items.append(f"{key}={_MASK}" if secret else item)
    if secrets and fragment:
        fragment = _MASK  # may be the tail of a password with an unencoded "#"
    return f"{path}?{'&'.join(items)}{hash_sign}{fragment}"


def mask_url(url: str) -> str:
    """Replace the password of any URL text (and ``pass``/``password`` query values) by ``***``.

    For text that is not (yet) a target: the Nextcloud URL, and a URL the
    admin wrote that does not parse, shown in the error message. Everything
    between ``://`` and the last ``@`` that a parser might not take for
    ``user:password`` is masked whole; when in doubt, more is hidden.
    """
    head, credentials, rest = _split_credentials(url)
    if credentials is None:
        return head + _mask_query(rest)
    user, sep, _password = credentials.partition(":")
    if _ambiguous(credentials) or "@" in user:
        shown = _MASK
    elif sep:
        shown = f"{user}:{_MASK}"
    elif not head or head.lower().startswith("redis"):
        # redis://secret@host is how some clients spell a password alone; and
        # in text that is not a URL at all, who knows.
        shown = _MASK
    else:
        shown = user
    return f"{head}{shown}@{_mask_query(rest)}"


def url_error(url: str, error: ValueError) -> str:
    """The message for ``url`` that does not parse: the URL masked, then why, no secret in either.

    A parser's reason may quote what it took for a host, port, path or query
    (or, for ``urlsplit``, the whole authority); that text can hold part of a
    password an unencoded ``/``, ``?`` or ``#`` split off, so such a reason is
    replaced by advice.
    """
    reason = str(error)
    _head, credentials, rest = _split_credentials(url.strip())
    secrets = [credentials.partition(":")[2] or credentials] if credentials else []
    secrets += [
        value
        for key, value in parse_qsl(rest.partition("?")[2], keep_blank_values=True)
        if key.lower() in _SECRET_QUERY_KEYS
    ]
    secrets = [secret for secret in (*secrets, *map(unquote, secrets)) if secret]
    # What the reason quotes: urlsplit quotes a bracketed host or the authority.
    quoted = [a or b for a, b in re.findall(r"'([^']+)'|\"([^\"]+)\"", reason)]
    leaks = any(
        secret in reason
        or repr(secret)[1:-1] in reason
        or any(fragment in secret or fragment in repr(secret) for fragment in quoted)
        for secret in secrets
    )
    if leaks or (credentials is not None and _ambiguous(credentials)):
        reason = _UNENCODED
    return f"{mask_url(url)!r}: {reason}"


# --------------------------------------------------------------------------- databases


@dataclass(frozen=True, slots=True, repr=False)
class DatabaseTarget:
    """Where Nextcloud's database is, and as whom to log in.

    ``socket`` replaces host and port when set: for PostgreSQL the folder
    holding ``.s.PGSQL.<port>`` (libpq's meaning of ``host=/run/postgresql``,
    so ``port`` still counts), for MySQL the socket file itself. For SQLite only
    ``database`` (the absolute file path) is used. ``database`` may be empty for
    PostgreSQL: libpq then uses the user's name. ``params`` are query
    parameters this gateway does not use, kept so the URL reads as written
    (the router warns about them once). Build with :func:`parse_database_url`
    or :func:`database_target`; the constructor raises ValueError for values no
    URL could mean.
    """

    dialect: Dialect
    database: str
    host: str | None = None
    port: int | None = None
    user: str | None = None
    password: str | None = None
    socket: str | None = None
    sslmode: str | None = None
    params: Params = ()

    def __post_init__(self) -> None:
        if self.dialect == "sqlite":
            if not self.database.startswith("/") or self.database == "/":
                raise ValueError("use sqlite:///absolute/path/to/file.db")
            return
        if self.port is None or not 0 < self.port < 65536:
            raise ValueError(f"{self.port} is not a TCP port")
        if self.sslmode is not None and self.sslmode not in _SSLMODES:
            raise ValueError(f"unknown sslmode {self.sslmode!r}")
        if self.socket is not None and not self.socket.startswith("/"):
            raise ValueError("socket must be an absolute path")
        if self.socket is None and not self.host:
            raise ValueError("no host (or socket) in the URL")
        # MySQL has no default database; libpq defaults it to the user's name.
        if "/" in self.database or (self.dialect == "mysql" and not self.database):
            raise ValueError("no database name after the host (…/dbname)")

    @property
    def url(self) -> str:
        """The documented form, password included: for the driver, never for a log."""
        return self._render(masked=False)

    @property
    def masked(self) -> str:
        """The documented form with every password as ``***``: for logs and ``--dump-config``."""
        return self._render(masked=True)

    def __repr__(self) -> str:
        return f"DatabaseTarget({self.masked!r})"

    def _render(self, *, masked: bool) -> str:
        if self.dialect == "sqlite":
            return f"sqlite://{quote(self.database, safe='/')}{_query(self.params, masked=masked)}"
        assert self.port is not None  # checked at construction
        known: list[tuple[str, str]] = []
        if self.socket is None:
            location = _host_port(self.host or "", self.port)
        elif self.dialect == "postgres":
            location = ""
            known.append(("host", self.socket))
            if self.port != _DEFAULT_PORTS["postgres"]:
                known.append(("port", str(self.port)))
        else:
            location = "localhost"
            known.append(("socket", self.socket))
        if self.sslmode is not None:
            known.append(("sslmode", self.sslmode))
        auth = _userinfo(self.user, self.password, masked=masked)
        database = quote(self.database, safe="")
        query = _query([*known, *self.params], masked=masked)
        return f"{self.dialect}://{auth}{location}/{database}{query}"


def database_target(
    dialect: Dialect,
    database: str,
    *,
    host: str | None = None,
    port: int | None = None,
    user: str | None = None,
    password: str | None = None,
    socket: str | None = None,
    sslmode: str | None = None,
    params: Params = (),
) -> DatabaseTarget:
    """A :class:`DatabaseTarget` with what a URL leaves out filled in as the drivers read it.

    The dialect's default port. A socket replaces the host: for MySQL the
    host reads ``localhost`` and the port the default (the socket file is the
    whole address); PostgreSQL keeps the port, which names the socket file in
    the folder. Raises ValueError.
    """
    if dialect == "sqlite":
        return DatabaseTarget("sqlite", database, params=params)
    if socket is not None:
        host = "localhost" if dialect == "mysql" else None
        port = None if dialect == "mysql" else port
    return DatabaseTarget(
        dialect,
        database,
        host=host,
        port=port or _DEFAULT_PORTS[dialect],
        user=user or None,
        password=password or None,
        socket=socket,
        sslmode=sslmode,
        params=params,
    )


def parse_database_url(text: str) -> DatabaseTarget:
    """Parse a database URL (postgres/postgresql, mysql/mariadb, sqlite) into its target.

    A relative SQLite path is made absolute, as sqlx reads it. Raises
    ValueError with a message for the admin.
    """
    url = text.strip()
    scheme, sep, rest = url.partition(":")
    if not sep:
        raise ValueError("not a URL (expected postgres://, mysql:// or sqlite://)")
    dialect = _SCHEMES.get(scheme.lower())
    if dialect is None:
        raise ValueError(f"unsupported database {scheme.lower()!r} (postgres, mysql or sqlite)")
    if dialect == "sqlite":
        path, _, query = rest.partition("?")
        path = unquote(path.removeprefix("//"))
        if not path:
            raise ValueError("no database file in the URL (sqlite:///path/to/file.db)")
        params = tuple(parse_qsl(query, keep_blank_values=True))
        return database_target("sqlite", os.path.abspath(path), params=params)

    _refuse_split_credentials(url)
    parts = urlsplit(url)
    try:
        port = parts.port or None  # a port of 0 has always read as "no port"
    except ValueError:
        raise ValueError("the port is not a number in 1..65535") from None
    host = parts.hostname or None
    socket: str | None = None
    sslmode: str | None = None
    unknown: list[tuple[str, str]] = []
    for key, value in parse_qsl(parts.query, keep_blank_values=True):
        if dialect == "postgres" and key == "host":
            # libpq: a host starting with "/" is the folder of the server's socket.
            if value.startswith("/"):
                socket = value
            elif value:
                host = value
        elif dialect == "postgres" and key == "port":
            if not is_digits(value):
                raise ValueError(f"port {value!r} is not a number")
            port = int(value)
        elif dialect == "postgres" and key == "sslmode":
            sslmode = value
        elif dialect == "mysql" and key == "socket":
            socket = value or None
        else:
            unknown.append((key, value))
    return database_target(
        dialect,
        unquote(parts.path.lstrip("/")),
        host=host,
        port=port,
        user=unquote(parts.username) if parts.username else None,
        password=unquote(parts.password) if parts.password else None,
        socket=socket,
        sslmode=sslmode,
        params=tuple(unknown),
    )


# --------------------------------------------------------------------------- Redis


@dataclass(frozen=True, slots=True, repr=False)
class RedisTarget:
    """One Redis server: a TCP ``host`` and ``port``, or a ``unix_socket_path``.

    Build with :func:`parse_redis_url` (or directly, from config.php); the
    constructor raises ValueError for values no URL could mean.
    """

    host: str | None
    port: int | None
    unix_socket_path: str | None = None
    db: int = 0
    username: str | None = None
    password: str | None = None
    tls: bool = False

    def __post_init__(self) -> None:
        if self.unix_socket_path is not None:
            if not self.unix_socket_path.startswith("/"):
                raise ValueError("no absolute socket path (redis+unix:///path/to/redis.sock)")
        elif not self.host:
            raise ValueError("no host in the URL")
        elif self.port is None or not 0 < self.port < 65536:
            raise ValueError("the port is not a number in 1..65535")
        if self.db < 0:
            raise ValueError(f"database index {self.db} is negative")

    @property
    def url(self) -> str:
        """The documented form, password included: for the client, never for a log."""
        return self._render(masked=False)

    @property
    def masked(self) -> str:
        """The documented form with the password as ``***``: for ``--dump-config``."""
        return self._render(masked=True)

    def describe(self) -> str:
        """For log lines: address, db, user and TLS, and whether a password is set."""
        if self.unix_socket_path is not None:
            where = f"unix:{self.unix_socket_path}"
        else:
            where = f"{'rediss' if self.tls else 'redis'} {self._host_port()}"
        who = f" as {self.username}" if self.username else ""
        auth = " with password" if self.password else ""
        return f"{where} db {self.db}{who}{auth}"

    def __repr__(self) -> str:
        return f"RedisTarget({self.masked!r})"

    def _host_port(self) -> str:
        assert self.host is not None and self.port is not None  # checked at construction
        return _host_port(self.host, self.port)

    def _render(self, *, masked: bool) -> str:
        if self.unix_socket_path is not None:
            params = [("db", str(self.db))]
            if self.username:
                params.append(("user", self.username))
            if self.password:
                params.append(("pass", self.password))
            return f"redis+unix://{quote(self.unix_socket_path)}{_query(params, masked=masked)}"
        if masked and self.username and not self.password:
            # A lone name before the "@" is how some clients spell a password.
            auth = f"{_MASK}@"
        else:
            auth = _userinfo(self.username, self.password, masked=masked)
        scheme = "rediss" if self.tls else "redis"
        return f"{scheme}://{auth}{self._host_port()}/{self.db}"


def parse_redis_url(text: str) -> RedisTarget:
    """Parse a Redis URL into its target.

    TCP: ``redis://[user:pass@]host:port/db`` (``rediss://`` for TLS). Socket:
    ``redis+unix:///path?db=N`` with ``user``/``pass`` query values, as
    notify_push reads them; ``unix://`` and credentials before the ``@`` are
    accepted too. Raises ValueError with a message for the admin.
    """
    parts = urlsplit(text.strip())
    scheme = parts.scheme.lower()
    query = dict(parse_qsl(parts.query, keep_blank_values=True))
    user = unquote(parts.username) if parts.username else query.get("user")
    password = unquote(parts.password) if parts.password else None
    password = password or query.get("pass") or query.get("password")
    if scheme in ("redis+unix", "unix"):
        db = _redis_db(query.get("db", "0"))
        return RedisTarget(None, None, unquote(parts.path), db, user or None, password or None)
    if scheme not in ("redis", "rediss"):
        raise ValueError("unsupported scheme (redis://, rediss:// or redis+unix://)")
    _refuse_split_credentials(text.strip())
    if not parts.hostname:
        raise ValueError("no host in the URL")
    try:
        port = parts.port or REDIS_PORT
    except ValueError:
        raise ValueError("the port is not a number in 1..65535") from None
    db = _redis_db(parts.path.strip("/") or query.get("db", "0"))
    tls = scheme == "rediss"
    return RedisTarget(parts.hostname, port, None, db, user or None, password or None, tls)


def _redis_db(text: str) -> int:
    if not is_digits(text):
        raise ValueError(f"database index {text!r} is not a number")
    return int(text)
