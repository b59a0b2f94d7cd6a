"""Nextcloud's config.php entries translated into the gateway's option values.

As notify_push reads them (docs/PROTOCOL.md section 7): the ``db*`` keys give the
database, ``dbtableprefix`` the prefix, ``overwrite.cli.url`` the Nextcloud
URL, and ``notify_push_redis``, else ``redis.cluster``, else ``redis`` the
Redis servers and their TLS settings. Every failure raises
:class:`shared.errors.ConfigError` naming the config.php key.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field

from shared.config.phpconfig import PhpArray, PhpValue, read_nextcloud_config
from shared.config.settings import Setting
from shared.config.urls import (
    REDIS_PORT,
    DatabaseTarget,
    RedisTarget,
    database_target,
    is_digits,
    port_number,
)
from shared.errors import ConfigError

SOURCE = "config.php"


@dataclass(frozen=True, slots=True)
class RedisFromFile:
    """The Redis servers config.php names, and TLS settings that apply only to them."""

    targets: tuple[RedisTarget, ...]
    tls: dict[str, Setting] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class NextcloudSettings:
    """What config.php says: ``texts`` by Config field, the database, the Redis servers."""

    texts: dict[str, Setting]
    database: DatabaseTarget
    redis: RedisFromFile | None


def read_nextcloud_settings(path: str, environ: Mapping[str, str], glob: bool) -> NextcloudSettings:
    """Read config.php (and with ``glob`` its siblings) into option values.

    Raises ConfigError for a file that does not parse and for a missing or
    wrong key.
    """
    values = read_nextcloud_config(path, environ, glob)
    serverroot = os.path.dirname(os.path.dirname(os.path.abspath(path)))
    texts = {}
    prefix = values.get("dbtableprefix")
    if isinstance(prefix, str):
        texts["database_prefix"] = Setting(prefix, "dbtableprefix", SOURCE)
    url = _php_text(values.get("overwrite.cli.url"))
    if url is not None:
        texts["nextcloud_url"] = Setting(url, "overwrite.cli.url", SOURCE)
    return NextcloudSettings(
        texts, database_from_nextcloud(values, serverroot), redis_from_nextcloud(values)
    )


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
    if not is_digits(text.strip()):
        raise ConfigError(label, SOURCE, f"{text!r} is not a number")
    return int(text)


# --------------------------------------------------------------------------- database


def database_from_nextcloud(values: PhpArray, serverroot: str) -> DatabaseTarget:
    """The database that config.php's ``db*`` keys describe, as Nextcloud reads them.

    Raises ConfigError naming the config.php key that is missing or wrong.
    """
    dbtype = _php_text(values.get("dbtype")) or "sqlite"
    dbname = _php_text(values.get("dbname")) or "owncloud"
    try:
        if dbtype in ("sqlite", "sqlite3"):
            datadir = _php_text(values.get("datadirectory")) or os.path.join(serverroot, "data")
            return database_target("sqlite", os.path.abspath(f"{datadir}/{dbname}.db"))
        if dbtype not in ("mysql", "pgsql"):
            raise ConfigError("dbtype", SOURCE, f"unsupported database type {dbtype!r}")
        user = _php_text(values.get("dbuser"))
        if user is None:
            raise ConfigError("dbuser", SOURCE, "not set")
        host, port, socket = _split_dbhost(_php_text(values.get("dbhost")) or "localhost")
        dbport = _php_int(values, "dbport", "dbport")
        if dbport is not None:
            try:
                port = port_number(dbport)
            except ValueError as exc:
                raise ConfigError("dbport", SOURCE, str(exc)) from None
        if dbtype == "pgsql" and socket is not None:
            socket, port = _postgres_socket_folder(socket, port)
        return database_target(
            "postgres" if dbtype == "pgsql" else "mysql",
            dbname,
            host=host,
            port=port,
            user=user,
            password=_php_text(values.get("dbpassword")),
            socket=socket,
        )
    except ValueError as exc:
        raise ConfigError("db*", SOURCE, str(exc)) from None


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
        return host or "localhost", port_number(rest), None
    except ValueError as exc:
        raise ConfigError("dbhost", SOURCE, str(exc)) from None


def _postgres_socket_folder(path: str, port: int | None) -> tuple[str, int | None]:
    # libpq wants the folder; the file's name (.s.PGSQL.5433) carries the port.
    name = os.path.basename(path)
    if name.startswith(".s.PGSQL."):
        suffix = name.removeprefix(".s.PGSQL.")
        return os.path.dirname(path), int(suffix) if is_digits(suffix) else port
    return path, port


# --------------------------------------------------------------------------- Redis


def redis_from_nextcloud(values: PhpArray) -> RedisFromFile | None:
    """Redis servers from ``notify_push_redis``, else ``redis.cluster``, else ``redis``.

    Returns None when config.php names no Redis. Raises ConfigError for a
    malformed entry.
    """
    for key in ("notify_push_redis", "redis.cluster", "redis"):
        entry = values.get(key)
        if isinstance(entry, dict) and entry:
            return _redis_entry(key, entry)
    return None


def _redis_entry(key: str, entry: PhpArray) -> RedisFromFile:
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
        raise ConfigError(f"{key}.seeds", SOURCE, "no seeds")
    targets = []
    for label, host_or_path, port, host_tls in addresses:
        try:
            if port is None:
                target = RedisTarget(None, None, host_or_path, db, user, password)
            else:
                target = RedisTarget(host_or_path, port, None, db, user, password, tls or host_tls)
        except ValueError as exc:
            raise ConfigError(label, SOURCE, str(exc)) from None
        targets.append(target)
    return RedisFromFile(tuple(targets), _redis_tls(key, ssl_context) if tls else {})


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
        return label, host, port_number(port or port_text or REDIS_PORT), tls
    except ValueError as exc:
        raise ConfigError(label, SOURCE, str(exc)) from None


def _redis_tls(key: str, ssl_context: PhpValue) -> dict[str, Setting]:
    """The REDIS_TLS_* options an entry's ``ssl_context`` sets, by Config field."""
    assert isinstance(ssl_context, dict)
    found: dict[str, Setting] = {}
    for php_key, dest in (
        ("local_cert", "redis_tls_cert"),
        ("local_pk", "redis_tls_key"),
        ("cafile", "redis_tls_ca"),
    ):
        text = _php_text(ssl_context.get(php_key))
        if text is not None:
            found[dest] = Setting(text, f"{key}.ssl_context.{php_key}", SOURCE)
    if ssl_context.get("verify_peer_name") is False:
        label = f"{key}.ssl_context.verify_peer_name"
        found["redis_tls_dont_validate_hostname"] = Setting("true", label, SOURCE)
    # Either spelling turns certificate checks off in PHP's stream context.
    if ssl_context.get("verify_peer") is False:
        label = f"{key}.ssl_context.verify_peer"
        found["redis_tls_insecure"] = Setting("true", label, SOURCE)
    elif ssl_context.get("allow_self_signed") is True:
        label = f"{key}.ssl_context.allow_self_signed"
        found["redis_tls_insecure"] = Setting("true", label, SOURCE)
    return found
