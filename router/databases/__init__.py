"""Nextcloud database back ends for the storage mapping.

``base`` holds the common interface (:class:`Database`), URL parsing and the
query; ``postgres``, ``mysql`` and ``sqlite`` each implement it. A back end's
driver is imported only when that back end first connects.
"""

from __future__ import annotations

import importlib.util

from router.databases.base import (
    Database,
    DatabaseTarget,
    Dialect,
    MountRow,
    mounts_query,
    parse_database_url,
    validate_prefix,
)
from shared.errors import ConfigError

__all__ = [
    "Database",
    "DatabaseTarget",
    "Dialect",
    "MountRow",
    "mounts_query",
    "open_database",
    "parse_database_url",
    "require_driver",
    "validate_prefix",
]


def open_database(
    target: DatabaseTarget,
    prefix: str,
    *,
    pool_size: int,
    timeout: float,
    connect_timeout: float,
) -> Database:
    """The back end for ``target``; no I/O happens until its first query.

    ``timeout`` bounds a whole ``fetch_mounts`` call (waiting for a pooled
    connection, connecting, querying); ``connect_timeout`` bounds one connect.
    """
    validate_prefix(prefix)
    require_driver(target)
    if target.dialect == "postgres":
        from router.databases.postgres import PostgresDatabase

        return PostgresDatabase(
            target, prefix, pool_size=pool_size, timeout=timeout, connect_timeout=connect_timeout
        )
    if target.dialect == "mysql":
        from router.databases.mysql import MySQLDatabase

        return MySQLDatabase(
            target, prefix, pool_size=pool_size, timeout=timeout, connect_timeout=connect_timeout
        )
    from router.databases.sqlite import SQLiteDatabase

    return SQLiteDatabase(target, prefix, timeout=timeout)


_DRIVERS = {"postgres": ("asyncpg", "postgres"), "mysql": ("asyncmy", "mysql")}


def require_driver(target: DatabaseTarget) -> None:
    """Fail at start-up, naming the extra to install, rather than at the first event.

    ``find_spec`` locates the package without importing it.
    """
    if target.dialect not in _DRIVERS:
        return
    module, extra = _DRIVERS[target.dialect]
    if importlib.util.find_spec(module) is None:
        raise ConfigError(
            "--database-url",
            "config",
            f"{target.masked_url} needs the {module} package: "
            f"pip install 'notify-push-gateway[{extra}]'",
        )
