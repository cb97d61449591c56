"""Page first, enrich after, against real Prometheus and Alertmanager: an LLM that takes 10 s
never holds back the page, and its diagnosis is edited into the same messages."""

import asyncio

import httpx
import pytest

from tests.e2e.conftest import eventually
from tests.loopback import all_text

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(180)]

PRELIMINARY = "rule-based, preliminary: AI diagnosis in progress"
PAGE_WITHIN_SECONDS = 3


def slack_root(fakes, exchange: str) -> dict | None:
    for message in fakes.slack.top_level():
        if f"on {exchange}" in "\n".join(all_text(message)):
            return message
    return None


def text_of(message: dict) -> str:
    return "\n".join(all_text(message))


async def sample(stack, name: str, **labels: str) -> float:
    async with httpx.AsyncClient() as client:
        text = (await client.get(f"{stack.service_url}/metrics")).text
    for line in text.splitlines():
        if line.startswith(name + "{") and all(f'{k}="{v}"' in line for k, v in labels.items()):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


async def until_sample(stack, name: str, value: float, timeout: float = 30, **labels: str) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while await sample(stack, name, **labels) != value:
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"{name}{labels} never reached {value}")
        await asyncio.sleep(0.1)


async def test_a_10s_llm_pages_within_the_promise_then_edits_and_a_resolve_wins(
    stack, exporter, fakes
) -> None:
    for exchange in ("binance", "bybit"):
        exporter.set(exchange)
    svc = await stack(LLM_TIMEOUT_SECONDS="15", PAGE_WITHIN_SECONDS=str(PAGE_WITHIN_SECONDS))
    fakes.llm.delay = 10

    exporter.set("binance", healthy=False)
    root = await eventually(lambda: slack_root(fakes, "binance"), what="the binance page")
    first = text_of(root)
    assert PRELIMINARY in first, "paged before the model answered"
    assert "The binance API is not answering health checks" in first, "the rules' diagnosis"
    [page] = await eventually(lambda: fakes.telegram.sent, what="the Telegram page")
    assert PRELIMINARY in page["visible"]
    # Both channels within PAGE_WITHIN_SECONDS + 1 of acceptance, by the service's own clock.
    bucket = f"{PAGE_WITHIN_SECONDS + 1:.1f}"
    assert await sample(svc, "alert_enricher_time_to_page_seconds_bucket", le=bucket) == 2

    def edited() -> bool:
        slack = text_of(fakes.slack.messages[root["ts"]])
        return "model deepseek-chat" in slack and "model deepseek-chat" in fakes.telegram.current(
            page["message_id"]
        )

    await eventually(edited, timeout=20, what="the model's diagnosis edited into both messages")
    slack = text_of(fakes.slack.messages[root["ts"]])
    assert "[fake-llm] binance failing" in slack and PRELIMINARY not in slack
    assert "[fake-llm] binance failing" in fakes.telegram.current(page["message_id"])
    assert len(fakes.slack.top_level()) == 1 and len(fakes.telegram.sent) == 1, "edited, not new"
    assert len(fakes.llm.requests) == 1

    # A resolve that arrives while the model still thinks: no edit turns it back to firing.
    exporter.set("bybit", healthy=False)
    bybit = await eventually(lambda: slack_root(fakes, "bybit"), what="the bybit page")
    assert PRELIMINARY in text_of(bybit)
    exporter.set("bybit", healthy=True)
    await eventually(lambda: fakes.slack.replies(bybit["ts"]), what="the bybit resolve")
    await eventually(lambda: len(fakes.llm.requests) == 2, what="the model asked about bybit")

    await until_sample(
        svc, "alert_enricher_diagnosis_edits_total", 1, channel="slack", outcome="superseded"
    )
    shown = text_of(fakes.slack.messages[bybit["ts"]])
    assert "RESOLVED" in shown and "resolved before the AI diagnosis" in shown
    assert "[fake-llm] bybit" not in shown and PRELIMINARY not in shown
    telegram = [m for m in fakes.telegram.sent if "bybit" in m["visible"]]
    assert [m.get("edited") for m in telegram] == [None, None], "page and resolve, no edit"
