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
from dataclasses import dataclass

from app import rules_table, rules_table_vi
from app.formatting import number, signed
from app.language import ENGLISH, Words
from app.models import Alert, Diagnosis, MetricContext
from app.rules_table import EXCHANGE_ALERTS, MANY_EXCHANGES, SIGNATURES, Playbook, Signature
from app.runbooks import Runbook


@dataclass(frozen=True)
class Texts:
    """A language's playbooks; signatures by their English name, with the name in the language."""

    alerts: dict[str, Playbook]
    signatures: dict[str, tuple[str, Playbook]]
    all_at_once: Playbook
    generic: Playbook


TEXTS = {
    "en": Texts(
        rules_table.ALERT_PLAYBOOKS,
        {s.name: (s.name, s.playbook) for s in SIGNATURES},
        rules_table.ALL_AT_ONCE,
        rules_table.GENERIC,
    ),
    "vi": Texts(
        rules_table_vi.ALERT_PLAYBOOKS,
        rules_table_vi.SIGNATURES,
        rules_table_vi.ALL_AT_ONCE,
        rules_table_vi.GENERIC,
    ),
}

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


def _fill(text: str, exchanges: list[str], severity: str, words: Words) -> str:
    """A playbook text for these exchanges: its `{singular|plural}` forms agree with how many
    there are, then the names go in (after, so no label is ever read as a form)."""
    form = 2 if len(exchanges) > 1 else 1
    text = _FORMS.sub(lambda match: match.group(form), text)
    names = words.names(exchanges) or words.the_exchange
    return text.replace("{exchanges}", names).replace("{severity}", severity)


def _generic_diagnosis(alert: Alert, words: Words) -> str:
    summary = alert.annotations.get("summary", "").strip()
    description = alert.annotations.get("description", "").strip()
    parts = [words.is_firing.format(name=alert.name)]
    parts += [text for text in (summary, description) if text]
    return " ".join(parts)


def _confidence(
    signature: str | None, together: bool, generic: bool, exchanges: int, words: Words
) -> str:
    """How sure the rules are, and why: the engineer decides how far to trust the rest."""
    if signature is not None:
        return words.confidence_signature.format(name=signature)
    if together:
        return words.confidence_together.format(count=exchanges)
    if generic:
        return words.confidence_generic
    return words.confidence_kind


def evidence(alerts: list[Alert], contexts: list[MetricContext], words: Words = ENGLISH) -> str:
    """What the metrics and the group show, in a sentence: the lead alert's value against its
    threshold and its trend over the window (`contexts` are the alerts', in their order), and how
    many exchanges and endpoints are affected. Empty when there is nothing to show."""
    facts: list[str] = []
    # The lead alert's own figures only: another alert's metric would read as this one's.
    lead = contexts[0] if contexts and contexts[0].current is not None else None
    if lead is not None and not lead.unavailable:
        now = number(lead.current)
        if lead.threshold is not None and lead.comparison:
            limit = f"{lead.comparison} {number(lead.threshold)}"
            facts.append(words.against.format(current=now, threshold=limit))
        else:
            facts.append(words.value_now.format(current=now))
        window = f"{lead.window_minutes}m"
        change, span = lead.change or 0.0, (lead.maximum or 0.0) - (lead.minimum or 0.0)
        if span and abs(change) >= span / 4:
            trend = words.rising if change > 0 else words.falling
            facts.append(trend.format(change=signed(change), window=window))
        else:
            facts.append(words.steady.format(window=window))
    exchanges = _exchanges(alerts)
    if len(exchanges) > 1:
        facts.append(words.exchanges_affected.format(count=len(exchanges)))
    endpoints = {a.labels["endpoint"] for a in alerts if a.labels.get("endpoint")}
    if len(endpoints) > 1:
        facts.append(words.endpoints_affected.format(count=len(endpoints)))
    return f"{words.evidence}: {'; '.join(facts)}." if facts else ""


def diagnose(
    alerts: list[Alert],
    runbook: Runbook | None = None,
    words: Words = ENGLISH,
    contexts: list[MetricContext] | None = None,
) -> Diagnosis:
    """The rule-based diagnosis for the firing alerts of one group (the first alert leads), in the
    language of `words` (English where it has no playbooks of its own).

    The team's `runbook` for the lead alert, when there is one, gives the first action items: its
    own first steps, as written (they are never filled in), before the rules' generic ones. The
    alerts' metric `contexts` (in the alerts' order) add the evidence sentence."""
    if not alerts:
        raise ValueError("diagnose needs at least one alert")
    texts = TEXTS.get(words.code, TEXTS["en"])
    lead = alerts[0]
    exchanges = _exchanges(alerts)
    signature = find_signature(alerts)
    named = None
    if signature is not None:  # a signature not yet translated reads in English
        named = texts.signatures.get(signature.name, (signature.name, signature.playbook))
    playbook = texts.alerts.get(lead.name)
    together = (
        signature is None and lead.name in EXCHANGE_ALERTS and len(exchanges) >= MANY_EXCHANGES
    )
    leading = named[1] if named else (texts.all_at_once if together else None)
    chosen = [p for p in (leading, playbook) if p]
    if not chosen:
        chosen = [texts.generic]
    first = chosen[0]
    severity = lead.severity
    # Only our playbook text is filled in: alert text is never read as a placeholder or form.
    generic = first is texts.generic
    if generic:
        diagnosis = _generic_diagnosis(lead, words)
    else:
        diagnosis = _fill(first.diagnosis, exchanges, severity, words)
    if shown := evidence(alerts, contexts or [], words):
        diagnosis += " " + shown
    name = named[0] if named else None
    diagnosis += " " + _confidence(name, together, generic, len(exchanges), words)
    actions: list[str] = list(runbook.steps) if runbook else []
    runbook_url = lead.annotations.get("runbook_url")
    if runbook_url:
        actions.append(words.follow_runbook.format(url=runbook_url))
    for book in chosen:
        filled = [_fill(a, exchanges, severity, words) for a in book.actions]
        actions += [a for a in filled if a not in actions]
    return Diagnosis(
        diagnosis=diagnosis,
        impact=_fill(first.impact, exchanges, severity, words),
        action_items=actions,
        rollback_plan=_fill(first.rollback, exchanges, severity, words),
        estimated_recovery_time=_fill(first.recovery, exchanges, severity, words),
    )
