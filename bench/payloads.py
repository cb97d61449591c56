"""Alertmanager notifications for the bench, built from the real payloads in tests/fixtures.

Every group carries a marker, `bm` and six digits, as its `exchange` label: it shows in the message
title on both chat channels and in the prompt, so the fakes can tell which group a message or an LLM
call belongs to (see bench/fakes.py). Markers come from one counter, so no two groups of a bench
run share one.
"""

from __future__ import annotations

import copy
import itertools
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
FIXTURE = ROOT / "tests" / "fixtures" / "alertmanager-0.25-firing_apidown_binance.json"
MARKER = re.compile(r"bm(\d{6})")

_sequence = itertools.count(1)


@dataclass(frozen=True)
class Notification:
    """One webhook body, ready to post, and the marker of its group."""

    marker: str
    body: bytes


def marker_in(text: str) -> str | None:
    """The first group marker in a text (a chat message, a prompt), or None."""
    found = MARKER.search(text)
    return found.group(0) if found else None


def _template() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(FIXTURE.read_text())
    return loaded


def group(size: int, severity: str = "critical") -> Notification:
    """A firing group of `size` APIDown alerts on one new exchange, one per instance.

    Each alert is the fixture's, with its own instance, fingerprint, annotations and `severity`
    label (the fixture's is critical; the service pages critical groups first); the group's
    key, labels and common labels are what Alertmanager would send for `group_by: [alertname,
    exchange]`.
    """
    template = _template()
    marker = f"bm{next(_sequence):06d}"
    alerts = []
    for index in range(size):
        alert = copy.deepcopy(template["alerts"][0])
        instance = f"10.{index // 250}.{index % 250}.7:9100"
        alert["labels"].update({"exchange": marker, "instance": instance, "severity": severity})
        alert["annotations"] = {
            "summary": f"{marker} API is down",
            "description": f"{marker} has been unreachable from {instance} for 30s",
        }
        alert["fingerprint"] = f"{marker[2:]}{index:010x}"
        alerts.append(alert)
    common = {k: v for k, v in alerts[0]["labels"].items() if k != "instance" or size == 1}
    body = {
        **template,
        "alerts": alerts,
        "groupLabels": {"alertname": "APIDown", "exchange": marker},
        "commonLabels": common,
        "groupKey": f'{{}}:{{alertname="APIDown", exchange="{marker}"}}',
        "truncatedAlerts": 0,
    }
    return Notification(marker, json.dumps(body).encode())


def groups(count: int, size: int, severity: str = "critical") -> list[Notification]:
    return [group(size, severity) for _ in range(count)]
