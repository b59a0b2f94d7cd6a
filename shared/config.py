"""The gateway's one validated, frozen configuration object.

Built once by the supervisor (see :func:`load_config`), pickled or inherited by
every child process. Invalid values raise :class:`shared.errors.ConfigError`
naming the option and where it came from; only ``__main__`` turns that into an
exit code.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from urllib.parse import urlsplit, urlunsplit

from shared.errors import ConfigError

COMPATIBLE_NOTIFY_PUSH_VERSION = "1.4.0"
LOG_LEVELS = ("trace", "debug", "info", "warn", "error")


@dataclass(frozen=True, slots=True)
class Config:
    """Effective configuration. Secrets live only inside the URLs."""

    nextcloud_url: str
    redis_urls: tuple[str, ...]
    database_url: str | None = None
    database_prefix: str = "oc_"
    redis_tls_cert: str | None = None
    redis_tls_key: str | None = None
    redis_tls_ca: str | None = None
    redis_tls_dont_validate_hostname: bool = False
    redis_tls_insecure: bool = False
    bind: str = "0.0.0.0"
    port: int = 7867
    socket_path: str | None = None
    socket_permissions: int = 0o660
    metrics_port: int | None = None
    metrics_socket_path: str | None = None
    tls_cert: str | None = None
    tls_key: str | None = None
    allow_self_signed: bool = False
    user_agent: str | None = None
    log_level: str = "warn"
    no_ansi: bool = False
    max_debounce_time: int = 15
    max_connection_time: int = 0
    debounce_disable: bool = False
    workers: int = field(default_factory=lambda: os.cpu_count() or 1)
    # Seconds over which client connections are closed on shutdown, so that
    # clients do not all reconnect in the same second.
    drain_time: float = 3.0
    config_file: str | None = None

    def __post_init__(self) -> None:
        if not 0 < self.port < 65536:
            raise ConfigError("--port", "config", f"{self.port} is not a TCP port")
        if self.workers < 1 or self.workers > 1024:
            raise ConfigError("--workers", "config", f"{self.workers} is not in 1..1024")
        if self.log_level not in LOG_LEVELS:
            raise ConfigError("--log-level", "config", f"unknown level {self.log_level!r}")
        if not self.redis_urls:
            raise ConfigError("--redis-url", "config", "no Redis server configured")

    def dump(self) -> dict[str, object]:
        """The configuration as JSON-able data with every secret replaced by ``***``."""
        return {
            "database_url": mask_url(self.database_url) if self.database_url else None,
            "database_prefix": self.database_prefix,
            "redis_urls": [mask_url(u) for u in self.redis_urls],
            "nextcloud_url": mask_url(self.nextcloud_url),
            "bind": self.bind,
            "port": self.port,
            "socket_path": self.socket_path,
            "socket_permissions": f"{self.socket_permissions:04o}",
            "metrics_port": self.metrics_port,
            "metrics_socket_path": self.metrics_socket_path,
            "tls_cert": self.tls_cert,
            "tls_key": self.tls_key,
            "allow_self_signed": self.allow_self_signed,
            "user_agent": self.user_agent,
            "log_level": self.log_level,
            "no_ansi": self.no_ansi,
            "workers": self.workers,
            "max_debounce_time": self.max_debounce_time,
            "max_connection_time": self.max_connection_time,
            "debounce_disable": self.debounce_disable,
            "drain_time": self.drain_time,
        }


def mask_url(url: str) -> str:
    """Replace the password of ``url`` (and any ``password=`` query value) by ``***``."""
    parts = urlsplit(url)
    netloc = parts.netloc
    if "@" in netloc:
        userinfo, _, hostport = netloc.rpartition("@")
        user, sep, _password = userinfo.partition(":")
        netloc = f"{user}:***@{hostport}" if sep else f"{userinfo}@{hostport}"
        if not sep and not parts.scheme.startswith(("redis", "rediss")):
            netloc = f"{userinfo}@{hostport}"
        elif not sep:
            # redis://secret@host means the password alone.
            netloc = f"***@{hostport}"
    query = "&".join(
        f"{k}=***" if k.lower() in ("password", "pass") else f"{k}{eq}{v}"
        for k, eq, v in (item.partition("=") for item in parts.query.split("&") if item)
    )
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


def _env_flag(value: str) -> bool:
    return value.strip().lower() in ("1", "true", "yes", "on")


def load_config(argv: Sequence[str], environ: Mapping[str, str]) -> Config:
    """Build the configuration from the command line and the environment.

    Minimal version: command line > environment > defaults. The full
    notify_push option set and config.php support extend this function.
    """
    parser = argparse.ArgumentParser(prog="notify-push-gateway", add_help=True)
    parser.add_argument("config_file", nargs="?")
    parser.add_argument("--nextcloud-url")
    parser.add_argument("--redis-url", action="append")
    parser.add_argument("--database-url")
    parser.add_argument("--database-prefix")
    parser.add_argument("-p", "--port")
    parser.add_argument("--bind")
    parser.add_argument("--socket-path")
    parser.add_argument("--workers")
    parser.add_argument("--log-level")
    parser.add_argument("--max-debounce-time")
    parser.add_argument("--max-connection-time")
    parser.add_argument("--dump-config", action="store_true")
    parser.add_argument("--version", action="store_true")
    args = parser.parse_args(list(argv))

    def pick(flag: str, env: str) -> tuple[str | None, str]:
        value = getattr(args, flag)
        if value is not None:
            return value, "command line"
        if env in environ:
            return environ[env], "environment"
        return None, "default"

    def as_int(flag: str, env: str, default: int) -> int:
        raw, source = pick(flag, env)
        if raw is None:
            return default
        try:
            return int(raw)
        except ValueError:
            name = "--" + flag.replace("_", "-") if source == "command line" else env
            raise ConfigError(name, source, f"{raw!r} is not an integer") from None

    nextcloud_url, _ = pick("nextcloud_url", "NEXTCLOUD_URL")
    if not nextcloud_url:
        raise ConfigError("--nextcloud-url", "default", "no Nextcloud URL configured")
    redis_urls: tuple[str, ...]
    if args.redis_url:
        redis_urls = tuple(args.redis_url)
    elif environ.get("REDIS_URL"):
        redis_urls = (environ["REDIS_URL"],)
    else:
        raise ConfigError("--redis-url", "default", "no Redis server configured")
    database_url, _ = pick("database_url", "DATABASE_URL")
    prefix, _ = pick("database_prefix", "DATABASE_PREFIX")
    bind, _ = pick("bind", "BIND")
    socket_path, _ = pick("socket_path", "SOCKET_PATH")
    log_level, _ = pick("log_level", "LOG")
    return Config(
        nextcloud_url=nextcloud_url.rstrip("/"),
        redis_urls=redis_urls,
        database_url=database_url,
        database_prefix=prefix or "oc_",
        port=as_int("port", "PORT", 7867),
        bind=bind or "0.0.0.0",
        socket_path=socket_path,
        workers=as_int("workers", "WORKERS", os.cpu_count() or 1),
        log_level=log_level or "warn",
        max_debounce_time=as_int("max_debounce_time", "MAX_DEBOUNCE_TIME", 15),
        max_connection_time=as_int("max_connection_time", "MAX_CONNECTION_TIME", 0),
        debounce_disable="DEBOUNCE_DISABLE" in environ,
        config_file=args.config_file,
    )
