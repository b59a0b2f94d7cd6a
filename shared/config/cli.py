"""The command line and environment: the option table, and the one place a Config is built.

Sources, strongest first: the command line, the environment, Nextcloud's
config.php (the positional argument), the :class:`Config` field defaults,
exactly as notify_push reads them (docs/PROTOCOL.md section 7). Invalid or missing
values raise :class:`shared.errors.ConfigError` naming the option and where it
came from; only ``__main__`` turns that into an exit code.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import NoReturn

from shared.config.model import Config, InvalidValue, field_problem
from shared.config.nextcloud_php import NextcloudSettings, read_nextcloud_settings
from shared.config.settings import (
    Setting,
    as_bind,
    as_bool,
    as_database,
    as_existing_file,
    as_int,
    as_log_level,
    as_nextcloud_url,
    as_path,
    as_permissions,
    as_redis,
    as_seconds,
    as_text,
)
from shared.config.urls import RedisTarget
from shared.errors import ConfigError

COMPATIBLE_NOTIFY_PUSH_VERSION = "1.4.0"


@dataclass(frozen=True, slots=True)
class Invocation:
    """What the command line asks for: run, dump the configuration, or print the version.

    ``config`` is None only with ``show_version``, which needs no configuration.
    """

    config: Config | None
    dump_config: bool
    show_version: bool
    check: bool = False  # run the setup checks (shared.diagnostics) and exit


@dataclass(frozen=True, slots=True)
class _Option:
    """One option: its flag and variable, how its text becomes the Config field's value."""

    flag: str  # the long command-line flag
    env: str | None
    convert: Callable[[Setting], object]
    field: str = ""  # the Config field; "" when it is the flag's name
    short: str | None = None
    switch: bool = False  # a flag without a value (--no-ansi)
    keep_empty: bool = False  # an empty value is a value, not "unset" (an empty prefix)
    required: str = ""  # what is missing, for an option with no default

    @property
    def dest(self) -> str:
        return self.flag[2:].replace("-", "_")

    @property
    def config_field(self) -> str:
        return self.field or self.dest


# In the order --help lists them. --redis-url (repeatable) is read apart.
_OPTIONS = (
    _Option("--database-url", "DATABASE_URL", as_database, field="database", required="database"),
    _Option("--database-prefix", "DATABASE_PREFIX", as_text, keep_empty=True),
    _Option("--redis-tls-cert", "REDIS_TLS_CERT", as_existing_file),
    _Option("--redis-tls-key", "REDIS_TLS_KEY", as_existing_file),
    _Option("--redis-tls-ca", "REDIS_TLS_CA", as_existing_file),
    _Option(
        "--redis-tls-dont-validate-hostname",
        "REDIS_TLS_DONT_VALIDATE_HOSTNAME",
        as_bool,
        switch=True,
    ),
    _Option("--redis-tls-insecure", "REDIS_TLS_INSECURE", as_bool, switch=True),
    _Option("--redis-key-prefix", "REDIS_KEY_PREFIX", as_text),
    _Option("--nextcloud-url", "NEXTCLOUD_URL", as_nextcloud_url, required="Nextcloud URL"),
    _Option("--port", "PORT", as_int, short="-p"),
    _Option("--metrics-port", "METRICS_PORT", as_int, short="-m"),
    _Option("--bind", "BIND", as_bind),
    _Option("--socket-path", "SOCKET_PATH", as_path),
    _Option("--socket-permissions", "SOCKET_PERMISSIONS", as_permissions),
    _Option("--metrics-socket-path", "METRICS_SOCKET_PATH", as_path),
    _Option("--tls-cert", "TLS_CERT", as_existing_file),
    _Option("--tls-key", "TLS_KEY", as_existing_file),
    _Option("--allow-self-signed", "ALLOW_SELF_SIGNED", as_bool, switch=True),
    _Option("--user-agent", "USER_AGENT", as_text),
    _Option("--log-level", "LOG", as_log_level),
    _Option("--no-ansi", "NO_ANSI", as_bool, switch=True),
    _Option("--max-debounce-time", "MAX_DEBOUNCE_TIME", as_int),
    _Option("--max-connection-time", "MAX_CONNECTION_TIME", as_int),
    _Option("--debounce-disable", "DEBOUNCE_DISABLE", as_bool, switch=True),
    _Option("--workers", "WORKERS", as_int),
    _Option("--drain-time", "DRAIN_TIME", as_seconds),
    _Option("--auth-timeout", "AUTH_TIMEOUT", as_seconds),
)


# Read in the order of the Config's fields, so that of two bad values the
# first field's is reported, as it always was.
_FIELD_ORDER = {spec.name: index for index, spec in enumerate(dataclasses.fields(Config))}
_IN_FIELD_ORDER = sorted(_OPTIONS, key=lambda option: _FIELD_ORDER[option.config_field])


class _ArgumentParser(argparse.ArgumentParser):
    """argparse that raises ConfigError instead of exiting on a usage error."""

    def error(self, message: str) -> NoReturn:
        raise ConfigError("arguments", "command line", message)


