"""The gateway's one validated, frozen configuration object.

Built once by the supervisor (see :func:`parse_invocation`), pickled or
inherited by every child process. Sources, strongest first: the command line,
the environment, Nextcloud's config.php (the positional argument), defaults,
exactly as notify_push reads them (PROTOCOL.md section 7). Invalid or missing
values raise :class:`shared.errors.ConfigError` naming the option and where it
came from; only ``__main__`` turns that into an exit code.
"""

from __future__ import annotations

import argparse
import ipaddress
import os
import re
import socket
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import NoReturn, TypeVar
from urllib.parse import parse_qsl, quote, unquote, urlencode, urlsplit

from shared.database_url import parse_database_url, validate_prefix
from shared.errors import ConfigError
from shared.phpconfig import PhpArray, PhpValue, read_nextcloud_config
from shared.urls import mask_url

COMPATIBLE_NOTIFY_PUSH_VERSION = "1.4.0"
LOG_LEVELS = ("trace", "debug", "info", "warn", "error")
MAX_WORKERS = 1024
_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off", "")


@dataclass(frozen=True, slots=True)
class Config:
    """Effective configuration. Secrets live only inside the URLs."""

    nextcloud_url: str
    redis_urls: tuple[str, ...]
    database_url: str | None = None
    database_prefix: str = "oc_"
    redis_tls_cert: str | None = None
    redis_tls_key: str | None = None
    redis_tls_ca: str | None = None
    redis_tls_dont_validate_hostname: bool = False
    redis_tls_insecure: bool = False
    bind: str = "0.0.0.0"
    port: int = 7867
    socket_path: str | None = None
    socket_permissions: int = 0o660
    metrics_port: int | None = None
    metrics_socket_path: str | None = None
    tls_cert: str | None = None
    tls_key: str | None = None
    allow_self_signed: bool = False
    user_agent: str | None = None
    log_level: str = "warn"
    no_ansi: bool = False
    max_debounce_time: int = 15
    max_connection_time: int = 0
    debounce_disable: bool = False
    workers: int = field(default_factory=lambda: os.cpu_count() or 1)
    # Seconds over which client connections are closed on shutdown, so that
    # clients do not all reconnect in the same second.
    drain_time: float = 3.0
    config_file: str | None = None

    def __post_init__(self) -> None:
        # load_config() validates with the admin's option names first; these
        # checks catch a Config built directly (tests, other callers).
        if not 0 < self.port < 65536:
            raise ConfigError("--port", "config", f"{self.port} is not a TCP port")
        if self.workers < 1 or self.workers > MAX_WORKERS:
            raise ConfigError("--workers", "config", f"{self.workers} is not in 1..{MAX_WORKERS}")
        if self.log_level not in LOG_LEVELS:
            raise ConfigError("--log-level", "config", f"unknown level {self.log_level!r}")
        if not self.redis_urls:
            raise ConfigError("--redis-url", "config", "no Redis server configured")

    def dump(self) -> dict[str, object]:
        """The configuration as JSON-able data with every secret replaced by ``***``."""
        return {
            "database_url": mask_url(self.database_url) if self.database_url else None,
            "database_prefix": self.database_prefix,
            "redis_urls": [mask_url(u) for u in self.redis_urls],
            "redis_tls_cert": self.redis_tls_cert,
            "redis_tls_key": self.redis_tls_key,
            "redis_tls_ca": self.redis_tls_ca,
            "redis_tls_dont_validate_hostname": self.redis_tls_dont_validate_hostname,
            "redis_tls_insecure": self.redis_tls_insecure,
            "nextcloud_url": mask_url(self.nextcloud_url),
            "bind": self.bind,
            "port": self.port,
            "socket_path": self.socket_path,
            "socket_permissions": f"{self.socket_permissions:04o}",
            "metrics_port": self.metrics_port,
            "metrics_socket_path": self.metrics_socket_path,
            "tls_cert": self.tls_cert,
            "tls_key": self.tls_key,
            "allow_self_signed": self.allow_self_signed,
            "user_agent": self.user_agent,
            "log_level": self.log_level,
            "no_ansi": self.no_ansi,
            "workers": self.workers,
            "max_debounce_time": self.max_debounce_time,
            "max_connection_time": self.max_connection_time,
            "debounce_disable": self.debounce_disable,
            "drain_time": self.drain_time,
            "config_file": self.config_file,
        }


