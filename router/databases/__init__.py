"""Nextcloud database back ends for the storage mapping.

``base`` holds the common interface (:class:`Database`) and the query;
``postgres``, ``mysql`` and ``sqlite`` each implement it. The configuration
parses the URL into a :class:`DatabaseTarget`. A back end's driver is imported
only when that back end first connects.
"""

from __future__ import annotations

import importlib.util
import logging

from router.databases.base import (
    Database,
    DatabaseTarget,
    Dialect,
    MountRow,
    mounts_query,
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
    "require_driver",
    "validate_prefix",
]

log = logging.getLogger("router.databases")


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
    Raises ValueError for a prefix that is not safe in SQL, ConfigError when
    the driver is not installed.
    """
    validate_prefix(prefix)
    require_driver(target)
    for key, _ in target.params:
        # As notify_push's driver does: an admin's existing URL keeps working.
        log.warning("ignoring unknown parameter %r in database URL %s", key, target.masked)
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
            f"{target.masked} needs the {module} package: "
            f"pip install 'notify-push-gateway[{extra}]'",
        )
