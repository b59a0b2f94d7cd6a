"""Nextcloud's ``mounts`` and ``filecache`` tables, and demo rows for them.

Column names, types, nullability, defaults and index columns follow the
tables a current Nextcloud (33) creates on each database, so the gateway's
query runs against the real shape. Tables Nextcloud has but the gateway never
reads are left out.

How to use it (callers run the statements themselves, with their own driver):

- :func:`create_table_statements` / :func:`drop_table_statements` return the
  DDL for a dialect and prefix; run them in order.
- :func:`demo_rows` turns :class:`Mount` descriptions into filecache and mounts
  rows (root folders and their parent folders included), with explicit file
  ids starting at ``first_fileid``; use it on tables that do not hold those
  paths yet. :func:`insert_statements` gives the matching INSERTs.
- :func:`create_sqlite` and :func:`seed_sqlite` do all of that for a sqlite3
  connection, synchronously (``make run`` and the benchmarks use them);
  :func:`seed_postgres` / :func:`seed_mysql` for an asyncpg / asyncmy
  connection.

Index names are Nextcloud's; on PostgreSQL and SQLite, where index names
share one namespace per schema, they carry the table prefix too, so several
prefixes can live in one test database side by side.
"""

from __future__ import annotations

import hashlib
import re
import sqlite3
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

Dialect = Literal["postgres", "mysql", "sqlite"]
DIALECTS: tuple[Dialect, ...] = ("postgres", "mysql", "sqlite")
HOME_PROVIDER = "OC\\Files\\Mount\\LocalHomeMountProvider"
# Nextcloud's ids in oc_mimetypes for folders on a fresh install.
_MIMETYPE_DIR = 2
_MIMEPART_HTTPD = 1
_PERMISSION_ALL = 31

_PREFIX_RE = re.compile(r"[A-Za-z0-9_]{0,64}")

# Portable column types per dialect: (integer, bigint, autoincrement bigint key).
_TYPES: dict[Dialect, dict[str, str]] = {
    "postgres": {"int": "INTEGER", "bigint": "BIGINT", "id": "BIGSERIAL PRIMARY KEY"},
    "mysql": {"int": "INT", "bigint": "BIGINT", "id": "BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY"},
    # SQLite only makes INTEGER PRIMARY KEY an alias of the rowid.
    "sqlite": {"int": "INTEGER", "bigint": "BIGINT", "id": "INTEGER PRIMARY KEY AUTOINCREMENT"},
}

# (name, columns, unique), as Nextcloud names them.
_MOUNTS_INDEXES: tuple[tuple[str, tuple[str, ...], bool], ...] = (
    ("mounts_storage_index", ("storage_id",), False),
    ("mounts_root_index", ("root_id",), False),
    ("mounts_mount_id_index", ("mount_id",), False),
    ("mounts_user_root_path_index", ("user_id", "root_id", "mount_point_hash"), True),
    ("mounts_class_index", ("mount_provider_class",), False),
    ("mount_user_storage", ("storage_id", "user_id"), False),
)
_FILECACHE_INDEXES: tuple[tuple[str, tuple[str, ...], bool], ...] = (
    ("fs_storage_path_hash", ("storage", "path_hash"), True),
    ("fs_parent_name_hash", ("parent", "name"), False),
    ("fs_storage_mimetype", ("storage", "mimetype"), False),
    ("fs_storage_mimepart", ("storage", "mimepart"), False),
    ("fs_storage_size", ("storage", "size", "fileid"), False),
    ("fs_id_storage_size", ("fileid", "storage", "size"), False),
    ("fs_parent", ("parent",), False),
    ("fs_mtime", ("mtime",), False),
    ("fs_size", ("size",), False),
    ("fs_storage_path_prefix", ("storage", "path"), False),
)


def _check(dialect: str, prefix: str) -> None:
    if dialect not in DIALECTS:
        raise ValueError(f"unknown dialect {dialect!r}")
    if not _PREFIX_RE.fullmatch(prefix):
        raise ValueError(f"table prefix {prefix!r} must be letters, digits or underscores")