@dataclass(frozen=True, slots=True)
class Invocation:
    """What the command line asks for: run, dump the configuration, or print the version.

    ``config`` is None only with ``show_version``, which needs no configuration.
    """

    config: Config | None
    dump_config: bool
    show_version: bool


# --------------------------------------------------------------------------- URL forms


def _userinfo(user: str | None, password: str | None) -> str:
    """``user:pass@`` with both percent-encoded; ``""`` when neither is set."""
    if not user and not password:
        return ""
    text = quote(user or "", safe="")
    if password:
        text += ":" + quote(password, safe="")
    return text + "@"


def _host_port(host: str, port: int | None) -> str:
    shown = f"[{host}]" if ":" in host else host
    return shown if port is None else f"{shown}:{port}"


def _port_number(text: str | int, what: str = "port") -> int:
    """Parse a TCP port; raises ValueError with a message for the admin."""
    try:
        port = int(text)
    except (TypeError, ValueError):
        raise ValueError(f"{what} {text!r} is not a number") from None
    if not 0 < port < 65536:
        raise ValueError(f"{what} {port} is not in 1..65535")
    return port


def build_database_url(
    kind: str,
    *,
    user: str | None = None,
    password: str | None = None,
    host: str | None = None,
    port: int | None = None,
    database: str = "",
    socket_path: str | None = None,
    query: Sequence[tuple[str, str]] = (),
) -> str:
    """A database URL in the documented form for ``kind`` (postgres, mysql, sqlite).

    For sqlite ``database`` is the absolute file path. With ``socket_path`` a
    postgres URL names the socket folder in ``?host=`` and a mysql URL the
    socket file in ``?socket=``.
    """
    params = list(query)
    if kind == "sqlite":
        tail = f"?{urlencode(params, safe='/')}" if params else ""
        return f"sqlite://{quote(database, safe='/')}{tail}"
    auth = _userinfo(user, password)
    if socket_path is not None:
        if kind == "postgres":
            params.insert(0, ("host", socket_path))
            if port is not None:
                params.append(("port", str(port)))
            location = ""
        else:
            params.insert(0, ("socket", socket_path))
            location = "localhost"
    else:
        default = 5432 if kind == "postgres" else 3306
        location = _host_port(host or "localhost", port or default)
    tail = f"?{urlencode(params, safe='/')}" if params else ""
    return f"{kind}://{auth}{location}/{quote(database, safe='')}{tail}"


def normalize_database_url(url: str) -> str:
    """Check a DATABASE_URL and rewrite it into the documented form.

    Accepts postgres/postgresql, mysql/mariadb and sqlite URLs (as sqlx, and so
    notify_push, does). Raises ValueError with a message for the admin.
    """
    scheme, sep, rest = url.partition(":")
    scheme = scheme.lower()
    if not sep:
        raise ValueError("not a URL (expected postgres://, mysql:// or sqlite://)")
    if scheme == "sqlite":
        return _normalize_sqlite_url(rest)
    kind = {"postgres": "postgres", "postgresql": "postgres", "mysql": "mysql"}.get(scheme)
    kind = kind or ("mysql" if scheme == "mariadb" else None)
    if kind is None:
        raise ValueError(f"unsupported database {scheme!r} (postgres, mysql or sqlite)")
    parts = urlsplit(url)
    try:
        port = parts.port
    except ValueError:
        raise ValueError("the port is not a number in 1..65535") from None
    database = unquote(parts.path.lstrip("/"))
    # libpq defaults the database to the user's name; MySQL has no default.
    if (not database and kind == "mysql") or "/" in database:
        raise ValueError("no database name after the host (…/dbname)")
    query = parse_qsl(parts.query, keep_blank_values=True)
    socket_key = "host" if kind == "postgres" else "socket"
    socket_path = next((v for k, v in query if k == socket_key and v.startswith("/")), None)
    query = [(k, v) for k, v in query if not (k == socket_key and v == socket_path)]
    if socket_path is None and not parts.hostname and not any(k == "host" for k, _ in query):
        raise ValueError("no host (or socket) in the URL")
    return build_database_url(
        kind,
        user=unquote(parts.username) if parts.username else None,
        password=unquote(parts.password) if parts.password else None,
        host=parts.hostname,
        port=port,
        database=database,
        socket_path=socket_path,
        query=query,
    )


