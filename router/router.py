"""The router process: Redis events in, per-worker batches out.

It owns the state that must be single across the gateway: the Redis
subscription, the user -> workers interest table (with the per-user
connection limit), the pre-auth tokens, the storage mapping and the test
cookie. Workers connect to its Unix socket and register their users.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import os
import sys
import time
from collections import deque
from collections.abc import Coroutine, Iterable
from typing import TYPE_CHECKING

from aiohttp import web
from prometheus_client import generate_latest

from router.interest import InterestTable
from router.links import WorkerLink, make_link_factory
from router.preauth import TokenStore
from router.redis_listener import RedisListener
from router.self_test import SelfTest
from router.shared_state import REFRESH_INTERVAL, SharedState
from router.worker_statistics import RouterCounters, WorkerStatisticsBook
from shared import events as ev
from shared import ipc, logs
from shared.config import Config
from shared.diagnostics import log_checks, run_checks
from shared.errors import (
    DatabaseUnavailable,
    EventError,
    LoginRefused,
    NextcloudUnavailable,
    RedisUnavailable,
)
from shared.heartbeat import Heartbeat
from shared.messages import MessageKind
from shared.metrics import GatewayView, make_registry
from shared.nextcloud import (
    COMMUNICATION_ERROR,
    INVALID_CREDENTIALS,
    NextcloudClient,
    login_timeout,
)
from shared.redis_connection import KeyValueClient, key_value_client
from shared.statistics import WorkerStatistics
from shared.tasks import TaskSet
from shared.tls import server_tls_context

if TYPE_CHECKING:
    from router.storage_mapping import StorageMapping

log = logging.getLogger("router")

STATUS_INTERVAL = 1.0
COUNTERS_FILE = "router-counters.json"
# Key commands (self-test cookie, metrics, version check) are tiny: a Redis that
# does not answer within this is treated as down rather than waited on forever.
KV_READ_TIMEOUT = 5.0
TOO_MANY_CONNECTIONS = "Too many connections for this user"
REDIS_UNAVAILABLE = "Push server unavailable: Redis is not reachable"
# Storage updates waiting for the mapping; beyond this they are dropped and
# counted, so a slow database cannot make the router queue without bound.
MAX_PENDING_MAPPINGS = 256


class Router:
    def __init__(self, config: Config, socket_path: str) -> None:
        self.config = config
        self.socket_path = socket_path
        self.interest = InterestTable()
        self.tokens = TokenStore()
        self.links: dict[int, WorkerLink] = {}
        self.listener = RedisListener(config, self.on_redis_message, self.on_redis_state)
        self.mapping: StorageMapping | None = None
        # Logins are checked here, not in the workers: identical credentials in
        # flight share one request and the cache serves the whole gateway.
        self.nextcloud = NextcloudClient(
            config.nextcloud_url,
            user_agent=config.user_agent,
            allow_self_signed=config.allow_self_signed,
        )
        self.test_cookie = 0
        self.events_received = 0
        # Events not delivered, by reason (the notify_push_gateway_events_dropped metric).
        self.dropped: dict[str, int] = {
            "invalid": 0,
            "no_connection": 0,
            "mapping_failed": 0,
            "mapping_overload": 0,
        }
        # Counts that outlive this process: carried on by the next router (see load()).
        self._counters_path = os.path.join(os.path.dirname(socket_path), COUNTERS_FILE)
        self.statistics, self._carried = WorkerStatisticsBook.load(self._counters_path)
        self._stop = asyncio.Event()
        #: Why the router stopped on its own (an essential loop ended); None otherwise.
        self.failure: str | None = None
        self._tasks = TaskSet(log, "router", self._essential_loop_ended)
        # Storage updates are mapped one after the other, so file events reach
        # clients in the order Nextcloud published them (as with notify_push).
        self._storage_updates: deque[tuple[ev.StorageUpdate, float]] = deque()
        self._storage_update_arrived = asyncio.Event()
        self._server: asyncio.AbstractServer | None = None
        # Keys and scripts (not the subscription): shared with the other instances.
        self._kv: KeyValueClient = key_value_client(config, read_timeout=KV_READ_TIMEOUT)
        self.shared = SharedState(self._kv, config.redis_key_prefix, self.interest.limit)
        self._refresh_now = asyncio.Event()
        self._invalid_events = logs.Throttle(log)
        self._metrics_in_flight = False
        self._metrics_again = False

    # --- lifecycle -------------------------------------------------------
    async def run(self, heartbeat: Heartbeat | None) -> None:
        loop = asyncio.get_running_loop()
        if self.config.database is not None:
            self.mapping = _make_mapping(self.config)
            self._tasks.spawn_essential("storage mapping", self._map_storage_updates_forever())
        self.self_test = SelfTest(
            self.nextcloud,
            self._kv,
            lambda: self.test_cookie,
            self.mapping.root_user_count if self.mapping is not None else None,
        )
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.socket_path)  # left by a router that crashed
        self._server = await loop.create_unix_server(
            make_link_factory(self, loop), path=self.socket_path
        )
        os.chmod(self.socket_path, 0o600)
        log.info("router listening for workers on %s", self.socket_path)
        self._tasks.spawn_essential("redis subscription", self.listener.run())
        self._tasks.spawn_essential("status", self._periodic(heartbeat))
        self._tasks.spawn_essential("shared state", self._share_state_forever())
        self._tasks.spawn(self._log_setup_checks())
        metrics_runner = await self._serve_metrics()
        await self._stop.wait()
        log.info("router stopping")
        self._server.close()
        # Each step bounded: the supervisor kills a router that takes more than
        # a few seconds, and a stuck client library must not cost the counts.
        await _bounded("stopping the router's tasks", self._tasks.cancel_all())
        self._save_counters()
        if self.mapping is not None:
            await _bounded("closing the database", self.mapping.close())
        await self.shared.leave(self.interest.connections_by_user())
        await _bounded("closing the Redis client", self._kv.aclose())
        await _bounded("closing the Nextcloud client", self.nextcloud.close())
        if metrics_runner is not None:
            await _bounded("closing the metrics server", metrics_runner.cleanup())

    async def _log_setup_checks(self) -> None:
        """The checks of ``--check``, once at start, in the log (a start-up aid, never fatal)."""
        try:
            log_checks(await run_checks(self.config))
        except Exception as exc:
            log.warning("could not run the setup checks: %s", exc.__class__.__name__)

    def stop(self) -> None:
        """Ask :meth:`run` to stop (from a signal handler)."""
        self._stop.set()
        self._refresh_now.set()

    def _essential_loop_ended(self, name: str) -> None:
        if self._stop.is_set():
            return  # a loop that saw the stop and returned: not a failure
        log.critical("the router's %s loop ended; stopping the process", name)
        self.failure = name
        self._stop.set()

    async def _share_state_forever(self) -> None:
        """Keep this instance registered, and its counts right, in Redis."""
        # Checks the stop flag too: redis-py can swallow the cancellation of a
        # command in flight, and this loop must end all the same.
        while not self._stop.is_set():
            self._refresh_now.clear()
            with contextlib.suppress(RedisUnavailable):  # logged by the shared state
                await self.shared.refresh(self.interest.connections_by_user)
            # asyncio.timeout, not wait_for: Python 3.11's wait_for can swallow a
            # cancellation that arrives as the event is set (at shutdown, it is).
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(REFRESH_INTERVAL):
                    await self._refresh_now.wait()

    async def _periodic(self, heartbeat: Heartbeat | None) -> None:
        while True:
            if heartbeat is not None:
                heartbeat.beat()
                heartbeat.report(self.listener.subscribed, self.interest.active_connections)
            self.tokens.expire(time.monotonic())
            self._broadcast_status()
            self._save_counters()
            await asyncio.sleep(STATUS_INTERVAL)

    def _own_counters(self) -> RouterCounters:
        """This process's own counts, since it started."""
        logins = WorkerStatistics()
        login = self.nextcloud.statistics
        logins.login_requests = login.requests
        logins.login_request_errors = login.request_errors
        logins.login_cache_hits = login.cache_hits
        logins.login_seconds.add(self.nextcloud.login_seconds)
        stats = self.mapping.statistics() if self.mapping is not None else None
        return RouterCounters(
            self.events_received,
            stats.query_count if stats else 0,
            self.listener.reconnects,
            dict(self.dropped),
            logins,
        )

    def _save_counters(self) -> None:
        self.statistics.save(self._counters_path, self._carried.plus(self._own_counters()))

    # --- worker links ----------------------------------------------------
    def link_ready(self, link: WorkerLink, hello: ipc.Hello) -> None:
        old = self.links.get(hello.worker_id)
        if old is not None and old is not link:
            old.close()
        self.links[hello.worker_id] = link
        self.statistics.linked(hello.worker_id, hello.pid)
        self.interest.replace_worker(hello.worker_id, hello.users)
        self._recount_in_redis()
        log.info(
            "worker %d (pid %d) linked with %d users",
            hello.worker_id, hello.pid, len(hello.users),
        )  # fmt: skip
        self._broadcast_status()

    def link_lost(self, link: WorkerLink) -> None:
        worker = link.worker_id
        if worker is None or self.links.get(worker) is not link:
            return
        del self.links[worker]
        self.statistics.unlinked(worker)
        # Its connections are gone or will be re-registered by its next Hello;
        # dropped first, so the Status below no longer counts them.
        self.interest.drop_worker(worker)
        self._recount_in_redis()
        self._broadcast_status()
        log.warning("worker %d link lost", worker)

    def _recount_in_redis(self) -> None:
        """A worker's share changed wholesale: register every count again, soon."""
        self.shared.mark_stale()
        self._refresh_now.set()

    def link_message(self, link: WorkerLink, message: ipc.Message) -> None:
        worker = link.worker_id
        assert worker is not None
        match message:
            case ipc.Release(user):
                self.interest.release(worker, user)
                self.shared.release(user)
            case ipc.ConsumeToken(request_id, token):
                owner = self.tokens.consume(token, time.monotonic())
                if owner is None:
                    link.send(ipc.LoginResult(request_id, None, INVALID_CREDENTIALS))
                else:
                    self._tasks.spawn(self._admit(link, request_id, owner, token))
            case ipc.Stats(values):
                self.statistics.update(worker, values)
            case ipc.HttpQuery():
                self._tasks.spawn(self._answer_http(link, message))
            case ipc.CheckLogin():
                self._tasks.spawn(self._check_login(link, message))
            case _:
                log.warning("worker %d sent an unexpected %s", worker, type(message).__name__)

    async def _check_login(self, link: WorkerLink, check: ipc.CheckLogin) -> None:
        """Verify a login with Nextcloud and admit it; the worker gets an answer on every path.

        The wait for Nextcloud ends early enough for the client to read an
        ``err:`` answer before its authentication timeout.
        """
        try:
            user = await self.nextcloud.verify(
                check.username,
                check.password,
                check.forwarded_for,
                within=login_timeout(self.config.auth_timeout),
            )
        except (LoginRefused, NextcloudUnavailable) as exc:
            link.send(ipc.LoginResult(check.request_id, None, exc.reason))
            return
        except Exception:
            # verify() raises nothing else; should it ever, the client still gets
            # an answer it understands instead of waiting for its timeout.
            log.exception("login check failed unexpectedly")
            link.send(ipc.LoginResult(check.request_id, None, COMMUNICATION_ERROR))
            return
        await self._admit(link, check.request_id, user, None)

    async def _admit(self, link: WorkerLink, request_id: int, user: str, token: str | None) -> None:
        """Admit a verified ``user`` on ``link``'s worker under the per-user limit.

        The limit holds on this instance (the interest table) and over every
        instance (one claim in Redis, which also uses up a pre-auth ``token``).
        """
        worker = link.worker_id
        if worker is None or self.links.get(worker) is not link:
            return  # that link is gone; the worker's request failed with it
        if not self.interest.admit(worker, user):
            link.send(ipc.LoginResult(request_id, None, TOO_MANY_CONNECTIONS))
            return
        try:
            claimed = await self.shared.admit(user, token)
        except RedisUnavailable:
            claimed = None
        if claimed == 1 and self.links.get(worker) is link:
            link.send(ipc.LoginResult(request_id, user, ""))
            return
        self.interest.release(worker, user)
        if claimed == 1:
            self.shared.release(user)  # admitted, but the worker's link went meanwhile
            return
        refusal = {None: REDIS_UNAVAILABLE, 0: TOO_MANY_CONNECTIONS}.get(
            claimed, INVALID_CREDENTIALS
        )
        link.send(ipc.LoginResult(request_id, None, refusal))

    async def _answer_http(self, link: WorkerLink, query: ipc.HttpQuery) -> None:
        answer = await self.self_test.answer(query.method, query.path, query.token)
        link.send(ipc.HttpAnswer(query.request_id, answer.status, answer.body))

    def _status(self) -> ipc.Status:
        return ipc.Status(
            self.listener.subscribed, self.interest.active_connections, len(self.links)
        )

    def _broadcast_status(self) -> None:
        self._broadcast(self._status())

    def _broadcast(self, message: ipc.Message) -> None:
        frame = ipc.encode(message)
        for link in self.links.values():
            link.send_raw(frame)

    # --- Redis events ----------------------------------------------------
    def on_redis_state(self, subscribed: bool) -> None:
        self._broadcast_status()

    def on_redis_message(self, channel: bytes, payload: bytes) -> None:
        self.events_received += 1
        try:
            event = ev.decode_event(ev.channel_name(channel), payload)
        except EventError as exc:
            self.dropped["invalid"] += 1
            self._invalid_events.warning("dropping invalid event on %s", exc)
            return
        try:
            self.handle_event(event, time.time())
        except Exception:
            # A payload that passed validation and still cannot be sent on (a
            # bug): drop it, never the subscription this callback runs in.
            self.dropped["invalid"] += 1
            self._invalid_events.warning("dropping an event that failed", exc_info=True)

    def handle_event(self, event: ev.Event, received: float) -> None:
        if log.isEnabledFor(logging.DEBUG):
            log.debug("event %s", type(event).__name__)
        kind = MessageKind
        match event:
            case ev.Activity(user):
                self.route((user,), ipc.Deliver((), kind.ACTIVITY, published=received))
            case ev.Notification(user):
                self.route((user,), ipc.Deliver((), kind.NOTIFICATION, published=received))
            case ev.Custom(user, message, body):
                text = message if body is None else f"{message} {body}"
                self.route((user,), ipc.Deliver((), kind.CUSTOM, None, text, received))
            case ev.ShareCreate(user) | ev.GroupUpdate(user, _):
                self.route((user,), ipc.Deliver((), kind.FILE, published=received))
            case ev.StorageUpdate():
                self._map_storage_update(event, received)
            case ev.PreAuth(user, token):
                self.tokens.add(token, user, time.monotonic())
            case ev.TestCookie(cookie):
                self.test_cookie = cookie
            case ev.LogSpec(spec):
                self._apply_log_spec(spec)
            case ev.Query():
                self._query_metrics()
            case ev.Signal():
                log.info("reset requested: closing every client connection")
                self._broadcast(ipc.Control(ipc.ControlAction.RESET))

    def route(self, users: Iterable[str], template: ipc.Deliver) -> None:
        """Send ``template`` to the workers holding ``users``, each worker once with its users."""
        if isinstance(users, tuple | list) and len(users) == 1:
            self._route_one(users[0], template)
            return
        per_worker = self.interest.split(users)
        if not per_worker:
            self.dropped["no_connection"] += 1
            return
        for worker, worker_users in per_worker.items():
            link = self.links.get(worker)
            if link is not None:
                link.send_raw(ipc.encode_deliver_to(worker_users, template))

    def _route_one(self, user: str, template: ipc.Deliver) -> None:
        # The hot path (one user, as most events are): the message is the same
        # for every worker holding the user, so it is encoded once.
        workers = self.interest.workers_for(user)
        if not workers:
            self.dropped["no_connection"] += 1
            return
        encoded = ipc.encode_deliver_to((user,), template)
        links = self.links
        for worker in workers:
            link = links.get(worker)
            if link is not None:
                link.send_raw(encoded)

    def _map_storage_update(self, event: ev.StorageUpdate, received: float) -> None:
        if self.mapping is None:
            log.debug("no database configured; storage update for %d not routed", event.storage)
            return
        if len(self._storage_updates) >= MAX_PENDING_MAPPINGS:
            self.dropped["mapping_overload"] += 1
            return
        self._storage_updates.append((event, received))
        self._storage_update_arrived.set()

    @property
    def pending_storage_updates(self) -> int:
        return len(self._storage_updates)

    async def _map_storage_updates_forever(self) -> None:
        while True:
            await self._storage_update_arrived.wait()
            self._storage_update_arrived.clear()
            while self._storage_updates:
                event, received = self._storage_updates[0]
                await self._resolve_storage_update(event, received)
                self._storage_updates.popleft()  # counted as pending until routed

    async def _resolve_storage_update(self, event: ev.StorageUpdate, received: float) -> None:
        assert self.mapping is not None
        try:
            users = await self.mapping.users_for(event.storage, event.path)
        except DatabaseUnavailable:
            # Logged once per outage by the mapping; the event cannot be routed.
            self.dropped["mapping_failed"] += 1
            return
        self.route(users, ipc.Deliver((), MessageKind.FILE, (event.file_id,), published=received))

    def _apply_log_spec(self, spec: str | None) -> None:
        if spec is None:
            logs.restore_level()
        else:
            try:
                logs.set_level(spec)
            except ValueError as exc:
                log.warning("ignoring notify_config: %s", exc)
                return
        self._broadcast(ipc.Control(ipc.ControlAction.LOG_LEVEL, spec or ""))

    # --- metrics -----------------------------------------------------------
    async def fresh_statistics(self) -> None:
        """Have every linked worker report now, so that a scrape counts what just happened."""
        self._broadcast(ipc.Control(ipc.ControlAction.REPORT))
        await self.statistics.wait_fresh(set(self.links))

    def gateway_view(self) -> GatewayView:
        """The router's numbers plus every linked worker's last snapshot, summed."""
        counted = self._carried.plus(self._own_counters())
        totals = WorkerStatistics()
        totals.add(counted.logins)
        totals.add(self.statistics.totals())
        stats = self.mapping.statistics() if self.mapping is not None else None
        return GatewayView(
            active_connections=self.interest.active_connections,
            active_users=self.interest.active_users,
            mapping_queries=counted.mapping_queries,
            events_received=counted.events_received,
            redis_subscribed=self.listener.subscribed,
            redis_reconnects=counted.redis_reconnects,
            database_up=stats.database_up if stats else None,
            workers_configured=self.config.workers,
            dropped=counted.dropped,
            totals=totals,
            per_worker=self.statistics.per_worker(),
        )

    def metrics_snapshot(self) -> dict[str, int]:
        """The JSON ``notify_query`` stores (docs/PROTOCOL.md section 6), for the whole gateway."""
        view = self.gateway_view()
        sent = {kind.label: view.totals.messages_sent[kind] for kind in MessageKind}
        return {
            "active_connection_count": view.active_connections,
            "active_user_count": view.active_users,
            "total_connection_count": view.totals.total_connections,
            "mapping_query_count": view.mapping_queries,
            "events_received": view.events_received,
            "messages_sent": sum(sent.values()),
            **{f"messages_sent_{k}": v for k, v in sent.items()},
        }

    async def _serve_metrics(self) -> web.AppRunner | None:
        """Prometheus text on /metrics at METRICS_PORT or METRICS_SOCKET_PATH."""
        config = self.config
        if config.metrics_port is None and not config.metrics_socket_path:
            return None
        registry = make_registry(self.gateway_view)

        async def metrics(_request: web.Request) -> web.Response:
            await self.fresh_statistics()
            # Saved first (no await between): whatever a scraper sees, a router
            # started after a crash of this one starts from, so no counter goes back.
            self._save_counters()
            return web.Response(body=generate_latest(registry), content_type="text/plain",
                                charset="utf-8")  # fmt: skip

        app = web.Application()
        app.router.add_get("/metrics", metrics)
        # A scraper's idle keep-alive connection must not hold up a stop.
        runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
        await runner.setup()
        site: web.BaseSite
        if config.metrics_socket_path:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(config.metrics_socket_path)
            site = web.UnixSite(runner, config.metrics_socket_path)
        else:
            site = web.TCPSite(
                runner, config.bind, config.metrics_port, reuse_address=True,
                ssl_context=server_tls_context(config),
            )  # fmt: skip
        await site.start()
        log.info("metrics served on %s", site.name)
        return runner

    def _query_metrics(self) -> None:
        """Answer ``notify_query``: one answer in flight at a time, a flood coalesced."""
        if self._metrics_in_flight:
            self._metrics_again = True  # answered once more when the current one is done
            return
        self._metrics_in_flight = True
        self._tasks.spawn(self._publish_metrics())

    async def _publish_metrics(self) -> None:
        try:
            while True:
                self._metrics_again = False
                # The sums over every live instance; whichever answers last stores them all.
                await self.fresh_statistics()
                snapshot = self.metrics_snapshot()
                self._save_counters()  # as for a scrape: what is shown is kept
                with contextlib.suppress(RedisUnavailable):  # logged by the shared state
                    await self.shared.store_metrics(snapshot)
                if not self._metrics_again:
                    return
        finally:
            self._metrics_in_flight = False


async def _bounded(what: str, step: Coroutine[object, None, object], seconds: float = 1.0) -> None:
    try:
        async with asyncio.timeout(seconds):
            await step
    except TimeoutError:
        log.warning("%s took over %.0f s; going on", what, seconds)
    except Exception as exc:
        log.warning("%s failed: %s", what, exc.__class__.__name__)


def _make_mapping(config: Config) -> StorageMapping:
    from router.storage_mapping import StorageMapping

    assert config.database is not None
    return StorageMapping.from_target(config.database, config.database_prefix)


def run_router(config: Config, socket_path: str, heartbeat: Heartbeat | None) -> None:
    """Entry point of the router process."""
    import signal

    import uvloop

    logs.setup_logging(config.log_level, "router")
    gc.freeze()  # start-up objects live as long as the process

    router = Router(config, socket_path)

    async def main() -> None:
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, router.stop)
        await router.run(heartbeat)

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(main())
    if router.failure is not None:
        sys.exit(1)  # the supervisor starts a fresh router
