import json
import logging
import sys

from app.logs import JSONFormatter, SecretScrubber


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
