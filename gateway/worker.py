"""A worker process: holds a share of the client connections and writes their frames.

The kernel spreads new connections over the workers (SO_REUSEPORT); each
worker logs its clients in, registers their users with the router, and
delivers what the router sends it. Everything periodic runs from one tick.
The worker owns its connections through the narrow
:class:`gateway.connection.ConnectionOwner` protocol.
"""

from __future__ import annotations

import asyncio
import gc
import itertools
import json
import logging
import random
import signal
import socket
import sys
import time

from websockets.frames import CloseCode

from gateway import frames
from gateway.connection import ClientConnection
from gateway.debounce import Debouncer, PendingFile, random_factor
from gateway.http import RequestHead, response
from gateway.router_link import LinkState, RouterLink
from gateway.session import LoginRequest, SessionState
from gateway.timers import Deadlines, PingWheel
from shared import ipc, logs
from shared.config import Config
from shared.errors import (
    DependencyError,
    LoginRefused,
    NextcloudUnavailable,
    RouterUnavailable,
)
from shared.heartbeat import Heartbeat
from shared.listener import bind_tcp
from shared.messages import MessageKind
from shared.nextcloud import COMMUNICATION_ERROR, NextcloudClient, login_timeout
from shared.statistics import WorkerStatistics
from shared.tasks import TaskSet
from shared.tls import server_tls_context

log = logging.getLogger("gateway.worker")

PING_INTERVAL = 30
TICK = 1.0
STATS_INTERVAL = 2.0
# How often queued (debounced) messages are looked at: adds to the 100 ms quiet time.
DEBOUNCE_TICK = 0.05
# A merged file message carrying more ids than this becomes plain `notify_file`.
MAX_MERGED_FILE_IDS = 1000
# The fixed frame of each message kind that has one (all but CUSTOM).
_PLAIN: dict[MessageKind, bytes] = {
    MessageKind.FILE: frames.NOTIFY_FILE,
    MessageKind.ACTIVITY: frames.NOTIFY_ACTIVITY,
    MessageKind.NOTIFICATION: frames.NOTIFY_NOTIFICATION,
}
# Connections a worker holds that have not logged in yet.
MAX_UNAUTHENTICATED = 4096
# How many of the oldest of those a new connection looks through for one to
# evict: keeps an accept O(1) when the oldest are all having their login checked.
EVICTION_SCAN = 64


