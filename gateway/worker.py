"""A worker process: holds a share of the client connections and writes their frames.

The kernel spreads new connections over the workers (SO_REUSEPORT); each
worker logs its clients in, registers their users with the router, and
delivers what the router sends it. Everything periodic runs from one tick.
"""

from __future__ import annotations

import asyncio
import gc
import json
import logging
import os
import random
import signal
import socket
import time

from gateway import frames
from gateway.connection import MAX_OUTGOING_BYTES, ClientConnection, ConnState
from gateway.debounce import Debouncer, MessageKind, PendingFile, random_factor
from gateway.http import RequestHead, response
from gateway.router_link import LinkState, RouterLink
from gateway.timers import Deadlines, PingWheel
from shared import ipc, logs
from shared.config import Config
from shared.errors import DependencyError, LoginRefused, NextcloudUnavailable
from shared.heartbeat import Heartbeat
from shared.metrics import LATENCY_BUCKETS, Histogram
from shared.nextcloud import NextcloudClient
from shared.tasks import TaskSet
from shared.tls import server_tls_context

log = logging.getLogger("gateway.worker")

AUTH_TIMEOUT = 15.0
PING_INTERVAL = 30
TICK = 1.0
STATS_INTERVAL = 2.0
# How often queued (debounced) messages are looked at: adds to the 100 ms quiet time.
DEBOUNCE_TICK = 0.05
# A merged file message carrying more ids than this becomes plain `notify_file`.
MAX_MERGED_FILE_IDS = 1000
_DEBOUNCED = {
    ipc.MessageKind.FILE: MessageKind.FILE,
    ipc.MessageKind.ACTIVITY: MessageKind.ACTIVITY,
    ipc.MessageKind.NOTIFICATION: MessageKind.NOTIFICATION,
}
# The fixed frame of each debounced kind and the counter its sends go to.
_PLAIN: dict[MessageKind, tuple[bytes, str]] = {
    MessageKind.FILE: (frames.NOTIFY_FILE, "messages_sent_file"),
    MessageKind.ACTIVITY: (frames.NOTIFY_ACTIVITY, "messages_sent_activity"),
    MessageKind.NOTIFICATION: (frames.NOTIFY_NOTIFICATION, "messages_sent_notification"),
}
MAX_UNAUTHENTICATED = 4096
CLOSE_GOING_AWAY = 1001