def _normalize_sqlite_url(rest: str) -> str:
    path, _, query = rest.partition("?")
    if path.startswith("//"):
        path = path[2:]
    path = unquote(path)
    if not path:
        raise ValueError("no database file in the URL (sqlite:///path/to/file.db)")
    return build_database_url(
        "sqlite", database=os.path.abspath(path), query=parse_qsl(query, keep_blank_values=True)
    )


def normalize_redis_url(url: str) -> str:
    """Check a REDIS_URL and rewrite it into the documented form.

    TCP: ``redis://[user:pass@]host:port/db`` (``rediss://`` for TLS). Socket:
    ``redis+unix:///path?db=N`` with ``user``/``pass`` query values, as
    notify_push reads them; ``unix://`` and credentials before the ``@`` are
    accepted too. Raises ValueError with a message for the admin.
    """
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    query = dict(parse_qsl(parts.query, keep_blank_values=True))
    user = unquote(parts.username) if parts.username else query.get("user")
    password = unquote(parts.password) if parts.password else None
    password = password or query.get("pass") or query.get("password")
    if scheme in ("redis+unix", "unix"):
        path = unquote(parts.path)
        if not path.startswith("/"):
            raise ValueError("no absolute socket path (redis+unix:///path/to/redis.sock)")
        return redis_unix_url(path, _redis_db(query.get("db", "0")), user, password)
    if scheme not in ("redis", "rediss"):
        raise ValueError("unsupported scheme (redis://, rediss:// or redis+unix://)")
    if not parts.hostname:
        raise ValueError("no host in the URL")
    try:
        port = parts.port or 6379
    except ValueError:
        raise ValueError("the port is not a number in 1..65535") from None
    path = parts.path.strip("/")
    db = _redis_db(path or query.get("db", "0"))
    return redis_tcp_url(parts.hostname, port, db, user, password, tls=scheme == "rediss")


def _redis_db(text: str) -> int:
    if not _is_digits(text):
        raise ValueError(f"database index {text!r} is not a number")
    return int(text)


def _is_digits(text: str) -> bool:
    # Not str.isdigit(), which accepts "²" that int() then rejects.
    return re.fullmatch(r"[0-9]+", text) is not None


def redis_tcp_url(
    host: str, port: int, db: int, user: str | None, password: str | None, *, tls: bool
) -> str:
    """``redis://[user:pass@]host:port/db``, or ``rediss://`` with ``tls``."""
    scheme = "rediss" if tls else "redis"
    return f"{scheme}://{_userinfo(user, password)}{_host_port(host, port)}/{db}"


def redis_unix_url(path: str, db: int, user: str | None, password: str | None) -> str:
    """``redis+unix:///path?db=N[&user=…][&pass=…]``."""
    params = [("db", str(db))]
    if user:
        params.append(("user", user))
    if password:
        params.append(("pass", password))
    return f"redis+unix://{quote(path)}?{urlencode(params, safe='/')}"


# --------------------------------------------------------------------------- sources


@dataclass(frozen=True, slots=True)
class _Raw:
    """One option's text as the admin wrote it, with its name and source."""

    value: str
    name: str
    source: str

    def fail(self, message: str) -> NoReturn:
        raise ConfigError(self.name, self.source, message)


@dataclass(frozen=True, slots=True)
class _Option:
    flag: str  # long command-line flag; its dest is the Config field
    env: str | None
    short: str | None = None
    switch: bool = False  # a flag without a value (--no-ansi)


