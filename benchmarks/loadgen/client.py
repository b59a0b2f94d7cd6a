"""The per-connection client protocol and the per-process fleet that owns them.

Cheap per connection: one :class:`Client` with ``__slots__`` (no task, no queue, no
coroutine once logged in); everything a client receives goes into flat arrays of
the process-wide :class:`Recorder`.
"""

from __future__ import annotations

import array
import asyncio
import enum
import json
import logging
import secrets
import socket
import ssl
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final, cast

import redis.asyncio as aioredis

from benchmarks.loadgen import wsframes
from benchmarks.loadgen.wsframes import Frame, WsProtocolError

log = logging.getLogger("benchmarks.loadgen")

# Linux: pick the ephemeral port at connect() time from the 4-tuple rather than
# reserving it at bind() time, so one source address serves more connections.
IP_BIND_ADDRESS_NO_PORT: Final = getattr(socket, "IP_BIND_ADDRESS_NO_PORT", 24)

# Indices into a worker's slice of the shared counter array (read by the
# controller for progress bars without a round trip).
C_OK, C_FAILED, C_BENCH, C_FILE, C_OTHER, C_CLOSED, C_PINGS = range(7)
N_COUNTERS: Final = 7


class State(enum.IntEnum):
    HANDSHAKE = 0
    AUTH = 1
    OPEN = 2
    CLOSED = 3


@dataclass(frozen=True, slots=True)
class Target:
    """Where clients connect: ``ws[s]://host:port/path``."""

    host: str
    port: int
    path: str = "/ws"
    tls: bool = False
    insecure: bool = False

    @property
    def is_loopback(self) -> bool:
        return self.host == "localhost" or self.host.startswith("127.")


class Recorder:
    """Everything received after login, timestamped with ``time.time()`` on arrival."""

    __slots__ = ("bench_idx", "bench_lat", "bench_seq", "counters", "file_idx", "file_t", "other")

    def __init__(self, counters: Any) -> None:
        self.counters = counters
        self.bench_idx = array.array("i")
        self.bench_seq = array.array("q")
        self.bench_lat = array.array("d")
        self.file_idx = array.array("i")
        self.file_t = array.array("d")
        self.other: Counter[str] = Counter()

    def clear(self) -> None:
        for a in (self.bench_idx, self.bench_seq, self.bench_lat, self.file_idx, self.file_t):
            del a[:]
        self.other.clear()

    def on_message(self, idx: int, msg: bytes, now: float) -> None:
        if msg.startswith(b"bench "):
            try:
                body = json.loads(msg[6:])
                lat = now - float(body["t"])
                seq = int(body["seq"])
            except (ValueError, KeyError, TypeError):
                self.other["bench-malformed"] += 1
                return
            self.bench_idx.append(idx)
            self.bench_seq.append(seq)
            self.bench_lat.append(lat)
            self.counters.bump(C_BENCH)
        elif msg.startswith(b"notify_file"):
            self.file_idx.append(idx)
            self.file_t.append(now)
            self.counters.bump(C_FILE)
        else:
            self.other[msg.split(b" ", 1)[0][:40].decode(errors="replace")] += 1
            self.counters.bump(C_OTHER)


