"""What every database back end offers: the interface, the mounts query, error text.

The URL and the prefix are parsed and checked by the configuration
(:class:`shared.config.DatabaseTarget`, :func:`shared.config.validate_prefix`).
"""

from __future__ import annotations

from typing import Protocol

# Re-exported: the back ends and the storage mapping take these from here.
from shared.config import DatabaseTarget, Dialect, validate_prefix

__all__ = [
    "Database",
    "DatabaseTarget",
    "Dialect",
    "MountRow",
    "describe_error",
    "mounts_query",
    "validate_prefix",
]

# Row shape every back end returns: (user_id, root path of the mount).
MountRow = tuple[str, str]


class Database(Protocol):
    """One Nextcloud database, queried for the mounts of a storage."""

    async def fetch_mounts(self, storage: int) -> list[MountRow]:
        """All (user_id, root path) pairs mounted on ``storage``.

        Raises :class:`shared.errors.DatabaseUnavailable` (cause chained) when the
        database cannot be reached, the query fails or the deadline passes.
        """
        ...

    async def close(self) -> None:
        """Release every connection; later calls to ``fetch_mounts`` are errors."""
        ...


def mounts_query(dialect: Dialect, prefix: str) -> str:
    """The query of docs/PROTOCOL.md section 3 with the prefix and the dialect's placeholder."""
    placeholder = {"postgres": "$1", "mysql": "%s", "sqlite": "?"}[dialect]
    prefix = validate_prefix(prefix)
    # S608: the only interpolated text is the validated prefix and a fixed placeholder.
    return (
        f"SELECT m.user_id, f.path FROM {prefix}mounts m"  # noqa: S608
        f" INNER JOIN {prefix}filecache f ON m.root_id = f.fileid"
        f" WHERE m.storage_id = {placeholder}"
    )


def describe_error(exc: BaseException) -> str:
    """A one-line description of a driver error for logs and DatabaseUnavailable messages."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
