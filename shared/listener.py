"""The public listener, set up by the supervisor before any child starts.

On TCP every worker binds its own socket on the same port (SO_REUSEPORT: the
kernel spreads new connections over them); the supervisor only checks the
port can be bound. On a Unix socket (``--socket-path``) there is no such
group, so the supervisor binds the one socket and the workers inherit it.
"""

from __future__ import annotations

import contextlib
import os
import resource
import socket
import stat

from shared.config import Config
from shared.errors import ConfigError

BACKLOG = 4096
# What an unlimited hard limit is raised to: the kernel's default fs.nr_open.
UNLIMITED_FILES = 1_048_576


def bind_tcp(bind: str, port: int) -> socket.socket:
    """A listening socket on ``bind:port`` in the SO_REUSEPORT group of the workers."""
    family = socket.AF_INET6 if ":" in bind else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    if family == socket.AF_INET6:
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
    sock.bind((bind, port))
    sock.listen(BACKLOG)
    sock.setblocking(False)
    return sock


def open_listener(config: Config) -> socket.socket | None:
    """The Unix socket every worker shares, or None when each worker binds TCP itself.

    Raises ConfigError (``--socket-path`` or ``--port``) when the address
    cannot be bound, so the admin sees one line instead of children that
    fail and are restarted forever.
    """
    if config.socket_path:
        return _bind_unix(config.socket_path, config.socket_permissions)
    try:
        bind_tcp(config.bind, config.port).close()
    except OSError as exc:
        raise ConfigError(
            "--port", "config", f"cannot listen on {config.bind}:{config.port}: {exc}"
        ) from exc
    return None


def close_listener(config: Config, sock: socket.socket | None) -> None:
    """Close what :func:`open_listener` opened and remove the socket file it made."""
    if sock is None or not config.socket_path:
        return
    sock.close()
    with contextlib.suppress(OSError):
        os.unlink(config.socket_path)


def _bind_unix(path: str, permissions: int) -> socket.socket:
    try:
        if stat.S_ISSOCK(os.stat(path).st_mode):
            os.unlink(path)  # a stale socket from a previous run
    except FileNotFoundError:
        pass
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.bind(path)
    except OSError as exc:
        sock.close()
        raise ConfigError("--socket-path", "config", f"cannot bind {path}: {exc}") from exc
    os.chmod(path, permissions)
    sock.listen(BACKLOG)
    sock.setblocking(False)
    return sock


def raise_file_limit() -> int:
    """Raise the soft RLIMIT_NOFILE to the hard limit; returns the new soft limit.

    Every open connection is a file: the limit, not memory, caps how many
    clients a worker can hold.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY:
        hard = UNLIMITED_FILES
    if soft < hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            soft = hard
        except (ValueError, OSError):
            pass  # keep the soft limit; the supervisor logs what it got
    return soft
