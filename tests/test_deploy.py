"""The deploy kit (deploy/): Prometheus rules valid and unit-tested with promtool against input
series; Grafana dashboards whose every query is valid PromQL on metrics the service or the probe
really exports; a docker-compose.yml that `docker-compose config` accepts, mounting files that exist,
wired to the service names it defines. Every metric name is checked against the live registries."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import promql_parser
import pytest
import yaml
from prometheus_client import CollectorRegistry

from app.metrics import Metrics
from app.probe.exporter import ProbeMetrics
from tests.capabilities import missing

KIT = Path(__file__).resolve().parent.parent / "deploy"
DEPLOY = KIT / "prometheus"
RULE_FILES = sorted((DEPLOY / "rules").glob("*.yml"))
RULE_TESTS = sorted((DEPLOY / "tests").glob("*.test.yml"))
DASHBOARDS = sorted((KIT / "grafana" / "dashboards").glob("*.json"))
COMPOSE = KIT / "docker-compose.yml"
# Series Prometheus makes itself, which a dashboard may use next to the exported ones.
PROMETHEUS_OWN = {"up", "ALERTS"}


def tool(
    name: str, package: str, *args: str, cwd: Path = DEPLOY
) -> subprocess.CompletedProcess[str]:
    binary = shutil.which(name)
    if binary is None:
        missing(f"{name} is not installed (Debian: apt-get install {package}; `make e2e-deps`)")
    return subprocess.run(
        [binary, *args], cwd=cwd, capture_output=True, text=True, timeout=120, check=False
    )


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    return tool("promtool", "prometheus", *args)


def rules() -> list[dict[str, object]]:
    return [
        rule
        for path in RULE_FILES
        for group in yaml.safe_load(path.read_text())["groups"]
        for rule in group["rules"]
    ]


def test_the_rule_files_are_valid_prometheus_rules() -> None:
    checked = promtool("check", "rules", *map(str, RULE_FILES))
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_every_rule_file_has_unit_tests_and_they_pass() -> None:
    tested = {
        rule_file
        for test in RULE_TESTS
        for rule_file in yaml.safe_load(test.read_text())["rule_files"]
    }
    assert tested == {f"../rules/{p.name}" for p in RULE_FILES}
    result = promtool("test", "rules", *(str(p.relative_to(DEPLOY)) for p in RULE_TESTS))
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_alert_is_tested_firing() -> None:
    fired = {
        case["alertname"]
        for test in RULE_TESTS
        for group in yaml.safe_load(test.read_text())["tests"]
        for case in group.get("alert_rule_test", [])
        if case.get("exp_alerts")
    }
    assert fired == {rule["alert"] for rule in rules()}


def test_every_alert_has_a_severity_summary_description_and_runbook() -> None:
    for rule in rules():
        labels, annotations = rule["labels"], rule["annotations"]
        assert isinstance(labels, dict) and isinstance(annotations, dict)
        assert labels["severity"] in ("critical", "warning"), rule["alert"]
        assert {"summary", "description", "runbook_url"} <= set(annotations), rule["alert"]


SERIES_SUFFIXES = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count")}


def exported(registry: CollectorRegistry) -> set[str]:
    """The series names the registry exposes: a counter's _total, a histogram's _bucket, _sum and
    _count, a gauge's own name (whether or not any labelled child exists yet)."""
    return {
        f"{family.name}{suffix}"
        for family in registry.collect()
        for suffix in SERIES_SUFFIXES.get(family.type, ("",))
    }


def metric_names(expr: str) -> set[str]:
    """The metric names an expression selects, from Prometheus' grammar (promql-parser)."""
    names: set[str] = set()

    def visit(node: object) -> bool:
        if isinstance(node, promql_parser.VectorSelector) and node.name:
            names.add(node.name)
        return True

    promql_parser.walk(promql_parser.parse(expr), visit)
    return names


def probe_registry() -> CollectorRegistry:
    registry = CollectorRegistry()
    ProbeMetrics(registry)
    return registry


