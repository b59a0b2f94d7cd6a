"""deploy/prometheus: alert rules, their unit tests, the example configuration and
the Grafana dashboard, checked offline with promtool (Debian's ``prometheus``
package, which ``.ci/run`` installs).

- ``promtool check rules`` and ``promtool test rules`` on alerts.yml and
  alerts_test.yml; every alert is tested firing and not firing, has a ``for:``,
  a severity and annotations saying what to check.
- ``promtool check config`` on the example prometheus.yml (which loads the rules).
- Every query of the dashboard, with Grafana's variables replaced, is parsed
  by promtool as the expression of a recording rule (``promtool query`` needs
  a server; ``check rules`` parses PromQL offline). The dashboard picks its
  data source from a variable and is templated by job and instance.
- Every metric the rules and the dashboard read is one the gateway serves,
  rendered here by shared.metrics from an idle gateway's view.

Without promtool the tests skip, except under ``CI=true`` where they fail.
tests/integration/test_prometheus.py runs the same rules and queries in a real
Prometheus scraping a real gateway.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any, NoReturn

import pytest
import yaml
from prometheus_client import generate_latest

from shared.metrics import GatewayView, make_registry
from shared.statistics import WorkerStatistics
from tests.support.processes import timeout

REPO = Path(__file__).resolve().parents[2]
PROMETHEUS_DIR = REPO / "deploy" / "prometheus"
ALERTS = PROMETHEUS_DIR / "alerts.yml"
ALERT_TESTS = PROMETHEUS_DIR / "alerts_test.yml"
CONFIG = PROMETHEUS_DIR / "prometheus.yml"
DASHBOARD = PROMETHEUS_DIR / "grafana-dashboard.json"

JOB = "notify-push-gateway"
SEVERITIES = {"critical", "warning"}
# Grafana's variables in the dashboard's queries, and what stands for them in
# PromQL (all jobs, all instances).
GRAFANA_VARIABLES = {"$__rate_interval": "1m", "$job": ".*", "$instance": ".*"}
# Series the rules may read that the gateway does not serve itself.
PROMETHEUS_SERIES = {"up"}
PROMQL_WORDS = {
    "by", "without", "on", "ignoring", "group_left", "group_right", "and", "or", "unless",
    "bool", "offset", "inf", "nan",
}  # fmt: skip


def require(tool: str) -> str:
    """The tool's path; skip without it, or fail under CI=true, where it must be installed."""
    path = shutil.which(tool)
    if path is not None:
        return path
    reason = f"{tool} is not installed (Debian package prometheus)"
    missing(reason)


def missing(reason: str) -> NoReturn:
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"{reason} (CI=true: .ci/run installs it)", pytrace=False)
    pytest.skip(reason)


@pytest.fixture(scope="module")
def promtool() -> str:
    return require("promtool")


def run(*command: str, cwd: Path = PROMETHEUS_DIR) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        command, cwd=cwd, capture_output=True, text=True, timeout=timeout(60), check=False
    )


def alert_rules() -> list[dict[str, Any]]:
    groups = yaml.safe_load(ALERTS.read_text())["groups"]
    return [rule for group in groups for rule in group["rules"]]


# --- dashboard queries -------------------------------------------------------------


