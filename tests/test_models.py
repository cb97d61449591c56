from datetime import UTC, datetime

import pytest
from pydantic import ValidationError

from app.models import (
    AlertmanagerPayload,
    AlertView,
    Diagnosis,
    DiagnosisSource,
    EnrichedNotification,
    MetricContext,
)
from tests.fakes import FIXTURES, GOOD_DIAGNOSIS, fixture_payload, fixture_text


@pytest.mark.parametrize("path", sorted(FIXTURES.glob("*.json")), ids=lambda p: p.name)
def test_every_real_payload_parses(path) -> None:
    payload = AlertmanagerPayload.model_validate_json(path.read_text())
    assert payload.alerts and payload.group_id


def test_zero_end_time_means_still_firing() -> None:
    alert = fixture_payload("alertmanager-0.25-firing_apidown_binance.json").alerts[0]
    assert alert.ends_at is None and alert.starts_at is not None


def test_newer_fields_are_tolerated_and_missing_optionals_default() -> None:
    payload = AlertmanagerPayload.model_validate(
        {
            "status": "firing",
            "alerts": [{"status": "firing", "labels": {"alertname": "A"}, "futureField": {"x": 1}}],
            "newTopLevel": True,
        }
    )
    assert payload.alerts[0].fingerprint == ""
    assert payload.alerts[0].identity, "a stable stand-in for a missing fingerprint"


def test_idempotency_key_changes_with_alert_state_not_with_order() -> None:
    mixed = fixture_payload("alertmanager-0.25-mixed_apidown_one_resolved.json")
    reordered = mixed.model_copy(update={"alerts": list(reversed(mixed.alerts))})
    assert mixed.idempotency_key() == reordered.idempotency_key()
    firing = fixture_payload("alertmanager-0.25-firing_apidown_group_of_3.json")
    assert firing.group_id == mixed.group_id
    assert firing.idempotency_key() != mixed.idempotency_key()


def test_labels_must_be_strings() -> None:
    raw = fixture_text("alertmanager-0.25-firing_apidown_binance.json").replace(
        '"exchange": "binance",', '"exchange": {"nested": 1},', 1
    )
    with pytest.raises(ValidationError):
        AlertmanagerPayload.model_validate_json(raw)


def test_diagnosis_caps_long_text_and_accepts_a_single_action_string() -> None:
    diagnosis = Diagnosis.model_validate(
        {**GOOD_DIAGNOSIS, "diagnosis": "x" * 5000, "action_items": "restart it", "extra": 1}
    )
    assert len(diagnosis.diagnosis) == 2000 and diagnosis.diagnosis.endswith("…")
    assert diagnosis.action_items == ["restart it"]


@pytest.mark.parametrize(
    "broken",
    [{"diagnosis": 42}, {"action_items": [{"step": 1}]}, {"impact": None}, {"diagnosis": ""}],
)
def test_diagnosis_rejects_wrong_types(broken: dict) -> None:
    with pytest.raises(ValidationError):
        Diagnosis.model_validate({**GOOD_DIAGNOSIS, **broken})


def test_diagnosis_strips_control_and_bidi_characters() -> None:
    diagnosis = Diagnosis.model_validate({**GOOD_DIAGNOSIS, "impact": "a\x1b[31mb\u202ec"})
    assert diagnosis.impact == "a[31mbc"


def alert(**fields: object) -> dict[str, object]:
    """A webhook alert as Alertmanager writes it, with `fields` overriding the defaults."""
    return {
        "status": "firing",
        "labels": {"alertname": "ApiDown", "exchange": "binance"},
        "startsAt": "2026-11-21T10:19:26.425Z",
        "endsAt": "0001-01-01T00:00:00Z",
        "fingerprint": "9bf71c1dd3846b64",
        **fields,
    }


def payload(*alerts: dict[str, object], **fields: object) -> AlertmanagerPayload:
    body = {"status": "firing", "groupKey": '{}:{alertname="ApiDown"}', "alerts": list(alerts)}
    return AlertmanagerPayload.model_validate({**body, **fields})


