"""What the LLM costs: the price table, a reply's token usage, and the daily budget.

Prices are USD per million tokens, input and output apart, from the providers' public list prices
(2026-11); `LLM_PRICES` overrides or adds models. A model the table does not know costs 0 (its
tokens are still counted), so a self-hosted vLLM or Ollama never trips the budget.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol, TypeGuard

from app.llm_retry import utc_now
from app.metrics import Metrics
from app.store import DailySpend, StoreError

log = logging.getLogger(__name__)

BUDGET_REACHED = "LLM budget reached"


@dataclass(frozen=True)
class Price:
    """USD per million tokens."""

    input: float
    output: float


# deepseek-chat is DeepSeek V3.2 (cache-miss input); the output prices are the ones usually quoted.
DEFAULT_PRICES: Mapping[str, Price] = {
    "deepseek-chat": Price(0.28, 0.42),
    "deepseek-reasoner": Price(0.28, 0.42),
    "gpt-4.1": Price(2.00, 8.00),
    "gpt-4.1-mini": Price(0.40, 1.60),
    "gpt-4.1-nano": Price(0.10, 0.40),
    "claude-sonnet-4-5": Price(3.00, 15.00),
    "claude-sonnet-4.5": Price(3.00, 15.00),
    "gemini-2.5-flash": Price(0.30, 2.50),
    "gemini-2.5-flash-lite": Price(0.10, 0.40),
}


@dataclass(frozen=True)
class Usage:
    """Tokens one diagnosis spent, every attempt's reply included."""

    prompt_tokens: int = 0
    completion_tokens: int = 0
    estimated: bool = False  # a server left `usage` out and the tokens were counted from text

    def __add__(self, other: Usage) -> Usage:
        return Usage(
            self.prompt_tokens + other.prompt_tokens,
            self.completion_tokens + other.completion_tokens,
            self.estimated or other.estimated,
        )

    @property
    def total(self) -> int:
        return self.prompt_tokens + self.completion_tokens


def estimate_tokens(text: str) -> int:
    """About four bytes of UTF-8 per token: English and JSON come out near a real tokenizer's
    count, and CJK text (three bytes a character) is not undercounted."""
    return math.ceil(len(text.encode()) / 4)


def reply_usage(reply: Any, prompt: str, completion: str) -> Usage:
    """The reply's own `usage` when it has whole numbers for both; else an estimate from text."""
    usage = reply.get("usage") if isinstance(reply, dict) else None
    if isinstance(usage, dict):
        prompt_tokens = usage.get("prompt_tokens")
        completion_tokens = usage.get("completion_tokens")
        if _count(prompt_tokens) and _count(completion_tokens):
            return Usage(prompt_tokens, completion_tokens)
    return Usage(estimate_tokens(prompt), estimate_tokens(completion), estimated=True)


def _count(value: object) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 10**9


def parse_prices(text: str) -> dict[str, Price]:
    """`model=input/output` or `model=price` (both), comma-separated, USD per million tokens."""
    prices: dict[str, Price] = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        model, sep, value = item.rpartition("=")
        if not sep or not model.strip():
            raise ValueError(f"{item!r} is not model=price (e.g. deepseek-chat=0.28/0.42)")
        parts = value.split("/")
        try:
            numbers = [float(p) for p in parts]
        except ValueError:
            raise ValueError(f"{item!r}: {value!r} is not a price in USD per million") from None
        if len(numbers) > 2 or any(not math.isfinite(n) or n < 0 for n in numbers):
            raise ValueError(f"{item!r}: a price is one or two non-negative numbers (in/out)")
        prices[model.strip().lower()] = Price(numbers[0], numbers[-1])
    return prices


class PriceTable:
    def __init__(self, overrides: Mapping[str, Price] | None = None) -> None:
        self._prices = {**DEFAULT_PRICES, **(overrides or {})}

    def price(self, model: str) -> Price | None:
        """The model's price: by its name, without a router's `provider/` prefix, else by the
        longest known name it extends with a dated or tagged suffix (`gpt-4.1-2025-04-14`)."""
        name = model.strip().lower()
        for candidate in (name, name.rpartition("/")[2]):
            if candidate in self._prices:
                return self._prices[candidate]
            known = [k for k in self._prices if candidate.startswith(k + "-")]
            if known:
                return self._prices[max(known, key=len)]
        return None

    def cost(self, model: str, usage: Usage) -> float:
        price = self.price(model)
        if price is None:
            return 0.0
        return (usage.prompt_tokens * price.input + usage.completion_tokens * price.output) / 1e6


def utc_day(now: datetime) -> str:
    return now.astimezone(UTC).date().isoformat()


class SpendStore(Protocol):
    async def add_llm_spend(
        self, day: str, usd: float, prompt_tokens: int, completion_tokens: int
    ) -> None: ...
    async def llm_spend(self, day: str) -> DailySpend: ...


class Ledger:
    """What each diagnosis cost, counted in the metrics and in the store's total for its UTC day
    (shared by replicas, kept over restarts), and whether LLM_DAILY_BUDGET_USD is spent.

    A store that cannot say lets the call go: the budget caps a bill, it must not take the
    diagnosis away during a store blip. A call already in flight when the budget runs out still
    counts, so a day can end slightly past it.
    """

    def __init__(
        self,
        store: SpendStore,
        prices: PriceTable,
        metrics: Metrics,
        *,
        daily_budget_usd: float | None,
        now: Callable[[], datetime] = utc_now,
    ) -> None:
        self._store = store
        self._prices = prices
        self._metrics = metrics
        self._budget = daily_budget_usd
        self._now = now
        self._unpriced: set[str] = set()

    async def budget_reached(self) -> bool:
        if self._budget is None:
            return False
        try:
            spent = await self._store.llm_spend(utc_day(self._now()))
        except StoreError as exc:
            log.warning("cannot read today's LLM spend, asking the model anyway: %s", exc)
            return False
        return spent.usd >= self._budget

    async def record(self, model: str, usage: Usage) -> float | None:
        """Count what one diagnosis spent; its cost, None when the model has no price."""
        price = self._prices.price(model)
        cost = self._prices.cost(model, usage)
        if usage.total == 0:
            return None if price is None else cost
        if price is None and model not in self._unpriced:
            self._unpriced.add(model)
            log.warning(
                "no price for LLM model %r: its tokens are counted, its cost as 0"
                " (set LLM_PRICES=%s=<input>/<output>, USD per million tokens)",
                model,
                model,
            )
        self._metrics.llm_tokens.labels(model=model, kind="prompt").inc(usage.prompt_tokens)
        self._metrics.llm_tokens.labels(model=model, kind="completion").inc(usage.completion_tokens)
        self._metrics.llm_cost.labels(model=model).inc(cost)
        try:
            await self._store.add_llm_spend(
                utc_day(self._now()), cost, usage.prompt_tokens, usage.completion_tokens
            )
        except StoreError as exc:
            log.warning("cannot add %.6f USD to today's LLM spend: %s", cost, exc)
        return None if price is None else cost
