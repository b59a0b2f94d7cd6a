"""A real gateway's /metrics, read by promtool and scraped by a real Prometheus.

- ``promtool check metrics`` finds nothing in the output but the naming lints
  of the notify_push names kept for existing dashboards (KEPT_NAME_LINTS), and
  every family's samples carry the family's declared name.
- A Prometheus server (Debian's ``prometheus`` package, which ``.ci/run``
  installs) runs with deploy/prometheus/prometheus.yml, pointed at the gateway
  and scraping every second: a PromQL query gets the number of open
  connections, the shipped alert rules evaluate without error and none fires
  on a healthy gateway, and every query of the Grafana dashboard answers with
  data.

Without prometheus or promtool the tests skip, except under ``CI=true`` where
they fail.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import re
import subprocess
import time
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import redis
import yaml

from tests.deploy.test_prometheus_rules import (
    ALERTS,
    CONFIG,
    JOB,
    alert_rules,
    dashboard_queries,
    require,
)
from tests.integration.conftest import USERS, ready_gateway
from tests.support.client import Client
from tests.support.processes import (
    Gateway,
    RedisServer,
    Stub,
    free_port,
    http_get,
    timeout,
    wait_for,
)

pytestmark = pytest.mark.integration

# promtool's complaints about the names notify_push dashboards read, kept as
# they are (README "Monitoring"); anything else it says is a failure. The
# untyped total_connection_count and mapping_query_count get no lint.
KEPT_NAME_LINTS = {
    'active_connection_count non-histogram and non-summary metrics should not have "_count" suffix',
    'active_user_count non-histogram and non-summary metrics should not have "_count" suffix',
}
PROMTOOL_LINT_STATUS = 3  # promtool check metrics: parsed, with lint problems
CONNECTIONS = 5
# The sample names a family of each type owns, in the 0.0.4 text format.
SUFFIXES = {
    "counter": ("",), "gauge": ("",), "untyped": ("",),
    "histogram": ("_bucket", "_count", "_sum"), "summary": ("", "_count", "_sum"),
}  # fmt: skip


@pytest.fixture(scope="module")
def metered(
    workdir: Path, redis_server: RedisServer, stub: Stub, database: Path
) -> Iterator[tuple[Gateway, int]]:
    port = free_port()
    gw = ready_gateway(workdir, redis_server, stub, database, 2, args=["--metrics-port", str(port)])
    yield gw, port
    assert gw.stop() == 0, gw.log()


def scrape(port: int) -> str:
    status, body = http_get(f"http://127.0.0.1:{port}/metrics")
    assert status == 200, body
    return body


def deliver_one_event(
    gateway: Gateway, clients: contextlib.ExitStack, publisher: redis.Redis
) -> None:
    """A login and a delivered message, so that every histogram has observations."""
    client = Client(clients, gateway.ws_url)
    assert client.login("alice", USERS["alice"]) == "authenticated"
    publisher.publish("notify_custom", json.dumps({"user": "alice", "message": "m"}))
    assert client.recv() == "m"


# --- promtool -------------------------------------------------------------------------


def test_promtool_finds_only_the_lints_of_the_kept_notify_push_names(
    metered: tuple[Gateway, int], clients: contextlib.ExitStack, publisher: redis.Redis
) -> None:
    promtool = require("promtool")
    gateway, port = metered
    deliver_one_event(gateway, clients, publisher)
    wait_for(lambda: "notify_push_gateway_delivery_latency_seconds_count 0.0" not in scrape(port),
             10, "the delivery to be counted")  # fmt: skip
    body = scrape(port)
    result = subprocess.run(
        [promtool, "check", "metrics"], input=body, capture_output=True, text=True,
        timeout=timeout(30), check=False,
    )  # fmt: skip
    problems = {line for line in (result.stdout + result.stderr).splitlines() if line.strip()}
    assert problems == KEPT_NAME_LINTS, "promtool said:\n" + "\n".join(sorted(problems))
    assert result.returncode == PROMTOOL_LINT_STATUS, problems


def test_every_family_s_samples_carry_its_declared_name(metered: tuple[Gateway, int]) -> None:
    _gateway, port = metered
    family = kind = None
    helped = set()
    families = 0
    for line in scrape(port).splitlines():
        if line.startswith("# HELP "):
            helped.add(line.split(" ")[2])
        elif line.startswith("# TYPE "):
            _, _, family, kind = line.split(" ")
            assert family in helped, f"{family} has a TYPE and no HELP"
            families += 1
        elif line:
            name = re.split(r"[{ ]", line, maxsplit=1)[0]
            assert family is not None and kind is not None, f"{line!r} before any TYPE"
            owned = {family + suffix for suffix in SUFFIXES[kind]}
            assert name in owned, f"{name} is a sample of the {kind} family {family}"
    assert families >= 20


# --- a Prometheus server ----------------------------------------------------------------


@dataclass
class Prometheus:
    url: str
    process: subprocess.Popen[bytes]
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def api(self, path: str, **query: str) -> Any:
        url = f"{self.url}/api/v1/{path}"
        if query:
            url += "?" + urllib.parse.urlencode(query)
        status, body = http_get(url)
        assert status == 200, f"{url}: {status} {body}"
        answer = json.loads(body)
        assert answer["status"] == "success", answer
        return answer["data"]

    def query(self, expr: str) -> list[dict[str, Any]]:
        data = self.api("query", query=expr)
        assert data["resultType"] == "vector", data
        result: list[dict[str, Any]] = data["result"]
        return result


@pytest.fixture(scope="module")
def prometheus(
    metered: tuple[Gateway, int], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Prometheus]:
    binary = require("prometheus")
    _gateway, metrics_port = metered
    directory = tmp_path_factory.mktemp("prometheus")
    # The example configuration, scraping this gateway every second.
    config = yaml.safe_load(CONFIG.read_text())
    config["global"] = {
        "scrape_interval": "1s",
        "scrape_timeout": "1s",
        "evaluation_interval": "1s",
    }
    config["rule_files"] = [str(ALERTS)]
    (job,) = config["scrape_configs"]
    assert job["job_name"] == JOB
    job["static_configs"] = [{"targets": [f"127.0.0.1:{metrics_port}"]}]
    config_path = directory / "prometheus.yml"
    config_path.write_text(yaml.safe_dump(config))
    port = free_port()
    log_path = directory / "prometheus.log"
    with log_path.open("wb") as log_file:
        process = subprocess.Popen(
            [binary, f"--config.file={config_path}",
             f"--storage.tsdb.path={directory / 'data'}",
             f"--web.listen-address=127.0.0.1:{port}"],
            stdout=log_file, stderr=log_file, cwd=directory,
        )  # fmt: skip
    server = Prometheus(f"http://127.0.0.1:{port}", process, log_path)
    try:

        def ready() -> bool:
            assert process.poll() is None, f"prometheus exited:\n{server.log()}"
            return http_get(f"{server.url}/-/ready")[0] == 200

        wait_for(ready, 30, "prometheus to be ready")
        yield server
    finally:
        process.terminate()
        try:
            process.wait(timeout(20))
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def sample_value(result: list[dict[str, Any]]) -> float | None:
    return float(result[0]["value"][1]) if len(result) == 1 else None


def wait_for_scrapes(prometheus: Prometheus, count: int = 3) -> None:
    def scraped() -> bool:
        return (sample_value(prometheus.query("count_over_time(up[1m])")) or 0) >= count

    wait_for(scraped, 30, f"{count} scrapes of the gateway")


def timestamp(rfc3339: str) -> float:
    """Prometheus's times (nanoseconds, ``Z``) as a Unix time."""
    trimmed = re.sub(r"(\.\d{6})\d*", r"\1", rfc3339).replace("Z", "+00:00")
    return datetime.datetime.fromisoformat(trimmed).timestamp()


