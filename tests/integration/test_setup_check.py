"""``--check``: the setup checks against the stub Nextcloud, passing and failing each way."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.processes import REPO, RedisServer, Stub, free_port, start_redis, timeout

pytestmark = pytest.mark.integration


def check(nextcloud_url: str, redis_url: str, database: Path) -> tuple[int, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("REDIS", "DATABASE"))}
    done = subprocess.run(
        [sys.executable, "-m", "shared", "--check", "--nextcloud-url", nextcloud_url,
         "--redis-url", redis_url, "--database-url", f"sqlite://{database}"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout(60), check=False,
    )  # fmt: skip
    return done.returncode, done.stdout + done.stderr


@pytest.fixture
def restore(stub: Stub) -> Iterator[Stub]:
    yield stub
    stub.trust_proxy(True)
    stub.set_app_version("1.4.0")


def test_every_check_passes_on_a_good_setup(
    restore: Stub, redis_server: RedisServer, database: Path
) -> None:
    status, out = check(restore.url, redis_server.url, database)
    assert status == 0, out
    assert [line.split()[0] for line in out.splitlines()] == ["ok"] * 5, out


def test_an_untrusted_proxy_says_what_to_add_to_trusted_proxies(
    restore: Stub, redis_server: RedisServer, database: Path
) -> None:
    restore.trust_proxy(False)
    status, out = check(restore.url, redis_server.url, database)
    assert status == 1, out
    assert "FAIL  trusted proxy: Nextcloud sees this host as '127.0.0.1'" in out, out
    assert "add '127.0.0.1' to 'trusted_proxies'" in out, out


def test_an_app_version_mismatch_fails(
    restore: Stub, redis_server: RedisServer, database: Path
) -> None:
    restore.set_app_version("0.6.9")
    status, out = check(restore.url, redis_server.url, database)
    assert status == 1 and "FAIL  app version" in out, out


def test_another_redis_than_nextcloud_s_is_found_out(
    restore: Stub, tmp_path: Path, database: Path
) -> None:
    other = start_redis(tmp_path)
    try:
        status, out = check(restore.url, other.url, database)
    finally:
        other.stop()
    assert status == 1 and "FAIL  redis: Nextcloud did not write to" in out, out


def test_a_wrong_nextcloud_url_says_so(redis_server: RedisServer, database: Path) -> None:
    status, out = check(f"http://127.0.0.1:{free_port()}", redis_server.url, database)
    assert status == 1 and "FAIL  nextcloud: no answer from" in out, out
    assert "NEXTCLOUD_URL" in out
