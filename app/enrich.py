"""The pipeline: metric context -> diagnosis (LLM, else rules) -> the enriched notification.

One LLM call per notification group, for its firing alerts only; a resolved-only notification makes
none. Whatever goes wrong with the model, the rules answer and the message says why.
"""

from __future__ import annotations

import logging
from contextlib import AbstractContextManager, nullcontext
from urllib.parse import quote, urlsplit

from app.cost import BUDGET_REACHED, Ledger
from app.formatting import clean, shorten
from app.incident import classify
from app.language import ENGLISH, Words, words_for
from app.llm import LLMClient, LLMError
from app.memory import HistoryStore, Memory, recall
from app.metrics import Metrics
from app.models import (
    Alert,
    AlertmanagerPayload,
    AlertView,
    Diagnosis,
    DiagnosisSource,
    EnrichedNotification,
    Kind,
    MetricContext,
)
from app.priority import SEVERITY_RANK
from app.prometheus import ContextBuilder
from app.prompt_data import MAX_ALERTS_SHOWN, PromptBudget, prompt_data
from app.prompts import Prompts
from app.rules import diagnose as rule_diagnosis
from app.runbooks import Runbook, Runbooks

log = logging.getLogger(__name__)

LEADING_LABELS = ("exchange", "service", "endpoint", "instance", "job")


def _http_url(url: str) -> str | None:
    """Only http(s) URLs from alert text become links."""
    try:
        parts = urlsplit(url.strip())
    except ValueError:
        return None
    return url.strip() if parts.scheme in ("http", "https") and parts.netloc else None


def _identifying(labels: dict[str, str]) -> dict[str, str]:
    rest = {k: v for k, v in labels.items() if k not in ("alertname", "severity")}
    ordered = {k: rest.pop(k) for k in LEADING_LABELS if k in rest}
    return {clean(k): clean(v) for k, v in {**ordered, **dict(sorted(rest.items()))}.items()}


def alert_view(
    alert: Alert, context: MetricContext | None = None, *, new: bool = False
) -> AlertView:
    runbook = alert.annotations.get("runbook_url", "")
    return AlertView(
        name=clean(alert.name),
        status=alert.status,
        severity=clean(alert.severity),
        identifying_labels=_identifying(alert.labels),
        summary=clean(alert.annotations.get("summary", "")),
        description=clean(alert.annotations.get("description", "")),
        runbook_url=_http_url(runbook) if runbook else None,
        starts_at=alert.starts_at,
        ends_at=alert.ends_at,
        fingerprint=alert.identity,
        context=context,
        new=new,
    )


def silence_url(payload: AlertmanagerPayload, alertmanager_url: str | None = None) -> str | None:
    """A pre-filled "new silence" link in the Alertmanager UI, matching the group's labels: in
    ALERTMANAGER_URL when configured, else in the externalURL the payload names."""
    base = _http_url(alertmanager_url or payload.external_url)
    labels = payload.group_labels or payload.common_labels
    if not base or not labels:
        return None
    escaped = {k: v.replace("\\", "\\\\").replace('"', '\\"') for k, v in sorted(labels.items())}
    matchers = ",".join(f'{k}="{v}"' for k, v in escaped.items())
    return f"{base.rstrip('/')}/#/silences/new?filter={quote('{' + matchers + '}', safe='')}"


def title(payload: AlertmanagerPayload, words: Words = ENGLISH) -> str:
    """The alert name and exchanges of what fires; when nothing does, of what resolved."""
    alerts = payload.firing or payload.alerts
    names = list(dict.fromkeys(a.name for a in alerts))
    common = payload.common_labels.get("alertname")
    lead = common if common in names else names[0]
    exchanges = sorted({a.labels["exchange"] for a in alerts if a.labels.get("exchange")})
    text = lead if len(names) == 1 else f"{lead} {words.other_names.format(count=len(names) - 1)}"
    if exchanges:
        text += f" {words.on} {words.names(exchanges)}"
    return clean(shorten(text, 150))


