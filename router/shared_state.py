"""What several gateway instances share through Redis, so that they act as one push server.

Every router receives every event, so delivery needs no coordination. Three
rules span connections and so span instances (docs/PROTOCOL.md section 9):

* a pre-auth token logs in one connection, on whichever instance;
* a user holds at most 64 connections over all instances;
* ``notify_query`` stores the sums over every live instance.

They hold through a few small keys under one prefix (``--redis-key-prefix``),
each with a TTL, and through Lua scripts, so that a login costs one round trip
and a close is one command in a batch:

``{prefix}{<user>}:conns``
    hash: instance id -> that instance's connections of the user. The braces
    are a Redis Cluster hash tag: the user's token claims below live in the
    same slot, so one script can touch both.
``{prefix}{<user>}:token:<sha256>``
    a used pre-auth token (a hash, never the token), kept a minute.
``{prefix}{notify_push_metrics}:instances``
    sorted set: instance id -> the time its registration expires (Redis'
    clock). Live instances refresh theirs every few seconds; expired entries
    stay a while as "known dead", so their leftover counts are ignored and
    pruned.
``{prefix}{notify_push_metrics}:snapshots``
    hash: instance id -> its ``notify_query`` numbers (JSON). Tagged like the
    key ``notify_push_metrics`` itself, so one script sums and stores.

An instance's id changes whenever its counts in Redis may be wrong (a new
router, or Redis was unreachable): the old id is marked dead and the new one
registers every connection the router holds, in one pipeline. So no periodic
work grows with the number of connections, and nothing needs repairing.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import os
import socket
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Final

from redis.asyncio.cluster import RedisCluster
from redis.commands.core import AsyncScript

from shared.errors import RedisUnavailable
from shared.redis_connection import KeyValueClient

log = logging.getLogger("router.shared_state")

#: Seconds an instance's registration lives without a refresh.
INSTANCE_TTL: Final = 20
#: Seconds between refreshes: a dead instance stops counting within TTL + this.
REFRESH_INTERVAL: Final = 5.0
#: How long an expired instance is remembered as dead (its counts ignored).
DEAD_MEMORY: Final = 2 * 86400
#: A user's counts outlive their last change by this much (then they expire).
USER_TTL: Final = 86400
TOKEN_CLAIM_TTL: Final = 60
#: A login waits at most this long for its claim; then it is refused.
CLAIM_TIMEOUT: Final = 3.0
#: Dead ids passed to the login script at most (the newest are kept).
MAX_DEAD_IDS: Final = 256
REGISTER_BATCH: Final = 1000
LEAVE_TIMEOUT: Final = 2.0
# Commands in flight at once: under the client's pool of 100 connections (a
# login storm waits here, within its claim's deadline, instead of failing).
MAX_IN_FLIGHT: Final = 48

# KEYS: the user's counts, then (pre-auth only) the token claim.
# ARGV: this instance, the limit, the counts' TTL, the claim's TTL, dead ids...
# Returns 1 admitted, 0 over the limit, -1 token already used.
_ADMIT = """
if #KEYS > 1 and not redis.call('SET', KEYS[2], '1', 'NX', 'EX', ARGV[4]) then
  return -1
end
local dead = {}
for i = 5, #ARGV do dead[ARGV[i]] = true end
local total = 0
local counts = redis.call('HGETALL', KEYS[1])
for i = 1, #counts, 2 do
  local n = tonumber(counts[i + 1])
  if dead[counts[i]] or n <= 0 then
    redis.call('HDEL', KEYS[1], counts[i])
  else
    total = total + n
  end
end
if total >= tonumber(ARGV[2]) then
  return 0
end
redis.call('HINCRBY', KEYS[1], ARGV[1], 1)
redis.call('EXPIRE', KEYS[1], ARGV[3])
return 1
"""

# KEYS: the registry. ARGV: this instance, its TTL, how long the dead are kept.
# Returns [now, id, expiry, id, expiry, ...] by Redis' own clock.
_REFRESH = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - tonumber(ARGV[3]))
redis.call('EXPIRE', KEYS[1], math.ceil(tonumber(ARGV[3])))
local out = {tostring(now)}
local members = redis.call('ZRANGE', KEYS[1], 0, -1, 'WITHSCORES')
for i = 1, #members do out[#out + 1] = members[i] end
return out
"""