def test_webhook_field_names_are_read_from_alertmanagers_camel_case() -> None:
    parsed = payload(
        alert(generatorURL="http://prom/graph", endsAt="2026-11-21T10:29:26Z"),
        version="4",
        receiver="enricher",
        groupLabels={"alertname": "ApiDown"},
        commonLabels={"job": "api"},
        commonAnnotations={"summary": "down"},
        externalURL="http://am:9093",
        truncatedAlerts=3,
    )
    assert parsed.receiver == "enricher"
    assert parsed.group_labels == {"alertname": "ApiDown"}
    assert parsed.common_labels == {"job": "api"}
    assert parsed.common_annotations == {"summary": "down"}
    assert parsed.external_url == "http://am:9093"
    assert parsed.group_key == '{}:{alertname="ApiDown"}'
    assert parsed.truncated_alerts == 3
    [only] = parsed.alerts
    assert only.generator_url == "http://prom/graph"
    assert only.starts_at == datetime(2026, 11, 21, 10, 19, 26, 425000, tzinfo=UTC)
    assert only.ends_at == datetime(2026, 11, 21, 10, 29, 26, tzinfo=UTC)


def test_optional_payload_fields_default_to_empty() -> None:
    parsed = AlertmanagerPayload.model_validate(
        {"status": "resolved", "alerts": [{"status": "resolved", "labels": {"a": "b"}}]}
    )
    assert parsed.version == "4"
    assert parsed.receiver == "" and parsed.external_url == "" and parsed.group_key == ""
    assert parsed.group_labels == {} and parsed.common_labels == {}
    assert parsed.common_annotations == {} and parsed.truncated_alerts == 0
    [only] = parsed.alerts
    assert only.annotations == {} and only.generator_url == "" and only.fingerprint == ""
    assert only.starts_at is None and only.ends_at is None


def test_an_empty_alert_list_is_refused() -> None:
    with pytest.raises(ValidationError):
        payload()


def test_an_unknown_status_is_refused() -> None:
    with pytest.raises(ValidationError):
        payload(alert(status="pending"))


def test_times_without_a_zone_are_utc() -> None:
    [only] = payload(alert(startsAt="2026-11-21T10:19:26", endsAt="2026-11-21T11:00:00")).alerts
    assert only.starts_at == datetime(2026, 11, 21, 10, 19, 26, tzinfo=UTC)
    assert only.ends_at == datetime(2026, 11, 21, 11, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("0001-01-01T00:00:00Z", None),
        ("1970-12-31T23:59:59Z", None),
        ("1971-01-01T00:00:00Z", datetime(1971, 1, 1, tzinfo=UTC)),
        ("1971-01-01T00:00:00", datetime(1971, 1, 1, tzinfo=UTC)),
    ],
)
def test_times_before_1971_mean_unset_on_both_ends(given: str, expected: datetime | None) -> None:
    [only] = payload(alert(startsAt=given, endsAt=given)).alerts
    assert only.starts_at == expected and only.ends_at == expected


def test_an_alert_is_named_by_its_alertname_and_severity_labels() -> None:
    [named] = payload(alert(labels={"alertname": "ApiDown", "severity": "critical"})).alerts
    assert (named.name, named.severity) == ("ApiDown", "critical")
    [bare] = payload(alert(labels={"job": "api"})).alerts
    assert (bare.name, bare.severity) == ("unnamed alert", "unknown")


def test_identity_is_the_fingerprint_when_alertmanager_sends_one() -> None:
    [only] = payload(alert(fingerprint="9bf71c1dd3846b64")).alerts
    assert only.identity == "9bf71c1dd3846b64"