@pytest.mark.parametrize(
    ("prefix", "registry"),
    [("alert_enricher_", lambda: Metrics().registry), ("api_", probe_registry)],
    ids=["the service", "the probe exporter"],
)
def test_the_rules_use_only_metrics_that_are_exported(
    prefix: str, registry: Callable[[], CollectorRegistry]
) -> None:
    used = {name for rule in rules() for name in re.findall(rf"\b{prefix}\w+", str(rule["expr"]))}
    assert used and used <= exported(registry()), used - exported(registry())


def test_every_rule_selects_only_series_someone_exports() -> None:
    known = exported(Metrics().registry) | exported(probe_registry()) | PROMETHEUS_OWN
    for rule in rules():
        assert metric_names(str(rule["expr"])) <= known, rule["alert"]


# Grafana variables as Prometheus would see them once Grafana substituted them.
GRAFANA_VARIABLES = {
    "$__rate_interval": "1m",
    "$__interval": "15s",
    "$__range": "1h",
    '"$instance"': '".*"',
    '"$exchange"': '".*"',
}


def dashboard(path: Path) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(path.read_text())
    return loaded


def panels(board: dict[str, Any]) -> list[dict[str, Any]]:
    return [p for p in board["panels"] if p["type"] != "row"]


def queries(board: dict[str, Any]) -> list[tuple[str, str]]:
    """(panel title, PromQL with the variables substituted) for every target of every panel."""
    found = []
    for panel in panels(board):
        for target in panel["targets"]:
            expr = target["expr"]
            for variable, value in GRAFANA_VARIABLES.items():
                expr = expr.replace(variable, value)
            found.append((panel["title"], expr))
    return found


def test_there_is_a_dashboard_for_the_service_and_one_for_the_exchange_apis() -> None:
    assert {dashboard(p)["uid"] for p in DASHBOARDS} == {"alert-enricher", "exchange-apis"}


@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda p: p.name)
def test_every_panel_query_is_valid_promql_to_promtool(path: Path, tmp_path: Path) -> None:
    board = dashboard(path)
    assert all("$" not in expr for _, expr in queries(board)), "a Grafana variable not substituted"
    records = [
        {"record": f"dashboard:query_{i}", "expr": expr}
        for i, (_, expr) in enumerate(queries(board))
    ]
    rule_file = tmp_path / "dashboard-queries.yml"
    rule_file.write_text(json.dumps({"groups": [{"name": board["uid"], "rules": records}]}))
    checked = promtool("check", "rules", str(rule_file))
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert f"SUCCESS: {len(records)} rules found" in checked.stdout


@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda p: p.name)
def test_every_panel_queries_only_series_the_service_or_the_probe_exports(path: Path) -> None:
    known = exported(Metrics().registry) | exported(probe_registry()) | PROMETHEUS_OWN
    for title, expr in queries(dashboard(path)):
        used = metric_names(expr)
        assert used and used <= known, f"{title}: {used - known}"


@pytest.mark.parametrize(
    ("uid", "registry"),
    [("alert-enricher", lambda: Metrics().registry), ("exchange-apis", probe_registry)],
    ids=["the service", "the probe exporter"],
)
def test_every_exported_family_is_on_its_dashboard(
    uid: str, registry: Callable[[], CollectorRegistry]
) -> None:
    board = next(dashboard(p) for p in DASHBOARDS if dashboard(p)["uid"] == uid)
    charted = {name for _, expr in queries(board) for name in metric_names(expr)}
    families = {
        family.name
        for family in registry().collect()
        if not any(f"{family.name}{s}" in charted for s in ("", "_total", "_bucket"))
    }
    assert not families, f"not on the {uid} dashboard: {sorted(families)}"


