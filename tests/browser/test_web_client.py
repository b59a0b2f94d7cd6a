"""@nextcloud/notify_push in Chromium against the gateway: login, delivery, reconnects.

Every page is the stub Nextcloud's demo page (``/demo?user=…``): the library
finds the gateway in the page's capabilities, fetches a pre-auth token from
the same-origin ``pre_auth`` endpoint (which publishes ``notify_pre_auth``
first) and logs in with an empty username and that token.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shlex
import shutil
import subprocess
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import redis

from tests.browser.conftest import (
    REPO,
    PushServer,
    Tabs,
    events,
    missing,
    ms,
    sockets,
    wait_for_event,
    wait_logged_in,
)
from tests.integration.conftest import GENERATED_USERS, USERS
from tests.support.processes import timeout, wait_for
from tests.support.stub_nextcloud.server import PRIVATE_STORAGE_BASE, SHARED_STORAGE

pytestmark = pytest.mark.integration

FILE_TYPES = ["notify_file", "notify_file_id", "notify_activity", "notify_notification"]
SCREENSHOT = REPO / "docs" / "browser-demo.png"


def own_storage(user: str) -> int:
    """The storage only ``user`` has mounted: the stub numbers users generated ones first."""
    return PRIVATE_STORAGE_BASE + GENERATED_USERS + list(USERS).index(user)


def publish(publisher: redis.Redis, channel: str, payload: object) -> None:
    publisher.publish(channel, json.dumps(payload))


def sentinel(publisher: redis.Redis, user: str) -> dict[str, str]:
    """Publish a unique custom message to ``user``; return its body."""
    body = {"id": secrets.token_hex(4)}
    publish(publisher, "notify_custom", {"user": user, "message": "sentinel", "body": body})
    return body


def kinds(page: Any) -> list[tuple[str, str]]:
    """(type, body as compact JSON) of every event the page recorded, in order."""
    return [(e["type"], json.dumps(e["body"], sort_keys=True)) for e in events(page)]


def test_pre_auth_login_and_every_message_kind(
    tabs: Tabs, publisher: redis.Redis, push_server: PushServer
) -> None:
    page = tabs.open("alice")
    [socket] = sockets(page)
    assert socket["url"] == f"ws://127.0.0.1:{push_server.port}/push/ws"
    # The library's login: an empty username, then the token pre_auth answered with.
    assert socket["sent"][0] == ""
    assert re.fullmatch(r"[A-Za-z0-9]{32}", socket["sent"][1]), socket["sent"][1]
    assert socket["answer"] == "authenticated"
    listened = sorted(socket["sent"][2:])
    assert listened == sorted(
        f"listen {t}" for t in [*FILE_TYPES, "hello", "ping", "sentinel", "typed"]
    )

    alice = "alice"
    steps: list[tuple[str, dict[str, Any], str, object]] = [
        ("notify_custom", {"user": alice, "message": "typed", "body": {"b": [1, "é"], "a": 2}},
         "typed", {"a": 2, "b": [1, "é"]}),
        ("notify_custom", {"user": alice, "message": "sentinel"}, "sentinel", None),
        ("notify_storage_update",
         {"storage": own_storage(alice), "path": "files/report.odt", "file_id": 42},
         "notify_file_id", [42]),
        ("notify_activity", {"user": alice}, "notify_activity", None),
        ("notify_notification", {"user": alice}, "notify_notification", None),
        ("notify_user_share_created", {"user": alice}, "notify_file", None),
        ("notify_group_membership_update", {"user": alice, "group": "staff"}, "notify_file", None),
    ]  # fmt: skip
    expected = []
    for channel, payload, type_, body in steps:
        publish(publisher, channel, payload)
        expected.append((type_, json.dumps(body, sort_keys=True)))
        count = len(expected)
        # One at a time: file messages close together would be merged (debounce).
        wait_for(lambda n=count: len(events(page)) >= n, 10, f"{type_} to arrive")
    assert kinds(page) == expected
    assert len(sockets(page)) == 1


def test_events_of_other_users_never_arrive(tabs: Tabs, publisher: redis.Redis) -> None:
    alice = tabs.open("alice")
    bob = tabs.open("bob")
    publish(publisher, "notify_custom", {"user": "bob", "message": "typed", "body": {"to": "bob"}})
    publish(publisher, "notify_activity", {"user": "bob"})
    publish(publisher, "notify_notification", {"user": "bob"})
    publish(
        publisher,
        "notify_storage_update",
        {"storage": own_storage("bob"), "path": "files/bob.txt", "file_id": 5},
    )
    wanted = {"typed", "notify_activity", "notify_notification", "notify_file_id"}
    wait_for(lambda: wanted <= {e["type"] for e in events(bob)}, 10, "bob's events")
    # Whatever reached alice's tab from bob's events would arrive before her sentinel.
    body = sentinel(publisher, "alice")
    wait_for_event(alice, "sentinel", body)
    assert kinds(alice) == [("sentinel", json.dumps(body))]
    assert Counter(t for t, _ in kinds(bob)) == Counter(wanted)


def test_library_reconnects_after_reset(tabs: Tabs, publisher: redis.Redis) -> None:
    page = tabs.open("alice")
    publisher.publish("notify_signal", json.dumps("reset"))
    wait_logged_in(page, 2)
    first, second = sockets(page)[:2]
    assert (first["code"], first["reason"]) == (1000, "reset")
    # A fresh pre-auth token for the new socket: each works once.
    assert second["sent"][0] == "" and second["sent"][1] != first["sent"][1]
    body = sentinel(publisher, "alice")
    wait_for_event(page, "sentinel", body)
    assert kinds(page) == [("sentinel", json.dumps(body))]
    assert [s["closed"] is None for s in sockets(page)] == [False, True]


def test_library_reconnects_after_gateway_restart(
    tabs: Tabs, publisher: redis.Redis, push_server: PushServer
) -> None:
    pages = {"alice": tabs.open("alice"), "bob": tabs.open("bob")}
    push_server.restart()
    for page in pages.values():
        # The library backs off by a second more after each failed attempt.
        page.wait_for_function(
            """() => {
                const s = window.pushDemo.sockets;
                const last = s[s.length - 1];
                return s.length >= 2 && last.authenticated !== null && last.closed === null;
            }""",
            timeout=ms(40),
        )
    for user, page in pages.items():
        body = sentinel(publisher, user)
        wait_for_event(page, "sentinel", body)
        assert kinds(page) == [("sentinel", json.dumps(body))]
        assert sum(s["closed"] is None for s in sockets(page)) == 1


def test_tabs_over_workers_get_each_event_exactly_once(
    tabs: Tabs, publisher: redis.Redis, push_server: PushServer
) -> None:
    opened = [
        (user, tabs.open(user)) for user in ["alice", "alice", "alice", "bob", "bob", "carol"]
    ]

    def connected(expected: int) -> dict[str, float]:
        wait_for(
            lambda: sum(push_server.worker_connections().values()) == expected,
            15,
            f"{expected} connections in the gateway's metrics (one socket per tab)",
        )
        return push_server.worker_connections()

    per_worker = connected(len(opened))
    # The kernel spreads connections over the workers (SO_REUSEPORT); more tabs
    # until both hold some, which almost always holds already.
    while min(per_worker.values(), default=0) == 0 or len(per_worker) < 2:
        assert len(opened) < 20, f"every connection on one worker: {per_worker}"
        opened.append(("alice", tabs.open("alice")))
        per_worker = connected(len(opened))
    assert push_server.metrics()["active_user_count"] == 3

    publish(publisher, "notify_storage_update",
            {"storage": SHARED_STORAGE, "path": "files/team/plan.md", "file_id": 7})  # fmt: skip
    for user in USERS:
        publish(
            publisher, "notify_custom", {"user": user, "message": "typed", "body": {"to": user}}
        )
        publish(publisher, "notify_activity", {"user": user})
    expected_types = {"notify_file_id", "typed", "notify_activity"}
    for user, page in opened:
        wait_for(
            lambda p=page: expected_types <= {e["type"] for e in events(p)}, 10, f"{user}'s events"
        )
    # A duplicate would have been sent before this last message.
    bodies = {user: sentinel(publisher, user) for user in USERS}
    for user, page in opened:
        wait_for_event(page, "sentinel", bodies[user])
    for user, page in opened:
        assert Counter(kinds(page)) == Counter(
            [
                ("notify_file_id", "[7]"),
                ("typed", json.dumps({"to": user})),
                ("notify_activity", "null"),
                ("sentinel", json.dumps(bodies[user])),
            ]
        ), (user, per_worker)


def test_demo_page_commands_work_and_screenshot(
    tabs: Tabs, push_server: PushServer, tmp_path: Path
) -> None:
    """What `make run` shows: every command the page lists makes its event arrive."""
    redis_cli = shutil.which("redis-cli")
    if redis_cli is None:
        missing("redis-cli is not installed (Debian: apt-get install redis-tools)")
    page = tabs.open("alice", listen=())
    config = json.loads(page.locator("#push-demo-config").text_content() or "{}")
    commands = {c["label"]: c["command"] for c in config["commands"]}
    expected = {
        "Custom message with a body": ("hello", {"n": 1}),
        "Custom message without a body": ("ping", None),
        "A file changed": ("notify_file_id", [42]),
        "A file changed for every demo user": ("notify_file_id", [7]),
        "A share was created": ("notify_file", None),
        "Activity": ("notify_activity", None),
        "Notification": ("notify_notification", None),
    }
    assert set(commands) == {*expected, "Every client reconnects"}
    for n, (label, (type_, body)) in enumerate(expected.items(), start=1):
        argv = shlex.split(commands[label])
        assert argv[0] == "redis-cli"
        subprocess.run([redis_cli, *argv[1:]], check=True, capture_output=True, timeout=timeout(10))
        wait_for(lambda n=n: len(events(page)) >= n, 10, f"{label!r} to arrive")
        assert events(page)[-1]["type"] == type_ and events(page)[-1]["body"] == body, label
    argv = shlex.split(commands["Every client reconnects"])
    subprocess.run([redis_cli, *argv[1:]], check=True, capture_output=True, timeout=timeout(10))
    wait_logged_in(page, 2)
    page.wait_for_function("() => document.getElementById('status').textContent === 'connected'")
    assert page.locator("#events tr.event").count() == len(expected)

    shot = tmp_path / "browser-demo.png"
    page.screenshot(path=str(shot), full_page=True)
    assert shot.read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
    if os.environ.get("UPDATE_SCREENSHOT") == "1":  # refresh the README's picture
        SCREENSHOT.write_bytes(shot.read_bytes())
