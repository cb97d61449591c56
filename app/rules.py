"""Rule-based diagnosis: what an experienced on-call engineer knows, as data. No I/O.

Two tables: playbooks for the exchange-API alerts by alert name, and exchange error signatures found
in the text that describes the failure (annotations, and labels that carry an error such as `error`
or `error_code`), never in identifying labels: `job="egress-proxy"` says where, not what failed.
A signature is more specific than an alert name, so it leads; the alert's playbook adds its steps
after. Anything else gets a generic diagnosis built from
the alert's summary, description and runbook. Alert text is never used as a format string.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from app.formatting import join_names
from app.models import Alert, Diagnosis
from app.runbooks import Runbook


@dataclass(frozen=True)
class Playbook:
    """Texts may use `{exchanges}`, `{severity}` and `{singular|plural}` forms that agree with the
    number of exchanges; nothing else is substituted."""

    diagnosis: str
    impact: str
    actions: tuple[str, ...]
    rollback: str
    recovery: str


ALERT_PLAYBOOKS: dict[str, Playbook] = {
    "APIDown": Playbook(
        diagnosis="The {exchanges} {API is|APIs are} not answering health checks: the "
        "{exchange is|exchanges are} down or in maintenance, or the path to {it|them} (DNS, "
        "egress proxy, network, TLS) is broken.",
        impact="No market data or order placement through {exchanges}: open positions cannot be "
        "adjusted and strategies depending on {it|them} are blind.",
        actions=(
            "Check the exchange's status page and announcement channel for maintenance or incidents.",
            "From the monitoring host, curl the exchange's ping endpoint to separate our network "
            "from theirs (DNS, TLS, egress proxy).",
            "If only one region or host fails, fail over to a healthy egress or API domain.",
            "Pause or reduce strategies that depend on {exchanges}; confirm open positions manually.",
        ),
        rollback="Revert any recent network, proxy, DNS or API-endpoint change; switch traffic back "
        "to the last known good endpoint.",
        recovery="Exchange maintenance: as announced (often 30-120 min); network faults: 5-15 min "
        "after failover.",
    ),
    "APILatencyHigh": Playbook(
        diagnosis="Requests to {exchanges} are slow: exchange-side load (volatility spikes), "
        "network path degradation, or our own client saturation (connection pool, CPU, GC).",
        impact="Orders and cancels land late; quotes go stale and slippage grows.",
        actions=(
            "Compare latency across exchanges: one slow exchange points at them, all slow at us.",
            "Check the client's connection pool, CPU and event-loop lag on the trading hosts.",
            "Check network latency and packet loss to the exchange's endpoints.",
            "Widen quotes or cut order rate until latency is back under the threshold.",
        ),
        rollback="Roll back the latest deploy or config change of the API client if latency rose "
        "right after it.",
        recovery="Usually 5-30 minutes; volatility-driven latency follows the market.",
    ),
    "RateLimitExhausted": Playbook(
        diagnosis="The request-weight budget for {exchanges} is nearly or fully used: a retry storm, "
        "a new or misbehaving strategy, or polling that should be a websocket stream.",
        impact="Further requests get 429 and, if ignored, 418 IP bans lasting minutes to days.",
        actions=(
            "Find the caller spending the weight: per-endpoint request counts in the last 15 minutes.",
            "Honour Retry-After and stop retry loops; add backoff with jitter.",
            "Move polling of prices and order state to websocket streams.",
            "Spread load across API keys or IPs only where the exchange's terms allow it.",
        ),
        rollback="Disable or roll back the strategy or deploy that raised the request rate.",
        recovery="The weight window resets within about a minute once the rate drops; an IP ban "
        "lasts from 2 minutes to 3 days.",
    ),
    "APIErrorRateHigh": Playbook(
        diagnosis="A high share of requests to {exchanges} fail: rejected requests (signature, "
        "timestamp, permissions, parameters) or exchange-side 5xx errors.",
        impact="Orders and account queries fail; positions may drift from what strategies believe.",
        actions=(
            "Break the errors down by HTTP status and exchange error code.",
            "4xx: check the API key, its permissions and IP allow-list, and the clock (NTP).",
            "5xx: check the exchange's status page; retry idempotent reads with backoff only.",
            "Reconcile open orders and positions against the exchange after errors clear.",
        ),
        rollback="Roll back the latest client release or API-key rotation if errors began with it.",
        recovery="Client-side causes: minutes after the fix; exchange-side: as announced.",
    ),
}

_NUM = r"(?<![\w.:-]){}(?![\w.:])"


@dataclass(frozen=True)
class Signature:
    name: str
    pattern: re.Pattern[str]
    playbook: Playbook


SIGNATURES: tuple[Signature, ...] = (
    Signature(
        "clock skew (Binance -1021)",
        re.compile(r"-1021\b|outside (of )?the recvwindow|timestamp for this request", re.I),
        Playbook(
            diagnosis="Requests to {exchanges} are rejected because their timestamp is outside the "
            "recvWindow (Binance -1021): the host clock has drifted or requests wait too long "
            "before they are sent.",
            impact="Signed requests (orders, cancels, account) fail while public data still works.",
            actions=(
                "Sync the clock: check `chronyc tracking` or `timedatectl` and restart NTP.",
                "Compare local time with the exchange's server time endpoint.",
                "Widen recvWindow (for example 5000 to 10000 ms) while the clock is fixed.",
            ),
            rollback="Restore the previous NTP or host configuration if it changed.",
            recovery="Minutes once the clock is synced.",
        ),
    ),
    Signature(
        "IP ban (HTTP 418)",
        re.compile(
            _NUM.format("418") + r"|ip (has been )?(auto-)?banned|way too many requests", re.I
        ),
        Playbook(
            diagnosis="{exchanges} {has|have} banned this IP (HTTP 418) after rate limits kept "
            "being hit.",
            impact="All requests from this IP fail until the ban expires.",
            actions=(
                "Stop all traffic from the banned IP now: further requests extend the ban.",
                "Read the ban's expiry from the error body or Retry-After.",
                "Fail over to another allowed IP only after the request rate is fixed.",
            ),
            rollback="Roll back the change that raised the request rate.",
            recovery="As the exchange sets: 2 minutes to 3 days, growing with repeat offences.",
        ),
    ),
    Signature(
        "rate limit (HTTP 429 / -1003)",
        re.compile(_NUM.format("429") + r"|-1003\b|too many requests", re.I),
        Playbook(
            diagnosis="{exchanges} {is|are} rate-limiting us (HTTP 429 / -1003): request weight "
            "is over the exchange's limit.",
            impact="Requests are rejected; continuing risks an IP ban (418).",
            actions=(
                "Back off now and honour Retry-After.",
                "Cut request weight: batch endpoints, websocket streams instead of polling.",
            ),
            rollback="Roll back the strategy or deploy that raised the request rate.",
            recovery="About a minute once the request rate drops.",
        ),
    ),
    Signature(
        "invalid API key (401 / -2015)",
        re.compile(
            _NUM.format("401") + r"|-2015\b|-2014\b|-2008\b|invalid api.?key|unauthori[sz]ed", re.I
        ),
        Playbook(
            diagnosis="{exchanges} {rejects|reject} our API key (401 / -2015): the key is wrong, "
            "expired, revoked, lacks the permission used, or the request comes from an IP not on "
            "its list.",
            impact="Signed requests fail: no orders, cancels or account data.",
            actions=(
                "Check which key the service loaded (fingerprint, not the secret) and that it is active.",
                "Check the key's permissions (spot, futures, trading) in the exchange console.",
                "Check the key's IP restriction against the egress IP in use.",
            ),
            rollback="Restore the previous key from the secret store if a rotation just happened.",
            recovery="Minutes once a valid key is deployed.",
        ),
    ),
    Signature(
        "forbidden (HTTP 403)",
        re.compile(_NUM.format("403") + r"|forbidden|not whitelisted|allow.?list", re.I),
        Playbook(
            diagnosis="{exchanges} {answers|answer} 403 Forbidden: the egress IP is not on the "
            "key's allow-list, the key lacks the permission, or a WAF or region block applies.",
            impact="Affected endpoints fail for every request from this host.",
            actions=(
                "Compare the current egress IP with the API key's IP allow-list.",
                "Check the key's permissions for the failing endpoint.",
                "Check for a WAF or geo block: the response body and headers name it.",
            ),
            rollback="Move traffic back to the previous egress IP or proxy.",
            recovery="Minutes after the allow-list or egress is fixed.",
        ),
    ),
    Signature(
        "CORS or proxy failure",
        re.compile(r"\bcors\b|access-control-allow-origin|\bproxy\b|" + _NUM.format("407"), re.I),
        Playbook(
            diagnosis="Requests to {exchanges} fail in a proxy or CORS layer before they reach the "
            "exchange (proxy down or misconfigured, 407, CORS headers missing).",
            impact="Everything routed through that proxy fails.",
            actions=(
                "Check the proxy's health and logs; test a direct request bypassing it.",
                "For browser clients, check the CORS headers the proxy returns.",
            ),
            rollback="Revert the latest proxy configuration change.",
            recovery="Minutes after the proxy is fixed or bypassed.",
        ),
    ),
)

GENERIC = Playbook(
    diagnosis="",
    impact="See the alert's description; severity {severity}.",
    actions=(
        "Open the graph link and check when the metric crossed its threshold.",
        "Check deploys and configuration changes made shortly before the alert started.",
    ),
    rollback="Roll back the most recent change to the affected service if the alert began with it.",
    recovery="Unknown: depends on the cause; re-evaluate after the first action items.",
)


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
    chosen = [p for p in (signature.playbook if signature else None, playbook) if p]
    if not chosen:
        chosen = [GENERIC]
    first = chosen[0]
    severity = lead.severity
    # Only our playbook text is filled in: alert text is never read as a placeholder or form.
    generic = first is GENERIC
    diagnosis = _generic_diagnosis(lead) if generic else _fill(first.diagnosis, exchanges, severity)
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
