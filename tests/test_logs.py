import asyncio
import json
import logging
import sys
from collections.abc import Iterator

import pytest

from app.logs import ContextFilter, JSONFormatter, SecretScrubber, log_context


def record(msg: str, *args: object) -> logging.LogRecord:
    return logging.LogRecord("t", logging.ERROR, __file__, 1, msg, args, None)


def test_configured_secrets_never_reach_a_log_line() -> None:
    scrubber = SecretScrubber(["fake-telegram-token", "fake-llm-key"])
    r = record(
        "GET https://api.telegram.org/bot%s/getMe failed, key %s",
        "fake-telegram-token",
        "fake-llm-key",
    )
    scrubber.filter(r)
    assert r.getMessage() == "GET https://api.telegram.org/bot***/getMe failed, key ***"


def test_secrets_in_exception_text_are_scrubbed_too() -> None:
    scrubber = SecretScrubber(["fake-llm-key"])
    try:
        raise ValueError("bad key fake-llm-key")
    except ValueError:
        r = logging.LogRecord("t", logging.ERROR, __file__, 1, "boom", None, sys.exc_info())
    scrubber.filter(r)
    assert "fake-llm-key" not in (r.exc_text or "") and "***" in r.exc_text


def test_json_format_is_one_object_per_line() -> None:
    line = JSONFormatter().format(record("hello %s", "world"))
    assert "\n" not in line
    assert json.loads(line)["message"] == "hello world"


class Lines(logging.Handler):
    """The JSON lines a configured handler would write, parsed."""

    def __init__(self, secrets: list[str] | None = None) -> None:
        super().__init__()
        self.addFilter(ContextFilter())
        self.addFilter(SecretScrubber(secrets or []))
        self.setFormatter(JSONFormatter())
        self.lines: list[dict[str, object]] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(json.loads(self.format(record)))


@pytest.fixture
def lines() -> Iterator[Lines]:
    handler = Lines(["fake-llm-key"])
    logger = logging.getLogger("app")
    logger.addHandler(handler)
    level, logger.level = logger.level, logging.INFO
    yield handler
    logger.removeHandler(handler)
    logger.setLevel(level)


def test_a_json_line_carries_its_notification_group_and_stage(lines: Lines) -> None:
    with log_context(notification_id=7, group_key='{}:{alertname="APIDown"}'):
        with log_context(stage="deliver"):
            logging.getLogger("app.delivery").warning("slack failed", extra={"outcome": "retry"})
        logging.getLogger("app.worker").info("notification 7 processed")
    logging.getLogger("app.worker").info("outside")
    first, second, third = lines.lines
    assert {k: first[k] for k in ("notification_id", "group_key", "stage", "outcome")} == {
        "notification_id": 7,
        "group_key": '{}:{alertname="APIDown"}',
        "stage": "deliver",
        "outcome": "retry",
    }
    assert "stage" not in second and second["notification_id"] == 7, "the inner context ended"
    assert not set(third) & {"notification_id", "group_key", "stage", "outcome"}


async def test_tasks_started_inside_a_context_log_with_it(lines: Lines) -> None:
    async def work() -> None:
        logging.getLogger("app.llm").warning("slow")

    with log_context(notification_id=3, stage="diagnose"):
        task = asyncio.create_task(work())
    await task
    assert (lines.lines[0]["notification_id"], lines.lines[0]["stage"]) == (3, "diagnose")


def test_secrets_in_context_fields_are_scrubbed(lines: Lines) -> None:
    with log_context(group_key="token=fake-llm-key"):
        logging.getLogger("app").warning("x")
    assert lines.lines[0]["group_key"] == "token=***"


async def test_the_workers_lines_say_which_notification_and_how_it_ended(lines: Lines) -> None:
    from tests.test_worker import ScriptedStore, run_pool, stored, succeed  # noqa: PLC0415

    await run_pool(ScriptedStore(stored(4)), succeed)
    processed = [line for line in lines.lines if line["message"] == "notification 4 processed"]
    assert processed and processed[0]["notification_id"] == 4
    assert (processed[0]["group_key"], processed[0]["outcome"]) == ("g", "done")
