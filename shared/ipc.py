"""Router <-> worker messages and their wire framing, without I/O.

Each frame is a 4-byte big-endian length followed by a msgpack array whose
first element is the message tag. :class:`FrameDecoder` is fed bytes and yields
typed messages; :func:`encode` turns a message into one frame. Every length is
checked against the decoder's limit before anything is buffered further, and
every malformed input raises :class:`shared.errors.FrameError` and nothing else.
"""

from __future__ import annotations

import enum
import struct
from dataclasses import dataclass
from typing import Any

import msgpack

from shared.errors import FrameError
from shared.messages import MessageKind
from shared.statistics import WorkerStatistics

HEADER = struct.Struct(">I")
# A worker may hold thousands of users; a full registration fits easily in this.
MAX_FRAME_SIZE = 16 * 1024 * 1024


class Tag(enum.IntEnum):
    # worker -> router
    HELLO = 1
    RELEASE = 3
    CONSUME_TOKEN = 4
    STATS = 5
    HTTP_QUERY = 6
    CHECK_LOGIN = 7
    # router -> worker
    DELIVER = 20
    STATUS = 21
    CONTROL = 24
    HTTP_ANSWER = 25
    LOGIN_RESULT = 26


@dataclass(frozen=True, slots=True)
class Hello:
    """First message of a worker link: who it is and every user it holds."""

    worker_id: int
    pid: int
    users: dict[str, int]  # user -> number of open connections


@dataclass(frozen=True, slots=True)
class Release:
    """One connection of ``user`` closed."""

    user: str


@dataclass(frozen=True, slots=True)
class ConsumeToken:
    """Consume a pre-auth token; the router answers with :class:`LoginResult`."""

    request_id: int
    token: str


@dataclass(frozen=True, slots=True)
class Stats:
    """A worker's statistics, summed by the router for metrics."""

    values: WorkerStatistics


@dataclass(frozen=True, slots=True)
class HttpQuery:
    """A self-test request (docs/PROTOCOL.md section 5) for the router to answer."""

    request_id: int
    method: str
    path: str
    token: str


@dataclass(frozen=True, slots=True)
class CheckLogin:
    """Credentials to verify with Nextcloud, once for the whole gateway.

    The password crosses only the private IPC socket (a 0700 directory).
    """

    request_id: int
    username: str
    password: str
    forwarded_for: str

    def __repr__(self) -> str:  # never show the password, even in a debugger
        return f"CheckLogin({self.request_id}, {self.username!r}, ***)"


@dataclass(frozen=True, slots=True)
class LoginResult:
    """Answer to :class:`CheckLogin` and :class:`ConsumeToken`.

    ``user`` when the login is valid *and* admitted under the gateway-wide
    per-user limit (the router has counted the connection); else ``error``,
    a reason safe to send to the client.
    """

    request_id: int
    user: str | None
    error: str


@dataclass(frozen=True, slots=True)
class HttpAnswer:
    request_id: int
    status: int
    body: str


@dataclass(frozen=True, slots=True)
class Deliver:
    """One message for several users of one worker.

    ``file_ids`` is only meaningful for FILE (None = ids unknown). ``text`` is
    the message of a CUSTOM delivery (``type`` or ``type body``); the worker
    frames it once for all its recipients. ``published`` is the router's
    wall-clock receive time, for latency metrics.
    """

    users: tuple[str, ...]
    kind: MessageKind
    file_ids: tuple[int, ...] | None = None
    text: str | None = None
    published: float = 0.0


@dataclass(frozen=True, slots=True)
class Status:
    """Router state the workers need: Redis subscription and gateway-wide counts."""

    redis_subscribed: bool
    active_connections: int
    workers_linked: int


class ControlAction(enum.IntEnum):
    RESET = 0  # close every client connection
    LOG_LEVEL = 1  # argument: level name, or "" to restore the configured one
    REPORT = 2  # send Stats now (a scrape wants fresh numbers)


@dataclass(frozen=True, slots=True)
class Control:
    action: ControlAction
    argument: str = ""


Message = (
    Hello
    | Release
    | ConsumeToken
    | Stats
    | HttpQuery
    | HttpAnswer
    | CheckLogin
    | LoginResult
    | Deliver
    | Status
    | Control
)


# Reused: packb builds a Packer per call. Each process is single-threaded on this path,
# and a Packer empties its buffer after every pack, failed ones included.
_PACKER = msgpack.Packer(use_bin_type=True)


def encode(message: Message) -> bytes:
    """One length-prefixed frame for ``message``."""
    body: bytes = _PACKER.pack(_to_wire(message))
    return HEADER.pack(len(body)) + body


def encode_deliver_to(users: tuple[str, ...] | list[str], template: Deliver) -> bytes:
    """``template`` addressed to ``users``, encoded without building another Deliver:
    the router sends one template to many workers, each with its own users."""
    body: bytes = _PACKER.pack(_deliver_wire(users, template))
    return HEADER.pack(len(body)) + body


def _deliver_wire(users: tuple[str, ...] | list[str], d: Deliver) -> list[Any]:
    return [Tag.DELIVER, users, d.kind, d.file_ids, d.text, d.published]


