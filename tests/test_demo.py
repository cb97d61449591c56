"""`make demo`'s configuration: the deploy kit's own files, rewritten only where one machine differs;
and the schedule its failing exchange follows."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
import respx
import yaml

from demo.exchanges import OUTAGE_ANSWER, Outage, healthy
from demo.stack import (
    DEPLOY,
    LONGEST_FOR,
    ROOT,
    alertmanager_config,
    demo_rules,
    prometheus_config,
    seconds,
)

RULE_FILES = sorted((DEPLOY / "prometheus" / "rules").glob("*.yml"))


@pytest.mark.parametrize(
    ("duration", "expected"),
    [("0m", 0), ("30s", 30), ("1m", 60), ("1h30m", 5400), ("250ms", 0.25), ("2d", 172800)],
)
def test_prometheus_durations_are_read_in_seconds(duration: str, expected: float) -> None:
    assert seconds(duration) == expected


@pytest.mark.parametrize("duration", ["", "m", "10", "5x", "1.5m"])
def test_what_is_not_a_prometheus_duration_is_refused(duration: str) -> None:
    with pytest.raises(ValueError, match="not a Prometheus duration"):
        seconds(duration)


@pytest.mark.parametrize("rule_file", RULE_FILES, ids=lambda p: p.name)
def test_demo_rules_cut_only_the_long_for_durations_and_change_nothing_else(
    rule_file: Path,
) -> None:
    shipped = yaml.safe_load(rule_file.read_text())
    demo = demo_rules(rule_file)
    for group, demo_group in zip(shipped["groups"], demo["groups"], strict=True):
        for rule, demo_rule in zip(group["rules"], demo_group["rules"], strict=True):
            waited = seconds(rule.get("for", "0s"))
            expected = rule.get("for") if waited <= LONGEST_FOR else f"{LONGEST_FOR}s"
            assert demo_rule.get("for") == expected
            assert {k: v for k, v in demo_rule.items() if k != "for"} == {
                k: v for k, v in rule.items() if k != "for"
            }
    assert any(
        seconds(r.get("for", "0s")) > LONGEST_FOR for g in shipped["groups"] for r in g["rules"]
    )


def test_demo_prometheus_scrapes_every_job_of_the_kit_on_loopback(tmp_path: Path) -> None:
    targets = {
        "exchange-apis": "127.0.0.1:1001",
        "alert-enricher": "127.0.0.1:1002",
        "alertmanager": "127.0.0.1:1003",
    }
    config = prometheus_config(tmp_path, targets, "127.0.0.1:1003")
    scraped = {
        job["job_name"]: job["static_configs"][0]["targets"] for job in config["scrape_configs"]
    }
    assert scraped == {job: [target] for job, target in targets.items()}
    assert config["rule_files"] == [f"{tmp_path}/*.yml"]
    assert config["alerting"]["alertmanagers"][0]["static_configs"][0]["targets"] == [
        "127.0.0.1:1003"
    ]


def test_a_job_the_demo_has_no_target_for_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="no demo target for job 'alertmanager'"):
        prometheus_config(
            tmp_path, {"exchange-apis": "x:1", "alert-enricher": "x:2"}, "127.0.0.1:1003"
        )


def test_demo_alertmanager_keeps_the_routing_and_posts_once_to_the_service(tmp_path: Path) -> None:
    token = tmp_path / "token"
    config = alertmanager_config("http://127.0.0.1:9999", token)
    shipped = yaml.safe_load((DEPLOY / "alertmanager" / "alertmanager.yml").read_text())
    assert config["route"]["routes"] == shipped["route"]["routes"]
    assert [r["name"] for r in config["receivers"]] == [r["name"] for r in shipped["receivers"]]
    for receiver in config["receivers"]:
        [hook] = receiver["webhook_configs"]
        assert hook["url"] == "http://127.0.0.1:9999/alerts"
        assert hook["http_config"]["authorization"] == {
            "type": "Bearer",
            "credentials_file": str(token),
        }
        assert hook["send_resolved"] is True


def test_an_outage_starts_after_its_delay_lasts_its_length_and_comes_back_every_period() -> None:
    outage = Outage(started=100.0, after=15, lasting=40, every=150)
    assert not outage.down(114.9)
    assert outage.down(115.0) and outage.down(154.9)
    assert not outage.down(155.0) and not outage.down(264.9)
    assert outage.down(265.0)
    assert outage.next_change(100.0) == ("down", 115.0)
    assert outage.next_change(120.0) == ("up", 155.0)
    assert outage.next_change(200.0) == ("down", 265.0)


def test_a_demo_exchange_answers_503_only_while_its_outage_lasts(respx_mock: respx.Router) -> None:
    respx_mock.route(host="127.0.0.1").pass_through()
    outage = Outage(started=0.0, after=0, lasting=1e9, every=2e9)  # down from the start
    with healthy("bybit", outage).serving() as down, healthy("binance").serving() as up:
        answer = httpx.get(f"{down.url}/v5/market/time")
        assert answer.status_code == 503 and answer.text == OUTAGE_ANSWER.body
        time_answer = httpx.get(f"{up.url}/api/v3/time")
        assert time_answer.status_code == 200 and time_answer.json()["serverTime"] > 0
        assert httpx.get(f"{up.url}/api/v3/depth?symbol=BTCUSDT&limit=5").status_code == 200


def test_a_demo_process_ends_when_the_demo_is_killed_outright(tmp_path: Path) -> None:
    """`kill -9` of the demo (no Ctrl-C handler runs) must not leave Prometheus and the rest behind."""
    starter = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time; from pathlib import Path; from demo.processes import Process;"
            f" p = Process('sleeper', ['sleep', '60'], Path({str(tmp_path / 'log')!r}),"
            " die_with_parent=True).start(); print(p.proc.pid, flush=True); time.sleep(60)",
        ],
        stdout=subprocess.PIPE,
        cwd=ROOT,
    )
    assert starter.stdout is not None
    with starter.stdout:
        child = int(starter.stdout.readline())
    assert alive(child)
    starter.kill()
    starter.wait(10)
    deadline = time.monotonic() + 10
    while alive(child) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not alive(child)


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie (exited, not yet reaped by init) counts as ended.
    return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