_OPTIONS = (
    _Option("--database-url", "DATABASE_URL"),
    _Option("--database-prefix", "DATABASE_PREFIX"),
    _Option("--redis-tls-cert", "REDIS_TLS_CERT"),
    _Option("--redis-tls-key", "REDIS_TLS_KEY"),
    _Option("--redis-tls-ca", "REDIS_TLS_CA"),
    _Option("--redis-tls-dont-validate-hostname", "REDIS_TLS_DONT_VALIDATE_HOSTNAME", switch=True),
    _Option("--redis-tls-insecure", "REDIS_TLS_INSECURE", switch=True),
    _Option("--nextcloud-url", "NEXTCLOUD_URL"),
    _Option("--port", "PORT", short="-p"),
    _Option("--metrics-port", "METRICS_PORT", short="-m"),
    _Option("--bind", "BIND"),
    _Option("--socket-path", "SOCKET_PATH"),
    _Option("--socket-permissions", "SOCKET_PERMISSIONS"),
    _Option("--metrics-socket-path", "METRICS_SOCKET_PATH"),
    _Option("--tls-cert", "TLS_CERT"),
    _Option("--tls-key", "TLS_KEY"),
    _Option("--allow-self-signed", "ALLOW_SELF_SIGNED", switch=True),
    _Option("--user-agent", "USER_AGENT"),
    _Option("--log-level", "LOG"),
    _Option("--no-ansi", "NO_ANSI", switch=True),
    _Option("--max-debounce-time", "MAX_DEBOUNCE_TIME"),
    _Option("--max-connection-time", "MAX_CONNECTION_TIME"),
    _Option("--debounce-disable", "DEBOUNCE_DISABLE", switch=True),
    _Option("--workers", "WORKERS"),
    _Option("--drain-time", "DRAIN_TIME"),
)
_BY_DEST = {o.flag[2:].replace("-", "_"): o for o in _OPTIONS}


class _ArgumentParser(argparse.ArgumentParser):
    """argparse that raises ConfigError instead of exiting on a usage error."""

    def error(self, message: str) -> NoReturn:
        raise ConfigError("arguments", "command line", message)


def _argument_parser() -> argparse.ArgumentParser:
    parser = _ArgumentParser(
        prog="notify-push-gateway",
        description="Push server for Nextcloud, compatible with notify_push.",
        allow_abbrev=False,
    )
    parser.add_argument("config_file", nargs="?", metavar="CONFIG_FILE")
    for option in _OPTIONS:
        names = [option.short, option.flag] if option.short else [option.flag]
        if option.switch:
            parser.add_argument(*names, action="store_const", const="true", default=None)
        else:
            parser.add_argument(*names, metavar="VALUE")
    parser.add_argument("--redis-url", action="append", metavar="URL")
    parser.add_argument("--glob-config", action="store_true")
    parser.add_argument("--dump-config", action="store_true")
    parser.add_argument("--version", action="store_true")
    return parser


@dataclass(slots=True)
class _Sources:
    """Looks an option up on the command line, then the environment, then config.php."""

    args: argparse.Namespace
    environ: Mapping[str, str]
    file: dict[str, _Raw]

    def get(self, dest: str) -> _Raw | None:
        option = _BY_DEST[dest]
        value = getattr(self.args, dest)
        if value is not None:
            return _Raw(value, option.flag, "command line")
        if option.env is not None and option.env in self.environ:
            return _Raw(self.environ[option.env], option.env, "environment")
        return self.file.get(dest)


# --------------------------------------------------------------------------- values


def _as_int(raw: _Raw, low: int, high: int) -> int:
    try:
        number = int(raw.value.strip())
    except ValueError:
        raw.fail(f"{raw.value!r} is not an integer")
    if not low <= number <= high:
        raw.fail(f"{number} is not in {low}..{high}")
    return number


def _as_port(raw: _Raw) -> int:
    return _as_int(raw, 1, 65535)


def _as_bool(raw: _Raw) -> bool:
    text = raw.value.strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raw.fail(f"{raw.value!r} is not a boolean (true or false)")


def _as_existing_file(raw: _Raw) -> str:
    if not os.path.isfile(raw.value):
        raw.fail(f"{raw.value!r} does not exist or is not a file")
    return raw.value


def _as_permissions(raw: _Raw) -> int:
    text = raw.value.strip()
    # An octal file mode as chmod takes it: 660, 0660 or 0o660.
    if not re.fullmatch(r"(0o?)?[0-7]{3}", text):
        raw.fail(f"{raw.value!r} is not an octal file mode such as 0660")
    return int(text.removeprefix("0o").removeprefix("0") or "0", 8)