def create_table_statements(dialect: Dialect, prefix: str = "oc_") -> list[str]:
    """CREATE TABLE and CREATE INDEX statements for ``{prefix}mounts`` and ``{prefix}filecache``."""
    _check(dialect, prefix)
    t = _TYPES[dialect]
    tail = (
        " ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin" if dialect == "mysql" else ""
    )
    mounts = (
        f"CREATE TABLE {prefix}mounts ("
        f"id {t['id']}, "
        f"storage_id {t['bigint']} NOT NULL, "
        f"root_id {t['bigint']} NOT NULL, "
        "user_id VARCHAR(64) NOT NULL, "
        "mount_point VARCHAR(4000) NOT NULL, "
        f"mount_id {t['bigint']} DEFAULT NULL, "
        "mount_provider_class VARCHAR(128) DEFAULT NULL, "
        "mount_point_hash VARCHAR(32) NOT NULL"
        f"){tail}"
    )
    filecache = (
        f"CREATE TABLE {prefix}filecache ("
        f"fileid {t['id']}, "
        f"storage {t['bigint']} NOT NULL DEFAULT 0, "
        "path VARCHAR(4000) DEFAULT NULL, "
        "path_hash VARCHAR(32) NOT NULL DEFAULT '', "
        f"parent {t['bigint']} NOT NULL DEFAULT 0, "
        "name VARCHAR(250) DEFAULT NULL, "
        f"mimetype {t['bigint']} NOT NULL DEFAULT 0, "
        f"mimepart {t['bigint']} NOT NULL DEFAULT 0, "
        f"size {t['bigint']} NOT NULL DEFAULT 0, "
        f"mtime {t['bigint']} NOT NULL DEFAULT 0, "
        f"storage_mtime {t['bigint']} NOT NULL DEFAULT 0, "
        f"encrypted {t['int']} NOT NULL DEFAULT 0, "
        f"unencrypted_size {t['bigint']} NOT NULL DEFAULT 0, "
        "etag VARCHAR(40) DEFAULT NULL, "
        f"permissions {t['int']} DEFAULT 0, "
        "checksum VARCHAR(255) DEFAULT NULL"
        f"){tail}"
    )
    statements = [mounts, filecache]
    for table, indexes in (("mounts", _MOUNTS_INDEXES), ("filecache", _FILECACHE_INDEXES)):
        for name, columns, unique in indexes:
            statements.append(_index(dialect, prefix, table, name, columns, unique))
    return statements


def _index(
    dialect: Dialect, prefix: str, table: str, name: str, columns: Sequence[str], unique: bool
) -> str:
    cols = list(columns)
    if dialect == "mysql":
        # InnoDB cannot index a whole VARCHAR(4000) utf8mb4; Nextcloud indexes
        # the first 64 characters of path.
        cols = [f"{c}(64)" if c == "path" else c for c in cols]
        index_name = name  # MySQL index names are per table
    elif dialect == "postgres" and name == "fs_storage_path_prefix":
        # Nextcloud builds this one with varchar_pattern_ops so LIKE 'x%' uses it.
        cols = ["storage", "path varchar_pattern_ops"]
        index_name = f"{prefix}{name}"
    else:
        index_name = f"{prefix}{name}"
    kind = "UNIQUE INDEX" if unique else "INDEX"
    return f"CREATE {kind} {index_name} ON {prefix}{table} ({', '.join(cols)})"


def drop_table_statements(dialect: Dialect, prefix: str = "oc_") -> list[str]:
    """DROP TABLE IF EXISTS for both tables (their indexes go with them)."""
    _check(dialect, prefix)
    return [f"DROP TABLE IF EXISTS {prefix}mounts", f"DROP TABLE IF EXISTS {prefix}filecache"]


_FILECACHE_COLUMNS = (
    "fileid, storage, path, path_hash, parent, name, mimetype, mimepart, size, mtime, "
    "storage_mtime, encrypted, unencrypted_size, etag, permissions, checksum"
)
_MOUNTS_COLUMNS = (
    "storage_id, root_id, user_id, mount_point, mount_id, mount_provider_class, mount_point_hash"
)


def insert_statements(dialect: Dialect, prefix: str = "oc_") -> tuple[str, str]:
    """INSERTs matching :func:`demo_rows`: (filecache with 16 values, mounts with 7)."""
    # S608 below: table names cannot be bound; _check restricts the prefix to [A-Za-z0-9_].
    _check(dialect, prefix)

    def marks(n: int) -> str:
        if dialect == "postgres":
            return ", ".join(f"${i}" for i in range(1, n + 1))
        return ", ".join(["%s" if dialect == "mysql" else "?"] * n)

    return (
        f"INSERT INTO {prefix}filecache ({_FILECACHE_COLUMNS}) VALUES ({marks(16)})",
        f"INSERT INTO {prefix}mounts ({_MOUNTS_COLUMNS}) VALUES ({marks(7)})",
    )


@dataclass(frozen=True, slots=True)
class Mount:
    """A user's mount of ``root_path`` on ``storage_id`` (``""`` is the storage root)."""

    user_id: str
    storage_id: int
    root_path: str = ""
    mount_point: str | None = None  # default: /{user_id}/ for a root, /{user_id}/files/{name}/
    mount_provider_class: str = HOME_PROVIDER