class Worker:
    def __init__(self, config: Config, worker_id: int, ipc_path: str) -> None:
        self.config = config
        self.worker_id = worker_id
        self.users: dict[str, list[ClientConnection]] = {}
        self.link = RouterLink(ipc_path, worker_id, self)
        self.login = NextcloudClient(
            config.nextcloud_url,
            user_agent=config.user_agent,
            allow_self_signed=config.allow_self_signed,
        )
        # The router's latest Status; None until one arrives on the current link.
        self.router_status: ipc.Status | None = None
        self.unauthenticated = 0
        self.connections = 0
        self._auth_deadlines: Deadlines[ClientConnection] = Deadlines(AUTH_TIMEOUT)
        self._max_time: Deadlines[ClientConnection] | None = (
            Deadlines(config.max_connection_time) if config.max_connection_time > 0 else None
        )
        self._pings: PingWheel[ClientConnection] = PingWheel(PING_INTERVAL)
        self.delivery_latency = Histogram(LATENCY_BUCKETS)
        self.debouncer: Debouncer[ClientConnection] = Debouncer(
            max_debounce_time=config.max_debounce_time,
            enabled=not config.debounce_disable,
            max_file_ids=MAX_MERGED_FILE_IDS,
        )
        self._tasks = TaskSet(log, "worker")
        self._server: asyncio.AbstractServer | None = None
        self.counters: dict[str, float] = {
            "total_connection_count": 0,
            "messages_sent_file": 0,
            "messages_sent_activity": 0,
            "messages_sent_notification": 0,
            "messages_sent_custom": 0,
            "slow_clients_closed": 0,
            "unauthenticated_rejected": 0,
            "logins_failed": 0,
        }

    # --- lifecycle -------------------------------------------------------
    async def serve(self, sock: socket.socket, heartbeat: Heartbeat | None) -> None:
        loop = asyncio.get_running_loop()
        stop = asyncio.Event()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop.set)
        self._tasks.spawn(self.link.run())
        self._server = await loop.create_server(
            lambda: ClientConnection(self), sock=sock, backlog=4096,
            ssl=server_tls_context(self.config),
        )  # fmt: skip
        log.info("worker %d serving", self.worker_id)
        self._tasks.spawn(self._tick_forever(heartbeat))
        if self.debouncer.enabled:
            self._tasks.spawn(self._flush_debounced_forever())
        await stop.wait()
        await self.drain()

    async def drain(self) -> None:
        """Stop accepting, close clients with 1001 spread over the drain time, then stop."""
        if self._server is not None:
            self._server.close()
        conns = self._open_connections()
        log.info("worker %d draining %d connections", self.worker_id, len(conns))
        random.shuffle(conns)
        steps = max(1, min(len(conns), int(self.config.drain_time * 10)))
        per_step = max(1, -(-len(conns) // steps))  # at least 1: range() needs a step
        for i in range(0, len(conns), per_step):
            for conn in conns[i : i + per_step]:
                conn.close(CLOSE_GOING_AWAY, "server shutting down")
            if i + per_step < len(conns):
                await asyncio.sleep(self.config.drain_time / steps)
        self.link.close()
        await self._tasks.cancel_all()
        await self.login.close()

    async def _tick_forever(self, heartbeat: Heartbeat | None) -> None:
        last_stats = 0.0
        while True:
            now = time.monotonic()
            if heartbeat is not None:
                heartbeat.beat()
            self.tick(now)
            if now - last_stats >= STATS_INTERVAL:
                last_stats = now
                self.link.send(ipc.Stats(self.statistics()))
            await asyncio.sleep(TICK)

    async def _flush_debounced_forever(self) -> None:
        while True:
            await asyncio.sleep(DEBOUNCE_TICK)
            self.flush_debounced(time.monotonic())

    def flush_debounced(self, now: float) -> None:
        """Send every queued message that is due (only connections with one are visited)."""
        # One storage update reaches many connections with the same ids: build
        # each notify_file_id frame once per poll, not once per connection.
        with_ids: dict[tuple[int, ...], bytes] = {}
        for conn, kind, file in self.debouncer.poll(now):
            frame, counter = _PLAIN[kind]
            if file is not None and file.ids and conn.listen_file_id:
                frame = with_ids.get(file.ids) or with_ids.setdefault(
                    file.ids, frames.text_frame(file_ids_text(file.ids))
                )
            conn.send(frame)
            self.counters[counter] += 1

    def tick(self, now: float) -> None:
        for conn in self._auth_deadlines.pop_due(now):
            if conn.state < ConnState.OPEN:
                conn.send(frames.AUTH_TIMEOUT)
                conn.close(1008)
        if self._max_time is not None:
            for conn in self._max_time.pop_due(now):
                conn.close(1000)
        for conn in self._pings.advance():
            if conn.ping_payload is not None:
                log.info("%s did not answer the last ping; closing", conn.user)
                conn.abort()
                continue
            conn.ping_payload = os.urandom(4)
            conn.send(frames.ping_frame(conn.ping_payload))

    def statistics(self) -> dict[str, float]:
        stats = dict(self.counters)
        stats["active_connection_count"] = self.connections
        stats["unauthenticated_connections"] = self.unauthenticated
        stats.update(self.login.snapshot())  # fallback logins while the router was away
        stats["router_reconnects"] = self.link.reconnects
        debounce = self.debouncer.statistics()
        stats["debounce_base_seconds"] = debounce.debounce_base
        stats["debounce_pending"] = debounce.pending_messages
        stats.update(self.delivery_latency.snapshot("delivery_seconds"))
        return stats

    # --- connections -----------------------------------------------------
    def connection_opened(self, conn: ClientConnection) -> None:
        # Counted until it logs in or closes (connection_closed undoes it).
        self.unauthenticated += 1
        if self.unauthenticated > MAX_UNAUTHENTICATED:
            # Overload or an attack: refuse rather than buffer without bound.
            self.counters["unauthenticated_rejected"] += 1
            conn.abort()
            return
        self._auth_deadlines.add(conn, time.monotonic())

    def connection_closed(self, conn: ClientConnection) -> None:
        user = conn.user
        if user is None:
            self.unauthenticated -= 1
            return
        conns = self.users.get(user)
        if conns is not None and conn in conns:
            conns.remove(conn)
            if not conns:
                del self.users[user]
            self.connections -= 1
            self.link.send(ipc.Release(user))
        self._pings.remove(conn, conn.ping_slot)
        self.debouncer.forget(conn)

    def pong_received(self, conn: ClientConnection, payload: bytes) -> None:
        expected = conn.ping_payload
        if expected is None:
            return  # unsolicited pong: allowed by RFC 6455 section 5.5.3, ignored
        if payload != expected:
            log.info("%s answered a ping with a wrong payload; closing", conn.user)
            conn.abort()
            return
        conn.ping_payload = None

    def slow_client(self, conn: ClientConnection) -> None:
        """Drop a client that does not read what it is sent, rather than buffer for it."""
        self.counters["slow_clients_closed"] += 1
        log.info("closing %s: it does not read what it is sent", conn.user)
        conn.abort()

    # --- login -------------------------------------------------------------
    def start_login(self, conn: ClientConnection, username: str, password: str) -> None:
        self._tasks.spawn(self._login(conn, username, password))

    async def _login(self, conn: ClientConnection, username: str, password: str) -> None:
        forwarded = conn.login.forwarded_for if conn.login is not None else conn.peer
        admitted_by_router = True
        try:
            try:
                # The router verifies (once for the whole gateway) and admits the
                # connection under the per-user limit in one round trip.
                if username:
                    user = await self.link.check_login(username, password, forwarded)
                else:
                    user = await self.link.consume_token(password)
            except DependencyError:
                if not username:
                    raise  # pre-auth tokens live in the router only
                # No router: ask Nextcloud from here. The gateway-wide limit cannot be
                # checked; serving the client beats refusing it, and the next Hello
                # registers the connection.
                admitted_by_router = False
                user = await self.login.verify(username, password, forwarded)
        except (LoginRefused, NextcloudUnavailable) as exc:
            self.counters["logins_failed"] += 1
            conn.fail_login(exc.reason)
            return
        except DependencyError as exc:
            self.counters["logins_failed"] += 1
            conn.fail_login(f"push server unavailable ({exc})")
            return
        if conn.state is not ConnState.LOGIN:
            if admitted_by_router:
                self.link.send(ipc.Release(user))  # admitted, but the client left
            return
        self.unauthenticated -= 1
        self.connections += 1
        self.counters["total_connection_count"] += 1
        self.users.setdefault(user, []).append(conn)
        conn.debounce_factor = random_factor()
        conn.ping_slot = self._pings.add(conn)
        if self._max_time is not None:
            self._max_time.add(conn, time.monotonic())
        conn.authenticated(user)
        if log.isEnabledFor(logging.INFO):
            log.info("new websocket authenticated as %s", user)

    # --- router ------------------------------------------------------------
    def registered_users(self) -> dict[str, int]:
        return {user: len(conns) for user, conns in self.users.items()}

    def link_state_changed(self, state: LinkState) -> None:
        if state is not LinkState.READY:
            self.router_status = None

    def router_message(self, message: ipc.Message) -> None:
        match message:
            case ipc.Deliver():
                self.deliver(message)
            case ipc.Status():
                self.router_status = message
                self.debouncer.set_active_connections(message.active_connections)
            case ipc.Control(ipc.ControlAction.RESET):
                self.reset()
            case ipc.Control(ipc.ControlAction.LOG_LEVEL, spec):
                if spec:
                    logs.set_level(spec)
                else:
                    logs.restore_level()
            case _:
                log.warning("unexpected %s from the router", type(message).__name__)

    def deliver(self, message: ipc.Deliver) -> None:
        kind = message.kind
        debounced = _DEBOUNCED.get(kind)
        if debounced is not None and self.debouncer.enabled:
            self._queue(message, debounced)
            return
        with_ids: bytes | None = None
        if debounced is None:  # CUSTOM: the router encoded the frame
            if message.frame is None:
                return
            frame, counter = message.frame, "messages_sent_custom"
        else:
            frame, counter = _PLAIN[debounced]
            if debounced is MessageKind.FILE and message.file_ids:
                with_ids = frames.text_frame(file_ids_text(message.file_ids))
        sent = 0
        users = self.users
        limit = MAX_OUTGOING_BYTES
        # The fan-out loop: the hot path of the whole gateway, kept to a few
        # attribute reads and one write per connection.
        for user in message.users:
            for conn in users.get(user, ()):
                transport = conn.transport
                if transport is None or conn.state is not ConnState.OPEN:
                    continue
                if transport.get_write_buffer_size() > limit:
                    self.slow_client(conn)
                    continue
                if with_ids is not None and conn.listen_file_id:
                    transport.write(with_ids)
                else:
                    transport.write(frame)
                sent += 1
        self.counters[counter] += sent
        if sent and message.published:
            self.delivery_latency.observe(max(0.0, time.time() - message.published))

    def _queue(self, message: ipc.Deliver, kind: MessageKind) -> None:
        """Hand a file/activity/notification message to the debouncer for each connection."""
        file: PendingFile | None = None
        if kind is MessageKind.FILE and message.file_ids:
            file = PendingFile.of(message.file_ids)
        now = time.monotonic()
        push = self.debouncer.push
        for user in message.users:
            for conn in self.users.get(user, ()):
                push(conn, conn.debounce_factor, kind, file, now)

    def _open_connections(self) -> list[ClientConnection]:
        """Every logged-in connection of this worker."""
        return [c for conns in self.users.values() for c in conns]

    def reset(self) -> None:
        conns = self._open_connections()
        log.info("reset: closing %d connections", len(conns))
        for conn in conns:
            conn.close(1000, "reset")

    # --- plain HTTP on the public port ----------------------------------------
    def handle_http(self, conn: ClientConnection, head: RequestHead) -> None:
        path = head.path
        if path.startswith("/push/"):
            path = path[len("/push") :]
        if path == "/healthz":
            conn.respond_and_close(response(200, "ok\n"))
        elif path == "/readyz":
            reason = self.unready_reason()
            if reason is None:
                conn.respond_and_close(response(200, "ready\n"))
            else:
                conn.respond_and_close(response(503, f"{reason}\n"))
        elif path.startswith("/test/"):
            self._tasks.spawn(self._self_test(conn, head.method, path, head.header("token") or ""))
        elif path in ("/ws",):
            conn.respond_and_close(response(426, "websocket upgrade required\n"))
        else:
            conn.respond_and_close(response(404, "not found\n"))

    async def _self_test(self, conn: ClientConnection, method: str, path: str, token: str) -> None:
        try:
            answer = await self.link.http_query(method, path, token)
        except DependencyError as exc:
            conn.respond_and_close(response(503, f"{exc}\n"))
            return
        conn.respond_and_close(response(answer.status, answer.body))

    def unready_reason(self) -> str | None:
        if not self.link.is_ready:
            return "router link down"
        status = self.router_status
        if status is None or not status.redis_subscribed:
            return "router not subscribed to redis"
        if status.workers_linked < self.config.workers:
            return f"{status.workers_linked} of {self.config.workers} workers linked to the router"
        return None


def file_ids_text(ids: tuple[int, ...]) -> str:
    """``notify_file_id [1,2,3]``: compact JSON, as notify_push writes it."""
    return "notify_file_id " + json.dumps(list(ids), separators=(",", ":"))


def bind_tcp(bind: str, port: int) -> socket.socket:
    """A listening socket on ``bind:port`` in the SO_REUSEPORT group of the workers."""
    family = socket.AF_INET6 if ":" in bind else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    if family == socket.AF_INET6:
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
    sock.bind((bind, port))
    sock.listen(4096)
    sock.setblocking(False)
    return sock


def run_worker(
    config: Config,
    worker_id: int,
    ipc_path: str,
    heartbeat: Heartbeat | None,
    inherited: socket.socket | None,
) -> None:
    """Entry point of a worker process."""
    import uvloop

    logs.setup_logging(config.log_level, f"worker-{worker_id}")
    # Everything that exists now lives as long as the process: keep the
    # collector's passes to what connections create.
    gc.freeze()
    sock = inherited if inherited is not None else bind_tcp(config.bind, config.port)
    worker = Worker(config, worker_id, ipc_path)
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(worker.serve(sock, heartbeat))