def severity(alerts: list[Alert]) -> str:
    return min((a.severity for a in alerts), key=lambda s: SEVERITY_RANK.get(s, 9))


def assemble(
    payload: AlertmanagerPayload,
    kind: Kind,
    contexts: list[MetricContext],
    diagnosis: Diagnosis | None,
    source: DiagnosisSource,
    *,
    notification_id: int | None = None,
    known: frozenset[str] | None = None,
    alertmanager_url: str | None = None,
    memory: Memory | None = None,
    words: Words = ENGLISH,
) -> EnrichedNotification:
    """The presentation-neutral notification: cleaned text, at most MAX_ALERTS_SHOWN alerts.

    `contexts` belong to `payload.firing`, in order. `known`: the identities (`Alert.identity`, the
    fingerprint) of the group's alerts that were already firing; in an escalation the others are
    marked new and listed first, so no cap hides them. None (not known) marks nothing.
    """
    firing = payload.firing
    context_of = dict(zip((a.identity for a in firing), contexts, strict=False))
    new: set[str] = set()
    if kind == "escalation" and known is not None:
        new = {a.identity for a in firing} - known
        firing = sorted(firing, key=lambda a: a.identity not in new)
    shown_firing = firing[:MAX_ALERTS_SHOWN]
    shown_resolved = payload.resolved[: max(0, MAX_ALERTS_SHOWN - len(shown_firing))]
    omitted = len(payload.alerts) - len(shown_firing) - len(shown_resolved)
    return EnrichedNotification(
        notification_id=notification_id,
        group_id=payload.group_id,
        status=payload.status,
        kind=kind,
        title=title(payload, words),
        severity=clean(severity(firing or payload.alerts)),
        receiver=clean(payload.receiver),
        firing=[
            alert_view(a, context_of.get(a.identity), new=a.identity in new) for a in shown_firing
        ],
        resolved=[alert_view(a) for a in shown_resolved],
        omitted_alerts=omitted + payload.truncated_alerts,
        diagnosis=diagnosis,
        source=source,
        history=memory.line_in(words) if memory else None,
        language=words.code,
        silence_url=silence_url(payload, alertmanager_url),
        alertmanager_url=_http_url(payload.external_url),
    )


