"""The price table, a reply's tokens and the ledger's edges (app/cost.py); the budget switching the
diagnosis to the rules is in test_enrich.py, the store's daily totals in test_store.py."""

import logging
from datetime import UTC, datetime

import pytest
from pydantic import ValidationError

from app.config import Settings
from app.cost import Ledger, Price, PriceTable, Usage, estimate_tokens, parse_prices, reply_usage
from app.metrics import Metrics
from app.store import DailySpend
from tests.fakes import SpendBook

NOW = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("model", "price"),
    [
        ("deepseek-chat", Price(0.28, 0.42)),
        ("DeepSeek-Chat", Price(0.28, 0.42)),
        ("gpt-4.1", Price(2.00, 8.00)),
        ("gpt-4.1-2025-04-14", Price(2.00, 8.00)),
        ("gpt-4.1-mini", Price(0.40, 1.60)),
        ("gpt-4.1-mini-2025-04-14", Price(0.40, 1.60)),
        ("openai/gpt-4.1", Price(2.00, 8.00)),
        ("claude-sonnet-4-5-20250929", Price(3.00, 15.00)),
        ("gemini-2.5-flash", Price(0.30, 2.50)),
        ("gemini-2.5-flash-lite", Price(0.10, 0.40)),
        ("gemini-2.5-flash-preview-09-2025", Price(0.30, 2.50)),
        ("gpt-4.10", None),
        ("llama3.1:8b", None),
    ],
)
def test_a_model_is_priced_by_its_name_a_dated_version_or_behind_a_router(
    model: str, price: Price | None
) -> None:
    assert PriceTable().price(model) == price


def test_overrides_replace_and_add_prices_input_and_output_apart() -> None:
    table = PriceTable(parse_prices("deepseek-chat=0.07/1.1, my-vllm=0, Qwen3=0.5"))
    assert table.price("deepseek-chat") == Price(0.07, 1.1)
    assert table.price("my-vllm") == Price(0, 0)
    assert table.price("qwen3") == Price(0.5, 0.5), "one number prices both, names ignore case"
    assert table.price("gpt-4.1") == Price(2.00, 8.00), "the defaults stay"


def test_cost_is_tokens_times_price_per_million_and_zero_without_a_price() -> None:
    table = PriceTable()
    assert table.cost("gpt-4.1", Usage(1_000_000, 500_000)) == pytest.approx(2.00 + 4.00)
    assert table.cost("llama3.1:8b", Usage(1_000_000, 500_000)) == 0


@pytest.mark.parametrize(
    "text",
    ["deepseek-chat", "=0.3", "gpt-4.1=cheap", "gpt-4.1=1/2/3", "gpt-4.1=-1", "gpt-4.1=nan"],
)
def test_a_malformed_price_is_refused_at_start_saying_which(text: str) -> None:
    with pytest.raises(ValidationError) as raised:
        Settings(llm_prices=text, _env_file=None)
    assert "llm_prices" in str(raised.value) and repr(text) in str(raised.value)


def test_an_empty_budget_setting_means_no_budget() -> None:
    assert Settings(llm_daily_budget_usd="", _env_file=None).llm_daily_budget_usd is None
    assert Settings(llm_daily_budget_usd="2.5", _env_file=None).llm_daily_budget_usd == 2.5


def test_the_servers_usage_is_taken_when_it_is_whole_numbers() -> None:
    reply = {"usage": {"prompt_tokens": 812, "completion_tokens": 95, "total_tokens": 907}}
    assert reply_usage(reply, "p", "c") == Usage(812, 95)


@pytest.mark.parametrize(
    "usage",
    [
        None,
        {},
        {"prompt_tokens": 10},
        {"prompt_tokens": "10", "completion_tokens": 5},
        {"prompt_tokens": -1, "completion_tokens": 5},
        {"prompt_tokens": True, "completion_tokens": 5},
    ],
)
def test_usage_missing_or_not_numbers_is_estimated_from_the_text(usage: object) -> None:
    reply = {"usage": usage} if usage is not None else {}
    assert reply_usage(reply, "x" * 400, "y" * 41) == Usage(100, 11, estimated=True)


def test_the_estimate_counts_utf8_bytes_so_cjk_is_not_undercounted() -> None:
    assert estimate_tokens("abcd" * 10) == 10
    assert estimate_tokens("交易所接口") == 4, "15 bytes"
    assert estimate_tokens("") == 0


async def test_without_a_budget_the_store_is_never_asked() -> None:
    book = SpendBook(failing=True)
    assert not await Ledger(book, PriceTable(), Metrics(), daily_budget_usd=None).budget_reached()


async def test_the_budget_is_reached_at_its_amount_not_before() -> None:
    book = SpendBook()
    ledger = Ledger(book, PriceTable(), Metrics(), daily_budget_usd=1.0, now=lambda: NOW)
    book.days["2026-11-22"] = DailySpend(usd=0.999)
    assert not await ledger.budget_reached()
    book.days["2026-11-22"] = DailySpend(usd=1.0)
    assert await ledger.budget_reached()


async def test_a_store_that_cannot_say_lets_the_call_go_and_loses_no_diagnosis(
    caplog: pytest.LogCaptureFixture,
) -> None:
    ledger = Ledger(SpendBook(failing=True), PriceTable(), Metrics(), daily_budget_usd=1.0)
    assert not await ledger.budget_reached()
    assert await ledger.record("deepseek-chat", Usage(1000, 0)) == pytest.approx(0.00028)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 2 and all("no connection within 2s" in w for w in warnings)


async def test_an_unpriced_model_is_counted_at_zero_and_warned_about_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    book, metrics = SpendBook(), Metrics()
    ledger = Ledger(book, PriceTable(), metrics, daily_budget_usd=1.0, now=lambda: NOW)
    assert await ledger.record("llama3.1:8b", Usage(100, 50)) is None
    assert await ledger.record("llama3.1:8b", Usage(100, 50)) is None
    assert book.days["2026-11-22"] == DailySpend(0.0, 200, 100, 2)
    tokens = {"model": "llama3.1:8b", "kind": "completion"}
    assert metrics.registry.get_sample_value("alert_enricher_llm_tokens_total", tokens) == 100
    warned = [r for r in caplog.records if "no price for LLM model" in r.getMessage()]
    assert len(warned) == 1 and "LLM_PRICES=llama3.1:8b=" in warned[0].getMessage()


async def test_a_call_that_spent_nothing_is_not_written() -> None:
    book = SpendBook()
    ledger = Ledger(book, PriceTable(), Metrics(), daily_budget_usd=1.0, now=lambda: NOW)
    assert await ledger.record("deepseek-chat", Usage()) == 0
    assert book.days == {}