@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda p: p.name)
def test_dashboards_choose_their_data_source_and_lay_out_panels_without_overlap(
    path: Path,
) -> None:
    board = dashboard(path)
    variables = {v["name"]: v for v in board["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    ids = [p["id"] for p in board["panels"]]
    assert len(ids) == len(set(ids))
    cells: dict[tuple[int, int], str] = {}
    for panel in board["panels"]:
        if panel["type"] != "row":
            assert panel["datasource"]["uid"] == "${datasource}", panel["title"]
            assert panel["targets"], panel["title"]
        box = panel["gridPos"]
        assert box["x"] + box["w"] <= 24, panel["title"]
        for x in range(box["x"], box["x"] + box["w"]):
            for y in range(box["y"], box["y"] + box["h"]):
                assert (x, y) not in cells, f"{panel['title']} overlaps {cells[(x, y)]}"
                cells[(x, y)] = panel["title"]


def compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(COMPOSE.read_text())
    return loaded


def test_docker_compose_config_accepts_the_compose_file() -> None:
    """`docker compose` (the plugin) where it is installed; Debian's docker-compose otherwise.
    Neither needs a Docker engine to validate."""
    docker = shutil.which("docker")
    plugin = docker and subprocess.run(
        [docker, "compose", "version"], capture_output=True, check=False, timeout=30
    )
    if plugin and plugin.returncode == 0:
        checked = tool(
            "docker", "docker.io", "compose", "-f", str(COMPOSE), "config", "-q", cwd=KIT
        )
    else:
        checked = tool(
            "docker-compose", "docker-compose", "-f", str(COMPOSE), "config", "-q", cwd=KIT
        )
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_the_compose_stack_runs_every_part_of_the_kit() -> None:
    services = compose()["services"]
    assert {"postgres", "probe", "prometheus", "alertmanager", "grafana"} <= set(services)
    replicas = [name for name in services if name.startswith("alert-enricher")]
    assert len(replicas) == 2
    for name in replicas:
        environment = services[name]["environment"]
        assert environment["PROMETHEUS_URL"] == "http://prometheus:9090"
        assert "postgres:5432" in " ".join(services[name]["entrypoint"])


def test_every_file_the_compose_stack_mounts_is_in_the_kit() -> None:
    for name, service in compose()["services"].items():
        for volume in service.get("volumes", []):
            source = volume.split(":", 1)[0]
            if source.startswith("."):
                assert (KIT / source).exists(), f"{name} mounts {source}, which is not in deploy/"


def test_prometheus_scrapes_and_alerts_to_the_compose_services() -> None:
    checked = promtool("check", "config", "prometheus.yml")
    assert checked.returncode == 0, checked.stdout + checked.stderr
    config = yaml.safe_load((DEPLOY / "prometheus.yml").read_text())
    services = set(compose()["services"])
    targets = [
        target
        for job in config["scrape_configs"]
        for static in job["static_configs"]
        for target in static["targets"]
    ]
    targets += config["alerting"]["alertmanagers"][0]["static_configs"][0]["targets"]
    assert {target.split(":")[0] for target in targets} <= services
    jobs = {job["job_name"] for job in config["scrape_configs"]}
    assert {"alert-enricher", "exchange-apis"} <= jobs  # the names the rules' `up` match


def test_alertmanager_sends_every_receiver_to_both_replicas_with_the_token() -> None:
    path = KIT / "alertmanager" / "alertmanager.yml"
    checked = tool("amtool", "prometheus-alertmanager", "check-config", str(path))
    assert checked.returncode == 0, checked.stdout + checked.stderr
    config = yaml.safe_load(path.read_text())
    secret = "/run/secrets/webhook_token"
    for receiver in config["receivers"]:
        urls = {hook["url"] for hook in receiver["webhook_configs"]}
        assert urls == {
            "http://alert-enricher-a:8080/alerts",
            "http://alert-enricher-b:8080/alerts",
        }, receiver["name"]
        for hook in receiver["webhook_configs"]:
            assert hook["http_config"]["authorization"]["credentials_file"] == secret
            assert hook["send_resolved"] is True


def test_grafana_is_provisioned_with_the_dashboards_and_the_compose_prometheus() -> None:
    grafana = compose()["services"]["grafana"]
    mounts = dict(volume.split(":")[:2] for volume in grafana["volumes"])
    provisioning = KIT / "grafana" / "provisioning"
    provider = yaml.safe_load((provisioning / "dashboards" / "alert-enricher.yml").read_text())
    assert mounts["./grafana/dashboards"] == provider["providers"][0]["options"]["path"]
    assert mounts["./grafana/provisioning"] == "/etc/grafana/provisioning"
    source = yaml.safe_load((provisioning / "datasources" / "prometheus.yml").read_text())
    assert source["datasources"][0]["url"] == "http://prometheus:9090"