def _argument_parser() -> argparse.ArgumentParser:
    parser = _ArgumentParser(
        prog="notify-push-gateway",
        description="Push server for Nextcloud, compatible with notify_push.",
        allow_abbrev=False,
    )
    parser.add_argument("config_file", nargs="?", metavar="CONFIG_FILE")
    for option in _OPTIONS:
        names = [option.short, option.flag] if option.short else [option.flag]
        if option.switch:
            parser.add_argument(*names, action="store_const", const="true", default=None)
        else:
            parser.add_argument(*names, metavar="VALUE")
    parser.add_argument("--redis-url", action="append", metavar="URL")
    parser.add_argument("--glob-config", action="store_true")
    parser.add_argument("--dump-config", action="store_true")
    parser.add_argument(
        "--check",
        action="store_true",
        help="check the setup with Nextcloud and Redis (what occ notify_push:setup tests), "
        "one line per check; exit 0 when all pass",
    )
    parser.add_argument("--version", action="store_true")
    return parser


@dataclass(slots=True)
class _Sources:
    """Looks an option up on the command line, then the environment, then config.php."""

    args: argparse.Namespace
    environ: Mapping[str, str]
    file: dict[str, Setting]  # config.php's texts, by Config field

    def get(self, option: _Option) -> Setting | None:
        value = getattr(self.args, option.dest)
        if value is not None:
            return Setting(value, option.flag, "command line")
        if option.env is not None and option.env in self.environ:
            return Setting(self.environ[option.env], option.env, "environment")
        return self.file.get(option.config_field)


def _redis(sources: _Sources, from_file: NextcloudSettings | None) -> tuple[RedisTarget, ...]:
    args, environ = sources.args, sources.environ
    if args.redis_url:
        settings = [Setting(u, "--redis-url", "command line") for u in args.redis_url]
    elif environ.get("REDIS_URL"):
        settings = [Setting(environ["REDIS_URL"], "REDIS_URL", "environment")]
    elif from_file is not None and from_file.redis is not None:
        # TLS settings of config.php apply only to the Redis that config.php names.
        for dest, setting in from_file.redis.tls.items():
            sources.file.setdefault(dest, setting)
        return from_file.redis.targets
    else:
        raise ConfigError(
            "--redis-url", "default", "no Redis configured (REDIS_URL or 'redis' in config.php)"
        )
    return tuple(as_redis(setting) for setting in settings)


def _build(args: argparse.Namespace, environ: Mapping[str, str]) -> Config:
    from_file: NextcloudSettings | None = None
    if args.config_file is not None:
        if not os.path.isfile(args.config_file):
            raise ConfigError("CONFIG_FILE", "command line", f"{args.config_file!r} does not exist")
        from_file = read_nextcloud_settings(args.config_file, environ, args.glob_config)
    sources = _Sources(args, environ, dict(from_file.texts) if from_file else {})
    redis = _redis(sources, from_file)

    # The value of each field the admin set, and who set it (to name in errors).
    values: dict[str, object] = {}
    origin: dict[str, tuple[str, str]] = {}
    if from_file is not None:
        values["database"] = from_file.database
        origin["database"] = ("db*", "config.php")
    for option in _IN_FIELD_ORDER:
        setting = sources.get(option)
        if setting is not None and (setting.value or option.keep_empty):
            value = option.convert(setting)
            problem = field_problem(option.config_field, value)
            if problem is not None:
                setting.fail(problem)
            values[option.config_field] = value
            origin[option.config_field] = (setting.name, setting.source)
        elif option.required and (setting is not None or option.config_field not in values):
            # An empty value on the command line or in the environment hides config.php's.
            raise ConfigError(
                option.flag,
                "default",
                f"no {option.required} configured ({option.env} or config.php)",
            )
    values["redis"] = redis
    if args.config_file:
        values["config_file"] = os.path.abspath(args.config_file)
    # Each converter returns its field's type, which mypy cannot follow through
    # the table; Config checks every value again. A field not in ``values``
    # keeps its default.
    build: Callable[..., Config] = Config
    try:
        return build(**values)
    except InvalidValue as exc:
        name, source = origin.get(exc.field, (exc.field, "default"))
        raise ConfigError(name, source, exc.reason) from None


def parse_invocation(argv: Sequence[str], environ: Mapping[str, str]) -> Invocation:
    """Read the command line and environment (and config.php) into an :class:`Invocation`.

    ``--version`` needs no other configuration and yields ``config=None``.
    Raises ConfigError for a usage error or any invalid or missing value.
    ``--help`` prints the usage and raises SystemExit(0), as argparse does.
    """
    args = _argument_parser().parse_args(list(argv))
    if args.version:
        return Invocation(config=None, dump_config=False, show_version=True)
    return Invocation(
        config=_build(args, environ),
        dump_config=args.dump_config,
        show_version=False,
        check=args.check,
    )


def load_config(argv: Sequence[str], environ: Mapping[str, str]) -> Config:
    """The validated configuration from the command line, environment and config.php.

    Raises ConfigError naming the option and its source for any invalid or
    missing value.
    """
    return _build(_argument_parser().parse_args(list(argv)), environ)
