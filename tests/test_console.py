import io

from app.models import Diagnosis, DiagnosisSource
from app.notifiers.base import Progress, Sent
from app.notifiers.console import ConsoleNotifier, render
from tests.fakes import GOOD_DIAGNOSIS, sample_notification, with_new

MIXED = "alertmanager-0.25-mixed_apidown_one_resolved.json"


def test_mixed_group_headline_names_only_the_firing_and_every_alert_shows_its_state() -> None:
    text = render(sample_notification(MIXED))
    assert "🔥 FIRING: APIDown on bybit and okx (severity critical)" in text
    assert "• [resolved] APIDown exchange=binance" in text
    assert "resolved, fired for 4s" in text


def test_escalation_marks_new_alerts_next_to_their_names() -> None:
    n = sample_notification("alertmanager-0.25-firing_apidown_group_of_3.json", kind="escalation")
    text = render(with_new(n, "okx"))
    assert "• [firing] APIDown 🆕 new exchange=okx" in text
    assert "• [firing] APIDown exchange=binance" in text and text.count("🆕") == 1


async def test_edit_prints_the_message_again_saying_it_replaces_the_earlier_one() -> None:
    stream = io.StringIO()
    console, preliminary = ConsoleNotifier(stream), sample_notification()
    await console.send(preliminary, None)
    final = preliminary.model_copy(
        update={
            "diagnosis": Diagnosis.model_validate({**GOOD_DIAGNOSIS, "diagnosis": "LLM: gateway"}),
            "source": DiagnosisSource(kind="llm", model="deepseek-chat"),
        }
    )
    done: dict[str, str | None] = {}

    async def record(step: str, ref: str | None) -> None:
        done[step] = ref

    assert await console.edit(final, Sent(None), Progress(record=record)) is None
    assert done == {"edit": None}
    earlier, edited = stream.getvalue().split("↻ ", 1)
    assert "Source: rule-based" in earlier
    assert edited.startswith(f"replaces the earlier message for {preliminary.title}\n")
    assert "Diagnosis: LLM: gateway" in edited and "Source: model deepseek-chat" in edited