def _as_log_level(raw: _Raw) -> str:
    level = raw.value.strip().lower()
    level = "warn" if level == "warning" else level
    if level not in LOG_LEVELS:
        raw.fail(f"unknown log level {raw.value!r} (one of {', '.join(LOG_LEVELS)})")
    return level


def _as_bind(raw: _Raw) -> str:
    try:
        return str(ipaddress.ip_address(raw.value.strip().strip("[]")))
    except ValueError:
        raw.fail(f"{raw.value!r} is not an IP address")


def _as_nextcloud_url(raw: _Raw) -> str:
    parts = urlsplit(raw.value.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raw.fail(f"{mask_url(raw.value)!r} is not an http:// or https:// URL")
    try:
        _ = parts.port
    except ValueError:
        raw.fail("the port is not a number in 1..65535")
    return raw.value.strip().rstrip("/")


def _as_prefix(raw: _Raw) -> str:
    try:
        return validate_prefix(raw.value)
    except ConfigError as exc:
        raw.fail(exc.message)


def _as_database_url(raw: _Raw) -> str:
    try:
        url = normalize_database_url(raw.value.strip())
    except ValueError as exc:
        raw.fail(f"{mask_url(raw.value)!r}: {exc}")
    try:
        # Everything the router will need from the URL is checked now, so a bad
        # option value stops the start with exit 2, not a router that cannot start.
        parse_database_url(url, warn=False)
    except ConfigError as exc:
        raw.fail(exc.message)
    return url


def _as_redis_url(raw: _Raw) -> str:
    try:
        return normalize_redis_url(raw.value.strip())
    except ValueError as exc:
        raw.fail(f"{mask_url(raw.value)!r}: {exc}")


def _as_seconds(raw: _Raw) -> float:
    try:
        seconds = float(raw.value)
    except ValueError:
        raw.fail(f"{raw.value!r} is not a number of seconds")
    if not 0 <= seconds <= 3600:
        raw.fail(f"{seconds} is not in 0..3600 seconds")
    return seconds


def _as_path(raw: _Raw) -> str:
    if not raw.value:
        raw.fail("the path is empty")
    return raw.value


def default_bind() -> str:
    """``::`` when this host can listen on IPv6 (which also takes IPv4), else ``0.0.0.0``."""
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as probe:
            probe.bind(("::", 0))
    except OSError:
        return "0.0.0.0"
    return "::"


# --------------------------------------------------------------------------- config.php


def _php_text(value: PhpValue) -> str | None:
    """A config.php value as text; None for unset, false (a missing getenv) and ''."""
    if isinstance(value, bool) or value is None or value == "":
        return None
    if isinstance(value, int | float | str):
        return str(value)
    return None


def _php_int(values: PhpArray, key: str, label: str) -> int | None:
    text = _php_text(values.get(key))
    if text is None:
        return None
    if not _is_digits(text.strip()):
        raise ConfigError(label, "config.php", f"{text!r} is not a number")
    return int(text)


def _split_dbhost(dbhost: str) -> tuple[str, int | None, str | None]:
    """Split Nextcloud's ``dbhost`` into (host, port, socket).

    Forms: ``host``, ``host:port``, ``host:/socket``, ``[v6]``, ``[v6]:port``,
    ``/socket`` alone. Raises ConfigError for a bad port.
    """
    if dbhost.startswith("/"):
        return "localhost", None, dbhost
    if dbhost.startswith("["):
        host, _, rest = dbhost[1:].partition("]")
        rest = rest.removeprefix(":")
    elif dbhost.count(":") > 1:
        return dbhost, None, None  # a bare IPv6 address
    else:
        host, _, rest = dbhost.partition(":")
    if not rest:
        return host or "localhost", None, None
    if rest.startswith("/"):
        return host or "localhost", None, rest
    try:
        return host or "localhost", _port_number(rest), None
    except ValueError as exc:
        raise ConfigError("dbhost", "config.php", str(exc)) from None


def database_url_from_nextcloud(values: PhpArray, serverroot: str) -> str:
    """The database URL that config.php's ``db*`` keys describe, as Nextcloud reads them.

    Raises ConfigError naming the config.php key that is missing or wrong.
    """
    dbtype = _php_text(values.get("dbtype")) or "sqlite"
    dbname = _php_text(values.get("dbname")) or "owncloud"
    if dbtype in ("sqlite", "sqlite3"):
        datadir = _php_text(values.get("datadirectory")) or os.path.join(serverroot, "data")
        return build_database_url("sqlite", database=os.path.abspath(f"{datadir}/{dbname}.db"))
    if dbtype not in ("mysql", "pgsql"):
        raise ConfigError("dbtype", "config.php", f"unsupported database type {dbtype!r}")
    kind = "postgres" if dbtype == "pgsql" else "mysql"
    user = _php_text(values.get("dbuser"))
    if user is None:
        raise ConfigError("dbuser", "config.php", "not set")
    host, port, socket_path = _split_dbhost(_php_text(values.get("dbhost")) or "localhost")
    dbport = _php_int(values, "dbport", "dbport")
    if dbport is not None:
        try:
            port = _port_number(dbport)
        except ValueError as exc:
            raise ConfigError("dbport", "config.php", str(exc)) from None
    if kind == "postgres" and socket_path is not None:
        socket_path, port = _postgres_socket_folder(socket_path, port)
    return build_database_url(
        kind,
        user=user,
        password=_php_text(values.get("dbpassword")),
        host=host,
        port=port,
        database=dbname,
        socket_path=socket_path,
    )


def _postgres_socket_folder(path: str, port: int | None) -> tuple[str, int | None]:
    # libpq wants the folder; the file's name (.s.PGSQL.5433) carries the port.
    name = os.path.basename(path)
    if name.startswith(".s.PGSQL."):
        suffix = name.removeprefix(".s.PGSQL.")
        return os.path.dirname(path), int(suffix) if _is_digits(suffix) else port
    return path, port


@dataclass(frozen=True, slots=True)
class _RedisFromFile:
    urls: tuple[_Raw, ...]
    tls: dict[str, _Raw]


def redis_from_nextcloud(values: PhpArray) -> _RedisFromFile | None:
    """Redis servers from ``notify_push_redis``, else ``redis.cluster``, else ``redis``.

    Returns None when config.php names no Redis. Raises ConfigError for a
    malformed entry.
    """
    for key in ("notify_push_redis", "redis.cluster", "redis"):
        entry = values.get(key)
        if isinstance(entry, dict) and entry:
            return _redis_entry(key, entry)
    return None


def _redis_entry(key: str, entry: PhpArray) -> _RedisFromFile:
    ssl_context = entry.get("ssl_context")
    tls = isinstance(ssl_context, dict)
    user = _php_text(entry.get("user"))
    password = _php_text(entry.get("password"))
    seeds = entry.get("seeds")
    if isinstance(seeds, dict):
        # A cluster: every node gets the same credentials; db 0 is all a cluster has.
        hosts = [_php_text(seed) for seed in seeds.values()]
        addresses = [_redis_address(f"{key}.seeds", h, None) for h in hosts if h]
        db = 0
    else:
        port = _php_int(entry, "port", f"{key}.port")
        host = _php_text(entry.get("host")) or "127.0.0.1"
        addresses = [_redis_address(f"{key}.host", host, port or None)]
        db = _php_int(entry, "dbindex", f"{key}.dbindex") or 0
    if not addresses:
        raise ConfigError(f"{key}.seeds", "config.php", "no seeds")
    urls = []
    for label, host_or_path, port, host_tls in addresses:
        if port is None:
            url = redis_unix_url(host_or_path, db, user, password)
        else:
            url = redis_tcp_url(host_or_path, port, db, user, password, tls=tls or host_tls)
        urls.append(_Raw(url, label, "config.php"))
    return _RedisFromFile(tuple(urls), _redis_tls(key, ssl_context) if tls else {})


def _redis_address(
    label: str, host: str | None, port: int | None
) -> tuple[str, str, int | None, bool]:
    """(label, host or socket path, port or None for a socket, TLS asked by the host)."""
    assert host is not None
    if host.startswith("/"):
        return label, host, None, False
    tls = False
    for prefix in ("tls://", "rediss://"):
        if host.startswith(prefix):
            host, tls = host.removeprefix(prefix), True
    if port is None and host.startswith("["):
        host, _, rest = host[1:].partition("]")
        port_text = rest.removeprefix(":") or None
    elif port is None and host.count(":") == 1:
        host, _, port_text = host.partition(":")
    else:
        port_text = None
    # As notify_push does: Redis usually listens on 127.0.0.1 only, while
    # "localhost" may resolve to ::1 first.
    host = "127.0.0.1" if host == "localhost" else host
    try:
        return label, host, _port_number(port or port_text or 6379), tls
    except ValueError as exc:
        raise ConfigError(label, "config.php", str(exc)) from None


def _redis_tls(key: str, ssl_context: PhpValue) -> dict[str, _Raw]:
    assert isinstance(ssl_context, dict)
    found: dict[str, _Raw] = {}
    for php_key, dest in (
        ("local_cert", "redis_tls_cert"),
        ("local_pk", "redis_tls_key"),
        ("cafile", "redis_tls_ca"),
    ):
        text = _php_text(ssl_context.get(php_key))
        if text is not None:
            found[dest] = _Raw(text, f"{key}.ssl_context.{php_key}", "config.php")
    if ssl_context.get("verify_peer_name") is False:
        label = f"{key}.ssl_context.verify_peer_name"
        found["redis_tls_dont_validate_hostname"] = _Raw("true", label, "config.php")
    # Either spelling turns certificate checks off in PHP's stream context.
    if ssl_context.get("verify_peer") is False:
        label = f"{key}.ssl_context.verify_peer"
        found["redis_tls_insecure"] = _Raw("true", label, "config.php")
    elif ssl_context.get("allow_self_signed") is True:
        label = f"{key}.ssl_context.allow_self_signed"
        found["redis_tls_insecure"] = _Raw("true", label, "config.php")
    return found


@dataclass(slots=True)
class _FromFile:
    scalars: dict[str, _Raw]
    redis: _RedisFromFile | None


def _from_nextcloud(path: str, environ: Mapping[str, str], glob: bool) -> _FromFile:
    values = read_nextcloud_config(path, environ, glob)
    serverroot = os.path.dirname(os.path.dirname(os.path.abspath(path)))
    scalars = {
        "database_url": _Raw(database_url_from_nextcloud(values, serverroot), "db*", "config.php")
    }
    prefix = values.get("dbtableprefix")
    if isinstance(prefix, str):
        scalars["database_prefix"] = _Raw(prefix, "dbtableprefix", "config.php")
    url = _php_text(values.get("overwrite.cli.url"))
    if url is not None:
        scalars["nextcloud_url"] = _Raw(url, "overwrite.cli.url", "config.php")
    return _FromFile(scalars, redis_from_nextcloud(values))


# --------------------------------------------------------------------------- assembly


def _redis_urls(sources: _Sources, redis_file: _RedisFromFile | None) -> tuple[str, ...]:
    args, environ = sources.args, sources.environ
    if args.redis_url:
        raws = [_Raw(u, "--redis-url", "command line") for u in args.redis_url]
    elif environ.get("REDIS_URL"):
        raws = [_Raw(environ["REDIS_URL"], "REDIS_URL", "environment")]
    elif redis_file is not None:
        raws = list(redis_file.urls)
        # TLS settings of config.php apply only to the Redis that config.php names.
        for dest, raw in redis_file.tls.items():
            sources.file.setdefault(dest, raw)
    else:
        raise ConfigError(
            "--redis-url", "default", "no Redis configured (REDIS_URL or 'redis' in config.php)"
        )
    return tuple(_as_redis_url(raw) for raw in raws)


def _required(sources: _Sources, dest: str, what: str) -> _Raw:
    raw = sources.get(dest)
    if raw is None or not raw.value:
        option = _BY_DEST[dest]
        raise ConfigError(
            option.flag, "default", f"no {what} configured ({option.env} or config.php)"
        )
    return raw


def _optional(sources: _Sources, dest: str) -> _Raw | None:
    raw = sources.get(dest)
    return raw if raw is not None and raw.value != "" else None


def _flag(sources: _Sources, dest: str) -> bool:
    raw = sources.get(dest)
    return _as_bool(raw) if raw is not None else False


def _build(args: argparse.Namespace, environ: Mapping[str, str]) -> Config:
    from_file = _FromFile({}, None)
    if args.config_file is not None:
        if not os.path.isfile(args.config_file):
            raise ConfigError("CONFIG_FILE", "command line", f"{args.config_file!r} does not exist")
        from_file = _from_nextcloud(args.config_file, environ, args.glob_config)
    sources = _Sources(args, environ, from_file.scalars)
    redis_urls = _redis_urls(sources, from_file.redis)

    def opt(dest: str) -> _Raw | None:
        return _optional(sources, dest)

    tls_cert, tls_key = opt("tls_cert"), opt("tls_key")
    if (tls_cert is None) != (tls_key is None):
        given = tls_cert or tls_key
        assert given is not None
        given.fail("TLS needs both --tls-cert and --tls-key")
    workers = opt("workers")
    return Config(
        nextcloud_url=_as_nextcloud_url(_required(sources, "nextcloud_url", "Nextcloud URL")),
        redis_urls=redis_urls,
        database_url=_as_database_url(_required(sources, "database_url", "database")),
        database_prefix=_as_prefix(sources.get("database_prefix") or _Raw("oc_", "", "")),
        redis_tls_cert=_maybe(opt("redis_tls_cert"), _as_existing_file),
        redis_tls_key=_maybe(opt("redis_tls_key"), _as_existing_file),
        redis_tls_ca=_maybe(opt("redis_tls_ca"), _as_existing_file),
        redis_tls_dont_validate_hostname=_flag(sources, "redis_tls_dont_validate_hostname"),
        redis_tls_insecure=_flag(sources, "redis_tls_insecure"),
        bind=_maybe(opt("bind"), _as_bind) or default_bind(),
        port=_or(opt("port"), _as_port, 7867),
        socket_path=_maybe(opt("socket_path"), _as_path),
        socket_permissions=_or(opt("socket_permissions"), _as_permissions, 0o660),
        metrics_port=_maybe(opt("metrics_port"), _as_port),
        metrics_socket_path=_maybe(opt("metrics_socket_path"), _as_path),
        tls_cert=_maybe(tls_cert, _as_existing_file),
        tls_key=_maybe(tls_key, _as_existing_file),
        allow_self_signed=_flag(sources, "allow_self_signed"),
        user_agent=_maybe(opt("user_agent"), lambda raw: raw.value),
        log_level=_or(opt("log_level"), _as_log_level, "warn"),
        no_ansi=_flag(sources, "no_ansi"),
        max_debounce_time=_int_or(opt("max_debounce_time"), 15),
        max_connection_time=_int_or(opt("max_connection_time"), 0),
        debounce_disable=_flag(sources, "debounce_disable"),
        workers=_as_int(workers, 1, MAX_WORKERS) if workers else (os.cpu_count() or 1),
        drain_time=_or(opt("drain_time"), _as_seconds, 3.0),
        config_file=os.path.abspath(args.config_file) if args.config_file else None,
    )


_T = TypeVar("_T")


def _maybe(raw: _Raw | None, convert: Callable[[_Raw], _T]) -> _T | None:
    return None if raw is None else convert(raw)


def _or(raw: _Raw | None, convert: Callable[[_Raw], _T], default: _T) -> _T:
    # Not `convert(raw) or default`: 0 and 0.0 are valid values.
    return default if raw is None else convert(raw)


def _int_or(raw: _Raw | None, default: int) -> int:
    # A day is far beyond any sensible debounce or connection limit, and
    # bounding it keeps timer arithmetic in range.
    return default if raw is None else _as_int(raw, 0, 86400 * 365)


def parse_invocation(argv: Sequence[str], environ: Mapping[str, str]) -> Invocation:
    """Read the command line and environment (and config.php) into an :class:`Invocation`.

    ``--version`` needs no other configuration and yields ``config=None``.
    Raises ConfigError for a usage error or any invalid or missing value.
    ``--help`` prints the usage and raises SystemExit(0), as argparse does.
    """
    args = _argument_parser().parse_args(list(argv))
    if args.version:
        return Invocation(config=None, dump_config=False, show_version=True)
    return Invocation(
        config=_build(args, environ), dump_config=args.dump_config, show_version=False
    )


def load_config(argv: Sequence[str], environ: Mapping[str, str]) -> Config:
    """The validated configuration from the command line, environment and config.php.

    Raises ConfigError naming the option and its source for any invalid or
    missing value.
    """
    return _build(_argument_parser().parse_args(list(argv)), environ)