def test_prometheus_counts_the_active_connections(
    prometheus: Prometheus, metered: tuple[Gateway, int], clients: contextlib.ExitStack
) -> None:
    gateway, metrics_port = metered
    users = list(USERS)
    for i in range(CONNECTIONS):
        user = users[i % len(users)]
        assert Client(clients, gateway.ws_url).login(user, USERS[user]) == "authenticated"

    wait_for(lambda: sample_value(prometheus.query("active_connection_count")) == CONNECTIONS,
             30, f"PromQL active_connection_count to be {CONNECTIONS}")  # fmt: skip
    (series,) = prometheus.query("active_connection_count")
    assert series["metric"] == {
        "__name__": "active_connection_count", "job": JOB, "instance": f"127.0.0.1:{metrics_port}",
    }  # fmt: skip
    wait_for(
        lambda: sample_value(prometheus.query("sum(notify_push_gateway_worker_connections)"))
        == CONNECTIONS,
        30, "the workers' connections to add up",
    )  # fmt: skip
    assert sample_value(prometheus.query("active_user_count")) == min(CONNECTIONS, len(users))


def test_the_alert_rules_evaluate_and_none_fires_on_a_healthy_gateway(
    prometheus: Prometheus,
) -> None:
    alerts = {rule["alert"] for rule in alert_rules()}
    wait_for_scrapes(prometheus)
    # Evaluated on the gateway's series, where a matching error would show.
    since = time.time()

    def evaluated() -> list[dict[str, Any]] | None:
        rules = [r for g in prometheus.api("rules")["groups"] for r in g["rules"]]
        if {r["name"] for r in rules} != alerts:
            return None
        if any(timestamp(r["lastEvaluation"]) <= since for r in rules):
            return None
        return rules

    wait_for(evaluated, 30, "every alert rule to be evaluated")
    rules = evaluated()
    assert rules is not None
    for rule in rules:
        assert rule["health"] == "ok", rule
    # None pending either (every alert has a for:, so none fires this soon); a
    # scrape slower than the 1 s timeout on a loaded machine may make one
    # pending for an evaluation, so the test waits for none rather than failing.
    wait_for(lambda: prometheus.api("alerts")["alerts"] == [], 15,
             "no alert to be pending or firing")  # fmt: skip


def test_every_dashboard_query_answers_with_data(prometheus: Prometheus) -> None:
    wait_for_scrapes(prometheus)  # two at least, for rate()
    empty = [f"{where}: {expr}" for where, expr in dashboard_queries()
             if not prometheus.query(expr)]  # fmt: skip
    assert empty == [], "\n".join(empty)