def _to_wire(m: Message) -> list[Any]:
    match m:
        case Deliver():
            return _deliver_wire(m.users, m)
        case Hello():
            return [Tag.HELLO, m.worker_id, m.pid, m.users]
        case Release():
            return [Tag.RELEASE, m.user]
        case ConsumeToken():
            return [Tag.CONSUME_TOKEN, m.request_id, m.token]
        case Stats():
            return [Tag.STATS, m.values.to_wire()]
        case HttpQuery():
            return [Tag.HTTP_QUERY, m.request_id, m.method, m.path, m.token]
        case HttpAnswer():
            return [Tag.HTTP_ANSWER, m.request_id, m.status, m.body]
        case CheckLogin():
            return [Tag.CHECK_LOGIN, m.request_id, m.username, m.password, m.forwarded_for]
        case LoginResult():
            return [Tag.LOGIN_RESULT, m.request_id, m.user, m.error]
        case Status():
            return [Tag.STATUS, m.redis_subscribed, m.active_connections, m.workers_linked]
        case Control():
            return [Tag.CONTROL, int(m.action), m.argument]
    raise TypeError(f"not an IPC message: {m!r}")  # pragma: no cover


# Lookups by plain int: an Enum call per message is measurable on the hot path.
_TAGS = {int(t): t for t in Tag}
_KINDS = {int(k): k for k in MessageKind}


def _str(v: object) -> str:
    if not isinstance(v, str):
        raise FrameError(f"expected a string, got {type(v).__name__}")
    return v


def _int(v: object) -> int:
    if not isinstance(v, int) or isinstance(v, bool):
        raise FrameError(f"expected an integer, got {type(v).__name__}")
    return v


def _opt_str(v: object) -> str | None:
    return None if v is None else _str(v)


def _from_wire(item: object) -> Message:
    if not isinstance(item, list) or not item:
        raise FrameError("frame is not a tagged array")
    tag = _TAGS.get(item[0]) if type(item[0]) is int else None
    if tag is None:
        raise FrameError(f"unknown message tag {item[0]!r}")
    args = item[1:]
    try:
        match tag:
            case Tag.DELIVER:
                users, kind, ids, text, published = args
                if not isinstance(users, list) or not all(type(u) is str for u in users):
                    raise FrameError("deliver users is not a list of strings")
                file_ids = None if ids is None else tuple(_int(i) for i in ids)
                if not isinstance(published, float | int):
                    raise FrameError("deliver time is not a number")
                if text is not None and not isinstance(text, str):
                    raise FrameError("deliver text is not a string")
                message_kind = _KINDS.get(kind) if type(kind) is int else None
                if message_kind is None:
                    raise FrameError(f"unknown message kind {kind!r}")
                return Deliver(tuple(users), message_kind, file_ids, text, float(published))
            case Tag.HELLO:
                worker_id, pid, users = args
                if not isinstance(users, dict):
                    raise FrameError("hello users is not a map")
                return Hello(_int(worker_id), _int(pid),
                             {_str(k): _int(v) for k, v in users.items()})  # fmt: skip
            case Tag.RELEASE:
                (user,) = args
                return Release(_str(user))
            case Tag.CONSUME_TOKEN:
                request_id, token = args
                return ConsumeToken(_int(request_id), _str(token))
            case Tag.STATS:
                (values,) = args
                return Stats(WorkerStatistics.from_wire(values))
            case Tag.HTTP_QUERY:
                request_id, method, path, token = args
                return HttpQuery(_int(request_id), _str(method), _str(path), _str(token))
            case Tag.CHECK_LOGIN:
                request_id, username, password, forwarded = args
                return CheckLogin(_int(request_id), _str(username), _str(password), _str(forwarded))
            case Tag.LOGIN_RESULT:
                request_id, user, error = args
                return LoginResult(_int(request_id), _opt_str(user), _str(error))
            case Tag.HTTP_ANSWER:
                request_id, status, body = args
                return HttpAnswer(_int(request_id), _int(status), _str(body))
            case Tag.STATUS:
                subscribed, active, linked = args
                return Status(bool(subscribed), _int(active), _int(linked))
            case Tag.CONTROL:
                action, argument = args
                return Control(ControlAction(action), _str(argument))
    except (ValueError, TypeError) as exc:
        # Wrong arity (unpacking) or an out-of-range enum value.
        raise FrameError(f"malformed {tag.name} message: {exc}") from exc
    raise FrameError(f"unhandled tag {tag!r}")  # pragma: no cover


class FrameDecoder:
    """Incremental decoder: feed bytes, get complete messages.

    Raises :class:`FrameError` for a frame longer than ``max_frame_size`` (before
    buffering its body) or a body that is not a valid message; after an error
    the stream is unusable and the link must be closed.
    """

    __slots__ = ("_buffer", "_max")

    def __init__(self, max_frame_size: int = MAX_FRAME_SIZE) -> None:
        self._buffer = bytearray()
        self._max = max_frame_size

    def feed(self, data: bytes) -> list[Message]:
        buf = self._buffer
        buf += data
        out: list[Message] = []
        offset = 0
        size = len(buf)
        while size - offset >= HEADER.size:
            (length,) = HEADER.unpack_from(buf, offset)
            if length > self._max:
                raise FrameError(f"frame of {length} bytes exceeds the limit of {self._max}")
            end = offset + HEADER.size + length
            if end > size:
                break
            body = bytes(buf[offset + HEADER.size : end])
            offset = end
            try:
                item = msgpack.unpackb(body, raw=False, strict_map_key=True)
            except Exception as exc:  # msgpack raises several unrelated types
                raise FrameError(f"undecodable frame: {exc}") from exc
            out.append(_from_wire(item))
        if offset:
            del buf[:offset]
        return out

    @property
    def buffered(self) -> int:
        """Bytes held waiting for the rest of a frame."""
        return len(self._buffer)
