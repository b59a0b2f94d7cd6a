"""Redis clients for the URLs of :class:`shared.config.Config`.

The router subscribes through one node at a time: PUBLISH on any node of a
Redis Cluster reaches the subscribers of every node, so a plain client per
node (trying each ``--redis-url`` in turn) is all a cluster needs.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from urllib.parse import parse_qsl, unquote, urlsplit

import redis.asyncio as aioredis

from shared.config import Config, normalize_redis_url
from shared.errors import ConfigError

# Long enough for a TLS handshake across a data centre, short enough that a
# dead node is skipped quickly when the router tries the next one.
CONNECT_TIMEOUT = 5.0


@dataclass(frozen=True, slots=True)
class RedisTarget:
    """Where and as whom to connect; ``password`` is never logged."""

    host: str | None
    port: int | None
    unix_socket_path: str | None
    db: int
    username: str | None
    password: str | None
    tls: bool


def parse_redis_url(url: str) -> RedisTarget:
    """Split a Redis URL (any form :func:`normalize_redis_url` accepts) into its parts.

    Raises ConfigError (option ``--redis-url``) for a malformed URL.
    """
    try:
        parts = urlsplit(normalize_redis_url(url))
    except ValueError as exc:
        raise ConfigError("--redis-url", "config", str(exc)) from None
    if parts.scheme == "redis+unix":
        query = dict(parse_qsl(parts.query))
        return RedisTarget(
            host=None,
            port=None,
            unix_socket_path=unquote(parts.path),
            db=int(query.get("db", "0")),
            username=query.get("user"),
            password=query.get("pass"),
            tls=False,
        )
    return RedisTarget(
        host=parts.hostname,
        port=parts.port,
        unix_socket_path=None,
        db=int(parts.path.strip("/") or "0"),
        username=unquote(parts.username) if parts.username else None,
        password=unquote(parts.password) if parts.password else None,
        tls=parts.scheme == "rediss",
    )


def redis_from_config(
    config: Config, url: str, *, read_timeout: float | None = None
) -> aioredis.Redis:
    """A client for ``url`` (one of ``config.redis_urls``) with the configured TLS options.

    A connect timeout of :data:`CONNECT_TIMEOUT`, TCP keepalive, raw bytes.
    ``read_timeout`` bounds each command: give one for key commands, so a
    half-open connection fails them instead of hanging; leave it None for a
    subscription (a quiet channel is not a dead one). Raises ConfigError for a
    malformed URL.
    """
    target = parse_redis_url(url)
    tls = target.tls
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
        ssl=tls,
        ssl_certfile=config.redis_tls_cert if tls else None,
        ssl_keyfile=config.redis_tls_key if tls else None,
        ssl_ca_certs=config.redis_tls_ca if tls else None,
        # Insecure means no checks at all, so the hostname check goes too.
        ssl_check_hostname=not (
            config.redis_tls_dont_validate_hostname or config.redis_tls_insecure
        ),
        ssl_cert_reqs=ssl.CERT_NONE if config.redis_tls_insecure else ssl.CERT_REQUIRED,
    )


def describe_redis_url(url: str) -> str:
    """A log-safe description of ``url``: address, db, user and TLS, never the password."""
    try:
        target = parse_redis_url(url)
    except ConfigError:
        return "an invalid Redis URL"
    if target.unix_socket_path is not None:
        where = f"unix:{target.unix_socket_path}"
    else:
        host = f"[{target.host}]" if target.host and ":" in target.host else target.host
        where = f"{'rediss' if target.tls else 'redis'} {host}:{target.port}"
    who = f" as {target.username}" if target.username else ""
    auth = " with password" if target.password else ""
    return f"{where} db {target.db}{who}{auth}"
