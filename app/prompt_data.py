"""The prompt's data block: the alert group, its metric context, the team's runbook and the
group's memory as JSON the model reads, escaped so no alert text can fake the block's markers, and
shrunk to the prompt's budget."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from app.formatting import shorten
from app.memory import Memory
from app.models import AlertmanagerPayload, MetricContext
from app.runbooks import Runbook

MAX_ALERTS_SHOWN = 20  # in a prompt, and in a message
RUNBOOK_PROMPT_CHARS = 3000  # of the team's runbook in a prompt, its first steps first


@dataclass(frozen=True)
class PromptBudget:
    chars: int
    annotation_chars: int = 1000

    @property
    def runbook_chars(self) -> int:
        """A quarter of the budget, at most RUNBOOK_PROMPT_CHARS: the alerts keep the rest."""
        return min(RUNBOOK_PROMPT_CHARS, self.chars // 4)


def prompt_data(
    payload: AlertmanagerPayload,
    contexts: list[MetricContext],
    budget: PromptBudget,
    runbook: Runbook | None = None,
    memory: Memory | None = None,
) -> str:
    """The data block: JSON, `<`/`>` escaped so no text can fake the block's markers.

    Shrinks to fit the budget: first drop raw samples, then shorten annotations, then alerts. The
    team's runbook for the lead alert, cut to `budget.runbook_chars`, goes in as `runbook`.
    """
    alerts = [*payload.firing, *payload.resolved]
    by_id = dict(zip((a.identity for a in payload.firing), contexts, strict=False))

    def build(annotation_chars: int, samples: bool, count: int) -> str:
        entries = []
        for alert in alerts[:count]:
            entry: dict[str, Any] = {
                "status": alert.status,
                "labels": alert.labels,
                "annotations": {
                    k: shorten(v, annotation_chars) for k, v in alert.annotations.items()
                },
                "starts_at": alert.starts_at.isoformat() if alert.starts_at else None,
                "ends_at": alert.ends_at.isoformat() if alert.ends_at else None,
            }
            context = by_id.get(alert.identity)
            if context is not None:
                exclude = {"graph_url", "series"} | (set() if samples else {"samples"})
                entry["metrics"] = context.model_dump(exclude=exclude, exclude_none=True)
            entries.append(entry)
        data = {
            "group_labels": payload.group_labels,
            "common_labels": payload.common_labels,
            "alerts": entries,
            "omitted_alerts": len(alerts) - count + payload.truncated_alerts,
        }
        if memory is not None:
            data["history"] = memory.evidence()
        if runbook is not None:
            data["runbook"] = {
                "file": runbook.name,
                "title": runbook.title,
                "text": runbook.excerpt(budget.runbook_chars),
            }
        text = json.dumps(data, ensure_ascii=False, separators=(",", ":"))
        return text.replace("<", "\\u003c").replace(">", "\\u003e")

    count = min(len(alerts), MAX_ALERTS_SHOWN)
    for annotation_chars, samples in (
        (budget.annotation_chars, True),
        (budget.annotation_chars, False),
        (200, False),
    ):
        text = build(annotation_chars, samples, count)
        if len(text) <= budget.chars:
            return text
    while count > 1:
        count -= 1
        text = build(200, False, count)
        if len(text) <= budget.chars:
            return text
    return build(100, False, 1)