def test_identity_without_a_fingerprint_depends_on_the_labels_not_their_order() -> None:
    first = payload(alert(fingerprint="", labels={"a": "1", "b": "2"})).alerts[0]
    reordered = payload(alert(fingerprint="", labels={"b": "2", "a": "1"})).alerts[0]
    other = payload(alert(fingerprint="", labels={"a": "1", "b": "3"})).alerts[0]
    assert first.identity == reordered.identity != other.identity
    assert len(first.identity) == 16 and int(first.identity, 16) >= 0


def test_group_id_is_the_group_key_else_the_sorted_group_labels() -> None:
    assert payload(alert(), groupKey="k1").group_id == "k1"
    by_labels = payload(alert(), groupKey="", groupLabels={"b": "2", "a": "1"})
    reordered = payload(alert(), groupKey="", groupLabels={"a": "1", "b": "2"})
    other = payload(alert(), groupKey="", groupLabels={"a": "1", "b": "3"})
    assert by_labels.group_id == reordered.group_id != other.group_id


def test_the_same_notification_twice_has_the_same_idempotency_key() -> None:
    first = payload(alert(), alert(fingerprint="f2", labels={"alertname": "B"}))
    again = payload(alert(), alert(fingerprint="f2", labels={"alertname": "B"}))
    assert first.idempotency_key() == again.idempotency_key()
    assert len(first.idempotency_key()) == 64


@pytest.mark.parametrize(
    "change",
    [
        {"groupKey": "another group"},
        {"status": "resolved"},
        {"alerts": [alert(fingerprint="another")]},
        {"alerts": [alert(status="resolved")]},
        {"alerts": [alert(startsAt="2026-11-21T10:20:00Z")]},
        {"alerts": [alert(endsAt="2026-11-21T10:29:26Z")]},
        {"alerts": [alert(), alert(fingerprint="joined")]},
    ],
    ids=["group", "status", "identity", "alert-status", "startsAt", "endsAt", "alert-joined"],
)
def test_the_idempotency_key_changes_with_group_status_and_each_alert_state(
    change: dict[str, object],
) -> None:
    base = payload(alert())
    changed = AlertmanagerPayload.model_validate(
        {**base.model_dump(by_alias=True, mode="json"), **change}
    )
    assert changed.idempotency_key() != base.idempotency_key()


def test_the_idempotency_key_tells_apart_an_end_time_from_a_start_time() -> None:
    t = "2026-11-21T10:20:00Z"
    starts = payload(alert(startsAt=t, endsAt="0001-01-01T00:00:00Z"))
    ends = payload(alert(startsAt="0001-01-01T00:00:00Z", endsAt=t))
    assert starts.idempotency_key() != ends.idempotency_key()


def test_the_idempotency_key_ignores_the_receiver_and_annotations() -> None:
    base = payload(alert())
    other = payload(alert(annotations={"summary": "changed"}), receiver="other")
    assert base.idempotency_key() == other.idempotency_key()


def test_firing_and_resolved_split_the_alerts_by_their_own_status() -> None:
    mixed = payload(alert(fingerprint="a"), alert(fingerprint="b", status="resolved"))
    assert [a.fingerprint for a in mixed.firing] == ["a"]
    assert [a.fingerprint for a in mixed.resolved] == ["b"]


@pytest.mark.parametrize(
    ("field", "limit"),
    [
        ("diagnosis", 2000),
        ("impact", 1000),
        ("rollback_plan", 1000),
        ("estimated_recovery_time", 200),
    ],
)
def test_text_at_the_limit_is_kept_and_longer_text_is_cut_to_the_limit(
    field: str, limit: int
) -> None:
    exact = Diagnosis.model_validate({**GOOD_DIAGNOSIS, field: "x" * limit})
    assert getattr(exact, field) == "x" * limit
    longer = Diagnosis.model_validate({**GOOD_DIAGNOSIS, field: "x" * (limit + 1)})
    assert getattr(longer, field) == "x" * (limit - 1) + "…"


def test_a_cut_drops_trailing_spaces_before_the_ellipsis() -> None:
    diagnosis = Diagnosis.model_validate({**GOOD_DIAGNOSIS, "impact": "x" * 990 + " " * 20})
    assert diagnosis.impact == "x" * 990 + "…"


