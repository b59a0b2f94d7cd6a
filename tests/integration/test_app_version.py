"""The start-up check of the Nextcloud app's version."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.processes import RedisServer, Stub, start_gateway, wait_for

pytestmark = pytest.mark.integration


@pytest.mark.parametrize(("app_version", "warns"), [("0.6.9", True), ("1.4.3", False)])
def test_version_mismatch_is_warned_about(
    tmp_path: Path, redis_server: RedisServer, stub: Stub, database: Path,
    app_version: str, warns: bool,
) -> None:  # fmt: skip
    stub.set_app_version(app_version)
    gateway = start_gateway(
        tmp_path, redis_url=redis_server.url, nextcloud_url=stub.url,
        database_url=f"sqlite://{database}", workers=1,
    )  # fmt: skip
    try:
        gateway.wait_ready()
        wait_for(lambda: "notify_push app" in gateway.log(), 15, "the version check")
    finally:
        stub.set_app_version("1.4.0")
        assert gateway.stop() == 0
    mismatch = f"app is version {app_version} but this gateway speaks 1.4.0"
    assert (mismatch in gateway.log()) is warns, gateway.log()
