"""Log throttling: a flood of one warning costs one line per interval."""

from __future__ import annotations

import logging

import pytest

from shared.logs import Throttle


def test_a_flood_is_one_line_per_interval_with_the_count(caplog: pytest.LogCaptureFixture) -> None:
    now = [100.0]
    throttle = Throttle(logging.getLogger("test.throttle"), 10.0, clock=lambda: now[0])
    with caplog.at_level(logging.WARNING, logger="test.throttle"):
        for i in range(1000):
            throttle.warning("bad event %d", i)
        now[0] += 10.0
        throttle.warning("bad event %d", 1000)
    assert [r.getMessage() for r in caplog.records] == [
        "bad event 0",
        "bad event 1000 (and 999 similar in the last 10 s)",
    ]
