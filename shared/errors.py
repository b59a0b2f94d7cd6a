"""One exception tree for the whole gateway, split by whose fault it is.

Everything the gateway raises on purpose derives from :class:`GatewayError`,
in one of four branches (the split trio's ``_core/_exceptions.py`` makes
between a broken and a closed resource):

* :class:`ConfigError`: the admin's configuration is invalid. Only the entry
  point turns it into an exit status (2).
* :class:`PeerError`: the other side (a client, a Redis payload, the other end
  of an IPC link) sent something invalid or was refused. Counted, answered,
  never alarming: it says nothing about our health.
* :class:`DependencyError`: something we depend on (Nextcloud, Redis, the
  database, the router link) failed or timed out. Clients are told the push
  server or Nextcloud is unavailable, never that their credentials are wrong.
* :class:`ClosedError`: we closed the resource ourselves (shutdown, a link we
  dropped); an operation on it is not a failure of anyone else.

Causes are chained (``raise ... from exc``) so a log shows what lies beneath.
"""

from __future__ import annotations


class GatewayError(Exception):
    """Base of every error the gateway raises deliberately."""


# --------------------------------------------------------------------------- configuration


class ConfigError(GatewayError):
    """A configuration value is missing or invalid.

    ``option`` is the name the admin used (``--port``, ``PORT``,
    ``config.php: dbhost``) and ``source`` where it came from
    (``command line``, ``environment``, ``config.php``, ``default``).
    """

    def __init__(self, option: str, source: str, message: str) -> None:
        super().__init__(f"{option} ({source}): {message}")
        self.option = option
        self.source = source
        self.message = message


# --------------------------------------------------------------------------- the peer broke it


class PeerError(GatewayError):
    """The other side (client, worker, router, Redis payload) sent something invalid."""


class FrameError(PeerError):
    """A length-prefixed IPC frame or its msgpack body is malformed or too large."""


class EventError(PeerError):
    """A Redis payload does not decode into a valid event."""

    def __init__(self, channel: str, message: str) -> None:
        super().__init__(f"{channel}: {message}")
        self.channel = channel


class HttpRequestError(PeerError):
    """An HTTP request head is malformed or exceeds its limits."""


class WebSocketProtocolError(PeerError):
    """The client broke RFC 6455; ``code`` is the close code to answer with."""

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


class LoginRefused(PeerError):
    """The credentials are not valid (or the login is over a limit).

    ``reason`` is safe to send to the client (``err: <reason>``).
    """

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


# --------------------------------------------------------------------------- a dependency failed


class DependencyError(GatewayError):
    """A dependency (Nextcloud, Redis, the database, the router) failed or timed out."""


class NextcloudUnavailable(DependencyError):
    """Nextcloud did not answer, or answered with an error; ``reason`` is client-safe."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class RedisUnavailable(DependencyError):
    """Redis refused a command, broke the protocol or could not be reached."""


class DatabaseUnavailable(DependencyError):
    """The database failed, timed out or could not be reached."""


class RouterUnavailable(DependencyError):
    """A worker's link to the router is down or the router did not answer."""


# --------------------------------------------------------------------------- we closed it


class ClosedError(GatewayError):
    """The resource was closed by us (shutdown or a deliberate drop)."""
