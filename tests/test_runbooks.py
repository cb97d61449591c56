"""RUNBOOKS_DIR: the team's Markdown runbooks, matched to alerts, lead the rule-based action items,
go into the LLM's prompt within its budget, and are named in the message. Never fetched: a
`runbook_url` stays a link."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import httpx
import pytest
import respx

from app.models import AlertmanagerPayload
from app.prompt_data import PromptBudget, prompt_data
from app.rules import diagnose
from app.runbooks import MAX_FILE_BYTES, MAX_STEP_CHARS, MAX_STEPS, Runbooks, first_steps, parse
from tests.fakes import GOOD_DIAGNOSIS, LLM_URL, chat_reply, fixture_payload, fixture_text
from tests.test_enrich import enricher, prometheus  # noqa: F401 (a fixture)

APIDOWN = "alertmanager-0.25-firing_apidown_binance.json"

BINANCE_DOWN = """---
alertname: [APIDown, APIErrorRateHigh]
labels: {exchange: binance}
---
# Binance API down

Binance fails more often at 00:00 UTC, during its funding and settlement run.

## First steps
1. Check https://www.binance.com/en/support/announcement for maintenance.
2. Switch the order router to api1.binance.com
   (the backup cluster).
3. Page the trading desk lead if it lasts over 5 minutes.

## Background
- Our egress goes through proxy-eu-1.
"""

GENERIC_DOWN = """# Any exchange down

