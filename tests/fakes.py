"""Fakes at the boundaries: a recording notifier and OpenAI-compatible / Prometheus answers."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from app.models import AlertmanagerPayload, EnrichedNotification, MetricContext, PlotSeries
from app.notifiers.base import NotifyError, Progress, Sent, Thread
from app.store import DailySpend, StoreError

FIXTURES = Path(__file__).parent / "fixtures"
LLM_URL = "http://llm.test/v1"
PROMETHEUS_URL = "http://prometheus.test:9090"
FAKE_LLM_KEY = "fake-llm-key-for-tests"

GOOD_DIAGNOSIS = {
    "diagnosis": "Binance health checks fail since 10:19 UTC; api_health_status dropped to 0.",
    "impact": "No order placement on Binance.",
    "action_items": ["Check Binance status page", "Fail over egress proxy"],
    "rollback_plan": "Revert the proxy change from 10:15.",
    "estimated_recovery_time": "15 minutes",
}


def fixture_text(name: str) -> str:
    return (FIXTURES / name).read_text()


def fixture_payload(name: str) -> AlertmanagerPayload:
    return AlertmanagerPayload.model_validate_json(fixture_text(name))


def chat_reply(
    content: dict[str, Any] | str, status: int = 200, usage: tuple[int, int] | None = None
) -> httpx.Response:
    """A chat completion; with `usage` (prompt, completion tokens) as OpenAI's API reports it."""
    text = content if isinstance(content, str) else json.dumps(content)
    body: dict[str, Any] = {
        "id": "chatcmpl-test",
        "object": "chat.completion",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": text}}],
    }
    if usage is not None:
        prompt, completion = usage
        body["usage"] = {
            "prompt_tokens": prompt,
            "completion_tokens": completion,
            "total_tokens": prompt + completion,
        }
    return httpx.Response(status, json=body)


class SpendBook:
    """The store's LLM spend per UTC day, in memory (the backends' own is in test_store.py);
    `failing` makes every call a StoreError."""

    def __init__(self, failing: bool = False) -> None:
        self.days: dict[str, DailySpend] = {}
        self.failing = failing

    async def add_llm_spend(
        self, day: str, usd: float, prompt_tokens: int, completion_tokens: int
    ) -> None:
        if self.failing:
            raise StoreError("PostgreSQL: no connection within 2s")
        was = self.days.get(day, DailySpend())
        self.days[day] = DailySpend(
            was.usd + usd,
            was.prompt_tokens + prompt_tokens,
            was.completion_tokens + completion_tokens,
            was.calls + 1,
        )

    async def llm_spend(self, day: str) -> DailySpend:
        if self.failing:
            raise StoreError("PostgreSQL: no connection within 2s")
        return self.days.get(day, DailySpend())


def matrix(
    *series: tuple[dict[str, str], list[float]], start: float = 1_700_000_000
) -> httpx.Response:
    result = [
        {"metric": labels, "values": [[start + 30 * i, str(v)] for i, v in enumerate(values)]}
        for labels, values in series
    ]
    return httpx.Response(
        200, json={"status": "success", "data": {"resultType": "matrix", "result": result}}
    )


class RecordingNotifier:
    """Collects what it was asked to send; can be told to fail the next N sends."""

    def __init__(
        self, name: str = "recording", fail_times: int = 0, retryable: bool = True
    ) -> None:
        self.name = name
        self.sent: list[tuple[EnrichedNotification, str | None]] = []
        self.fail_times = fail_times
        self.retryable = retryable
        self.calls = 0
        self.edits: list[tuple[EnrichedNotification, str | None]] = []

    async def edit(
        self, notification: EnrichedNotification, sent: Sent, progress: Progress | None = None
    ) -> str | None:
        async def edit() -> str | None:
            self.calls += 1
            if self.fail_times > 0:
                self.fail_times -= 1
                raise NotifyError(self.name, "simulated outage", retryable=self.retryable)
            self.edits.append((notification, sent.ref))
            return sent.ref

        return await (progress or Progress()).step("edit", edit)

    async def send(
        self,
        notification: EnrichedNotification,
        thread: Thread | None,
        progress: Progress | None = None,
    ) -> str | None:
        return await (progress or Progress()).step(
            "message", lambda: self._send(notification, thread)
        )

    async def _send(self, notification: EnrichedNotification, thread: Thread | None) -> str:
        self.calls += 1
        if self.fail_times > 0:
            self.fail_times -= 1
            raise NotifyError(self.name, "simulated outage", retryable=self.retryable)
        self.sent.append((notification, thread.ref if thread else None))
        return f"{self.name}-msg-{len(self.sent)}"


def sample_notification(
    fixture: str = "alertmanager-0.25-firing_apidown_binance.json",
    *,
    kind: str | None = None,
    notification_id: int = 1,
    annotations: dict[str, str] | None = None,
    labels: dict[str, str] | None = None,
    diagnosis: dict[str, Any] | None = None,
) -> EnrichedNotification:
    """A rendered-ready notification from a real payload, with a rule-based or given diagnosis."""
    from app.enrich import assemble  # noqa: PLC0415
    from app.incident import classify  # noqa: PLC0415
    from app.models import Diagnosis, DiagnosisSource, MetricContext  # noqa: PLC0415
    from app.rules import diagnose  # noqa: PLC0415

    raw = json.loads(fixture_text(fixture))
    for alert in raw["alerts"]:
        alert["annotations"].update(annotations or {})
        alert["labels"].update(labels or {})
    payload = AlertmanagerPayload.model_validate(raw)
    kind = kind or classify(payload, None)
    context = MetricContext(
        expr="api_health_status",
        current=0,
        minimum=0,
        maximum=1,
        mean=0.5,
        change=-1,
        sparkline="██▁▁",
        window_minutes=30,
        graph_url="http://prom.example:9090/graph?g0.expr=api_health_status&g0.tab=0",
    )
    full = kind in ("new", "escalation")
    result = None
    if full:
        result = Diagnosis.model_validate(diagnosis) if diagnosis else diagnose(payload.firing)
    source = DiagnosisSource(kind="rules", reason="no LLM API key configured") if full else None
    contexts = [context] * len(payload.firing) if full else []
    source = source or DiagnosisSource(kind="none")
    return assemble(payload, kind, contexts, result, source, notification_id=notification_id)


def with_new(n: EnrichedNotification, *exchanges: str) -> EnrichedNotification:
    """`n` as an escalation where the alerts on `exchanges` just joined the firing group."""
    firing = [
        a.model_copy(update={"new": a.identifying_labels["exchange"] in exchanges})
        for a in n.firing
    ]
    return n.model_copy(update={"firing": firing})


START = datetime(2026, 11, 21, 10, 3, tzinfo=UTC).timestamp()


def plot(label: str = "", values: tuple[float | None, ...] = (1, 1, 0, 0)) -> PlotSeries:
    return PlotSeries(label=label, points=[(START + 60 * i, v) for i, v in enumerate(values)])


def with_series(
    n: EnrichedNotification, exprs: list[str] | None = None, labels: list[str] | None = None
) -> EnrichedNotification:
    """`n` with each firing alert's context holding series (its own expression from `exprs`)."""
    firing = []
    for i, alert in enumerate(n.firing):
        expr = exprs[i] if exprs else "api_health_status"
        series = [plot(label) for label in labels] if labels else [plot()]
        context = MetricContext(expr=expr, comparison="==", threshold=0, series=series)
        firing.append(alert.model_copy(update={"context": context}))
    return n.model_copy(update={"firing": firing})
