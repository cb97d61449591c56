"""The team's own runbooks (`RUNBOOKS_DIR`): Markdown files matched to alerts, read once at start.

A runbook is `<alertname>.md`, or any `.md` file whose YAML front matter names the alerts it covers
and, optionally, labels an alert must carry for it to apply:

    ---
    alertname: [APIDown, APIErrorRateHigh]
    labels: {exchange: binance}
    ---
    # Binance API down
    ## First steps
    1. Check https://www.binance.com/en/support/announcement ...

The most specific match wins: more matching labels first, then a file naming the alert over one
named after it, then the file name. Its first steps (the first list under a heading that says steps,
mitigation, actions or triage; else the first list) lead the rule-based action items; its text, first
steps first, goes into the LLM's prompt within a budget. `runbook_url` annotations are never fetched:
they stay links. Files over MAX_FILE_BYTES, past MAX_FILES, unreadable or with broken front matter are
skipped with a warning, so one bad file cannot stop the service.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import yaml

log = logging.getLogger(__name__)

MAX_FILE_BYTES = 256 * 1024
MAX_FILES = 1000
MAX_STEPS = 5
MAX_STEP_CHARS = 300

_FRONT_MATTER = re.compile(r"\A---[ \t]*\r?\n(.*?)\r?\n---[ \t]*(?:\r?\n|\Z)", re.DOTALL)
_HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")
_ITEM = re.compile(r"^\s{0,3}(?:[-*+]|\d{1,3}[.)])\s+(.*\S)\s*$")
_STEPS_HEADING = re.compile(r"step|mitigat|action|triage|first|immediate|what to do", re.I)


class RunbookError(Exception):
    """RUNBOOKS_DIR is not a readable directory."""


@dataclass(frozen=True)
class Runbook:
    name: str  # the file name, which the message shows
    title: str
    alertnames: frozenset[str]
    labels: Mapping[str, str]
    text: str  # without front matter
    steps: tuple[str, ...]
    by_front_matter: bool = False

    def matches(self, alertname: str, labels: Mapping[str, str]) -> bool:
        return alertname in self.alertnames and all(
            labels.get(k) == v for k, v in self.labels.items()
        )

    def excerpt(self, chars: int) -> str:
        """The text for a prompt: its first steps, then the rest, cut at `chars`."""
        if chars <= 0:
            return ""
        steps = "".join(f"{i}. {s}\n" for i, s in enumerate(self.steps, 1))
        text = f"First steps:\n{steps}\n{self.text}" if steps else self.text
        return text if len(text) <= chars else text[: max(0, chars - 1)].rstrip() + "…"


def _front_matter(text: str) -> tuple[dict[str, object] | None, str]:
    match = _FRONT_MATTER.match(text)
    if match is None:
        return None, text
    meta = yaml.safe_load(match.group(1))
    if meta is not None and not isinstance(meta, dict):
        raise ValueError("front matter is not a mapping")
    return meta or {}, text[match.end() :]


def _names(value: object) -> frozenset[str]:
    if isinstance(value, str):
        return frozenset({value})
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return frozenset(value)
    raise ValueError("alertname must be a name or a list of names")


def _labels(value: object) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ValueError("labels must be a mapping of label to value")
    return {str(k): str(v) for k, v in value.items()}


def first_steps(text: str) -> tuple[str, ...]:
    """The first list under a steps-like heading, else the document's first list."""
    lists: list[tuple[bool, list[str]]] = []  # (under a steps heading, items)
    steps_heading = False
    current: list[str] | None = None
    in_code = False
    for line in text.splitlines():
        if line.lstrip().startswith("```"):
            in_code = not in_code
            current = None
            continue
        if in_code:
            continue
        if heading := _HEADING.match(line):
            steps_heading = bool(_STEPS_HEADING.search(heading.group(2)))
            current = None
            continue
        if item := _ITEM.match(line):
            if current is None:
                current = []
                lists.append((steps_heading, current))
            current.append(item.group(1))
        elif line.strip() and current is not None and line.startswith((" ", "\t")):
            current[-1] += " " + line.strip()  # a wrapped item
        elif line.strip():
            current = None
    chosen = next((items for under, items in lists if under), lists[0][1] if lists else [])
    return tuple(_short(step) for step in chosen[:MAX_STEPS])


def _short(step: str) -> str:
    return step if len(step) <= MAX_STEP_CHARS else step[: MAX_STEP_CHARS - 1].rstrip() + "…"


def _title(text: str, fallback: str) -> str:
    for line in text.splitlines():
        if heading := _HEADING.match(line):
            return heading.group(2)[:200] or fallback
    return fallback


def parse(name: str, text: str) -> Runbook:
    """One runbook from its file name and content; ValueError for broken front matter."""
    try:
        meta, body = _front_matter(text)
    except yaml.YAMLError as exc:
        raise ValueError(f"front matter is not YAML: {exc}") from exc
    stem = name.rsplit(".", 1)[0]
    if meta is not None and "alertname" in meta:
        names, by_front_matter = _names(meta["alertname"]), True
    else:
        names, by_front_matter = frozenset({stem}), False
    labels = _labels(meta.get("labels") if meta else None)
    body = body.strip()
    return Runbook(
        name=name,
        title=_title(body, stem),
        alertnames=names,
        labels=labels,
        text=body,
        steps=first_steps(body),
        by_front_matter=by_front_matter,
    )


@dataclass(frozen=True)
class Runbooks:
    books: tuple[Runbook, ...] = field(default_factory=tuple)

    @classmethod
    def load(cls, directory: Path | None) -> Runbooks:
        """Every `*.md` under `directory` (recursively, in name order); none for None."""
        if directory is None:
            return cls()
        if not directory.is_dir():
            raise RunbookError(f"RUNBOOKS_DIR {directory} is not a directory")
        books = []
        for path in sorted(directory.rglob("*.md"))[:MAX_FILES]:
            name = str(path.relative_to(directory))
            try:
                if path.stat().st_size > MAX_FILE_BYTES:
                    raise ValueError(f"larger than {MAX_FILE_BYTES // 1024} KiB")
                books.append(parse(name, path.read_text(encoding="utf-8", errors="replace")))
            except (OSError, ValueError) as exc:
                log.warning("runbook %s skipped: %s", name, exc)
        return cls(tuple(books))

    def __len__(self) -> int:
        return len(self.books)

    def find(self, alertname: str, labels: Mapping[str, str]) -> Runbook | None:
        matching = [b for b in self.books if b.matches(alertname, labels)]
        if not matching:
            return None
        return min(matching, key=lambda b: (-len(b.labels), not b.by_front_matter, b.name))
