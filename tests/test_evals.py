"""`make eval`'s incidents: each names a cause its alert text does not, the rules name at least 90 %
of them, and every rule of app/rules.py is exercised by at least one."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from app.config import Settings
from app.rules import diagnose, find_signature
from app.rules_table import ALL_AT_ONCE, SIGNATURES
from evals.__main__ import report, run
from evals.incidents import load

MIN_RULES_HIT_RATE = 90.0


def test_there_are_at_least_30_incidents_with_unique_ids() -> None:
    incidents = load()
    assert len(incidents) >= 30
    assert len({i.id for i in incidents}) == len(incidents)


def test_an_incident_whose_expected_cause_is_in_its_own_alert_text_is_refused(
    tmp_path: Path,
) -> None:
    path = tmp_path / "incidents.yml"
    path.write_text(
        "incidents:\n  - id: echo\n    description: 'the clock is wrong'\n    expect: [clock]\n"
    )
    with pytest.raises(ValueError, match="echo: clock is in the alert's own text"):
        load(path)


async def test_the_rules_name_the_known_cause_of_at_least_90_percent_of_the_incidents() -> None:
    settings = Settings(_env_file=None, llm_api_key=None)  # type: ignore[call-arg]
    outcomes = await run(load(), settings, rules_only=True)
    printed = io.StringIO()
    rate = report(outcomes, printed)
    assert rate >= MIN_RULES_HIT_RATE, printed.getvalue()
    assert all(o.source.kind == "rules" for o in outcomes)


def test_every_rule_signature_is_exercised_by_an_incident() -> None:
    used = {
        signature.name
        for incident in load()
        if (signature := find_signature(incident.payload().firing)) is not None
    }
    assert used == {s.name for s in SIGNATURES}


def test_a_miss_is_printed_with_what_was_expected() -> None:
    [incident] = [i for i in load() if i.id == "binance-1021-recvwindow"]
    assert incident.missing("the exchange is down") == ["clock"]
    assert incident.missing("the host Clock drifted") == []


def test_three_exchanges_failing_at_once_are_diagnosed_as_our_own_egress() -> None:
    [incident] = [i for i in load() if i.id == "all-exchanges-down"]
    firing = incident.payload().firing
    assert find_signature(firing) is None and len(firing) == 3
    assert ALL_AT_ONCE.diagnosis.split(".")[1] in diagnose(firing).diagnosis
