"""Option values as the admin wrote them, and their conversion into typed values.

A :class:`Setting` is one option's text with the name the admin used for it
(``--port``, ``PORT``, ``dbtableprefix``) and where it came from (``command
line``, ``environment``, ``config.php``). The ``as_…`` converters read the
text or raise :class:`shared.errors.ConfigError` naming both; bounds are the
:class:`shared.config.model.Config`'s to check.
"""

from __future__ import annotations

import ipaddress
import os
import re
from dataclasses import dataclass
from typing import NoReturn
from urllib.parse import urlsplit

from shared.config.urls import (
    DatabaseTarget,
    RedisTarget,
    mask_url,
    parse_database_url,
    parse_redis_url,
    url_error,
)
from shared.errors import ConfigError

_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off", "")


@dataclass(frozen=True, slots=True)
class Setting:
    """One option's text as the admin wrote it, with its name and source."""

    value: str
    name: str
    source: str

    def fail(self, message: str) -> NoReturn:
        raise ConfigError(self.name, self.source, message)


def as_text(setting: Setting) -> str:
    return setting.value


def as_path(setting: Setting) -> str:
    if not setting.value:
        setting.fail("the path is empty")
    return setting.value


def as_int(setting: Setting) -> int:
    try:
        return int(setting.value.strip())
    except ValueError:
        setting.fail(f"{setting.value!r} is not an integer")


def as_seconds(setting: Setting) -> float:
    try:
        return float(setting.value)
    except ValueError:
        setting.fail(f"{setting.value!r} is not a number of seconds")


def as_bool(setting: Setting) -> bool:
    text = setting.value.strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    setting.fail(f"{setting.value!r} is not a boolean (true or false)")


def as_existing_file(setting: Setting) -> str:
    if not os.path.isfile(setting.value):
        setting.fail(f"{setting.value!r} does not exist or is not a file")
    return setting.value


def as_permissions(setting: Setting) -> int:
    text = setting.value.strip()
    # An octal file mode as chmod takes it: 660, 0660 or 0o660.
    if not re.fullmatch(r"(0o?)?[0-7]{3}", text):
        setting.fail(f"{setting.value!r} is not an octal file mode such as 0660")
    return int(text.removeprefix("0o").removeprefix("0") or "0", 8)


def as_log_level(setting: Setting) -> str:
    level = setting.value.strip().lower()
    return "warn" if level == "warning" else level


def as_bind(setting: Setting) -> str:
    try:
        return str(ipaddress.ip_address(setting.value.strip().strip("[]")))
    except ValueError:
        setting.fail(f"{setting.value!r} is not an IP address")


def as_nextcloud_url(setting: Setting) -> str:
    try:
        parts = urlsplit(setting.value.strip())
    except ValueError as exc:  # its message may quote the whole authority, password included
        setting.fail(url_error(setting.value, exc))
    if parts.scheme not in ("http", "https") or not parts.hostname:
        setting.fail(f"{mask_url(setting.value)!r} is not an http:// or https:// URL")
    try:
        _ = parts.port
    except ValueError:
        setting.fail("the port is not a number in 1..65535")
    return setting.value.strip().rstrip("/")


def as_database(setting: Setting) -> DatabaseTarget:
    try:
        return parse_database_url(setting.value)
    except ValueError as exc:
        setting.fail(url_error(setting.value, exc))


def as_redis(setting: Setting) -> RedisTarget:
    try:
        return parse_redis_url(setting.value)
    except ValueError as exc:
        setting.fail(url_error(setting.value, exc))
