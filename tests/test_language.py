"""ANALYSIS_LANGUAGE: the fixed words of every message and of the rule-based diagnosis (English by
default, Vietnamese for `vi`), the same placeholders in both, and every channel using them."""

import json
from dataclasses import fields
from string import Formatter

import httpx
import pytest

from app import rules_table_vi
from app.language import ENGLISH, VIETNAMESE, Words, words_for
from app.notifiers import console, slack_blocks, telegram
from app.rules import diagnose, find_signature
from app.rules_table import ALERT_PLAYBOOKS, SIGNATURES
from evals.incidents import load
from tests.fakes import PROMETHEUS_URL, fixture_payload, sample_notification, with_new
from tests.test_enrich import enrich_fixture

# Words a Vietnamese engineer reads in English too.
SHARED = {"runbook", "runbook_file", "rollback_short"}
ENGLISH_LABELS = ("Diagnosis", "Impact", "Action items", "Rollback plan", "Severity", "FIRING")


def placeholders(template: str) -> set[str]:
    return {name for _, name, _, _ in Formatter().parse(template) if name}


def texts(words: Words) -> dict[str, str]:
    return {f.name: getattr(words, f.name) for f in fields(Words) if f.name != "code"}


def test_vietnamese_templates_take_the_same_placeholders_as_english() -> None:
    english, vietnamese = texts(ENGLISH), texts(VIETNAMESE)
    assert {k: placeholders(v) for k, v in vietnamese.items()} == {
        k: placeholders(v) for k, v in english.items()
    }


def test_every_fixed_word_has_its_own_vietnamese() -> None:
    same = {k for k, v in texts(VIETNAMESE).items() if v == texts(ENGLISH)[k]}
    assert same == SHARED


@pytest.mark.parametrize(
    ("code", "words"),
    [("vi", VIETNAMESE), ("vi-VN", VIETNAMESE), (" VI_vn ", VIETNAMESE), ("en", ENGLISH)],
)
def test_language_codes_pick_their_words(code: str, words: Words) -> None:
    assert words_for(code) is words


@pytest.mark.parametrize("code", ["de", "", "zz-ZZ"])
def test_a_language_without_words_of_its_own_reads_english_labels(code: str) -> None:
    assert words_for(code) is ENGLISH


def test_ordinals_read_in_each_language() -> None:
    assert [ENGLISH.ordinal(n) for n in (1, 2, 3, 4, 11, 22)] == [
        "1st",
        "2nd",
        "3rd",
        "4th",
        "11th",
        "22nd",
    ]
    assert VIETNAMESE.ordinal(4) == "lần thứ 4"


def test_names_join_in_each_language() -> None:
    assert ENGLISH.names(["binance", "bybit", "okx"]) == "binance, bybit and okx"
    assert VIETNAMESE.names(["binance", "bybit", "okx"]) == "binance, bybit và okx"
    assert VIETNAMESE.names([f"x{i}" for i in range(7)]) == "x0, x1, x2, x3, x4 và 2 sàn khác"


def vietnamese_notification():
    payload = fixture_payload("alertmanager-0.25-firing_apidown_binance.json")
    n = sample_notification()
    return n.model_copy(
        update={
            "language": "vi",
            "diagnosis": diagnose(payload.firing, words=VIETNAMESE),
            "history": "lần thứ 4 trong 7 ngày",
        }
    )


def rendered() -> dict[str, str]:
    n = vietnamese_notification()
    return {
        "console": console.render(n),
        "slack": json.dumps(slack_blocks.message(n), ensure_ascii=False),
        "telegram": "\n".join(line.html() for line in telegram.render(n)),
    }


@pytest.mark.parametrize("channel", ["console", "slack", "telegram"])
def test_every_channel_labels_a_vietnamese_message_in_vietnamese(channel: str) -> None:
    text = rendered()[channel]
    assert "ĐANG CẢNH BÁO" in text and "Việc cần làm" in text and "Ảnh hưởng" in text
    assert "theo quy tắc (dự phòng)" in text  # where the diagnosis came from
    assert "Độ tin cậy" in text  # the rules' own text, in Vietnamese
    for label in ENGLISH_LABELS:
        assert label not in text, label


