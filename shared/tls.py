"""TLS for the ports the gateway serves (--tls-cert / --tls-key)."""

from __future__ import annotations

import ssl

from shared.config import Config


def server_tls_context(config: Config) -> ssl.SSLContext | None:
    """A server context when both files are configured, else None (plain TCP)."""
    if not config.tls_cert or not config.tls_key:
        return None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(config.tls_cert, config.tls_key)
    return context