def test_action_items_are_capped_at_500_characters_each() -> None:
    diagnosis = Diagnosis.model_validate({**GOOD_DIAGNOSIS, "action_items": ["y" * 501, "y" * 500]})
    assert diagnosis.action_items == ["y" * 499 + "…", "y" * 500]


def test_blank_action_items_are_dropped_and_ten_are_kept() -> None:
    items = ["", "  ", *[f"step {i}" for i in range(12)]]
    diagnosis = Diagnosis.model_validate({**GOOD_DIAGNOSIS, "action_items": items})
    assert diagnosis.action_items == [f"step {i}" for i in range(10)]


def test_more_than_fifty_action_items_are_refused() -> None:
    Diagnosis.model_validate({**GOOD_DIAGNOSIS, "action_items": ["s"] * 50})
    with pytest.raises(ValidationError):
        Diagnosis.model_validate({**GOOD_DIAGNOSIS, "action_items": ["s"] * 51})


@pytest.mark.parametrize(
    ("source", "label"),
    [
        (DiagnosisSource(kind="llm", model="deepseek-chat"), "model deepseek-chat"),
        (
            DiagnosisSource(kind="rules", preliminary=True),
            "rule-based, preliminary: AI diagnosis in progress",
        ),
        (DiagnosisSource(kind="rules", reason="timeout"), "rule-based fallback: timeout"),
        (DiagnosisSource(kind="rules"), "rule-based fallback"),
        (DiagnosisSource(kind="none"), "no diagnosis (resolved)"),
    ],
)
def test_the_diagnosis_source_says_where_the_diagnosis_came_from(
    source: DiagnosisSource, label: str
) -> None:
    assert source.label == label


def test_a_diagnosis_source_is_final_unless_said_otherwise() -> None:
    source = DiagnosisSource(kind="rules")
    assert source.preliminary is False and source.model is None and source.reason is None


def view(name: str, status: str = "firing", runbook: str | None = None) -> AlertView:
    return AlertView.model_validate(
        {
            "name": name,
            "status": status,
            "severity": "critical",
            "identifying_labels": {"exchange": "binance"},
            "runbook_url": runbook,
        }
    )


def test_an_alert_views_labels_include_its_name_and_severity() -> None:
    assert view("ApiDown").labels == {
        "exchange": "binance",
        "alertname": "ApiDown",
        "severity": "critical",
    }
    plain = view("ApiDown")
    assert plain.new is False and plain.summary == "" and plain.context is None


def test_a_notifications_alerts_are_the_firing_then_the_resolved() -> None:
    notification = EnrichedNotification(
        group_id="g",
        status="firing",
        title="t",
        severity="critical",
        firing=[view("F1"), view("F2", runbook="http://runbook/f2")],
        resolved=[view("R1", "resolved", runbook="http://runbook/r1")],
        source=DiagnosisSource(kind="none"),
    )
    assert [a.name for a in notification.alerts] == ["F1", "F2", "R1"]
    assert notification.runbook_url == "http://runbook/f2"
    assert notification.kind == "new" and notification.omitted_alerts == 0
    assert notification.created_at.tzinfo is not None
    assert abs((datetime.now(UTC) - notification.created_at).total_seconds()) < 3600


def test_a_notification_without_runbooks_has_no_runbook_url() -> None:
    notification = EnrichedNotification(
        group_id="g",
        status="firing",
        title="t",
        severity="critical",
        firing=[view("F1")],
        source=DiagnosisSource(kind="none"),
    )
    assert notification.runbook_url is None
    assert notification.resolved == [] and notification.incident_id is None


def test_metric_context_defaults_to_an_empty_history() -> None:
    context = MetricContext()
    assert context.expr == "" and context.sparkline == "" and context.samples == []
    assert context.window_minutes == 0 and context.unavailable is None
