"""Redis clients for the targets of :class:`shared.config.Config`, and their TLS policy.

The router subscribes through one node at a time: PUBLISH on any node of a
Redis Cluster reaches the subscribers of every node, so a plain client per
node (trying each ``--redis-url`` in turn) is all a cluster needs.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass

import redis.asyncio as aioredis

from shared.config import Config, RedisTarget

# Long enough for a TLS handshake across a data centre, short enough that a
# dead node is skipped quickly when the router tries the next one.
CONNECT_TIMEOUT = 5.0


@dataclass(frozen=True, slots=True)
class RedisTls:
    """How a ``rediss://`` connection checks the server and shows itself (REDIS_TLS_*).

    Decided once, by :meth:`from_config`, for both clients: redis-py takes
    the fields, the router's lean subscriber takes :meth:`context`. The
    defaults are full verification with the system's CAs and no client
    certificate.
    """

    certfile: str | None = None
    keyfile: str | None = None
    cafile: str | None = None
    check_hostname: bool = True
    verify_peer: bool = True

    @classmethod
    def from_config(cls, config: Config) -> RedisTls:
        return cls(
            certfile=config.redis_tls_cert,
            keyfile=config.redis_tls_key,
            cafile=config.redis_tls_ca,
            # Insecure means no checks at all, so the hostname check goes too.
            check_hostname=not (
                config.redis_tls_dont_validate_hostname or config.redis_tls_insecure
            ),
            verify_peer=not config.redis_tls_insecure,
        )

    @property
    def cert_reqs(self) -> ssl.VerifyMode:
        return ssl.CERT_REQUIRED if self.verify_peer else ssl.CERT_NONE

    def context(self) -> ssl.SSLContext:
        """A client context with this policy; raises OSError/ssl.SSLError for unreadable files."""
        context = ssl.create_default_context(cafile=self.cafile)
        if self.certfile:
            context.load_cert_chain(self.certfile, self.keyfile)
        # check_hostname must be off before verification can be.
        context.check_hostname = self.check_hostname
        context.verify_mode = self.cert_reqs
        return context


def redis_from_config(
    config: Config, target: RedisTarget, *, read_timeout: float | None = None
) -> aioredis.Redis:
    """A client for ``target`` (one of ``config.redis``) with the configured TLS policy.

    A connect timeout of :data:`CONNECT_TIMEOUT`, TCP keepalive, raw bytes.
    ``read_timeout`` bounds each command: give one for key commands, so a
    half-open connection fails them instead of hanging; leave it None for a
    subscription (a quiet channel is not a dead one). No I/O happens here.
    """
    tls = RedisTls.from_config(config) if target.tls else RedisTls()
    return aioredis.Redis(
        host=target.host or "localhost",
        port=target.port or 6379,
        unix_socket_path=target.unix_socket_path,
        db=target.db,
        username=target.username,
        password=target.password,
        socket_timeout=read_timeout,
        socket_connect_timeout=CONNECT_TIMEOUT,
        socket_keepalive=target.unix_socket_path is None,
        decode_responses=False,
        ssl=target.tls,
        ssl_certfile=tls.certfile,
        ssl_keyfile=tls.keyfile,
        ssl_ca_certs=tls.cafile,
        ssl_check_hostname=tls.check_hostname,
        ssl_cert_reqs=tls.cert_reqs,
    )
