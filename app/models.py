"""The Alertmanager payload, the Diagnosis and the presentation-neutral enriched notification."""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime
from typing import Annotated, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, field_validator

from app.formatting import clean
from app.language import ENGLISH, Words, words_for

Status = Literal["firing", "resolved"]
# new: a group's first message. escalation: alerts joined a firing group (new diagnosis, in thread).
# repeat: Alertmanager's repeat_interval, nothing changed (short reply). resolved: some or all alerts
# resolved and none joined (follow-up in thread, no LLM call).
Kind = Literal["new", "escalation", "repeat", "resolved"]

# Alertmanager writes the zero time for "no end yet"; anything before 1971 means unset.
_UNSET_BEFORE = datetime(1971, 1, 1, tzinfo=UTC)


def _as_aware(value: datetime | None) -> datetime | None:
    if value is None:
        return None
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return None if value < _UNSET_BEFORE else value


class Alert(BaseModel):
    """One alert of a webhook payload. Unknown fields are tolerated; labels must be strings."""

    model_config = ConfigDict(extra="ignore", populate_by_name=True)

    status: Status
    # Alertmanager itself refuses an alert without label pairs; so do we (422, not "unnamed alert").
    labels: dict[str, str] = Field(min_length=1)
    annotations: dict[str, str] = Field(default_factory=dict)
    starts_at: datetime | None = Field(None, alias="startsAt")
    ends_at: datetime | None = Field(None, alias="endsAt")
    generator_url: str = Field("", alias="generatorURL")
    fingerprint: str = ""

    @field_validator("starts_at", "ends_at")
    @classmethod
    def _zero_time_is_none(cls, value: datetime | None) -> datetime | None:
        return _as_aware(value)

    @property
    def name(self) -> str:
        return self.labels.get("alertname", "unnamed alert")

    @property
    def severity(self) -> str:
        return self.labels.get("severity", "unknown")

    @property
    def identity(self) -> str:
        """The fingerprint, or a stable stand-in computed from the labels when it is missing."""
        if self.fingerprint:
            return self.fingerprint
        canonical = json.dumps(sorted(self.labels.items()))
        return hashlib.sha256(canonical.encode()).hexdigest()[:16]


class AlertmanagerPayload(BaseModel):
    """The webhook body, version 4. Newer optional fields are accepted and ignored."""

    model_config = ConfigDict(extra="ignore", populate_by_name=True)

    version: str = "4"
    status: Status
    receiver: str = ""
    alerts: list[Alert] = Field(min_length=1)
    group_labels: dict[str, str] = Field(default_factory=dict, alias="groupLabels")
    common_labels: dict[str, str] = Field(default_factory=dict, alias="commonLabels")
    common_annotations: dict[str, str] = Field(default_factory=dict, alias="commonAnnotations")
    external_url: str = Field("", alias="externalURL")
    group_key: str = Field("", alias="groupKey")
    truncated_alerts: int = Field(0, alias="truncatedAlerts")

    @property
    def group_id(self) -> str:
        """What identifies the alert group across notifications (for dedup and follow-ups)."""
        if self.group_key:
            return self.group_key
        return json.dumps(sorted(self.group_labels.items()))

    def idempotency_key(self) -> str:
        """Same group, status and alert states => the same notification (Alertmanager HA, retries)."""
        states = sorted(
            (
                alert.identity,
                alert.status,
                alert.starts_at.isoformat() if alert.starts_at else "",
                alert.ends_at.isoformat() if alert.ends_at else "",
            )
            for alert in self.alerts
        )
        canonical = json.dumps([self.group_id, self.status, states])
        return hashlib.sha256(canonical.encode()).hexdigest()

    @property
    def firing(self) -> list[Alert]:
        return [a for a in self.alerts if a.status == "firing"]

    @property
    def resolved(self) -> list[Alert]:
        return [a for a in self.alerts if a.status == "resolved"]


def _shorten(value: object, limit: int) -> object:
    if not isinstance(value, str):
        return value
    value = clean(value)
    return value[: limit - 1].rstrip() + "…" if len(value) > limit else value


def _cap(limit: int) -> BeforeValidator:
    # _shorten is looked up at each validation, not bound when the model class is defined
    return BeforeValidator(lambda value: _shorten(value, limit))


def _as_list(value: object) -> object:
    # Models sometimes answer a single string where a list is asked for.
    return [value] if isinstance(value, str) else value


ActionItem = Annotated[str, _cap(500)]


class Diagnosis(BaseModel):
    """What the LLM (or the rules) say about a firing group. Long text is capped, not rejected."""

    model_config = ConfigDict(extra="ignore")

    diagnosis: Annotated[str, _cap(2000), Field(min_length=1)]
    impact: Annotated[str, _cap(1000)]
    action_items: Annotated[list[ActionItem], BeforeValidator(_as_list), Field(max_length=50)]
    rollback_plan: Annotated[str, _cap(1000)]
    estimated_recovery_time: Annotated[str, _cap(200)]

    @field_validator("action_items")
    @classmethod
    def _keep_ten(cls, items: list[str]) -> list[str]:
        return [item for item in items if item.strip()][:10]