class Client(asyncio.Protocol):
    """One WebSocket client: handshake, two login frames, then record every message."""

    __slots__ = ("buf", "fleet", "frag", "idx", "login", "state", "transport", "waiter")

    def __init__(
        self, fleet: Fleet, idx: int, login: tuple[str, str], waiter: asyncio.Future[str]
    ) -> None:
        self.fleet = fleet
        self.idx = idx
        self.login: tuple[str, str] | None = login
        self.waiter: asyncio.Future[str] | None = waiter
        self.state = State.HANDSHAKE
        self.buf = b""
        self.frag: bytes | None = None
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports do not subclass asyncio.Transport; they implement it.
        self.transport = cast(asyncio.Transport, transport)
        self.transport.write(self.fleet.handshake)

    def connection_lost(self, exc: Exception | None) -> None:
        self.state = State.CLOSED
        self.transport = None
        self._resolve("connection lost before login")
        self.fleet.on_closed(self)

    def _resolve(self, outcome: str) -> None:
        w = self.waiter
        if w is not None:
            self.waiter = None
            if not w.done():
                w.set_result(outcome)

    def data_received(self, data: bytes) -> None:
        if self.buf:
            data = self.buf + data
            self.buf = b""
        try:
            if self.state == State.HANDSHAKE:
                n = wsframes.parse_handshake_response(data)
                if n == 0:
                    self.buf = data
                    return
                data = data[n:]
                self.state = State.AUTH
                user, password = self.login or ("", "")
                self.login = None
                assert self.transport is not None
                self.transport.write(wsframes.text(user) + wsframes.text(password))
            frames: list[Frame] = []
            used = wsframes.parse_frames(data, frames)
        except WsProtocolError as e:
            self._resolve(f"protocol error: {e}")
            if self.transport is not None:
                self.transport.abort()
            return
        if used < len(data):
            self.buf = data[used:]
        for f in frames:
            self._on_frame(f)

    def _on_frame(self, f: Frame) -> None:
        t = self.transport
        op = f.opcode
        if op == wsframes.OP_PING:
            if t is not None:
                t.write(wsframes.encode_frame(wsframes.OP_PONG, f.payload))
            self.fleet.counters.bump(C_PINGS)
        elif op == wsframes.OP_CLOSE:
            # RFC 6455 section 5.5.1: echo the close, then the server closes TCP.
            if t is not None and self.state != State.CLOSED:
                t.write(wsframes.encode_frame(wsframes.OP_CLOSE, f.payload[:2]))
                t.close()
            self.state = State.CLOSED
            self._resolve("closed before login")
        elif op in (wsframes.OP_TEXT, wsframes.OP_BINARY, wsframes.OP_CONT):
            if not f.fin:
                self.frag = (self.frag or b"") + f.payload
                return
            msg = f.payload
            if self.frag is not None:
                msg = self.frag + msg
                self.frag = None
            self._on_message(msg)

    def _on_message(self, msg: bytes) -> None:
        if self.state == State.OPEN:
            self.fleet.recorder.on_message(self.idx, msg, time.time())
        elif self.state == State.AUTH:
            if msg == b"authenticated":
                self.state = State.OPEN
                self._resolve("ok")
            elif msg.startswith(b"err: "):
                self._resolve(msg.decode(errors="replace"))

    def close(self) -> None:
        t = self.transport
        if t is not None:
            if self.state == State.OPEN:
                t.write(wsframes.close_frame())
            t.close()


class Counters:
    """This worker's slice of the shared int64 counter array."""

    __slots__ = ("arr", "base")

    def __init__(self, arr: Any, worker_id: int) -> None:
        self.arr = arr
        self.base = worker_id * N_COUNTERS

    def bump(self, which: int, n: int = 1) -> None:
        self.arr[self.base + which] += n