class Enricher:
    """Turns a payload into an EnrichedNotification. No chat I/O here."""

    def __init__(
        self,
        contexts: ContextBuilder,
        llm: LLMClient,
        prompts: Prompts,
        metrics: Metrics,
        *,
        language: str,
        window_minutes: int,
        prompt_budget: int,
        ledger: Ledger,
        alertmanager_url: str | None = None,
        runbooks: Runbooks | None = None,
        history: HistoryStore | None = None,
    ) -> None:
        self._contexts = contexts
        self._llm = llm
        self._ledger = ledger
        self._prompts = prompts
        self._metrics = metrics
        self._language = language
        self._words = words_for(language)
        self._window = window_minutes
        self._budget = PromptBudget(prompt_budget)
        self._alertmanager_url = alertmanager_url
        self._runbooks = runbooks or Runbooks()
        self._history = history

    async def enrich(
        self,
        payload: AlertmanagerPayload,
        notification_id: int | None = None,
        kind: Kind | None = None,
        *,
        known: frozenset[str] | None = None,
    ) -> EnrichedNotification:
        """Context and diagnosis for `new` and `escalation`; follow-ups make no queries at all.

        `known`: the fingerprints the group's incident had firing before (see `assemble`).
        """
        kind = kind or classify(payload, None)
        contexts = await self.contexts(payload, kind)
        diagnosis, source = (None, DiagnosisSource(kind="none"))
        memory = None
        if kind in ("new", "escalation"):
            memory = await self.memory(payload)
            diagnosis, source = await self.diagnose(payload, contexts, memory)
        return self.assemble(
            payload,
            kind,
            contexts,
            diagnosis,
            source,
            notification_id=notification_id,
            known=known,
            memory=memory,
        )

    async def memory(self, payload: AlertmanagerPayload) -> Memory | None:
        """The group's incident memory (app/memory.py); None without a store or a past."""
        lead = payload.firing[0] if payload.firing else None
        return await recall(self._history, payload.group_id, lead)

    async def contexts(self, payload: AlertmanagerPayload, kind: Kind) -> list[MetricContext]:
        """The firing alerts' metric context for `new` and `escalation`; none for follow-ups."""
        if kind not in ("new", "escalation"):
            return []
        return await self._contexts.build(payload.firing)

    def assemble(
        self,
        payload: AlertmanagerPayload,
        kind: Kind,
        contexts: list[MetricContext],
        diagnosis: Diagnosis | None,
        source: DiagnosisSource,
        *,
        notification_id: int | None = None,
        known: frozenset[str] | None = None,
        memory: Memory | None = None,
    ) -> EnrichedNotification:
        return assemble(
            payload,
            kind,
            contexts,
            diagnosis,
            source,
            notification_id=notification_id,
            known=known,
            alertmanager_url=self._alertmanager_url,
            memory=memory,
            words=self._words,
        )

    async def diagnose(
        self,
        payload: AlertmanagerPayload,
        contexts: list[MetricContext],
        memory: Memory | None = None,
    ) -> tuple[Diagnosis, DiagnosisSource]:
        """The model's diagnosis, or the rules' with the reason the model was not used. `memory`
        (the group's earlier incidents) goes into the prompt as evidence."""
        runbook = self.runbook(payload)
        system, user = self._prompts.render(
            data=prompt_data(payload, contexts, self._budget, runbook, memory),
            status=payload.status,
            firing_count=len(payload.firing),
            resolved_count=len(payload.resolved),
            window_minutes=self._window,
            language=self._language,
        )
        if self._llm.enabled and await self._ledger.budget_reached():
            return self._fallback(payload, contexts, "budget", BUDGET_REACHED)
        # No model, no call: timing its immediate LLMError would fill the histogram with zeros.
        timer: AbstractContextManager[object] = (
            self._metrics.llm_seconds.time() if self._llm.enabled else nullcontext()
        )
        try:
            with timer:
                answer = await self._llm.diagnose(system, user)
        except LLMError as exc:
            await self._ledger.record(self._llm.model, exc.usage)
            if self._llm.enabled:
                log.warning("LLM diagnosis failed, using rules: %s", exc)
            return self._fallback(payload, contexts, exc.reason, str(exc))
        cost = await self._ledger.record(self._llm.model, answer.usage)
        self._metrics.diagnoses.labels(source="llm").inc()
        return answer.diagnosis, DiagnosisSource(
            kind="llm",
            model=self._llm.model,
            tokens=answer.usage.total,
            tokens_estimated=answer.usage.estimated,
            cost_usd=cost,
            runbook=runbook.name if runbook else None,
        )

    def _fallback(
        self, payload: AlertmanagerPayload, contexts: list[MetricContext], code: str, reason: str
    ) -> tuple[Diagnosis, DiagnosisSource]:
        self._metrics.diagnoses.labels(source="rules").inc()
        self._metrics.fallbacks.labels(reason=code).inc()
        return self.rules(payload, DiagnosisSource(kind="rules", reason=reason), contexts)

    def runbook(self, payload: AlertmanagerPayload) -> Runbook | None:
        """The team's runbook for the group's lead firing alert, if RUNBOOKS_DIR has one."""
        lead = next(iter(payload.firing), None)
        return self._runbooks.find(lead.name, lead.labels) if lead else None

    def rules(
        self,
        payload: AlertmanagerPayload,
        source: DiagnosisSource,
        contexts: list[MetricContext] | None = None,
    ) -> tuple[Diagnosis, DiagnosisSource]:
        """The rule-based diagnosis, led by the team's runbook, which `source` then names, with
        the firing alerts' metric `contexts` as evidence."""
        runbook = self.runbook(payload)
        if runbook is not None:
            source = source.model_copy(update={"runbook": runbook.name})
        return rule_diagnosis(payload.firing, runbook, self._words, contexts), source
