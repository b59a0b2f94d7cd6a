"""Logins against a Nextcloud that is strict or broken: non-ASCII credentials, a hung server.

A stub Nextcloud of this module's own (users with non-ASCII names and
passwords; made to hang without disturbing the session's stub) behind a
gateway of its own.
"""

from __future__ import annotations

import contextlib
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.conftest import ready_gateway
from tests.support.client import Client
from tests.support.processes import Gateway, RedisServer, Stub, start_stub, timeout
from tests.support.stub_nextcloud.server import generated_users

pytestmark = pytest.mark.integration

NON_ASCII = {
    "jürgen": "pässwörd",  # Latin-1 can encode it, but Nextcloud decodes UTF-8
    "иван": "пароль",  # Latin-1 cannot encode it at all
    "日本": "日本語のパスワード",
}
HUNG_LOGINS = 40  # more than the 32 checks that run against Nextcloud at once
COMMUNICATION_ERROR = "err: Error while communicating with nextcloud"


@pytest.fixture(scope="module")
def faults_stub(workdir: Path, redis_server: RedisServer) -> Iterator[Stub]:
    server = start_stub(workdir / "faults.db", redis_server.url, NON_ASCII, HUNG_LOGINS)
    yield server
    server.stop()


@pytest.fixture(scope="module")
def faults_gateway(
    workdir: Path, redis_server: RedisServer, faults_stub: Stub
) -> Iterator[Gateway]:
    gateway = ready_gateway(workdir, redis_server, faults_stub, workdir / "faults.db", 2)
    yield gateway
    assert gateway.stop() == 0, gateway.log()


@contextlib.contextmanager
def hung(stub: Stub) -> Iterator[None]:
    """The stub answers no login check until the block ends."""

    def hang(on: bool) -> None:
        request = urllib.request.Request(f"{stub.url}/stub/hang?on={int(on)}", method="POST")
        with urllib.request.urlopen(request, timeout=timeout(5)):
            pass

    hang(True)
    try:
        yield
    finally:
        hang(False)


@pytest.mark.parametrize("user", sorted(NON_ASCII))
def test_non_ascii_credentials_log_in(
    faults_gateway: Gateway, clients: contextlib.ExitStack, user: str
) -> None:
    assert Client(clients, faults_gateway.ws_url).login(user, NON_ASCII[user]) == "authenticated"
    wrong = Client(clients, faults_gateway.ws_url)
    assert wrong.login(user, NON_ASCII[user] + "ß") == "err: Invalid credentials"


def test_identical_non_ascii_logins_sharing_one_check_are_all_answered(
    faults_gateway: Gateway, faults_stub: Stub, clients: contextlib.ExitStack
) -> None:
    # A password no other test uses: the check cannot come from the cache.
    conns = [Client(clients, faults_gateway.ws_url) for _ in range(6)]
    for conn in conns:
        conn.send("иван")
        conn.send("неверный-пароль")
    assert [conn.recv() for conn in conns] == ["err: Invalid credentials"] * len(conns)


def test_a_user_name_basic_auth_cannot_carry_is_refused_without_asking(
    faults_gateway: Gateway, faults_stub: Stub, clients: contextlib.ExitStack
) -> None:
    before = faults_stub.stats()["uid_requests"]
    client = Client(clients, faults_gateway.ws_url)
    # Basic auth would send "иван:x:пароль", which Nextcloud reads as user "иван".
    assert client.login("иван:x", "пароль") == "err: Invalid credentials"
    assert faults_stub.stats()["uid_requests"] == before


def test_every_login_waiting_for_a_hung_nextcloud_gets_an_err_answer(
    faults_gateway: Gateway, faults_stub: Stub, clients: contextlib.ExitStack
) -> None:
    users = generated_users(HUNG_LOGINS)  # each used by this test only: nothing cached
    conns = [Client(clients, faults_gateway.ws_url) for _ in users]
    with hung(faults_stub):
        for conn, (user, password) in zip(conns, users.items(), strict=True):
            conn.send(user)
            conn.send(password)
        # Well within the stub's hang, which lasts until every answer is in;
        # an answer after the authentication timeout would be that timeout.
        answers = [conn.recv(seconds=30) for conn in conns]
    assert answers == [COMMUNICATION_ERROR] * HUNG_LOGINS