FilecacheRow = tuple[int, int, str, str, int, str, int, int, int, int, int, int, int, str, int, str]
MountsRow = tuple[int, int, str, str, None, str, str]


def demo_rows(
    mounts: Iterable[Mount], first_fileid: int = 1
) -> tuple[list[FilecacheRow], list[MountsRow]]:
    """Filecache rows (each root and its parent folders, once) and mounts rows."""
    now = int(time.time())
    fileids: dict[tuple[int, str], int] = {}
    filecache: list[FilecacheRow] = []

    def ensure(storage: int, path: str) -> int:
        key = (storage, path)
        if key in fileids:
            return fileids[key]
        parent = -1 if path == "" else ensure(storage, path.rpartition("/")[0])
        fileid = first_fileid + len(filecache)
        fileids[key] = fileid
        path_hash = hashlib.md5(path.encode(), usedforsecurity=False).hexdigest()
        etag = hashlib.md5(f"{storage}:{path}".encode(), usedforsecurity=False).hexdigest()[:13]
        name = path.rpartition("/")[2]
        filecache.append(
            (fileid, storage, path, path_hash, parent, name, _MIMETYPE_DIR, _MIMEPART_HTTPD,
             0, now, now, 0, 0, etag, _PERMISSION_ALL, "")
        )  # fmt: skip
        return fileid

    rows: list[MountsRow] = []
    for mount in mounts:
        root_id = ensure(mount.storage_id, mount.root_path)
        point = mount.mount_point
        if point is None:
            leaf = mount.root_path.rpartition("/")[2]
            point = f"/{mount.user_id}/" if not leaf else f"/{mount.user_id}/files/{leaf}/"
        point_hash = hashlib.md5(point.encode(), usedforsecurity=False).hexdigest()
        rows.append(
            (mount.storage_id, root_id, mount.user_id, point, None, mount.mount_provider_class,
             point_hash)
        )  # fmt: skip
    return filecache, rows


def create_sqlite(conn: sqlite3.Connection, prefix: str = "oc_") -> None:
    """Create both tables on a sqlite3 connection and commit."""
    with conn:
        for statement in create_table_statements("sqlite", prefix):
            conn.execute(statement)


def seed_sqlite(conn: sqlite3.Connection, mounts: Iterable[Mount], prefix: str = "oc_") -> None:
    """Insert :func:`demo_rows` for ``mounts`` after the highest existing file id, and commit."""
    fc_sql, mounts_sql = insert_statements("sqlite", prefix)
    with conn:
        top_sql = f"SELECT COALESCE(MAX(fileid), 0) FROM {prefix}filecache"
        (top,) = conn.execute(top_sql).fetchone()
        filecache, rows = demo_rows(mounts, int(top) + 1)
        conn.executemany(fc_sql, filecache)
        conn.executemany(mounts_sql, rows)


async def seed_postgres(conn: Any, mounts: Iterable[Mount], prefix: str = "oc_") -> None:
    """Like :func:`seed_sqlite` on an asyncpg connection, advancing the fileid sequence."""
    _check("postgres", prefix)
    fc_sql, mounts_sql = insert_statements("postgres", prefix)
    async with conn.transaction():
        top = await conn.fetchval(f"SELECT COALESCE(MAX(fileid), 0) FROM {prefix}filecache")
        filecache, rows = demo_rows(mounts, int(top) + 1)
        await conn.executemany(fc_sql, filecache)
        await conn.executemany(mounts_sql, rows)
        # Explicit ids do not move the sequence; Nextcloud's own inserts must not collide.
        sync_sql = (
            f"SELECT setval(pg_get_serial_sequence('{prefix}filecache', 'fileid'), "
            f"(SELECT MAX(fileid) FROM {prefix}filecache))"
        )
        await conn.execute(sync_sql)


async def seed_mysql(conn: Any, mounts: Iterable[Mount], prefix: str = "oc_") -> None:
    """Like :func:`seed_sqlite` on an asyncmy connection (commits)."""
    _check("mysql", prefix)
    fc_sql, mounts_sql = insert_statements("mysql", prefix)
    async with conn.cursor() as cursor:
        await cursor.execute(f"SELECT COALESCE(MAX(fileid), 0) FROM {prefix}filecache")
        (top,) = await cursor.fetchone()
        filecache, rows = demo_rows(mounts, int(top) + 1)
        await cursor.executemany(fc_sql, filecache)
        await cursor.executemany(mounts_sql, rows)
    await conn.commit()
