"""Setup checks from the gateway's side: what ``occ notify_push:setup`` tests, and what to fix.

``notify-push-gateway --check`` prints one line per check and exits 0 when all
pass, 1 otherwise; the router runs the same checks at start and logs them.
The checks, in order (each needs the ones before it):

1. Nextcloud answers at the configured URL and has the notify_push app;
2. Nextcloud writes to the same Redis as the gateway (the app's version key
   arrives), and the app's version matches the protocol the gateway speaks;
3. Nextcloud reads that Redis too: the self-test token the gateway puts
   there opens ``test/cookie``;
4. Nextcloud trusts the gateway as a proxy: a forwarded address sent to
   ``test/remote`` comes back (notify_push issues 11 and 155).
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from dataclasses import dataclass

from shared.config import COMPATIBLE_NOTIFY_PUSH_VERSION, Config
from shared.errors import NextcloudUnavailable
from shared.nextcloud import NextcloudClient
from shared.redis_connection import KeyValueClient, key_value_client

log = logging.getLogger("shared.diagnostics")

# An address from TEST-NET-3 (RFC 5737): never a real client's.
PROBE_ADDRESS = "203.0.113.77"
TOKEN_TTL = 60
REDIS_TIMEOUT = 5.0


@dataclass(frozen=True, slots=True)
class Check:
    name: str
    ok: bool
    detail: str

    def line(self) -> str:
        return f"{'ok' if self.ok else 'FAIL'}  {self.name}: {self.detail}"


async def run_checks(config: Config) -> list[Check]:
    """Every check, stopping at the first whose failure makes the next meaningless."""
    nextcloud = NextcloudClient(
        config.nextcloud_url,
        user_agent=config.user_agent,
        allow_self_signed=config.allow_self_signed,
    )
    redis = key_value_client(config, read_timeout=REDIS_TIMEOUT)
    try:
        return await _checks(config, nextcloud, redis)
    finally:
        await nextcloud.close()
        await redis.aclose()


async def _checks(config: Config, nextcloud: NextcloudClient, redis: KeyValueClient) -> list[Check]:
    url = config.nextcloud_url
    redis_name = config.redis[0].describe()
    results: list[Check] = []
    try:
        await redis.delete("notify_push_app_version")
        status, _body = await nextcloud.get_app_endpoint("test/version", {})
    except NextcloudUnavailable as exc:
        return [
            Check(
                "nextcloud",
                False,
                f"no answer from {url} ({exc.reason}): set "
                "--nextcloud-url / NEXTCLOUD_URL (or overwrite.cli.url in config.php) "
                "to an address of Nextcloud this host can reach",
            )
        ]
    except Exception as exc:  # redis-py raises many unrelated types
        return [Check("redis", False, f"{redis_name} does not answer ({exc.__class__.__name__})")]
    if status != 200:
        return [
            Check(
                "nextcloud",
                False,
                f"{url} answered HTTP {status} for the notify_push app: "
                "install and enable it (occ app:enable notify_push)",
            )
        ]
    results.append(Check("nextcloud", True, f"{url} answers, the notify_push app is enabled"))

    version = await _wait_for_key(redis, "notify_push_app_version")
    if version is None:
        results.append(
            Check(
                "redis",
                False,
                f"Nextcloud did not write to {redis_name}: it uses "
                "another Redis; give the gateway the Redis of Nextcloud's config.php "
                "(REDIS_URL or the config.php path)",
            )
        )
        return results
    results.append(Check("redis", True, f"Nextcloud writes to {redis_name}"))
    if version.split(".")[:2] == COMPATIBLE_NOTIFY_PUSH_VERSION.split(".")[:2]:
        results.append(Check("app version", True, f"notify_push app {version}"))
    else:
        results.append(
            Check(
                "app version",
                False,
                f"the notify_push app is version {version} but this gateway speaks "
                f"{COMPATIBLE_NOTIFY_PUSH_VERSION}: install matching versions",
            )
        )

    token, ours = await _test_token(redis)
    try:
        status, _body = await nextcloud.get_app_endpoint("test/cookie", {"token": token})
        if status != 200:
            results.append(
                Check(
                    "cookie",
                    False,
                    f"Nextcloud refused the self-test token it "
                    f"should read from {redis_name} (HTTP {status}): it does not "
                    "read this Redis",
                )
            )
            return results
        results.append(Check("cookie", True, "Nextcloud reads the self-test token from Redis"))
        headers = {"token": token, "X-Forwarded-For": PROBE_ADDRESS}
        status, body = await nextcloud.get_app_endpoint("test/remote", headers)
        seen = body.strip()
        if status == 200 and seen == PROBE_ADDRESS:
            results.append(Check("trusted proxy", True, "Nextcloud trusts this host as a proxy"))
        else:
            advice = (
                f"Nextcloud sees this host as {seen!r} and ignores the addresses it forwards: "
                f"add {seen!r} to 'trusted_proxies' in Nextcloud's config.php"
            )
            results.append(Check("trusted proxy", False, advice))
    except NextcloudUnavailable as exc:
        results.append(Check("nextcloud", False, f"stopped answering ({exc.reason})"))
    finally:
        if ours:
            await _drop_token(redis, token)
    return results


async def _wait_for_key(redis: KeyValueClient, key: str, seconds: float = 2.0) -> str | None:
    """The key's value once Nextcloud has set it (it may lag its HTTP answer a little)."""
    try:
        async with asyncio.timeout(seconds):
            while True:
                raw = await redis.get(key)
                if raw:
                    return raw.decode(errors="replace") if isinstance(raw, bytes) else str(raw)
                await asyncio.sleep(0.1)
    except TimeoutError:
        return None


async def _test_token(redis: KeyValueClient) -> tuple[str, bool]:
    """The self-test token: the one ``occ notify_push:setup`` left, or one of ours."""
    current = await redis.get("test-token")
    if current:
        return (current.decode() if isinstance(current, bytes) else str(current)), False
    token = secrets.token_hex(16)
    # NX: never overwrite the token of a setup that runs at the same moment.
    if await redis.set("test-token", token, nx=True, ex=TOKEN_TTL):
        return token, True
    return await _test_token(redis)


async def _drop_token(redis: KeyValueClient, token: str) -> None:
    raw = await redis.get("test-token")
    if raw is not None and (raw.decode() if isinstance(raw, bytes) else str(raw)) == token:
        await redis.delete("test-token")


def log_checks(results: list[Check]) -> None:
    for result in results:
        if result.ok:
            log.info("setup check %s", result.line())
        else:
            log.warning("setup check %s", result.line())