def test_the_rules_write_every_playbook_in_vietnamese() -> None:
    for name in ALERT_PLAYBOOKS:
        alert = fixture_payload("alertmanager-0.25-firing_apidown_binance.json").firing[0]
        alert = alert.model_copy(update={"labels": {**alert.labels, "alertname": name}})
        english, vietnamese = diagnose([alert]), diagnose([alert], words=VIETNAMESE)
        assert vietnamese.diagnosis != english.diagnosis
        assert "binance" in vietnamese.diagnosis
        assert len(vietnamese.action_items) == len(english.action_items)
    assert len(SIGNATURES) >= 20


def test_every_eval_incident_is_diagnosed_in_vietnamese_naming_its_cause() -> None:
    for incident in load():
        firing = incident.payload().firing
        english, vietnamese = diagnose(firing), diagnose(firing, words=VIETNAMESE)
        assert "Độ tin cậy" in vietnamese.diagnosis, incident.id
        assert vietnamese.diagnosis.split(".")[0] not in english.diagnosis, incident.id
        assert not set(vietnamese.action_items) & set(english.action_items), incident.id
        if signature := find_signature(firing):
            assert rules_table_vi.SIGNATURES[signature.name][0] in vietnamese.diagnosis


def test_the_vietnamese_table_translates_every_english_entry() -> None:
    assert set(rules_table_vi.ALERT_PLAYBOOKS) == set(ALERT_PLAYBOOKS)
    assert set(rules_table_vi.SIGNATURES) == {s.name for s in SIGNATURES}


async def test_without_a_model_a_vietnamese_team_gets_the_whole_page_in_vietnamese(
    respx_mock,
) -> None:
    respx_mock.get(url__startswith=PROMETHEUS_URL).mock(return_value=httpx.Response(503))
    n = await enrich_fixture(
        "alertmanager-0.25-firing_apidown_group_of_3.json", api_key=None, language="vi"
    )
    assert n.language == "vi"
    assert n.title == "APIDown trên binance, bybit và okx"
    assert n.source.label_in(n.words).startswith("theo quy tắc (dự phòng)")
    assert n.diagnosis is not None
    assert n.diagnosis.diagnosis.startswith(
        rules_table_vi.ALL_AT_ONCE.diagnosis.replace("{exchanges}", "binance, bybit và okx")[:40]
    )


def vietnamese(n):
    return n.model_copy(update={"language": "vi"})


def follow_up_texts(n) -> dict[str, str]:
    return {
        "console": console.render(n),
        "slack": json.dumps(slack_blocks.message(n), ensure_ascii=False),
        "telegram": "\n".join(line.html() for line in telegram.render(n)),
    }


ENGLISH_WORDS = ("resolved", "new", "more alerts", "still firing", "mean", "over 30m", "graph")


@pytest.mark.parametrize("channel", ["console", "slack", "telegram"])
def test_follow_ups_escalations_and_counts_read_in_vietnamese_too(channel: str) -> None:
    resolved = vietnamese(sample_notification("alertmanager-0.25-resolved_apidown_binance.json"))
    many = vietnamese(sample_notification("alertmanager-0.25-firing_apidown_group_of_3.json"))
    escalation = with_new(many, "okx").model_copy(
        update={"kind": "escalation", "omitted_alerts": 12}
    )
    pages = [resolved, escalation, resolved.model_copy(update={"omitted_alerts": 12})]
    text = "\n".join(follow_up_texts(n)[channel] for n in pages)
    assert "ĐÃ HẾT CẢNH BÁO" in text and "đã hết, kéo dài" in text
    assert "THÊM CẢNH BÁO" in text and "🆕 mới" in text and "cảnh báo khác" in text
    assert "TB 0.5" in text and "trong 30m" in text
    lowered = text.lower().replace("resolved_apidown", "")
    for english in ENGLISH_WORDS:
        assert f" {english}" not in lowered, english
