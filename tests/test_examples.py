"""The shipped examples stay consistent with the service's limits and protections."""

import json
import re
from pathlib import Path

from app.config import Settings
from tests.fakes import fixture_text

ROOT = Path(__file__).resolve().parent.parent


def test_alertmanager_example_caps_a_group_so_it_always_fits_the_body_limit() -> None:
    example = (ROOT / "alertmanager.example.yml").read_text()
    found = re.search(r"^\s*max_alerts:\s*(\d+)", example, re.MULTILINE)
    assert found is not None, "without max_alerts a large group gets 413 and is never retried"
    max_alerts = int(found.group(1))
    assert max_alerts > 0
    raw = json.loads(fixture_text("alertmanager-0.25-firing_apidown_group_of_3.json"))
    alert = raw["alerts"][0]
    alert["annotations"]["description"] = "x" * 4000  # a generous, wordy rule
    raw["alerts"] = [alert] * max_alerts
    body = json.dumps(raw)
    limit = Settings(_env_file=None).max_body_bytes
    assert len(body.encode()) < limit / 2, "room to spare for larger labels"


def test_alertmanager_example_sends_a_bearer_token() -> None:
    example = (ROOT / "alertmanager.example.yml").read_text()
    assert "type: Bearer" in example and "credentials" in example


def test_the_container_image_explains_that_it_needs_a_webhook_token() -> None:
    assert "WEBHOOK_TOKEN" in (ROOT / "Dockerfile").read_text()
