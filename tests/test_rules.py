from dataclasses import replace

import pytest

from app.language import VIETNAMESE
from app.models import Alert, MetricContext
from app.rules import TEXTS, diagnose, evidence, find_signature
from app.rules_table import ALERT_PLAYBOOKS
from tests.fakes import fixture_payload


def alert(name: str, exchange: str = "binance", **annotations: str) -> Alert:
    return Alert(
        status="firing",
        labels={"alertname": name, "exchange": exchange, "severity": "critical"},
        annotations=annotations,
    )


@pytest.mark.parametrize("name", sorted(ALERT_PLAYBOOKS))
def test_every_exchange_alert_has_a_specific_diagnosis_naming_the_exchange(name: str) -> None:
    result = diagnose([alert(name, "okx")])
    assert "okx" in result.diagnosis
    assert len(result.action_items) >= 3
    assert result.rollback_plan and result.estimated_recovery_time


def test_group_of_three_names_every_exchange() -> None:
    firing = fixture_payload("alertmanager-0.25-firing_apidown_group_of_3.json").firing
    result = diagnose(firing)
    # Three exchanges down at once: most likely our side, the APIDown playbook's steps follow.
    assert result.diagnosis.startswith("The binance, bybit and okx APIs fail at the same time.")
    assert "most likely our own: the egress" in result.diagnosis
    assert "strategies that depend on binance, bybit and okx;" in "\n".join(result.action_items)
    two = diagnose([alert("APIDown", "okx"), alert("APIDown", "bybit")])
    assert "the exchanges are down" in two.diagnosis and "path to them" in two.diagnosis


def test_one_exchange_keeps_the_singular() -> None:
    result = diagnose([alert("APIDown", "okx"), alert("APIDown", "okx")])
    assert result.diagnosis.startswith(
        "The okx API is not answering health checks: the exchange is"
    )
    assert diagnose([alert("X", "okx", description="HTTP 418 banned")]).diagnosis.startswith(
        "okx has banned"
    )
    assert diagnose(
        [alert("X", "a", description="HTTP 418"), alert("X", "b")]
    ).diagnosis.startswith("a and b have banned")


def test_alert_text_is_never_read_as_a_placeholder_or_form() -> None:
    text = "{exchanges} {is|are} {severity}"
    result = diagnose([alert("Custom", summary=text), alert("Custom", "okx")])
    assert text in result.diagnosis


@pytest.mark.parametrize(
    ("text", "signature", "advice"),
    [
        (
            "code -1021: Timestamp for this request is outside of the recvWindow",
            "outside recvWindow",
            "NTP",
        ),
        ("HTTP 418 I'm a teapot: IP banned until 1700000000", "IP ban", "Stop all traffic"),
        ("status 429 Too Many Requests", "rate limit", "Retry-After"),
        ("code -1003 Too much request weight used", "rate limit", "Retry-After"),
        ("code -2015 Invalid API-key, IP, or permissions for action", "invalid API key", "IP"),
        ("HTTP 403 Forbidden", "forbidden", "allow-list"),
        ("CORS error: no Access-Control-Allow-Origin header", "CORS", "proxy"),
    ],
)
def test_exchange_error_signatures_lead_the_diagnosis(
    text: str, signature: str, advice: str
) -> None:
    alerts = [alert("APIErrorRateHigh", description=text)]
    found = find_signature(alerts)
    assert found is not None and signature in found.name
    result = diagnose(alerts)
    assert any(advice in item for item in result.action_items)


def test_numbers_inside_addresses_are_not_mistaken_for_http_codes() -> None:
    assert find_signature([alert("X", description="instance 10.0.0.42:9429 and 10.4.18.1")]) is None


def test_unknown_alert_gets_generic_diagnosis_from_its_own_text() -> None:
    payload = fixture_payload("constructed-0.34-firing-with-newer-fields.json")
    result = diagnose(payload.firing)
    assert "HighErrorRate is firing" in result.diagnosis
    assert "High 5xx ratio on 10.0.0.11:8080" in result.diagnosis
    assert (
        result.action_items[0] == "Follow the runbook: https://runbooks.example.com/HighErrorRate"
    )


