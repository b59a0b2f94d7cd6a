"""One exception tree for the whole gateway.

Everything the gateway raises on purpose derives from :class:`GatewayError`.
What a peer broke (:class:`PeerError`) is kept apart from what failed on our
side, so callers can count the first without alarming anyone.
"""

from __future__ import annotations


class GatewayError(Exception):
    """Base of every error the gateway raises deliberately."""


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


class PeerError(GatewayError):
    """The other side (client, worker, router, Redis) sent something invalid."""


class FrameError(PeerError):
    """A length-prefixed IPC frame or its msgpack body is malformed or too large."""


class EventError(PeerError):
    """A Redis payload does not decode into a valid event."""

    def __init__(self, channel: str, message: str) -> None:
        super().__init__(f"{channel}: {message}")
        self.channel = channel


class HttpRequestError(PeerError):
    """An HTTP request head is malformed or exceeds its limits."""


class LoginError(GatewayError):
    """A login could not be verified; ``reason`` is safe to send to the client."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class UpstreamError(GatewayError):
    """A dependency (Nextcloud, Redis, the database) failed or timed out."""
