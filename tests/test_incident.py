from app.incident import Incident, classify, transition
from tests.fakes import fixture_payload

FIRING3 = fixture_payload("alertmanager-0.25-firing_apidown_group_of_3.json")
MIXED = fixture_payload("alertmanager-0.25-mixed_apidown_one_resolved.json")
RESOLVED = fixture_payload("alertmanager-0.25-resolved_apidown_binance.json")


def after(payload, incident: Incident | None, incident_id: int = 7) -> Incident:
    change = transition(payload, incident)
    return Incident(id=change.incident_id or incident_id, group_id="g", firing=change.firing)


def test_a_group_lifecycle_is_classified_from_its_open_incident() -> None:
    assert classify(FIRING3, None) == "new"
    opened = after(FIRING3, None)
    assert len(opened.firing) == 3
    assert classify(FIRING3, opened) == "repeat"
    assert classify(MIXED, opened) == "resolved"
    partly = after(MIXED, opened)
    assert partly.id == opened.id and len(partly.firing) == 2
    assert classify(MIXED, partly) == "repeat", "binance's resolve was already told"
    assert classify(FIRING3, partly) == "escalation", "binance fired again"
    assert classify(RESOLVED, None) == "resolved"


def test_the_first_firing_notification_opens_an_incident() -> None:
    change = transition(FIRING3, None)
    assert change.kind == "new" and change.opens and not change.ends


def test_the_incident_ends_when_nothing_fires_any_more() -> None:
    opened = after(FIRING3, None)
    change = transition(RESOLVED.model_copy(update={"group_key": FIRING3.group_key}), opened)
    assert change.kind == "resolved" and change.ends and change.incident_id == opened.id


def test_a_resolve_without_an_open_incident_opens_nothing() -> None:
    change = transition(RESOLVED, None)
    assert not change.opens and not change.ends and change.incident_id is None


def test_a_partial_resolve_keeps_the_incident_open() -> None:
    change = transition(MIXED, after(FIRING3, None))
    assert change.kind == "resolved" and not change.ends and not change.opens
