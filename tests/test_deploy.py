"""The deploy kit's Prometheus rules (deploy/prometheus/): valid, unit-tested with promtool against
input series, and using only metric names the service really exports."""

from __future__ import annotations

import re
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml
from prometheus_client import CollectorRegistry

from app.metrics import Metrics
from app.probe.exporter import ProbeMetrics
from tests.capabilities import missing

DEPLOY = Path(__file__).resolve().parent.parent / "deploy" / "prometheus"
RULE_FILES = sorted((DEPLOY / "rules").glob("*.yml"))
RULE_TESTS = sorted((DEPLOY / "tests").glob("*.test.yml"))


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    binary = shutil.which("promtool")
    if binary is None:
        missing("promtool is not installed (Debian: apt-get install prometheus)")
    return subprocess.run(
        [binary, *args], cwd=DEPLOY, capture_output=True, text=True, timeout=120, check=False
    )


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


def exported(registry: CollectorRegistry) -> set[str]:
    return {
        sample
        for family in registry.collect()
        for sample in {family.name, f"{family.name}_total", f"{family.name}_bucket"}
    }


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
