from app.notifiers.console import render
from tests.fakes import sample_notification, with_new

MIXED = "alertmanager-0.25-mixed_apidown_one_resolved.json"


def test_mixed_group_headline_names_only_the_firing_and_every_alert_shows_its_state() -> None:
    text = render(sample_notification(MIXED))
    assert "🔥 FIRING: APIDown on bybit and okx (severity critical)" in text
    assert "• [resolved] APIDown exchange=binance" in text
    assert "resolved after 4s" in text


def test_escalation_marks_new_alerts_next_to_their_names() -> None:
    n = sample_notification("alertmanager-0.25-firing_apidown_group_of_3.json", kind="escalation")
    text = render(with_new(n, "okx"))
    assert "• [firing] APIDown 🆕 new exchange=okx" in text
    assert "• [firing] APIDown exchange=binance" in text and text.count("🆕") == 1
