"""`alert-enricher list | show ID | retry ID` against a real SQLite store (app/admin.py); the
store's part on both backends is in test_store.py."""

import asyncio
from pathlib import Path

import pytest

from app.admin import parse_duration
from app.cli import main
from app.incident import Transition
from app.store import SQLiteStore
from tests.fakes import LLM_URL, PROMETHEUS_URL, fixture_text, sample_notification

FIRING = fixture_text("alertmanager-0.25-firing_apidown_binance.json")
RATE_LIMIT = fixture_text("alertmanager-0.25-firing_ratelimitexhausted_okx.json")


@pytest.fixture
def url(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> str:
    monkeypatch.chdir(tmp_path)
    store_url = f"sqlite:///{tmp_path}/admin.db"
    monkeypatch.setenv("STORE_URL", store_url)
    monkeypatch.setenv("PROMETHEUS_URL", PROMETHEUS_URL)
    monkeypatch.setenv("LLM_BASE_URL", LLM_URL)
    return store_url


async def seed(url: str) -> tuple[int, int]:
    """A page sent to Slack and given up on Telegram, and a later one still pending."""
    store = await SQLiteStore.open(url)
    try:
        failed = (await store.accept("k1", "g1", FIRING, 600)).id
        held = await store.claim("w", 30)
        enrichment = sample_notification(notification_id=failed).model_dump_json()
        opening = Transition(kind="new", group_id="g1", incident_id=None, firing=frozenset({"f"}))
        await store.save_enrichment(held.claim, enrichment, opening)
        await store.record_delivery(held.claim, "slack", "sent", "C1:1700000000.1", None)
        await store.record_delivery(held.claim, "telegram", "failed", None, "chat not found")
        await store.give_up(held.claim, "telegram: chat not found")
        pending = (await store.accept("k2", "g2", RATE_LIMIT, 600)).id
        return failed, pending
    finally:
        await store.close()


def test_list_shows_the_newest_first_with_what_failed(url: str, capsys) -> None:
    failed, pending = asyncio.run(seed(url))
    assert main(["list"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["ID", "RECEIVED", "(UTC)", "STATE", "TRIES", "WHAT"]
    assert lines[1].split()[0] == str(pending) and "RateLimitExhausted on okx (firing)" in lines[1]
    assert lines[2].split()[0] == str(failed) and " failed " in lines[2]
    assert lines[2].endswith("APIDown on binance (firing) | telegram: chat not found")


def test_list_failed_and_since_narrow_it_down(url: str, capsys) -> None:
    failed, _ = asyncio.run(seed(url))
    assert main(["list", "--failed"]) == 0
    rows = capsys.readouterr().out.splitlines()[1:]
    assert [r.split()[0] for r in rows] == [str(failed)]
    assert main(["list", "--since", "1h", "--limit", "1"]) == 0
    assert len(capsys.readouterr().out.splitlines()) == 2, "a header and one row"


def test_show_prints_payload_context_prompt_diagnosis_and_deliveries(url: str, capsys) -> None:
    failed, _ = asyncio.run(seed(url))
    assert main(["show", str(failed)]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"notification {failed} (alert): APIDown on binance (firing)\n")
    assert "last error: telegram: chat not found" in out
    assert '"alertname": "APIDown"' in out, "the payload"
    assert "\ncontext:\n" in out and "--- system ---" in out and "--- user ---" in out
    assert "binance has been unreachable for 30s" in out.split("--- user ---")[1]
    assert "diagnosis (rule-based fallback" in out
    assert "  slack     sent     C1:1700000000.1" in out
    assert "  telegram  failed   chat not found" in out


def test_retry_requeues_a_failed_notification_and_refuses_anything_else(url: str, capsys) -> None:
    failed, _ = asyncio.run(seed(url))
    assert main(["retry", str(failed)]) == 0
    assert f"notification {failed} requeued" in capsys.readouterr().out
    assert main(["retry", str(failed)]) == 1
    assert "not requeued: it is pending, not failed" in capsys.readouterr().err
    assert main(["retry", "999"]) == 1
    assert "not requeued: there is none" in capsys.readouterr().err
    assert main(["show", "999"]) == 1


@pytest.mark.parametrize(
    ("text", "seconds"), [("90s", 90), ("30m", 1800), ("1h", 3600), ("1.5h", 5400), ("7d", 604800)]
)
def test_durations_read_as_an_operator_writes_them(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["1", "h", "1w", "-1h", "1 h x"])
def test_a_duration_that_is_not_one_is_refused(text: str) -> None:
    with pytest.raises(ValueError, match="is not a duration"):
        parse_duration(text)