- Look at the exchange-apis dashboard.
- Check our egress proxy.
"""


@pytest.fixture
def books(tmp_path: Path) -> Path:
    (tmp_path / "binance-down.md").write_text(BINANCE_DOWN)
    (tmp_path / "APIDown.md").write_text(GENERIC_DOWN)
    return tmp_path


def test_a_file_named_after_an_alert_is_its_runbook_with_its_first_list_as_steps() -> None:
    book = parse("APIDown.md", GENERIC_DOWN)
    assert book.alertnames == {"APIDown"} and not book.labels
    assert book.title == "Any exchange down"
    assert book.steps == ("Look at the exchange-apis dashboard.", "Check our egress proxy.")


def test_front_matter_names_the_alerts_and_labels_a_runbook_covers() -> None:
    book = parse("binance-down.md", BINANCE_DOWN)
    assert book.alertnames == {"APIDown", "APIErrorRateHigh"}
    assert book.matches("APIErrorRateHigh", {"exchange": "binance", "job": "x"})
    assert not book.matches("APIDown", {"exchange": "okx"})
    assert not book.matches("RateLimitExhausted", {"exchange": "binance"})
    assert not book.text.startswith("---")


def test_the_steps_are_the_list_under_a_steps_heading_with_wrapped_items_joined() -> None:
    assert parse("b.md", BINANCE_DOWN).steps == (
        "Check https://www.binance.com/en/support/announcement for maintenance.",
        "Switch the order router to api1.binance.com (the backup cluster).",
        "Page the trading desk lead if it lasts over 5 minutes.",
    )


def test_lists_inside_code_blocks_are_not_steps_and_steps_are_capped() -> None:
    text = "```\n- rm -rf /\n```\n## Mitigation\n" + "".join(
        f"* step {i} {'x' * (MAX_STEP_CHARS if i == 0 else 1)}\n" for i in range(MAX_STEPS + 3)
    )
    steps = first_steps(text)
    assert len(steps) == MAX_STEPS
    assert steps[0].endswith("…") and len(steps[0]) == MAX_STEP_CHARS
    assert steps[1] == "step 1 x"


def test_the_most_specific_runbook_wins(books: Path) -> None:
    found = Runbooks.load(books)
    binance = found.find("APIDown", {"exchange": "binance"})
    assert binance is not None and binance.name == "binance-down.md"
    other = found.find("APIDown", {"exchange": "okx"})
    assert other is not None and other.name == "APIDown.md"
    assert found.find("ExchangeClockSkew", {"exchange": "binance"}) is None


def test_a_broken_or_oversized_runbook_is_skipped_with_a_warning_and_the_rest_load(
    books: Path, caplog: pytest.LogCaptureFixture
) -> None:
    (books / "broken.md").write_text("---\nalertname: [unclosed\n---\n# x\n")
    (books / "huge.md").write_text("x" * (MAX_FILE_BYTES + 1))
    (books / "notes.txt").write_text("not a runbook")
    with caplog.at_level(logging.WARNING):
        found = Runbooks.load(books)
    assert sorted(b.name for b in found.books) == ["APIDown.md", "binance-down.md"]
    assert "broken.md skipped" in caplog.text and "huge.md skipped" in caplog.text


def test_an_excerpt_puts_the_first_steps_first_and_fits_its_budget() -> None:
    book = parse("b.md", BINANCE_DOWN)
    text = book.excerpt(10_000)
    assert text.startswith("First steps:\n1. Check https://www.binance.com")
    assert "proxy-eu-1" in text
    short = book.excerpt(120)
    assert len(short) == 120 and short.endswith("…") and short.startswith("First steps:")


def test_the_runbook_steps_lead_the_rule_based_action_items() -> None:
    raw = json.loads(fixture_text(APIDOWN))
    raw["alerts"][0]["annotations"]["runbook_url"] = "https://wiki.example/APIDown"
    firing = AlertmanagerPayload.model_validate(raw).firing
    book = parse("binance-down.md", BINANCE_DOWN)
    actions = diagnose(firing, book).action_items
    assert actions[:3] == list(book.steps)
    assert actions[3] == "Follow the runbook: https://wiki.example/APIDown"  # a link, as before
    assert diagnose(firing).action_items[0] == "Follow the runbook: https://wiki.example/APIDown"


def test_the_runbook_goes_into_the_prompts_data_within_a_quarter_of_the_budget() -> None:
    payload = fixture_payload(APIDOWN)
    book = parse("binance-down.md", BINANCE_DOWN * 20)
    data = json.loads(prompt_data(payload, [], PromptBudget(4_000), book))
    assert data["runbook"]["file"] == "binance-down.md"
    assert data["runbook"]["title"] == "Binance API down"
    assert len(data["runbook"]["text"]) == 1_000
    assert "runbook" not in json.loads(prompt_data(payload, [], PromptBudget(4_000)))


async def test_the_llm_is_given_the_runbook_and_the_message_names_it(
    books: Path,
    respx_mock: respx.MockRouter,
    prometheus: respx.Route,  # noqa: F811
) -> None:
    llm = respx_mock.post(f"{LLM_URL}/chat/completions").mock(
        return_value=chat_reply(GOOD_DIAGNOSIS, usage=(1200, 300))
    )
    async with httpx.AsyncClient() as http:
        result = await enricher(http, runbooks=Runbooks.load(books)).enrich(
            fixture_payload(APIDOWN)
        )
    user = json.loads(llm.calls[0].request.content)["messages"][1]["content"]
    assert "Switch the order router to api1.binance.com" in user
    assert (
        result.source.label == "model deepseek-chat, 1,500 tokens, $0.0005; runbook binance-down.md"
    )
    # Only Prometheus and the LLM were asked: the alert's runbook_url was never fetched.
    assert {call.request.url.host for call in respx_mock.calls} == {
        httpx.URL(LLM_URL).host,
        prometheus.calls[0].request.url.host,
    }


async def test_without_a_model_the_rules_follow_the_runbook_and_say_so(
    books: Path,
    prometheus: respx.Route,  # noqa: F811
) -> None:
    async with httpx.AsyncClient() as http:
        result = await enricher(http, api_key=None, runbooks=Runbooks.load(books)).enrich(
            fixture_payload(APIDOWN)
        )
    assert result.diagnosis is not None
    assert result.diagnosis.action_items[0].startswith("Check https://www.binance.com")
    assert result.source.label.endswith("; runbook binance-down.md")
    assert result.source.label.startswith("rule-based fallback: no LLM API key configured")


async def test_an_alert_without_a_runbook_gets_none(
    tmp_path: Path,
    prometheus: respx.Route,  # noqa: F811
) -> None:
    (tmp_path / "OtherAlert.md").write_text(GENERIC_DOWN)
    async with httpx.AsyncClient() as http:
        runbooks = Runbooks.load(tmp_path)
        result = await enricher(http, api_key=None, runbooks=runbooks).enrich(
            fixture_payload(APIDOWN)
        )
    assert result.source.runbook is None and "runbook " not in result.source.label


def test_no_runbooks_dir_means_no_runbooks() -> None:
    assert len(Runbooks.load(None)) == 0
