"""Redis clients for the targets of :class:`shared.config.Config`, and their TLS policy.

The router subscribes through one node at a time: PUBLISH on any node of a
Redis Cluster reaches the subscribers of every node, so a plain client per
node (trying each ``--redis-url`` in turn) is all a cluster needs.
"""

from __future__ import annotations

import logging
import ssl
from dataclasses import dataclass
from typing import TypeAlias

import redis.asyncio as aioredis
from redis.asyncio.cluster import ClusterNode, RedisCluster

from shared.config import Config, RedisTarget

log = logging.getLogger("shared.redis")

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


#: The client for keys and scripts: one node, or a Redis Cluster client that
#: routes each command to the node of its key's slot.
KeyValueClient: TypeAlias = aioredis.Redis | RedisCluster


def is_cluster(config: Config) -> bool:
    """Several Redis URLs are the seeds of one Redis Cluster (as ``redis.cluster`` seeds are)."""
    return len(config.redis) > 1


def key_value_client(config: Config, *, read_timeout: float) -> KeyValueClient:
    """The client for the gateway's keys: a cluster client when :func:`is_cluster`.

    A cluster has only database 0: a database index in a seed's URL is
    ignored with a warning (as notify_push does since its issue 378).
    No I/O happens here.
    """
    if not is_cluster(config):
        return redis_from_config(config, config.redis[0], read_timeout=read_timeout)
    if any(target.db for target in config.redis):
        log.warning("ignoring the database index of the Redis URLs: a Redis Cluster has only 0")
    first = config.redis[0]
    tls = RedisTls.from_config(config) if first.tls else RedisTls()
    return RedisCluster(
        startup_nodes=[
            ClusterNode(target.host or "localhost", target.port or 6379)
            for target in config.redis
            if target.unix_socket_path is None
        ],
        username=first.username,
        password=first.password,
        socket_timeout=read_timeout,
        socket_connect_timeout=CONNECT_TIMEOUT,
        decode_responses=False,
        ssl=first.tls,
        ssl_certfile=tls.certfile,
        ssl_keyfile=tls.keyfile,
        ssl_ca_certs=tls.cafile,
        ssl_check_hostname=tls.check_hostname,
        ssl_cert_reqs=tls.cert_reqs,
        # A node that is down must fail a login within its claim's deadline,
        # not after ten rounds of rediscovery.
        cluster_error_retry_attempts=1,
    )
