"""Per-channel matchers (app/routing.py), with Alertmanager's matcher syntax."""

from __future__ import annotations

import pytest

from app.models import AlertView, DiagnosisSource, EnrichedNotification
from app.routing import Matcher, RoutingError, parse_matchers, routed


def notification(*labels: dict[str, str]) -> EnrichedNotification:
    """A notification whose alerts carry `labels` (alertname and severity among them)."""
    views = [
        AlertView(
            name=lab.get("alertname", "A"),
            status="firing",
            severity=lab.get("severity", "unknown"),
            identifying_labels={k: v for k, v in lab.items() if k not in ("alertname", "severity")},
        )
        for lab in labels
    ]
    return EnrichedNotification(
        group_id="g",
        status="firing",
        title="t",
        severity="critical",
        firing=views,
        source=DiagnosisSource(kind="none"),
    )


def test_a_plain_matcher_parses_to_label_op_and_value() -> None:
    assert parse_matchers("severity=critical") == (Matcher("severity", "=", "critical"),)


@pytest.mark.parametrize("op", ["=", "!=", "=~", "!~"])
def test_each_operator_parses_with_spaces_around_it(op: str) -> None:
    assert parse_matchers(f"  team {op} db  ") == (Matcher("team", op, "db"),)


def test_several_matchers_are_comma_separated_and_braces_are_allowed() -> None:
    assert parse_matchers('{severity="critical", team!=web,}') == (
        Matcher("severity", "=", "critical"),
        Matcher("team", "!=", "web"),
    )


def test_a_quoted_value_may_contain_a_comma() -> None:
    assert parse_matchers('exchange=~"binance|kraken,x", team=db') == (
        Matcher("exchange", "=~", "binance|kraken,x"),
        Matcher("team", "=", "db"),
    )


def test_quotes_are_removed_only_when_they_enclose_the_value() -> None:
    assert parse_matchers('a=""') == (Matcher("a", "=", ""),)
    assert parse_matchers("a=") == (Matcher("a", "=", ""),)


@pytest.mark.parametrize("text", [None, "", "   ", "{}", " , ,"])
def test_no_matchers_means_an_empty_tuple(text: str | None) -> None:
    assert parse_matchers(text) == ()


@pytest.mark.parametrize("text", ["severity", "9label=x", "a b=c", 'a="x"y', 'a="unterminated'])
def test_an_unparsable_matcher_is_refused_with_its_text(text: str) -> None:
    with pytest.raises(RoutingError, match="cannot parse matcher"):
        parse_matchers(text)


@pytest.mark.parametrize("op", ["=~", "!~"])
def test_an_invalid_regex_is_refused_at_parse_time(op: str) -> None:
    with pytest.raises(RoutingError, match="invalid regex"):
        parse_matchers(f"team{op}(db")


def test_an_invalid_regex_in_an_equality_matcher_is_just_a_value() -> None:
    assert parse_matchers("team=(db") == (Matcher("team", "=", "(db"),)


def test_a_matcher_with_equal_matches_only_the_exact_value() -> None:
    matcher = Matcher("severity", "=", "critical")
    assert matcher.matches({"severity": "critical"})
    assert not matcher.matches({"severity": "critical2"})
    assert not matcher.matches({"severity": "warning"})
    assert not matcher.matches({})


def test_a_matcher_with_not_equal_excludes_the_value() -> None:
    matcher = Matcher("team", "!=", "web")
    assert not matcher.matches({"team": "web"})
    assert matcher.matches({"team": "db"})
    assert matcher.matches({}), "a missing label is the empty string, not 'web'"


def test_a_missing_label_equals_the_empty_string() -> None:
    assert Matcher("team", "=", "").matches({"other": "x"})
    assert not Matcher("team", "!=", "").matches({"other": "x"})


def test_a_regex_matcher_matches_the_whole_value_not_a_part() -> None:
    matcher = Matcher("exchange", "=~", "bin")
    assert not matcher.matches({"exchange": "binance"})
    assert not matcher.matches({"exchange": "xbin"})
    assert Matcher("exchange", "=~", "bin.*").matches({"exchange": "binance"})


def test_a_negative_regex_matcher_excludes_whole_matches_only() -> None:
    matcher = Matcher("exchange", "!~", "bin.*")
    assert not matcher.matches({"exchange": "binance"})
    assert matcher.matches({"exchange": "kraken"})
    assert Matcher("exchange", "!~", "bin").matches({"exchange": "binance"})


def test_parsed_matchers_route_end_to_end() -> None:
    matchers = parse_matchers('severity="critical",exchange!~"kraken|bitfinex"')
    assert routed(notification({"severity": "critical", "exchange": "binance"}), matchers)
    assert not routed(notification({"severity": "critical", "exchange": "kraken"}), matchers)
    assert not routed(notification({"severity": "warning", "exchange": "binance"}), matchers)


def test_no_matchers_routes_everything() -> None:
    assert routed(notification({"severity": "warning"}), ())


def test_a_notification_is_routed_when_any_one_alert_matches() -> None:
    matchers = (Matcher("exchange", "=", "binance"),)
    both = notification({"exchange": "kraken"}, {"exchange": "binance"})
    assert routed(both, matchers)
    assert not routed(notification({"exchange": "kraken"}, {"exchange": "okx"}), matchers)


def test_one_alert_must_match_every_matcher_not_each_matcher_a_different_alert() -> None:
    matchers = (Matcher("exchange", "=", "binance"), Matcher("team", "=", "db"))
    split = notification(
        {"exchange": "binance", "team": "web"}, {"exchange": "kraken", "team": "db"}
    )
    assert not routed(split, matchers)
    assert routed(notification({"exchange": "binance", "team": "db"}), matchers)


def test_severity_and_alertname_are_matchable_labels() -> None:
    matchers = parse_matchers("alertname=ApiDown, severity=critical")
    assert routed(notification({"alertname": "ApiDown", "severity": "critical"}), matchers)
    assert not routed(notification({"alertname": "ApiDown", "severity": "warning"}), matchers)


def test_only_the_enclosing_braces_are_stripped_not_the_first_or_last_letters() -> None:
    assert parse_matchers("{Xteam=dbX}") == (Matcher("Xteam", "=", "dbX"),)


def test_a_not_equal_value_is_a_literal_not_a_regex() -> None:
    matcher = Matcher("team", "!=", "db.*")
    assert matcher.matches({"team": "dbx"})
    assert not matcher.matches({"team": "db.*"})
