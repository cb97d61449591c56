"""The shipped Alertmanager example is a configuration the real Alertmanager accepts."""

import subprocess
from pathlib import Path

import pytest

from tests.e2e.stack import binary

pytestmark = pytest.mark.e2e
ROOT = Path(__file__).resolve().parents[2]


def test_alertmanager_example_passes_amtool_check_config() -> None:
    done = subprocess.run(
        [binary("amtool"), "check-config", str(ROOT / "alertmanager.example.yml")],
        check=False,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS" in done.stdout
