"""The real web client, @nextcloud/notify_push, in Debian's Chromium driven by Playwright.

The page (``tests/browser/src``, bundled into ``tests/browser/dist``) is served
by the stub Nextcloud (``tests/support/stub_nextcloud/web.py``); the gateway
runs with 2 workers on a port of its own that survives a restart, so the
page's capabilities stay valid. Redis, the SQLite database and the stub are
the integration tests' session fixtures.

Without Playwright or Chromium (``CHROMIUM``, default ``/usr/bin/chromium``)
the tests skip, except under ``CI=true`` where they fail: ``.ci/run``
installs both. Playwright never downloads a browser here.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

import pytest

from tests.integration.conftest import (  # the session's processes, shared with tests/integration
    database,
    publisher,
    redis_server,
    stub,
    workdir,
)
from tests.support.devstack import free_port
from tests.support.processes import (
    Gateway,
    RedisServer,
    Stub,
    http_get,
    start_gateway,
    timeout,
)

if TYPE_CHECKING:
    from playwright.sync_api import Browser, BrowserContext, Page

__all__ = ["database", "publisher", "redis_server", "stub", "workdir"]

CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
# No sandbox as root; no GPU; and nothing that talks to Google's servers, which
# this machine's closed network refuses.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
REPO = Path(__file__).resolve().parents[2]
WORKERS = 2


def missing(reason: str) -> NoReturn:
    """Skip, or fail under CI=true, where everything the tests need must be installed."""
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"{reason} (CI=true: .ci/run installs it)", pytrace=False)
    pytest.skip(reason)


def ms(seconds: float) -> float:
    """A Playwright timeout (milliseconds), scaled like every other deadline of the suite."""
    return timeout(seconds) * 1000


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        missing("playwright is not installed (pip install -e '.[dev]')")
    executable = shutil.which(CHROMIUM)
    if executable is None:
        missing(f"no Chromium at {CHROMIUM} (Debian: apt-get install chromium)")
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(
            executable_path=executable, headless=True, args=CHROMIUM_ARGS
        )
        yield chromium
        chromium.close()


@dataclasses.dataclass
class PushServer:
    """A 2-worker gateway on a fixed port, with metrics; :meth:`restart` keeps both ports."""

    workdir: Path
    redis_url: str
    nextcloud_url: str
    database_url: str
    port: int = dataclasses.field(default_factory=free_port)
    metrics_port: int = dataclasses.field(default_factory=free_port)
    gateway: Gateway | None = None

    def start(self) -> None:
        started = start_gateway(
            self.workdir, redis_url=self.redis_url, nextcloud_url=self.nextcloud_url,
            database_url=self.database_url, workers=WORKERS,
            # The later --port wins over the free one start_gateway picks.
            args=["--port", str(self.port), "--metrics-port", str(self.metrics_port),
                  "--drain-time", "0.5"],
        )  # fmt: skip
        self.gateway = dataclasses.replace(started, port=self.port)
        self.gateway.wait_ready()

    def stop(self) -> None:
        assert self.gateway is not None
        assert self.gateway.stop() == 0, self.gateway.log()
        self.gateway = None

    def restart(self) -> None:
        self.stop()
        self.start()

    @property
    def base_endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}/push"

    def metrics(self) -> dict[str, float]:
        status, body = http_get(f"http://127.0.0.1:{self.metrics_port}/metrics")
        assert status == 200, body
        values: dict[str, float] = {}
        for line in body.splitlines():
            if line and not line.startswith("#"):
                name, _, value = line.rpartition(" ")
                values[name] = float(value)
        return values

    def worker_connections(self) -> dict[str, float]:
        prefix = "notify_push_gateway_worker_connections"
        return {k: v for k, v in self.metrics().items() if k.startswith(prefix)}


@pytest.fixture(scope="module")
def push_server(
    workdir: Path, redis_server: RedisServer, stub: Stub, database: Path
) -> Iterator[PushServer]:
    server = PushServer(workdir, redis_server.url, stub.url, f"sqlite://{database}")
    server.start()
    # What `occ notify_push:setup` does: the capabilities now name the gateway.
    setup = f"{stub.url}/stub/notify_push_setup?base_endpoint={server.base_endpoint}"
    with urllib.request.urlopen(urllib.request.Request(setup, method="POST"), timeout=timeout(5)):
        pass
    yield server
    if server.gateway is not None:
        server.stop()


class Tabs:
    """Browser contexts (one per user, as separate browsers would be) and their tabs.

    Every uncaught error of a page fails the test at the end.
    """

    def __init__(self, browser: Browser, stub_url: str) -> None:
        self.browser = browser
        self.stub_url = stub_url
        self.contexts: dict[str, BrowserContext] = {}
        self.errors: list[str] = []

    def open(self, user: str, *, listen: tuple[str, ...] = ("sentinel", "typed")) -> Page:
        """A new tab of ``user``'s browser on the demo page, once the library is logged in."""
        context = self.contexts.get(user)
        if context is None:
            context = self.browser.new_context(viewport={"width": 1280, "height": 800})
            self.contexts[user] = context
        page = context.new_page()
        page.on("pageerror", lambda exc: self.errors.append(f"{user}: {exc}"))
        page.goto(f"{self.stub_url}/demo?user={user}&listen={','.join(listen)}")
        wait_logged_in(page, 1)
        return page

    def close(self) -> None:
        for context in self.contexts.values():
            context.close()


@pytest.fixture
def tabs(browser: Browser, stub: Stub, push_server: PushServer) -> Iterator[Tabs]:
    opened = Tabs(browser, stub.url)
    yield opened
    opened.close()
    assert opened.errors == []


def wait_logged_in(page: Page, count: int, seconds: float = 20) -> None:
    """Wait until the library's ``count``-th websocket got ``authenticated``."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    try:
        page.wait_for_function(
            """n => {
                const s = window.pushDemo ? window.pushDemo.sockets : [];
                return s.length >= n && s[n - 1].authenticated !== null;
            }""",
            arg=count,
            timeout=ms(seconds),
        )
    except PlaywrightTimeout:
        seen = page.evaluate("() => window.pushDemo && window.pushDemo.sockets")
        raise AssertionError(
            f"socket {count} not logged in after {seconds} s; the page's sockets: {seen}"
        ) from None


def events(page: Page) -> list[dict[str, Any]]:
    result: list[dict[str, Any]] = page.evaluate("() => window.pushDemo.events")
    return result


def sockets(page: Page) -> list[dict[str, Any]]:
    result: list[dict[str, Any]] = page.evaluate("() => window.pushDemo.sockets")
    return result


def wait_for_event(page: Page, type_: str, body: object = None, seconds: float = 10) -> None:
    """Wait until the page recorded an event of ``type_`` (and ``body``, as JSON text, when given)."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    try:
        page.wait_for_function(
            """([type, body]) => window.pushDemo.events.some(e => e.type === type
                && (body === null || JSON.stringify(e.body) === JSON.stringify(body)))""",
            arg=[type_, body],
            timeout=ms(seconds),
        )
    except PlaywrightTimeout:
        raise AssertionError(
            f"no {type_} {body} after {seconds} s; the page's events: {events(page)}"
        ) from None
