"""The login check against the stub Nextcloud in this process: encoding, faults, a hung server.

Each scenario runs on a fresh event loop with the stub listening on loopback;
its ``login_names`` shows which checks were really sent.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TypeVar

import pytest

from shared.errors import LoginRefused, NextcloudUnavailable
from shared.nextcloud import (
    COMMUNICATION_ERROR,
    INVALID_CREDENTIALS,
    NextcloudClient,
    login_timeout,
)
from tests.support.processes import timeout
from tests.support.stub_nextcloud.server import StubNextcloud
from tests.support.waiting import wait_until

T = TypeVar("T")

USERS = {
    "alice": "alice-secret",
    "jürgen": "pässwörd",  # Latin-1 could carry it, but Nextcloud reads UTF-8
    "иван": "пароль",  # Latin-1 cannot carry it at all
    "日本": "日本語のパスワード",
    "a": "pa",
    "b": "pb",
    "c": "pc",
    "d": "pd",
}
# Far beyond any wait in these tests: a check that is sent hangs for good.
FOREVER = 600.0


def run(scenario: Callable[[StubNextcloud, NextcloudClient], Awaitable[T]], **client: int) -> T:
    async def main() -> T:
        stub = StubNextcloud(USERS)
        url = await stub.start()
        nextcloud = NextcloudClient(url, **client)
        try:
            async with asyncio.timeout(timeout(30)):
                return await scenario(stub, nextcloud)
        finally:
            await nextcloud.close()
            await stub.stop()

    return asyncio.run(main())


@pytest.mark.parametrize("user", ["jürgen", "иван", "日本"])
def test_non_ascii_credentials_reach_nextcloud_as_utf8(user: str) -> None:
    async def scenario(stub: StubNextcloud, nextcloud: NextcloudClient) -> None:
        assert await nextcloud.verify(user, USERS[user], "192.0.2.1") == user
        with pytest.raises(LoginRefused) as refused:
            await nextcloud.verify(user, USERS[user] + "ß", "192.0.2.1")
        assert refused.value.reason == INVALID_CREDENTIALS

    run(scenario)


def test_a_user_name_with_a_colon_is_refused_without_a_request() -> None:
    async def scenario(stub: StubNextcloud, nextcloud: NextcloudClient) -> None:
        with pytest.raises(LoginRefused) as refused:
            await nextcloud.verify("alice:x", "alice-secret", "192.0.2.1")
        assert refused.value.reason == INVALID_CREDENTIALS
        assert stub.uid_requests == 0

    run(scenario)


def test_an_unforeseen_failure_answers_every_login_sharing_the_check() -> None:
    # aiohttp refuses to send a header with a control character: a ValueError,
    # raised inside the request, that every sharer of the check must hear about.
    async def scenario(stub: StubNextcloud, nextcloud: NextcloudClient) -> None:
        logins = [nextcloud.verify("alice", "alice-secret", "192.0.2.1\x01") for _ in range(3)]
        results = await asyncio.gather(*logins, return_exceptions=True)
        for result in results:
            assert isinstance(result, NextcloudUnavailable), result
            assert result.reason == COMMUNICATION_ERROR

    run(scenario)


def test_a_hung_nextcloud_is_answered_within_the_login_timeout() -> None:
    async def scenario(stub: StubNextcloud, nextcloud: NextcloudClient) -> None:
        stub.hang_logins(True)
        with pytest.raises(NextcloudUnavailable) as failed:
            await nextcloud.verify("alice", "alice-secret", "192.0.2.1", within=0.2)
        assert failed.value.reason == COMMUNICATION_ERROR

    run(scenario)


def test_a_check_whose_logins_have_all_gone_is_never_sent() -> None:
    async def scenario(stub: StubNextcloud, nextcloud: NextcloudClient) -> None:
        stub.hang_logins(True)
        # One request slot: "a" takes it and hangs; the rest queue behind it.
        first = asyncio.ensure_future(nextcloud.verify("a", "pa", "192.0.2.1", within=FOREVER))
        await wait_until(lambda: stub.hung_requests == 1, "the first check to reach the stub")
        # "b": its only login gives up while the check waits for the slot.
        with pytest.raises(NextcloudUnavailable):
            await nextcloud.verify("b", "pb", "192.0.2.1", within=0.1)
        # "c": its only login is cancelled (its client went away) while queued.
        cancelled = asyncio.ensure_future(nextcloud.verify("c", "pc", "x", within=FOREVER))
        await asyncio.sleep(0)  # lets it queue; not a wait for time
        cancelled.cancel()
        with pytest.raises(asyncio.CancelledError):
            await cancelled
        stub.hang_logins(False)
        assert await first == "a"
        # The slot is free: a check still queued would go before this one.
        assert await nextcloud.verify("d", "pd", "192.0.2.1") == "d"
        assert stub.login_names == ["a", "d"]

    run(scenario, max_concurrent=1)


def test_a_check_goes_on_while_one_of_its_logins_still_waits() -> None:
    async def scenario(stub: StubNextcloud, nextcloud: NextcloudClient) -> None:
        stub.hang_logins(True)
        patient = asyncio.ensure_future(nextcloud.verify("a", "pa", "x", within=FOREVER))
        await wait_until(lambda: stub.hung_requests == 1, "the check to reach the stub")
        with pytest.raises(NextcloudUnavailable):
            await nextcloud.verify("a", "pa", "x", within=0.1)  # shares it, gives up
        stub.hang_logins(False)
        assert await patient == "a"
        assert stub.login_names == ["a"]

    run(scenario)


def test_the_login_wait_ends_before_the_authentication_timeout() -> None:
    assert login_timeout(15) == 10  # the default: Nextcloud gets 10 s, as before
    assert login_timeout(8) == 6
    assert login_timeout(3) == 1.5  # a very short one: half of it
