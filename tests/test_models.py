import pytest
from pydantic import ValidationError

from app.models import AlertmanagerPayload, Diagnosis
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
