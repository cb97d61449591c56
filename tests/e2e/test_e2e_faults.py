"""Faults users will meet: the LLM, Slack, Telegram and Prometheus misbehaving, crashes, replicas."""

import asyncio
import re

import httpx
import pytest

from tests.e2e.conftest import eventually, quiet
from tests.loopback import all_text

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(240)]


def slack_text_for(fakes, exchange: str) -> str:
    for message in fakes.slack.top_level():
        text = "\n".join(all_text(message))
        if f"on {exchange}" in text:
            return text
    return ""


async def outage(exporter, fakes, exchange: str) -> str:
    """The Slack message of `exchange`'s outage once its diagnosis is final (a page sent before
    a slow LLM answered is edited when it does)."""
    exporter.set(exchange, healthy=False)

    def final() -> str:
        text = slack_text_for(fakes, exchange)
        return "" if "AI diagnosis in progress" in text else text

    return await eventually(final, what=f"{exchange}'s final diagnosis in Slack")


async def metric(stack, name: str) -> float:
    async with httpx.AsyncClient() as client:
        text = (await client.get(f"{stack.service_url}/metrics")).text
    found = re.search(rf"^{re.escape(name)} ([0-9.e+]+)$", text, re.M)
    return float(found.group(1)) if found else 0.0


async def test_llm_faults_fall_back_to_rules_or_retry(stack, exporter, fakes) -> None:
    for exchange in ("binance", "bybit", "okx", "kraken"):
        exporter.set(exchange)
    await stack()

    for _ in range(3):
        fakes.llm.fail_next(500, {"error": {"message": "internal"}})
    text = await outage(exporter, fakes, "binance")
    assert "rule-based fallback: LLM server error (500)" in text
    assert "The binance API is not answering health checks" in text

    fakes.llm.hang_next(8)  # past the 4s budget
    text = await outage(exporter, fakes, "bybit")
    assert "rule-based fallback: LLM timed out after 4s" in text

    fakes.llm.prose_next()
    text = await outage(exporter, fakes, "okx")
    assert "rule-based fallback: LLM reply is not valid JSON" in text

    fakes.llm.fail_next(429, {"error": {"message": "slow down"}}, {"Retry-After": "1"})
    text = await outage(exporter, fakes, "kraken")
    assert "[fake-llm] kraken failing" in text and "model deepseek-chat" in text
    assert len(fakes.llm.requests) == 3 + 1 + 1 + 2


async def test_chat_rate_limits_and_outages_are_retried_and_delivered_once(
    stack, exporter, fakes
) -> None:
    exporter.set("binance")
    exporter.set("bybit")
    svc = await stack()

    fakes.slack.fail_next(429, {"ok": False, "error": "ratelimited"}, {"Retry-After": "1"})
    fakes.telegram.fail_next(
        429,
        {
            "ok": False,
            "error_code": 429,
            "parameters": {"retry_after": 1},
            "description": "Too Many Requests: retry after 1",
        },
    )
    await outage(exporter, fakes, "binance")
    await eventually(lambda: len(fakes.telegram.sent) == 1, what="Telegram after its 429")

    for _ in range(4):
        fakes.slack.fail_next(500, {"ok": False, "error": "internal_error"})
    for _ in range(6):
        fakes.telegram.fail_next(500, {"ok": False, "error_code": 500, "description": "Internal"})
    await outage(exporter, fakes, "bybit")
    await eventually(lambda: len(fakes.telegram.sent) == 2, timeout=60, what="Telegram after 500s")
    await quiet(svc)
    assert len(fakes.slack.messages) == 2, "one message per notification, retries included"
    assert len(fakes.telegram.sent) == 2
    assert await metric(svc, 'alert_enricher_notifications_processed_total{outcome="retry"}') >= 1


async def test_prometheus_down_still_delivers_with_the_reason(stack, exporter, fakes) -> None:
    exporter.set("binance")
    await stack(PROMETHEUS_URL="http://127.0.0.1:9")
    text = await outage(exporter, fakes, "binance")
    assert "metrics unavailable: Prometheus unreachable (ConnectError)" in text
    assert "[fake-llm] binance failing" in text


async def test_sigkill_after_ack_is_delivered_exactly_once_after_restart(
    stack, exporter, fakes
) -> None:
    exporter.set("binance")
    svc = await stack()
    fakes.llm.hang_next(3)  # the worker is inside the pipeline when the process dies
    exporter.set("binance", healthy=False)
    await eventually(lambda: fakes.llm.requests, what="the worker reaching the LLM")
    await asyncio.to_thread(svc.restart_service, True)  # SIGKILL, then `make run` again

    await eventually(fakes.slack.top_level, timeout=30, what="delivery after restart")
    await eventually(lambda: fakes.telegram.sent, what="Telegram after restart")
    await quiet(svc)
    assert len(fakes.slack.messages) == 1 and len(fakes.telegram.sent) == 1
    assert len(fakes.llm.requests) == 2, "the killed attempt, then the recovered one"


async def test_two_alertmanager_replicas_deliver_once(stack, exporter, fakes) -> None:
    exporter.set("binance")
    svc = await stack(alertmanagers=2)
    await outage(exporter, fakes, "binance")
    await eventually(lambda: fakes.telegram.sent, what="Telegram")
    duplicates = 'alert_enricher_webhooks_total{outcome="duplicate"}'
    for _ in range(50):
        if await metric(svc, duplicates) >= 1:
            break
        await asyncio.sleep(0.2)
    assert await metric(svc, duplicates) >= 1, "both replicas sent it"
    exporter.set("binance", healthy=True)
    [root] = fakes.slack.top_level()
    await eventually(lambda: fakes.slack.replies(root["ts"]), what="resolved reply")
    await quiet(svc)
    assert len(fakes.slack.messages) == 2 and len(fakes.telegram.sent) == 2
