"""The gateway's configuration: one validated, frozen :class:`Config`, built once.

Built by the supervisor (see :func:`parse_invocation`) from the command line,
the environment and Nextcloud's config.php, then pickled or inherited by
every child process. Modules: ``model`` (the Config and its bounds), ``urls``
(the one grammar of database and Redis URLs), ``cli`` (the option table and
its sources), ``settings`` (an option's text and its conversion),
``nextcloud_php`` (config.php's entries as option values) and ``phpconfig``
(the config.php reader).
"""

from shared.config.cli import (
    COMPATIBLE_NOTIFY_PUSH_VERSION,
    Invocation,
    load_config,
    parse_invocation,
)
from shared.config.model import (
    LOG_LEVELS,
    MAX_WORKERS,
    Config,
    InvalidValue,
    default_bind,
    validate_prefix,
)
from shared.config.urls import (
    DatabaseTarget,
    Dialect,
    RedisTarget,
    mask_url,
    parse_database_url,
    parse_redis_url,
)

__all__ = [
    "COMPATIBLE_NOTIFY_PUSH_VERSION",
    "LOG_LEVELS",
    "MAX_WORKERS",
    "Config",
    "DatabaseTarget",
    "Dialect",
    "InvalidValue",
    "Invocation",
    "RedisTarget",
    "default_bind",
    "load_config",
    "mask_url",
    "parse_database_url",
    "parse_invocation",
    "parse_redis_url",
    "validate_prefix",
]