class PlotSeries(BaseModel):
    """One series of an alert's expression, for its chart: a label naming it among the others
    (`okx`, `binance /depth`; "" when it is the only one) and its (unix seconds, value) points;
    None where a value is not a finite number."""

    label: str = ""
    points: list[tuple[float, float | None]] = Field(default_factory=list)


class MetricContext(BaseModel):
    """The recent history of the series behind one alert, or why it is unavailable."""

    expr: str = ""
    unavailable: str | None = None
    current: float | None = None
    minimum: float | None = None
    maximum: float | None = None
    mean: float | None = None
    change: float | None = None
    sparkline: str = ""
    samples: list[float] = Field(default_factory=list)
    window_minutes: int = 0
    graph_url: str | None = None
    # The alert expression's threshold (`> 0.5`), when it compares against a number.
    comparison: str | None = None
    threshold: float | None = None
    # The expression's series with their times, the alert's own first (at most MAX_CHART_SERIES),
    # for its chart; never part of the prompt.
    series: list[PlotSeries] = Field(default_factory=list)


class DiagnosisSource(BaseModel):
    """Where the diagnosis came from: the model's name, or the rules with the reason."""

    kind: Literal["llm", "rules", "none"]
    model: str | None = None
    reason: str | None = None
    # Sent before the LLM answered (PAGE_WITHIN_SECONDS); the message is edited when it does.
    preliminary: bool = False
    # What the model's answer took: its tokens (estimated from text when the server did not say)
    # and their price (None for a model the price table does not know).
    tokens: int | None = None
    tokens_estimated: bool = False
    cost_usd: float | None = None
    # The team's runbook (RUNBOOKS_DIR) the diagnosis drew on, by file name.
    runbook: str | None = None

    @property
    def label(self) -> str:
        return self.label_in(ENGLISH)

    def label_in(self, words: Words) -> str:
        text = self._label(words)
        return f"{text}; {words.runbook_file.format(name=self.runbook)}" if self.runbook else text

    def _label(self, words: Words) -> str:
        if self.kind == "llm":
            spent = [words.model.format(model=self.model)]
            if self.tokens is not None:
                tokens = f"{'~' if self.tokens_estimated else ''}{self.tokens:,}"
                spent.append(words.tokens.format(tokens=tokens))
            if self.cost_usd is not None:
                spent.append(
                    f"${self.cost_usd:.4f}" if self.cost_usd < 1 else f"${self.cost_usd:.2f}"
                )
            return ", ".join(spent)
        if self.preliminary:
            return words.preliminary
        if self.kind == "rules":  # the diagnosis source's kind, not the notification's
            return f"{words.fallback}: {self.reason}" if self.reason else words.fallback
        return words.no_diagnosis


class AlertView(BaseModel):
    """One alert as every renderer shows it."""

    name: str
    status: Status
    severity: str
    identifying_labels: dict[str, str]
    summary: str = ""
    description: str = ""
    runbook_url: str | None = None
    starts_at: datetime | None = None
    ends_at: datetime | None = None
    fingerprint: str = ""
    context: MetricContext | None = None
    new: bool = False  # joined a group that was already firing (an escalation's news)

    @property
    def labels(self) -> dict[str, str]:
        return {**self.identifying_labels, "alertname": self.name, "severity": self.severity}


class EnrichedNotification(BaseModel):
    """Everything a channel needs to render one message, independent of the channel's format."""

    notification_id: int | None = None
    incident_id: int | None = None  # set once the store has filed it (see app/incident.py)
    group_id: str
    status: Status
    kind: Kind = "new"
    title: str
    severity: str
    receiver: str = ""
    firing: list[AlertView] = Field(default_factory=list)
    resolved: list[AlertView] = Field(default_factory=list)
    omitted_alerts: int = 0
    # Incident memory (app/memory.py): `3rd time in 7 days; usually resolves in ~9 min`.
    history: str | None = None
    diagnosis: Diagnosis | None = None
    # ANALYSIS_LANGUAGE: the words every renderer puts around the alert (app/language.py).
    language: str = "en"
    source: DiagnosisSource
    silence_url: str | None = None
    alertmanager_url: str | None = None
    created_at: datetime = Field(default_factory=lambda: datetime.now(UTC))

    @property
    def alerts(self) -> list[AlertView]:
        return [*self.firing, *self.resolved]

    @property
    def words(self) -> Words:
        return words_for(self.language)

    @property
    def runbook_url(self) -> str | None:
        return next((a.runbook_url for a in self.alerts if a.runbook_url), None)