class Worker:
    def __init__(
        self,
        config: Config,
        worker_id: int,
        ipc_path: str,
        *,
        max_unauthenticated: int = MAX_UNAUTHENTICATED,
    ) -> None:
        self.config = config
        self.max_unauthenticated = max_unauthenticated
        self.worker_id = worker_id
        self.users: dict[str, list[ClientConnection]] = {}
        self.link = RouterLink(ipc_path, worker_id, self)
        # Used only while the router is away (the router checks logins otherwise).
        self.nextcloud = NextcloudClient(
            config.nextcloud_url,
            user_agent=config.user_agent,
            allow_self_signed=config.allow_self_signed,
        )
        # The router's latest Status; None until one arrives on the current link.
        self.router_status: ipc.Status | None = None
        self.unauthenticated = 0
        self.connections = 0
        self.stats = WorkerStatistics()
        self._auth_deadlines: Deadlines[ClientConnection] = Deadlines(config.auth_timeout)
        self._max_time: Deadlines[ClientConnection] | None = (
            Deadlines(config.max_connection_time) if config.max_connection_time > 0 else None
        )
        self._pings: PingWheel[ClientConnection] = PingWheel(PING_INTERVAL)
        self.debouncer: Debouncer[ClientConnection] = Debouncer(
            max_debounce_time=config.max_debounce_time,
            enabled=not config.debounce_disable,
            max_file_ids=MAX_MERGED_FILE_IDS,
        )
        self._stop = asyncio.Event()
        #: Why the worker stopped on its own (an essential loop ended); None otherwise.
        self.failure: str | None = None
        self._tasks = TaskSet(log, "worker", self._essential_loop_ended)
        self._server: asyncio.AbstractServer | None = None

    # --- lifecycle -------------------------------------------------------
    async def serve(self, sock: socket.socket, heartbeat: Heartbeat | None) -> None:
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, self._stop.set)
        self._tasks.spawn_essential("router link", self.link.run())
        self._server = await loop.create_server(
            lambda: ClientConnection(self), sock=sock, backlog=4096,
            ssl=server_tls_context(self.config),
        )  # fmt: skip
        log.info("worker %d serving", self.worker_id)
        self._tasks.spawn_essential("tick", self._tick_forever(heartbeat))
        if self.debouncer.enabled:
            self._tasks.spawn_essential("debounce", self._flush_debounced_forever())
        await self._stop.wait()
        await self.drain()

    def _essential_loop_ended(self, name: str) -> None:
        if self._stop.is_set():
            return  # stopping anyway
        log.critical("worker %d: its %s loop ended; stopping the process", self.worker_id, name)
        self.failure = name
        self._stop.set()

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
                conn.close(CloseCode.GOING_AWAY, "server shutting down")
            if i + per_step < len(conns):
                await asyncio.sleep(self.config.drain_time / steps)
        self.link.close()
        await self._tasks.cancel_all()
        await self.nextcloud.close()

    async def _tick_forever(self, heartbeat: Heartbeat | None) -> None:
        last_stats = 0.0
        while True:
            now = time.monotonic()
            if heartbeat is not None:
                heartbeat.beat()
                heartbeat.report(self.link.is_ready, self.connections)
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
        sent = self.stats.messages_sent
        for conn, kind, file in self.debouncer.poll(now):
            frame = _PLAIN[kind]
            if file is not None and file.ids and conn.listen_file_id:
                frame = with_ids.get(file.ids) or with_ids.setdefault(
                    file.ids, frames.text_frame(file_ids_text(file.ids))
                )
            if conn.send(frame):
                sent[kind] += 1

    def tick(self, now: float) -> None:
        for conn in self._auth_deadlines.pop_due(now):
            conn.time_out_login()
        if self._max_time is not None:
            for conn in self._max_time.pop_due(now):
                conn.close()
        for conn in self._pings.advance():
            if not conn.ping():
                log.info("%s did not answer the last ping; closing", conn.user)
                conn.abort()

    def statistics(self) -> WorkerStatistics:
        """The worker's statistics, the gauges brought up to date."""
        stats = self.stats
        stats.active_connections = self.connections
        stats.unauthenticated_connections = self.unauthenticated
        login = self.nextcloud.statistics  # fallback logins while the router was away
        stats.login_requests = login.requests
        stats.login_request_errors = login.request_errors
        stats.login_cache_hits = login.cache_hits
        stats.login_seconds = self.nextcloud.login_seconds
        stats.router_reconnects = self.link.reconnects
        debounce = self.debouncer.statistics()
        stats.debounce_base_seconds = debounce.debounce_base
        stats.debounce_pending = debounce.pending_messages
        return stats

    # --- ConnectionOwner ---------------------------------------------------
    def connection_opened(self, conn: ClientConnection) -> None:
        # Counted until it logs in or closes (connection_closed undoes it).
        self.unauthenticated += 1
        if self.unauthenticated > self.max_unauthenticated:
            # Overload or an attack (idle sockets): a place is made by dropping the
            # oldest connection that has not sent its login yet, so that idle
            # sockets cannot lock real clients out; the new one is refused only
            # when the oldest are all being answered (login checks, HTTP).
            oldest = self._oldest_not_logging_in()
            if oldest is None:
                self.stats.unauthenticated_rejected += 1
                conn.abort()
                return
            # Still counted until its connection_lost, but no longer a candidate.
            self._auth_deadlines.remove(oldest)
            self.stats.unauthenticated_evicted += 1
            oldest.abort()
        self._auth_deadlines.add(conn, time.monotonic())

    def _oldest_not_logging_in(self) -> ClientConnection | None:
        """The oldest connection still in its handshake or before its login frames."""
        for conn in itertools.islice(self._auth_deadlines, EVICTION_SCAN):
            if conn.state is SessionState.HANDSHAKE or conn.state is SessionState.AUTH:
                return conn
        return None

    def connection_closed(self, conn: ClientConnection) -> None:
        user = conn.user
        if user is None:
            self.unauthenticated -= 1
            self._auth_deadlines.remove(conn)
            return
        conns = self.users.get(user)
        if conns is not None and conn in conns:
            conns.remove(conn)
            if not conns:
                del self.users[user]
            self.connections -= 1
            self.link.send(ipc.Release(user))
        self._pings.remove(conn, conn.ping_slot)
        if self._max_time is not None:
            self._max_time.remove(conn)
        self.debouncer.forget(conn)

    def slow_client(self, conn: ClientConnection) -> None:
        self.stats.slow_clients_closed += 1
        log.info("closed %s: it does not read what it is sent", conn.user or conn.peer)

    def login_requested(self, conn: ClientConnection, request: LoginRequest) -> None:
        self._tasks.spawn(self._login(conn, request))

    async def _login(self, conn: ClientConnection, request: LoginRequest) -> None:
        username, password, forwarded = request.username, request.password, request.forwarded_for
        admitted_by_router = True
        try:
            try:
                # The router verifies (once for the whole gateway) and admits the
                # connection under the per-user limit in one round trip.
                if username:
                    user = await self.link.check_login(username, password, forwarded)
                else:
                    user = await self.link.consume_token(password)
            except RouterUnavailable:
                if not username:
                    raise  # pre-auth tokens live in the router only
                # No router: ask Nextcloud from here. The gateway-wide limit cannot be
                # checked; serving the client beats refusing it, and the next Hello
                # registers the connection.
                admitted_by_router = False
                user = await self.nextcloud.verify(
                    username, password, forwarded, within=login_timeout(self.config.auth_timeout)
                )
        except (LoginRefused, NextcloudUnavailable) as exc:
            self.stats.logins_failed += 1
            conn.refuse_login(exc.reason)
            return
        except DependencyError as exc:
            self.stats.logins_failed += 1
            conn.refuse_login(f"push server unavailable ({exc})")
            return
        except Exception:
            # Nothing else is raised on purpose; should it be, the client still
            # gets an answer it understands rather than its timeout.
            log.exception("login failed unexpectedly")
            self.stats.logins_failed += 1
            conn.refuse_login(COMMUNICATION_ERROR)
            return
        if conn.state is not SessionState.LOGIN:
            if admitted_by_router:
                self.link.send(ipc.Release(user))  # admitted, but the client left
            return
        self.unauthenticated -= 1
        self._auth_deadlines.remove(conn)
        self.connections += 1
        self.stats.total_connections += 1
        self.users.setdefault(user, []).append(conn)
        conn.debounce_factor = random_factor()
        conn.ping_slot = self._pings.add(conn)
        if self._max_time is not None:
            self._max_time.add(conn, time.monotonic())
        conn.accept_login(user)
        if log.isEnabledFor(logging.INFO):
            log.info("new websocket authenticated as %s", user)

    # --- the router's side of the link -----------------------------------------
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
            case ipc.Control(ipc.ControlAction.REPORT):
                self.link.send(ipc.Stats(self.statistics()))
            case ipc.Control(ipc.ControlAction.LOG_LEVEL, spec):
                if spec:
                    logs.set_level(spec)
                else:
                    logs.restore_level()
            case _:
                log.warning("unexpected %s from the router", type(message).__name__)

    def deliver(self, message: ipc.Deliver) -> None:
        kind = message.kind
        if kind is not MessageKind.CUSTOM and self.debouncer.enabled:
            self._queue(message, kind)
            return
        with_ids: bytes | None = None
        if kind is MessageKind.CUSTOM:
            if message.text is None:
                return
            # Framed once here for every recipient of the batch.
            frame = frames.text_frame(message.text)
        else:
            frame = _PLAIN[kind]
            if kind is MessageKind.FILE and message.file_ids:
                with_ids = frames.text_frame(file_ids_text(message.file_ids))
        sent = 0
        users = self.users
        # The fan-out loop: the hot path of the whole gateway, kept to a few
        # attribute reads and one call per connection.
        for user in message.users:
            for conn in users.get(user, ()):
                if with_ids is not None and conn.listen_file_id:
                    sent += conn.send(with_ids)
                else:
                    sent += conn.send(frame)
        self.stats.messages_sent[kind] += sent
        if sent and message.published:
            self.stats.delivery_seconds.observe(max(0.0, time.time() - message.published))

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
            conn.close(CloseCode.NORMAL_CLOSURE, "reset")

    # --- plain HTTP on the public port ----------------------------------------
    def http_requested(self, conn: ClientConnection, head: RequestHead) -> None:
        path = head.path
        if path.startswith("/push/"):
            path = path[len("/push") :]
        if path == "/healthz":
            conn.respond(response(200, "ok\n"))
        elif path == "/readyz":
            reason = self.unready_reason()
            if reason is None:
                conn.respond(response(200, "ready\n"))
            else:
                conn.respond(response(503, f"{reason}\n"))
        elif path.startswith("/test/"):
            self._tasks.spawn(self._self_test(conn, head.method, path, head.header("token") or ""))
        elif path in ("/ws",):
            conn.respond(response(426, "websocket upgrade required\n"))
        else:
            conn.respond(response(404, "not found\n"))

    async def _self_test(self, conn: ClientConnection, method: str, path: str, token: str) -> None:
        try:
            answer = await self.link.http_query(method, path, token)
        except DependencyError as exc:
            conn.respond(response(503, f"{exc}\n"))
            return
        conn.respond(response(answer.status, answer.body))

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
    if worker.failure is not None:
        sys.exit(1)  # the supervisor starts a fresh worker in this slot