def _panels(panels: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for panel in panels:
        out.append(panel)
        out.extend(_panels(panel.get("panels", [])))  # a collapsed row holds its panels
    return out


def dashboard() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return data


def dashboard_panels() -> list[dict[str, Any]]:
    return _panels(dashboard()["panels"])


def to_promql(expr: str) -> str:
    """A Grafana query as plain PromQL: every variable replaced."""
    for variable, value in GRAFANA_VARIABLES.items():
        expr = expr.replace(variable, value)
    assert "$" not in expr, f"a Grafana variable this test does not know: {expr}"
    return expr


def dashboard_queries() -> list[tuple[str, str]]:
    """(where, PromQL) for every panel target and every variable's selector."""
    queries = []
    for panel in dashboard_panels():
        for target in panel.get("targets", []):
            where = f"panel {panel['id']} {panel['title']!r} target {target['refId']}"
            queries.append((where, to_promql(target["expr"])))
    for variable in dashboard()["templating"]["list"]:
        if variable["type"] == "query":
            match = re.fullmatch(r"label_values\((.+), (\w+)\)", variable["query"]["query"])
            assert match, f"variable {variable['name']}: not a label_values() query"
            queries.append((f"variable {variable['name']}", to_promql(match.group(1))))
    return queries


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression reads (enough of PromQL for these files)."""
    expr = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)  # strings
    expr = re.sub(r"\{[^}]*\}", " ", expr)  # label matchers
    expr = re.sub(r"\[[^\]]*\]", " ", expr)  # ranges
    expr = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", expr)
    names = set()
    for match in re.finditer(r"[A-Za-z_:][A-Za-z0-9_:]*(?=\s*(\(?))", expr):
        word = match.group(0)
        if match.group(1) == "(" or word.lower() in PROMQL_WORDS:
            continue  # a function, or a keyword
        names.add(word)
    return names


def served_names() -> set[str]:
    """Every sample name an idle gateway with a database and two workers serves."""
    reasons = ("invalid", "no_connection", "mapping_failed", "mapping_overload")
    view = GatewayView(
        active_connections=0, active_users=0, mapping_queries=0, events_received=0,
        redis_subscribed=True, redis_reconnects=0, database_up=True, workers_configured=2,
        dropped=dict.fromkeys(reasons, 0), totals=WorkerStatistics(),
        per_worker={1: WorkerStatistics(), 2: WorkerStatistics()},
    )  # fmt: skip
    text = generate_latest(make_registry(lambda: view)).decode()
    return {
        re.split(r"[{ ]", line, maxsplit=1)[0]
        for line in text.splitlines()
        if line and not line.startswith("#")
    }


# --- alert rules -------------------------------------------------------------------


def test_the_alert_rules_pass_promtool_check(promtool: str) -> None:
    result = run(promtool, "check", "rules", str(ALERTS))
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(alert_rules())} rules found" in result.stdout


def test_the_alert_unit_tests_pass(promtool: str) -> None:
    result = run(promtool, "test", "rules", str(ALERT_TESTS))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_every_alert_is_tested_firing_and_not_firing() -> None:
    firing: set[str] = set()
    quiet: set[str] = set()
    for case in yaml.safe_load(ALERT_TESTS.read_text())["tests"]:
        for check in case.get("alert_rule_test", []):
            (firing if check["exp_alerts"] else quiet).add(check["alertname"])
            for alert in check["exp_alerts"]:
                # promtool compares annotations only as given: give them all.
                assert set(alert.get("exp_annotations", {})) == {"summary", "description"}
    alerts = {rule["alert"] for rule in alert_rules()}
    assert alerts - firing == set(), "never shown firing"
    assert alerts - quiet == set(), "never shown not firing"
    assert firing | quiet <= alerts


def test_every_alert_waits_has_a_severity_and_says_what_to_check() -> None:
    rules = alert_rules()
    assert {"NotifyPushGatewayDown", "NotifyPushGatewayRedisSubscriptionLost",
            "NotifyPushGatewayWorkerNotLinked", "NotifyPushGatewayLoginErrors",
            "NotifyPushGatewaySlowClientsDropped", "NotifyPushGatewayDeliveryLatencyHigh",
            "NotifyPushGatewayFileLimitClose"} <= {rule["alert"] for rule in rules}  # fmt: skip
    for rule in rules:
        name = rule["alert"]
        assert "record" not in rule, name
        assert re.fullmatch(r"\d+[smh]", rule.get("for", "")), f"{name} has no for: duration"
        assert rule["labels"]["severity"] in SEVERITIES, name
        annotations = rule["annotations"]
        assert annotations["summary"] and "Check" in annotations["description"], name


def test_deploy_readme_lists_every_alert() -> None:
    text = (REPO / "deploy" / "README.md").read_text()
    documented = set(re.findall(r"^\| `(NotifyPushGateway\w+)` \|", text, re.MULTILINE))
    assert documented == {rule["alert"] for rule in alert_rules()}


def test_the_example_configuration_loads_the_rules(promtool: str) -> None:
    config = yaml.safe_load(CONFIG.read_text())
    assert config["rule_files"] == [ALERTS.name]
    assert [job["job_name"] for job in config["scrape_configs"]] == [JOB]
    result = run(promtool, "check", "config", str(CONFIG))
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(alert_rules())} rules found" in result.stdout


# --- the dashboard -------------------------------------------------------------------


def test_every_dashboard_query_is_valid_promql(promtool: str, tmp_path: Path) -> None:
    queries = dashboard_queries()
    assert len(queries) >= 30
    rules = [
        {"record": f"dashboard:query_{i}", "expr": expr} for i, (_, expr) in enumerate(queries)
    ]
    path = tmp_path / "dashboard-queries.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    result = run(promtool, "check", "rules", str(path))
    if result.returncode != 0:
        # Name the panel: the output gives the rule's index only.
        output = result.stdout + result.stderr
        bad = [f"{where}: {expr}" for i, (where, expr) in enumerate(queries)
               if f'"dashboard:query_{i}"' in output]  # fmt: skip
        pytest.fail(f"{output}\n" + "\n".join(bad))
    assert f"SUCCESS: {len(rules)} rules found" in result.stdout


def test_the_dashboard_picks_its_data_source_and_is_templated_by_instance() -> None:
    data = dashboard()
    variables = {v["name"]: v for v in data["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    for name in ("job", "instance"):
        assert variables[name]["type"] == "query"
        assert variables[name]["includeAll"] and variables[name]["multi"]
        assert variables[name]["allValue"] == ".*"
    source = {"type": "prometheus", "uid": "${datasource}"}
    panels = dashboard_panels()
    ids = [panel["id"] for panel in panels]
    assert len(ids) == len(set(ids)), "panel ids repeat"
    for panel in panels:
        where = f"panel {panel['id']} {panel['title']!r}"
        grid = panel["gridPos"]
        assert grid["x"] + grid["w"] <= 24, where
        if panel["type"] == "row":
            continue
        assert panel["datasource"] == source, where
        assert panel["targets"], where
        for target in panel["targets"]:
            assert target["datasource"] == source, where
            # Every selector is limited to the chosen jobs and instances.
            selectors = re.findall(r"\{([^}]*)\}", target["expr"])
            assert selectors, where
            for selector in selectors:
                assert 'job=~"$job"' in selector and 'instance=~"$instance"' in selector, where


def test_the_dashboard_covers_what_operators_watch() -> None:
    exprs = "\n".join(expr for _, expr in dashboard_queries())
    for name in (
        "active_connection_count", "active_user_count", "notify_push_gateway_worker_connections",
        "event_count_total", "message_count_total",
        "notify_push_gateway_delivery_latency_seconds_bucket",
        "notify_push_gateway_login_requests_total", "notify_push_gateway_login_cache_hits_total",
        "notify_push_gateway_redis_subscribed", "notify_push_gateway_database_up",
    ):  # fmt: skip
        assert name in metric_names(exprs), name
    assert "sum by (type)" in exprs and 'type!=""' in exprs  # per type, not the unlabelled sum
    assert "histogram_quantile(0.99" in exprs


# --- names ---------------------------------------------------------------------------


def test_every_metric_the_rules_and_dashboard_read_is_served() -> None:
    served = served_names() | PROMETHEUS_SERIES
    exprs = [(f"alert {rule['alert']}", rule["expr"]) for rule in alert_rules()]
    exprs += dashboard_queries()
    read = set()
    for where, expr in exprs:
        names = metric_names(expr)
        assert names, f"{where}: no metric found in {expr}"
        assert names <= served, f"{where} reads what the gateway does not serve: {names - served}"
        read |= names
    # The extraction found the names themselves, not words around them.
    assert {"notify_push_gateway_workers_linked", "process_max_fds", "up"} <= read


def test_metric_names_are_found_in_promql() -> None:
    expr = (
        'sum by (instance) (rate(a_total{job=~"$job", x="b{c}"}[5m])) / ignoring (result) '
        "b_count and on (job) histogram_quantile(0.9, c_bucket) > 0.5"
    )
    assert metric_names(expr) == {"a_total", "b_count", "c_bucket"}