# KEYS: the registry, the snapshots, notify_push_metrics. ARGV: this instance,
# its snapshot (JSON), the snapshots' TTL. Sums the snapshots of every live
# instance (its own included) into notify_push_metrics; forgets the others.
_SUM_METRICS = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
redis.call('HSET', KEYS[2], ARGV[1], ARGV[2])
redis.call('EXPIRE', KEYS[2], ARGV[3])
local live = {[ARGV[1]] = true}
for _, id in ipairs(redis.call('ZRANGEBYSCORE', KEYS[1], now, '+inf')) do live[id] = true end
local sum = {}
local snapshots = redis.call('HGETALL', KEYS[2])
for i = 1, #snapshots, 2 do
  if live[snapshots[i]] then
    for key, value in pairs(cjson.decode(snapshots[i + 1])) do
      sum[key] = (sum[key] or 0) + value
    end
  else
    redis.call('HDEL', KEYS[2], snapshots[i])
  end
end
local text = cjson.encode(sum)
redis.call('SET', KEYS[3], text)
return text
"""

METRICS_KEY: Final = "notify_push_metrics"


@dataclass(slots=True)
class _Claim:
    """One login's claim, waiting for the pipeline of its loop turn."""

    user: str
    keys: list[str]
    args: list[str | int]
    result: asyncio.Future[int]
    abandoned: bool = False


def new_instance_id() -> str:
    """Readable in ``redis-cli`` (host and pid), unique by its random part."""
    return f"{socket.gethostname()}:{os.getpid()}:{os.urandom(4).hex()}"


