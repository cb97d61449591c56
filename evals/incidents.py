"""The labelled incidents (incidents.yml) as Alertmanager payloads, version 4, as a real Alertmanager
sends them: one firing alert per exchange, grouped by alertname."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from app.models import AlertmanagerPayload

INCIDENTS = Path(__file__).with_name("incidents.yml")
STARTED = "2026-11-22T02:10:00.000Z"


@dataclass(frozen=True)
class Incident:
    id: str
    alert: str
    exchanges: tuple[str, ...]
    summary: str
    description: str
    expect: tuple[tuple[str, ...], ...]  # each: alternatives, one of which must appear
    labels: dict[str, str] = field(default_factory=dict)

    def alert_text(self) -> str:
        """Everything the alert itself says, which a diagnosis gets no credit for repeating."""
        words = [self.alert, self.summary, self.description, *self.exchanges]
        words += [f"{k} {v}" for k, v in self.labels.items()]
        return " ".join(words).lower()

    def missing(self, diagnosis: str) -> list[str]:
        """The expected keywords (as "a|b" for alternatives) the diagnosis does not contain."""
        text = diagnosis.lower()
        return ["|".join(a) for a in self.expect if not any(k.lower() in text for k in a)]

    def payload(self) -> AlertmanagerPayload:
        alerts: list[dict[str, Any]] = []
        for exchange in self.exchanges:
            labels = {
                "alertname": self.alert,
                "exchange": exchange,
                "instance": "probe:9101",
                "job": "exchange-apis",
                "severity": "critical",
                **self.labels,
            }
            fingerprint = hashlib.sha256(json.dumps(labels, sort_keys=True).encode()).hexdigest()
            alerts.append(
                {
                    "status": "firing",
                    "labels": labels,
                    "annotations": {"summary": self.summary, "description": self.description},
                    "startsAt": STARTED,
                    "endsAt": "0001-01-01T00:00:00Z",
                    "generatorURL": "http://prometheus:9090/graph?g0.expr=api_health_status",
                    "fingerprint": fingerprint[:16],
                }
            )
        common = {k: v for k, v in alerts[0]["labels"].items() if k != "exchange"}
        if len(self.exchanges) == 1:
            common["exchange"] = self.exchanges[0]
        return AlertmanagerPayload.model_validate(
            {
                "version": "4",
                "groupKey": f'{{}}:{{alertname="{self.alert}"}}',
                "truncatedAlerts": 0,
                "status": "firing",
                "receiver": "enricher",
                "groupLabels": {"alertname": self.alert},
                "commonLabels": common,
                "commonAnnotations": {},
                "externalURL": "http://alertmanager:9093",
                "alerts": alerts,
            }
        )


def _expected(raw: list[Any]) -> tuple[tuple[str, ...], ...]:
    return tuple(tuple(k) if isinstance(k, list) else (str(k),) for k in raw)


def load(path: Path = INCIDENTS) -> list[Incident]:
    """The incidents; ValueError when one rewards an echo (a keyword already in its alert text)."""
    raw = yaml.safe_load(path.read_text())["incidents"]
    incidents = []
    for entry in raw:
        alert = entry.get("alert", "APIErrorRateHigh")
        incident = Incident(
            id=entry["id"],
            alert=alert,
            exchanges=tuple(entry.get("exchanges", ["binance"])),
            summary=entry.get(
                "summary", f"{alert} on {', '.join(entry.get('exchanges', ['binance']))}"
            ),
            description=entry["description"],
            expect=_expected(entry["expect"]),
            labels={str(k): str(v) for k, v in entry.get("labels", {}).items()},
        )
        echoed = [k for alts in incident.expect for k in alts if k.lower() in incident.alert_text()]
        if echoed:
            raise ValueError(f"{incident.id}: {', '.join(echoed)} is in the alert's own text")
        incidents.append(incident)
    ids = [i.id for i in incidents]
    if len(ids) != len(set(ids)):
        raise ValueError("incident ids must be unique")
    return incidents
