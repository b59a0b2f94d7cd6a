"""Events the Nextcloud app publishes on Redis (docs/PROTOCOL.md section 1), decoded and validated.

:func:`decode_event` is the only place that looks at raw payloads: it returns a
frozen dataclass or raises :class:`shared.errors.EventError` naming the channel.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from shared.errors import EventError

MAX_U32 = 2**32 - 1
MAX_U64 = 2**64 - 1
# Nextcloud paths are bounded by its filecache column (4000 chars); anything
# much larger is not a real event.
MAX_PATH_LENGTH = 8192
MAX_USER_LENGTH = 256
MAX_PAYLOAD_SIZE = 1024 * 1024


@dataclass(frozen=True, slots=True)
class StorageUpdate:
    storage: int
    path: str
    file_id: int


@dataclass(frozen=True, slots=True)
class GroupUpdate:
    user: str
    group: str


@dataclass(frozen=True, slots=True)
class ShareCreate:
    user: str


@dataclass(frozen=True, slots=True)
class Activity:
    user: str


@dataclass(frozen=True, slots=True)
class Notification:
    user: str


@dataclass(frozen=True, slots=True)
class Custom:
    """``body`` is the compact JSON text sent after the type, or None for no body."""

    user: str
    message: str
    body: str | None


@dataclass(frozen=True, slots=True)
class PreAuth:
    user: str
    token: str


@dataclass(frozen=True, slots=True)
class TestCookie:
    cookie: int


@dataclass(frozen=True, slots=True)
class LogSpec:
    """``spec`` None means: restore the configured level."""

    spec: str | None


@dataclass(frozen=True, slots=True)
class Query:
    what: str


@dataclass(frozen=True, slots=True)
class Signal:
    what: str


Event = (
    StorageUpdate
    | GroupUpdate
    | ShareCreate
    | Activity
    | Notification
    | Custom
    | PreAuth
    | TestCookie
    | LogSpec
    | Query
    | Signal
)


# One encoder for every event: json.dumps with options builds a new encoder per call,
# a measurable share of the router's cost per notify_custom event.
_BODY_ENCODER = json.JSONEncoder(separators=(",", ":"), sort_keys=True, ensure_ascii=False)


def encode_custom_body(body: object) -> str:
    """The body as notify_push writes it: compact JSON, keys sorted, UTF-8 kept."""
    return _BODY_ENCODER.encode(body)


def _field(channel: str, obj: object, name: str) -> Any:
    if not isinstance(obj, dict):
        raise EventError(channel, "payload is not a JSON object")
    if name not in obj:
        raise EventError(channel, f"missing field {name!r}")
    return obj[name]


def _unicode(channel: str, text: str, name: str) -> str:
    """``text`` if it can be sent on: JSON's ``\\ud800`` escapes decode to lone
    surrogates, which no UTF-8 encoder (IPC, websocket) accepts."""
    if not text.isascii():
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            raise EventError(channel, f"{name!r} is not valid Unicode (lone surrogate)") from None
    return text


def _user(channel: str, obj: object, name: str = "user") -> str:
    value = _field(channel, obj, name)
    if not isinstance(value, str) or not value:
        raise EventError(channel, f"{name!r} is not a non-empty string")
    if len(value) > MAX_USER_LENGTH:
        raise EventError(channel, f"{name!r} is longer than {MAX_USER_LENGTH} characters")
    return _unicode(channel, value, name)


def _uint(channel: str, obj: object, name: str, limit: int) -> int:
    value = _field(channel, obj, name)
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= limit:
        raise EventError(channel, f"{name!r} is not an integer in 0..{limit}")
    return value


def _storage_update(ch: str, p: object) -> Event:
    path = _field(ch, p, "path")
    if not isinstance(path, str):
        raise EventError(ch, "'path' is not a string")
    if len(path) > MAX_PATH_LENGTH:
        raise EventError(ch, f"'path' is longer than {MAX_PATH_LENGTH} characters")
    path = _unicode(ch, path, "path")
    return StorageUpdate(_uint(ch, p, "storage", MAX_U32), path, _uint(ch, p, "file_id", MAX_U64))


def _group(ch: str, p: object) -> Event:
    group = _field(ch, p, "group")
    if not isinstance(group, str):
        raise EventError(ch, "'group' is not a string")
    return GroupUpdate(_user(ch, p), _unicode(ch, group, "group"))


def _custom(ch: str, p: object) -> Event:
    message = _field(ch, p, "message")
    if not isinstance(message, str) or not message:
        raise EventError(ch, "'message' is not a non-empty string")
    assert isinstance(p, dict)
    body = p.get("body")
    text = None if body is None else _unicode(ch, encode_custom_body(body), "body")
    return Custom(_user(ch, p), _unicode(ch, message, "message"), text)


def _pre_auth(ch: str, p: object) -> Event:
    token = _field(ch, p, "token")
    if not isinstance(token, str) or not token or len(token) > 256:
        raise EventError(ch, "'token' is not a non-empty string")
    return PreAuth(_user(ch, p), _unicode(ch, token, "token"))


def _cookie(ch: str, p: object) -> Event:
    if not isinstance(p, int) or isinstance(p, bool) or not 0 <= p <= MAX_U32:
        raise EventError(ch, "payload is not an integer in 0..4294967295")
    return TestCookie(p)


def _config(ch: str, p: object) -> Event:
    if p == "log_restore":
        return LogSpec(None)
    if isinstance(p, dict) and isinstance(p.get("log_spec"), str):
        return LogSpec(p["log_spec"])
    raise EventError(ch, 'payload is neither {"log_spec": "..."} nor "log_restore"')


def _word(kind: type[Query] | type[Signal], allowed: str) -> Callable[[str, object], Event]:
    def decode(ch: str, p: object) -> Event:
        if p != allowed:
            raise EventError(ch, f"payload is not {json.dumps(allowed)}")
        return kind(allowed)

    return decode


_DECODERS: dict[str, Callable[[str, object], Event]] = {
    "notify_storage_update": _storage_update,
    "notify_group_membership_update": _group,
    "notify_user_share_created": lambda ch, p: ShareCreate(_user(ch, p)),
    "notify_activity": lambda ch, p: Activity(_user(ch, p)),
    "notify_notification": lambda ch, p: Notification(_user(ch, p)),
    "notify_custom": _custom,
    "notify_pre_auth": _pre_auth,
    "notify_test_cookie": _cookie,
    "notify_config": _config,
    "notify_query": _word(Query, "metrics"),
    "notify_signal": _word(Signal, "reset"),
}

CHANNELS: tuple[str, ...] = tuple(_DECODERS)
_CHANNEL_NAMES = {name.encode(): name for name in CHANNELS}


def channel_name(raw: bytes) -> str:
    """The channel's name as text (cached for the eleven known channels)."""
    name = _CHANNEL_NAMES.get(raw)
    return name if name is not None else raw.decode("utf-8", "replace")


def decode_event(channel: str, payload: bytes) -> Event:
    """Decode one Redis message. Raises :class:`EventError` for anything invalid."""
    decoder = _DECODERS.get(channel)
    if decoder is None:
        raise EventError(channel, "unknown channel")
    if len(payload) > MAX_PAYLOAD_SIZE:
        raise EventError(channel, f"payload larger than {MAX_PAYLOAD_SIZE} bytes")
    try:
        parsed = json.loads(payload)
    except (ValueError, UnicodeDecodeError) as exc:
        raise EventError(channel, f"payload is not JSON ({exc.__class__.__name__})") from exc
    except RecursionError as exc:
        raise EventError(channel, "payload nests too deeply") from exc
    return decoder(channel, parsed)
