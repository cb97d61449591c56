"""Rule-based diagnosis: what an experienced on-call engineer knows (app/rules_table.py), applied.
No I/O.

Error signatures are looked for in the text that describes the failure (annotations, and labels that
carry an error such as `error` or `error_code`), never in identifying labels: `job="egress-proxy"`
says where, not what failed. A signature is more specific than an alert name, so it leads; three or
more exchanges failing at once with no error text come next; the alert's playbook adds its steps
after. Anything else gets a generic diagnosis built from the alert's summary, description and
runbook. Every diagnosis ends with how sure it is. Alert text is never used as a format string.
"""

from __future__ import annotations

import re

from app.formatting import join_names
from app.models import Alert, Diagnosis
from app.rules_table import (
    ALERT_PLAYBOOKS,
    ALL_AT_ONCE,
    EXCHANGE_ALERTS,
    GENERIC,
    MANY_EXCHANGES,
    SIGNATURES,
    Playbook,
    Signature,
)
from app.runbooks import Runbook

# Labels that describe a failure rather than identify a target (exporters put error codes there).
ERROR_LABELS = frozenset(
    {"error", "error_code", "err", "code", "status", "status_code", "http_status", "reason"}
)
# Annotations that are links or identifiers, not descriptions.
NON_TEXT_ANNOTATIONS = frozenset({"runbook_url", "dashboard", "dashboard_url", "grafana_url"})


def _alert_text(alert: Alert) -> str:
    """The text that describes an alert's failure: its annotations and error labels. Not its name
    (`RateLimitExhausted` says which playbook applies, not which exchange error occurred) and not
    identifying labels (a `job="egress-proxy"` must not turn an outage into a proxy diagnosis)."""
    errors = [v for k, v in alert.labels.items() if k.lower() in ERROR_LABELS]
    notes = [v for k, v in alert.annotations.items() if k.lower() not in NON_TEXT_ANNOTATIONS]
    return " ".join([*errors, *notes])


def find_signature(alerts: list[Alert]) -> Signature | None:
    text = " ".join(_alert_text(a) for a in alerts)
    return next((s for s in SIGNATURES if s.pattern.search(text)), None)


_FORMS = re.compile(r"\{([^{}|]*)\|([^{}|]*)\}")


def _exchanges(alerts: list[Alert]) -> list[str]:
    return sorted({a.labels["exchange"] for a in alerts if a.labels.get("exchange")})


def _fill(text: str, exchanges: list[str], severity: str) -> str:
    """A playbook text for these exchanges: its `{singular|plural}` forms agree with how many
    there are, then the names go in (after, so no label is ever read as a form)."""
    form = 2 if len(exchanges) > 1 else 1
    text = _FORMS.sub(lambda match: match.group(form), text)
    names = join_names(exchanges) or "the exchange"
    return text.replace("{exchanges}", names).replace("{severity}", severity)


def _generic_diagnosis(alert: Alert) -> str:
    summary = alert.annotations.get("summary", "").strip()
    description = alert.annotations.get("description", "").strip()
    parts = [f"{alert.name} is firing."]
    parts += [text for text in (summary, description) if text]
    return " ".join(parts)


def _confidence(
    signature: Signature | None, together: Playbook | None, generic: bool, exchanges: int
) -> str:
    """How sure the rules are, and why: the engineer decides how far to trust the rest."""
    if signature is not None:
        return f"Confidence: high (the alert's error text matches {signature.name})."
    if together is not None:
        return f"Confidence: medium ({exchanges} exchanges at once; no error text says why)."
    if generic:
        return "Confidence: low (no known error in the alert; this restates it)."
    return "Confidence: medium (from the alert's kind; no error code in it narrows the cause)."


def diagnose(alerts: list[Alert], runbook: Runbook | None = None) -> Diagnosis:
    """The rule-based diagnosis for the firing alerts of one group (the first alert leads).

    The team's `runbook` for the lead alert, when there is one, gives the first action items: its
    own first steps, as written (they are never filled in), before the rules' generic ones."""
    if not alerts:
        raise ValueError("diagnose needs at least one alert")
    lead = alerts[0]
    exchanges = _exchanges(alerts)
    signature = find_signature(alerts)
    playbook = ALERT_PLAYBOOKS.get(lead.name)
    together = (
        ALL_AT_ONCE
        if signature is None and lead.name in EXCHANGE_ALERTS and len(exchanges) >= MANY_EXCHANGES
        else None
    )
    leading = signature.playbook if signature else together
    chosen = [p for p in (leading, playbook) if p]
    if not chosen:
        chosen = [GENERIC]
    first = chosen[0]
    severity = lead.severity
    # Only our playbook text is filled in: alert text is never read as a placeholder or form.
    generic = first is GENERIC
    diagnosis = _generic_diagnosis(lead) if generic else _fill(first.diagnosis, exchanges, severity)
    diagnosis += " " + _confidence(signature, together, generic, len(exchanges))
    actions: list[str] = list(runbook.steps) if runbook else []
    runbook_url = lead.annotations.get("runbook_url")
    if runbook_url:
        actions.append(f"Follow the runbook: {runbook_url}")
    for book in chosen:
        filled = [_fill(a, exchanges, severity) for a in book.actions]
        actions += [a for a in filled if a not in actions]
    return Diagnosis(
        diagnosis=diagnosis,
        impact=_fill(first.impact, exchanges, severity),
        action_items=actions,
        rollback_plan=_fill(first.rollback, exchanges, severity),
        estimated_recovery_time=_fill(first.recovery, exchanges, severity),
    )