class Fleet:
    """All clients of one load-generator process."""

    def __init__(
        self,
        target: Target,
        source_addrs: Sequence[str],
        counters: Counters,
        redis_url: str | None,
    ) -> None:
        self.target = target
        self.source_addrs = list(source_addrs)
        self.counters = counters
        self.recorder = Recorder(counters)
        self.redis = aioredis.Redis.from_url(redis_url) if redis_url else None
        self.clients: dict[int, Client] = {}
        self.handshake = wsframes.handshake_request(f"{target.host}:{target.port}", target.path)
        self.ssl: ssl.SSLContext | None = None
        if target.tls:
            self.ssl = ssl.create_default_context()
            if target.insecure:
                self.ssl.check_hostname = False
                self.ssl.verify_mode = ssl.CERT_NONE
        self._rr = 0
        self._closed_waiter: asyncio.Future[None] | None = None

    def on_closed(self, client: Client) -> None:
        self.counters.bump(C_CLOSED)
        if self.clients.get(client.idx) is client:
            del self.clients[client.idx]
        if not self.clients and self._closed_waiter and not self._closed_waiter.done():
            self._closed_waiter.set_result(None)

    async def connect(
        self, specs: Sequence[tuple[int, str, str | None]], window: int, login_timeout: float
    ) -> dict[str, Any]:
        """Log every spec ``(idx, user, password or None for pre-auth)`` in, ``window`` at a time.

        Pre-auth tokens for a window are published just before its clients connect
        (they are valid for 15 s and single use). Returns counts, errors and login latencies.
        """
        errors: Counter[str] = Counter()
        lat = array.array("d")
        ok = 0
        for start in range(0, len(specs), window):
            chunk = specs[start : start + window]
            logins: list[tuple[int, str, str]] = []
            tokens: list[tuple[str, str]] = []
            for idx, user, password in chunk:
                if password is None:
                    token = secrets.token_urlsafe(24)[:32]
                    tokens.append((user, token))
                    logins.append((idx, "", token))
                else:
                    logins.append((idx, user, password))
            if tokens:
                if self.redis is None:
                    raise RuntimeError("pre-auth logins need a Redis URL to publish tokens")
                pipe = self.redis.pipeline(transaction=False)
                for user, token in tokens:
                    pipe.publish("notify_pre_auth", json.dumps({"user": user, "token": token}))
                await pipe.execute()
            results = await asyncio.gather(
                *(self._connect_one(idx, user, pw, login_timeout) for idx, user, pw in logins)
            )
            for outcome, seconds in results:
                if outcome == "ok":
                    ok += 1
                    lat.append(seconds)
                else:
                    errors[outcome] += 1
        return {"ok": ok, "failed": sum(errors.values()), "errors": dict(errors), "lat": lat}

    async def _connect_one(
        self, idx: int, user: str, password: str, login_timeout: float
    ) -> tuple[str, float]:
        loop = asyncio.get_running_loop()
        t0 = time.perf_counter()
        waiter: asyncio.Future[str] = loop.create_future()
        client: Client | None = None
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            sock.setblocking(False)
            if self.source_addrs:
                src = self.source_addrs[self._rr % len(self.source_addrs)]
                self._rr += 1
                sock.setsockopt(socket.SOL_IP, IP_BIND_ADDRESS_NO_PORT, 1)
                sock.bind((src, 0))
            async with asyncio.timeout(login_timeout):
                await loop.sock_connect(sock, (self.target.host, self.target.port))
                _, proto = await loop.create_connection(
                    lambda: Client(self, idx, (user, password), waiter),
                    sock=sock,
                    ssl=self.ssl,
                    server_hostname=self.target.host if self.ssl else None,
                )
                client = proto
                self.clients[idx] = client
                outcome = await waiter
        except TimeoutError:
            outcome = "timeout"
        except OSError as e:
            outcome = f"connect: {e.strerror or e}"
        if outcome != "ok":
            if client is not None:
                client.waiter = None
                client.close()
            else:
                sock.close()
            self.counters.bump(C_FAILED)
        else:
            self.counters.bump(C_OK)
        return outcome, time.perf_counter() - t0

    async def close_all(self, grace: float) -> int:
        """Close every client (close frame, then TCP); wait up to ``grace`` s for all to go."""
        if not self.clients:
            return 0
        loop = asyncio.get_running_loop()
        self._closed_waiter = loop.create_future()
        for c in list(self.clients.values()):
            c.close()
        try:
            async with asyncio.timeout(grace):
                await self._closed_waiter
        except TimeoutError:
            for c in list(self.clients.values()):
                if c.transport is not None:
                    c.transport.abort()
        return len(self.clients)

    async def aclose(self) -> None:
        await self.close_all(5.0)
        if self.redis is not None:
            await self.redis.aclose()
