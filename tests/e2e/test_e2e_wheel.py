"""The wheel, installed with plain pip into a fresh virtualenv, works from any directory."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.fakes import FIXTURES

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(600)]
ROOT = Path(__file__).resolve().parents[2]


def run(*argv: str | Path, cwd: Path | None = None, env: dict[str, str] | None = None) -> str:
    done = subprocess.run(
        [str(a) for a in argv],
        check=False,
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=540,
    )
    assert done.returncode == 0, f"{argv}: {done.stdout}\n{done.stderr}"
    return done.stdout


def test_the_installed_wheel_replays_a_payload_from_another_directory(tmp_path: Path) -> None:
    wheels = tmp_path / "wheels"
    run(sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "-w", wheels, ROOT)
    [wheel] = wheels.glob("alert_enricher-*.whl")
    venv = tmp_path / "venv"
    run(sys.executable, "-m", "venv", venv)
    run(venv / "bin" / "pip", "install", "--quiet", wheel)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {
        "PATH": f"{venv / 'bin'}:/usr/bin:/bin",
        "HOME": str(tmp_path),
        "PROMETHEUS_URL": "http://127.0.0.1:9",  # nothing listens: metrics unavailable
    }
    fixture = FIXTURES / "alertmanager-0.25-firing_apidown_binance.json"
    out = run("alert-enricher", "replay", fixture, cwd=elsewhere, env=env)
    assert "FIRING: APIDown on binance" in out and "metrics unavailable" in out
    assert "rule-based fallback" in out
    assert not (elsewhere / "data").exists(), "replay keeps no state in the working directory"
    telegram = run(
        venv / "bin" / "python",
        "-m",
        "app",
        "replay",
        fixture,
        "--as",
        "telegram",
        cwd=elsewhere,
        env=env,
    )
    assert "<b>🔥 FIRING" in telegram
    assert os.listdir(elsewhere) == []