def test_alert_text_is_never_a_format_string() -> None:
    result = diagnose([alert("Custom", summary="{exchanges} {0} {__class__} %s")])
    assert "{0} {__class__} %s" in result.diagnosis


@pytest.mark.parametrize(
    "labels",
    [
        {"job": "egress-proxy"},
        {"instance": "cors-gateway-429.internal:9100"},
        {"service": "forbidden-zone", "team": "ip-banned-squad"},
    ],
)
def test_identifying_labels_never_pick_an_error_signature(labels: dict[str, str]) -> None:
    down = Alert(
        status="firing",
        labels={"alertname": "APIDown", "exchange": "binance", **labels},
        annotations={"summary": "binance API is down"},
    )
    assert find_signature([down]) is None
    assert diagnose([down]).diagnosis == diagnose([alert("APIDown")]).diagnosis


def test_an_error_code_label_still_picks_its_signature() -> None:
    errors = Alert(
        status="firing",
        labels={"alertname": "APIErrorRateHigh", "exchange": "binance", "error_code": "-1021"},
    )
    found = find_signature([errors])
    assert found is not None and "outside recvWindow" in found.name


def test_runbook_link_text_is_not_read_as_a_failure() -> None:
    down = alert("APIDown", runbook_url="https://wiki.example.com/proxy-429-forbidden")
    assert find_signature([down]) is None


def context(**figures: float) -> MetricContext:
    return MetricContext(expr="m", window_minutes=30, **figures)


def test_the_evidence_puts_the_value_against_its_threshold_and_names_the_trend() -> None:
    latency = context(current=1.8, minimum=0.2, maximum=1.8, change=1.5, threshold=0.5)
    latency = latency.model_copy(update={"comparison": ">"})
    result = diagnose([alert("APILatencyHigh")], contexts=[latency])
    assert (
        "Evidence: the metric is at 1.8 against the alert's threshold > 0.5;"
        " rising (+1.5 over 30m). Confidence:" in result.diagnosis
    )


def test_a_budget_draining_to_zero_reads_as_falling_and_a_flat_one_as_steady() -> None:
    draining = context(current=40, minimum=40, maximum=1200, change=-1160)
    assert "falling (-1160 over 30m)" in evidence([alert("X")], [draining])
    flat = context(current=5, minimum=4, maximum=6, change=0.2)
    assert evidence([alert("X")], [flat]) == "Evidence: the metric is at 5; steady over 30m."


def test_the_evidence_counts_the_exchanges_and_endpoints_of_the_group() -> None:
    alerts = [alert("APIErrorRateHigh", exchange) for exchange in ("binance", "okx")]
    alerts = [
        a.model_copy(update={"labels": {**a.labels, "endpoint": endpoint}})
        for a, endpoint in zip(alerts, ("/api/v3/order", "/api/v5/trade/order"), strict=True)
    ]
    assert evidence(alerts, []) == (
        "Evidence: 2 exchanges in this alert group; 2 endpoints in this alert group."
    )


def test_no_evidence_without_figures_or_spread() -> None:
    unavailable = MetricContext(unavailable="Prometheus timed out")
    assert evidence([alert("X")], [unavailable]) == ""
    assert "Evidence" not in diagnose([alert("APIDown")], contexts=[unavailable]).diagnosis
    assert "Evidence" not in diagnose([alert("APIDown")]).diagnosis


def test_the_evidence_shows_only_the_lead_alerts_own_figures() -> None:
    figures = context(current=3, minimum=3, maximum=3, change=0)
    shown = evidence([alert("X"), alert("Y")], [MetricContext(unavailable="none"), figures])
    assert shown == ""
    assert evidence([alert("X"), alert("Y")], [figures, MetricContext(unavailable="none")]) == (
        "Evidence: the metric is at 3; steady over 30m."
    )


def test_a_signature_without_a_translation_reads_in_english(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(TEXTS, "vi", replace(TEXTS["vi"], signatures={}))
    result = diagnose([alert("X", description="HTTP 418")], words=VIETNAMESE)
    assert result.diagnosis.startswith("binance has banned this IP (HTTP 418)")
