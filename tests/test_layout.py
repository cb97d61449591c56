"""The words every channel shows (app/notifiers/layout.py), checked exactly: Slack, Telegram and the
console all take their headlines, label lists, counts and metric figures from here."""

from datetime import UTC, datetime, timedelta

import pytest

from app.language import ENGLISH
from app.models import AlertView, DiagnosisSource, EnrichedNotification, MetricContext
from app.notifiers.layout import (
    follow_ups,
    headline,
    hidden_alerts,
    label_pairs,
    label_text,
    metric_stats,
    new_mark,
    resolved_note,
)

START = datetime(2026, 10, 21, 10, 19, 26, tzinfo=UTC)


def alert(
    name: str = "APIDown",
    *,
    status: str = "firing",
    labels: dict[str, str] | None = None,
    starts_at: datetime | None = None,
    ends_at: datetime | None = None,
    new: bool = False,
) -> AlertView:
    return AlertView(
        name=name,
        status=status,
        severity="critical",
        identifying_labels=labels if labels is not None else {"exchange": name},
        starts_at=starts_at,
        ends_at=ends_at,
        new=new,
    )


def notification(
    firing: list[AlertView], resolved: list[AlertView], omitted: int = 0
) -> EnrichedNotification:
    return EnrichedNotification(
        group_id="g",
        status="firing" if firing else "resolved",
        title="APIDown",
        severity="critical",
        firing=firing,
        resolved=resolved,
        omitted_alerts=omitted,
        source=DiagnosisSource(kind="none"),
    )


@pytest.mark.parametrize(
    ("kind", "status", "expected"),
    [
        ("new", "firing", "🔥 FIRING: APIDown on binance"),
        ("escalation", "firing", "🔥 MORE FIRING: APIDown on binance"),
        ("repeat", "firing", "🔁 STILL FIRING: APIDown on binance"),
        ("resolved", "resolved", "✅ RESOLVED: APIDown on binance"),
        ("resolved", "firing", "✅ PARTLY RESOLVED: APIDown on binance"),
        ("something-else", "firing", "🔥 FIRING: APIDown on binance"),
    ],
)
def test_headline_names_what_happened_in_the_same_words_everywhere(
    kind: str, status: str, expected: str
) -> None:
    assert headline(kind, status, "APIDown on binance", ENGLISH) == expected


def test_a_repeat_of_a_group_that_is_resolved_is_not_called_resolved() -> None:
    assert headline("repeat", "resolved", "X", ENGLISH) == "🔁 STILL FIRING: X"


def test_label_pairs_keep_the_first_eight_labels_in_order() -> None:
    labels = {f"k{i}": f"v{i}" for i in range(12)}
    assert label_pairs(alert(labels=labels)) == [(f"k{i}", f"v{i}") for i in range(8)]


def test_label_pairs_show_all_labels_when_there_are_eight_or_fewer() -> None:
    labels = {f"k{i}": f"v{i}" for i in range(8)}
    assert len(label_pairs(alert(labels=labels))) == 8


def test_label_keys_up_to_60_and_values_up_to_120_characters_are_kept_whole() -> None:
    key, value = "k" * 60, "v" * 120
    assert label_pairs(alert(labels={key: value})) == [(key, value)]


def test_longer_label_keys_and_values_are_shortened_visibly_to_60_and_120() -> None:
    [(key, value)] = label_pairs(alert(labels={"k" * 61: "v" * 121}))
    assert len(key) == 60 and key.endswith("… [shortened]") and key.startswith("k" * 47)
    assert len(value) == 120 and value.endswith("… [shortened]") and value.startswith("v" * 107)


def test_label_text_joins_pairs_with_single_spaces() -> None:
    assert label_text(alert(labels={"exchange": "binance", "zone": "eu"})) == (
        "exchange=binance zone=eu"
    )


def test_label_text_of_an_alert_without_labels_is_empty() -> None:
    assert label_text(alert(labels={})) == ""


def test_new_mark_follows_only_alerts_that_joined_the_group() -> None:
    assert new_mark(alert(new=True), ENGLISH) == " 🆕 new"
    assert new_mark(alert(new=False), ENGLISH) == ""


def test_resolved_note_says_how_long_the_alert_fired() -> None:
    resolved = alert(status="resolved", starts_at=START, ends_at=START + timedelta(minutes=2))
    assert resolved_note(resolved, ENGLISH) == "resolved, fired for 2m"


@pytest.mark.parametrize(
    ("firing", "resolved", "omitted", "limit", "expected"),
    [
        (3, 2, 0, 10, 0),
        (12, 0, 0, 10, 2),
        (0, 13, 0, 10, 3),
        (12, 13, 0, 10, 5),
        (12, 13, 4, 10, 9),
        (1, 1, 7, 10, 7),
        (10, 10, 0, 10, 0),
        (11, 3, 0, 2, 10),
    ],
)
def test_hidden_alerts_counts_each_list_past_its_limit_plus_those_alertmanager_left_out(
    firing: int, resolved: int, omitted: int, limit: int, expected: int
) -> None:
    n = notification(
        [alert(f"f{i}") for i in range(firing)],
        [alert(f"r{i}", status="resolved") for i in range(resolved)],
        omitted,
    )
    assert hidden_alerts(n, limit) == expected


def test_follow_ups_list_resolved_alerts_first_then_those_still_firing() -> None:
    gone = alert("Gone", status="resolved", starts_at=START, ends_at=START + timedelta(seconds=6))
    still = alert("Still")  # no start time: the duration is unknown, not a guess
    lines, hidden = follow_ups(notification([still], [gone]), 10)
    assert lines == [
        ("✅", gone, "resolved, fired for 6s"),
        ("🔥", still, "still firing, for unknown"),
    ]
    assert hidden == 0


def test_follow_ups_measure_a_firing_alert_up_to_now() -> None:
    still = alert("Still", starts_at=datetime.now(UTC) - timedelta(hours=3, minutes=5))
    [(_, _, what)] = follow_ups(notification([still], []), 10)[0]
    assert what == "still firing, for 3h 5m"


def test_follow_ups_show_at_most_limit_of_each_and_count_the_rest() -> None:
    firing = [alert(f"f{i}") for i in range(5)]
    resolved = [alert(f"r{i}", status="resolved") for i in range(4)]
    lines, hidden = follow_ups(notification(firing, resolved, omitted=6), 3)
    assert [a.name for _, a, _ in lines] == ["r0", "r1", "r2", "f0", "f1", "f2"]
    assert hidden == (5 + 4 - 6) + 6


def test_follow_ups_of_a_group_that_fits_leave_out_only_what_alertmanager_did() -> None:
    lines, hidden = follow_ups(notification([alert("a")], [], omitted=2), 10)
    assert len(lines) == 1
    assert hidden == 2


def test_metric_stats_read_the_window_s_figures_in_order() -> None:
    context = MetricContext(
        expr="up", current=0, minimum=0, maximum=1, mean=0.5, change=-1, window_minutes=30
    )
    assert metric_stats(context, ENGLISH) == "min 0 · max 1 · mean 0.5 · Δ -1 over 30m"


def test_metric_stats_sign_a_rise_and_mark_missing_figures() -> None:
    context = MetricContext(expr="up", maximum=2.5, change=1.25, window_minutes=15)
    assert metric_stats(context, ENGLISH) == "min n/a · max 2.5 · mean n/a · Δ +1.25 over 15m"