class SharedState:
    """This instance's side of the shared keys. Never raises but :class:`RedisUnavailable`."""

    def __init__(self, client: KeyValueClient, prefix: str, limit: int) -> None:
        self._client = client
        self._prefix = prefix
        self._limit = limit
        self._registry = f"{prefix}{{{METRICS_KEY}}}:instances"
        self._snapshots = f"{prefix}{{{METRICS_KEY}}}:snapshots"
        self._admit: AsyncScript = client.register_script(_ADMIT)
        self._refresh: AsyncScript = client.register_script(_REFRESH)
        self._sum: AsyncScript = client.register_script(_SUM_METRICS)
        self.instance_id = new_instance_id()
        #: Instances whose registration has expired (their counts are ignored).
        self.dead: tuple[str, ...] = ()
        #: Instances registered and not expired, this one included once registered.
        self.live: tuple[str, ...] = ()
        # True while Redis may hold wrong counts for this id (see the module doc).
        self._stale = True
        self._releases: list[str] = []
        self._flush_scheduled = False
        self._writes: set[asyncio.Task[None]] = set()  # awaited by leave()
        self._in_flight = asyncio.Semaphore(MAX_IN_FLIGHT)
        self._claims: list[_Claim] = []
        self._claims_scheduled = False
        self._scripts_loaded = False

    def user_key(self, user: str) -> str:
        return f"{self._prefix}{{{user}}}:conns"

    def token_key(self, user: str, token: str) -> str:
        digest = hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()
        return f"{self._prefix}{{{user}}}:token:{digest}"

    def mark_stale(self) -> None:
        """The counts in Redis may be wrong: the next :meth:`refresh` registers them again."""
        self._stale = True

    # --- logins and closes --------------------------------------------------
    async def admit(self, user: str, token: str | None = None) -> int:
        """Claim one connection of ``user`` (and ``token``, once) across every instance.

        Returns 1 when admitted, 0 when the user is at the limit, -1 when the
        token was used already. Raises :class:`RedisUnavailable` when Redis
        does not answer within :data:`CLAIM_TIMEOUT`. The claims of one loop
        turn go to Redis in one pipeline: a login storm costs a round trip
        (and redis-py's per-command work) per batch, not per login.
        """
        keys = [self.user_key(user)]
        if token is not None:
            keys.append(self.token_key(user, token))
        args: list[str | int] = [self.instance_id, self._limit, USER_TTL, TOKEN_CLAIM_TTL]
        args.extend(self.dead)
        claim = _Claim(user, keys, args, asyncio.get_running_loop().create_future())
        self._claims.append(claim)
        if not self._claims_scheduled:
            self._claims_scheduled = True
            asyncio.get_running_loop().call_soon(self._flush_claims)
        try:
            async with asyncio.timeout(CLAIM_TIMEOUT):
                return await asyncio.shield(claim.result)
        except TimeoutError as exc:
            claim.abandoned = True  # an answer that still comes is given back
            self._failed("a login claim", exc)
            raise RedisUnavailable("Redis did not answer") from exc

    def _flush_claims(self) -> None:
        self._claims_scheduled = False
        batch, self._claims = self._claims, []
        if batch:
            task = asyncio.ensure_future(self._send_claims(batch))
            self._writes.add(task)
            task.add_done_callback(self._writes.discard)

    async def _send_claims(self, batch: list[_Claim]) -> None:
        results: list[object]
        try:
            if isinstance(self._client, RedisCluster):
                results = await self._claim_one_by_one(batch)
            else:
                results = await self._claim_in_pipeline(batch)
                if any("NOSCRIPT" in str(r) for r in results if isinstance(r, Exception)):
                    # A restarted Redis has forgotten the script: one call each
                    # (redis-py's script object loads it again), not an error.
                    self._scripts_loaded = False
                    results = await self._claim_one_by_one(batch)
        except Exception as exc:  # redis-py raises many unrelated types
            self._scripts_loaded = False  # a restarted Redis has forgotten the script
            self._failed("login claims", exc)
            results = [exc] * len(batch)
        for claim, result in zip(batch, results, strict=True):
            if not isinstance(result, int):
                result = result if isinstance(result, Exception) else RedisUnavailable(repr(result))
            if isinstance(result, Exception):
                if not claim.result.done():
                    claim.result.set_exception(RedisUnavailable("Redis refused the claim"))
                    claim.result.exception()  # retrieved: its waiter may have gone
            elif claim.abandoned or claim.result.done():
                if result == 1:
                    self.release(claim.user)  # counted, but the login was refused meanwhile
            else:
                claim.result.set_result(result)

    async def _claim_in_pipeline(self, batch: list[_Claim]) -> list[object]:
        async with self._in_flight:
            if not self._scripts_loaded:
                # A pipeline cannot fall back from EVALSHA to EVAL by itself.
                await self._client.script_load(_ADMIT)
                self._scripts_loaded = True
            async with self._client.pipeline(transaction=False) as pipe:
                for claim in batch:
                    pipe.evalsha(self._admit.sha, len(claim.keys), *claim.keys, *claim.args)
                results: list[object] = await pipe.execute(raise_on_error=False)
                return results

    async def _claim_one_by_one(self, batch: list[_Claim]) -> list[object]:
        # For a cluster (redis-py's cluster pipelines refuse scripts), one call
        # per claim, each to its slot's node, at most MAX_IN_FLIGHT at once.
        async def one(claim: _Claim) -> object:
            async with self._in_flight:
                return await self._admit(keys=claim.keys, args=claim.args)

        return list(await asyncio.gather(*(one(c) for c in batch), return_exceptions=True))

    def release(self, user: str) -> None:
        """Give back one connection of ``user``; written with the others at the end of the turn."""
        self._releases.append(user)
        if not self._flush_scheduled:
            self._flush_scheduled = True
            asyncio.get_running_loop().call_soon(self._flush_releases)

    def _flush_releases(self) -> None:
        self._flush_scheduled = False
        users, self._releases = self._releases, []
        if users:
            task = asyncio.ensure_future(self._write_releases(self.instance_id, users))
            self._writes.add(task)
            task.add_done_callback(self._writes.discard)

    async def _write_releases(self, instance: str, users: list[str]) -> None:
        try:
            async with self._in_flight, self._client.pipeline(transaction=False) as pipe:
                for user in users:
                    pipe.hincrby(self.user_key(user), instance, -1)
                await pipe.execute()
        except Exception as exc:
            self._failed("releasing connections", exc)

    # --- the registry -------------------------------------------------------
    async def refresh(self, held: Callable[[], Mapping[str, int]]) -> None:
        """Renew this instance's registration; re-register everything when the counts are stale.

        ``held()``: every connection the router holds, by user. Called every
        :data:`REFRESH_INTERVAL` seconds. Raises :class:`RedisUnavailable`.
        """
        try:
            if self._stale:
                await self._renew_id(held)
            reply = await self._refresh(
                keys=[self._registry], args=[self.instance_id, INSTANCE_TTL, DEAD_MEMORY]
            )
        except RedisUnavailable:
            raise
        except Exception as exc:
            self._failed("refreshing the instance registration", exc)
            raise RedisUnavailable("Redis did not answer") from exc
        now = float(reply[0])
        members = reply[1:]
        live: list[str] = []
        dead: list[str] = []
        for i in range(0, len(members), 2):
            member = members[i].decode() if isinstance(members[i], bytes) else str(members[i])
            (live if float(members[i + 1]) > now else dead).append(member)
        self.live = tuple(live)
        self.dead = tuple(dead[-MAX_DEAD_IDS:])

    async def _renew_id(self, held: Callable[[], Mapping[str, int]]) -> None:
        """Retire the current id (its counts are ignored from now on), register under a new one."""
        try:
            await self._client.zadd(self._registry, {self.instance_id: 0.0})
        except Exception as exc:
            self._failed("retiring this instance's id", exc)
            raise RedisUnavailable("Redis did not answer") from exc
        # One step: a login admitted before it is in ``users`` and was claimed
        # under the retired id; one admitted after it claims under the new id.
        self.instance_id = new_instance_id()
        self._stale = False
        users = held()
        try:
            await self.register(users)
        except Exception as exc:
            self._failed("registering this instance's connections", exc)
            raise RedisUnavailable("Redis did not answer") from exc
        log.info("registered as %s with %d users", self.instance_id, len(users))

    async def register(self, users: Mapping[str, int]) -> None:
        """Add ``users``' connections to this instance's counts (a worker linked)."""
        items = [(user, count) for user, count in users.items() if count > 0]
        for start in range(0, len(items), REGISTER_BATCH):
            async with self._client.pipeline(transaction=False) as pipe:
                for user, count in items[start : start + REGISTER_BATCH]:
                    key = self.user_key(user)
                    pipe.hincrby(key, self.instance_id, count)
                    pipe.expire(key, USER_TTL)
                await pipe.execute()

    async def leave(self, users: Iterable[str]) -> None:
        """A graceful stop: this instance's counts go at once, and it leaves the registry.

        Bounded by :data:`LEAVE_TIMEOUT` in all (the supervisor kills a router
        that takes too long to stop); whatever is not written by then is left
        to expire.
        """
        self._flush_releases()
        try:
            async with asyncio.timeout(LEAVE_TIMEOUT):
                await asyncio.gather(*self._writes, return_exceptions=True)
                async with self._client.pipeline(transaction=False) as pipe:
                    for user in users:
                        pipe.hdel(self.user_key(user), self.instance_id)
                    pipe.zadd(self._registry, {self.instance_id: 0.0})
                    await pipe.execute()
        except Exception as exc:
            log.warning("could not leave the instance registry: %s", exc.__class__.__name__)
        for task in self._writes:
            task.cancel()

    # --- notify_query ---------------------------------------------------------
    async def store_metrics(self, snapshot: Mapping[str, int]) -> None:
        """Store the sums of every live instance's ``snapshot`` in ``notify_push_metrics``."""
        try:
            await self._sum(
                keys=[self._registry, self._snapshots, METRICS_KEY],
                args=[self.instance_id, json.dumps(snapshot), INSTANCE_TTL * 3],
            )
        except Exception as exc:
            self._failed("storing the metrics", exc)
            raise RedisUnavailable("Redis did not answer") from exc

    def _failed(self, what: str, exc: BaseException) -> None:
        if not self._stale:
            log.warning("Redis failed while %s (%s); will re-register", what,
                        exc.__class__.__name__)  # fmt: skip
        self._stale = True
