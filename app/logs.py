"""Logging set-up: text or one JSON object per line, with configured secrets scrubbed from every line."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import UTC, datetime

NOISY = ("httpx", "httpcore", "telegram", "slack_sdk", "aiohttp.access", "hpack")
# What a JSON line carries beside its message, when known: from log_context, or a call's `extra`.
FIELDS = ("notification_id", "group_key", "stage", "outcome", "channel")

_context: ContextVar[Mapping[str, object] | None] = ContextVar("log_context", default=None)


@contextmanager
def log_context(**fields: object) -> Iterator[None]:
    """Fields (FIELDS) that every log line written inside, by this task and the tasks it starts,
    carries in the JSON format: which notification, which group, which stage."""
    token = _context.set({**(_context.get() or {}), **fields})
    try:
        yield
    finally:
        _context.reset(token)


class ContextFilter(logging.Filter):
    """Puts log_context's fields on the record (a call's own `extra` wins)."""

    def filter(self, record: logging.LogRecord) -> bool:
        for name, value in (_context.get() or {}).items():
            if not hasattr(record, name):
                setattr(record, name, value)
        return True


class Throttled:
    """Logs a trouble that every poll of every worker meets (a store that is down) once per
    `every` seconds, not once per worker per poll."""

    def __init__(self, logger: logging.Logger, every: float) -> None:
        self._logger = logger
        self._every = every
        self._last = -every

    def error(self, message: str, *args: object) -> None:
        now = time.monotonic()
        if now - self._last >= self._every:
            self._last = now
            self._logger.error(message, *args)


class SecretScrubber(logging.Filter):
    """Replaces every configured secret with *** in the final message, whatever logged it."""

    def __init__(self, secrets: list[str]) -> None:
        super().__init__()
        self._secrets = sorted((s for s in secrets if len(s) >= 4), key=len, reverse=True)

    def scrub(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, "***")
        return text

    def filter(self, record: logging.LogRecord) -> bool:
        if self._secrets:
            message = self.scrub(record.getMessage())
            if record.exc_info:
                record.exc_text = self.scrub(logging.Formatter().formatException(record.exc_info))
                record.exc_info = None
            record.msg, record.args = message, None
            for name in FIELDS:
                value = getattr(record, name, None)
                if isinstance(value, str):
                    setattr(record, name, self.scrub(value))
        return True


class JSONFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for name in FIELDS:
            value = getattr(record, name, None)
            if value is not None:
                entry[name] = value
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        elif record.exc_text:
            entry["exception"] = record.exc_text
        return json.dumps(entry, ensure_ascii=False)


def configure_logging(level: str, fmt: str, secrets: list[str]) -> None:
    handler = logging.StreamHandler()
    handler.addFilter(ContextFilter())
    handler.addFilter(SecretScrubber(secrets))
    if fmt == "json":
        handler.setFormatter(JSONFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for name in NOISY:
        # httpx logs full request URLs at INFO, and Telegram's URL contains the bot token.
        logging.getLogger(name).setLevel(max(logging.WARNING, root.level))
    # The pool warns at every failed reconnection; the store's own errors say it once, with why.
    logging.getLogger("psycopg.pool").setLevel(max(logging.ERROR, root.level))
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logging.getLogger(name).handlers[:] = []
        logging.getLogger(name).propagate = True
