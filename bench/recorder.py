"""What reached the fake chats and when, per group marker: the fakes' record (bench/fakes.py).

Three kinds of arrival are kept, each the first of its kind per channel and group:
  first      the group's first top-level message (its page, in a storm);
  reply      its first thread reply;
  diagnosed  the first message or applied edit that shows the model's diagnosis (its source line
             reads "model <name>"): the page itself when it waited for the LLM, else the edit
             that replaced the rules' preliminary diagnosis.
Counts go with them: messages, replies, pages sent preliminary, edits applied and refused.
"""

from __future__ import annotations

import asyncio
import collections
import json
from dataclasses import dataclass, field
from typing import Any

from bench.payloads import marker_in

CHANNELS = ("slack", "telegram")
KINDS = ("first", "reply", "diagnosed")
# How app/models.py's DiagnosisSource.label shows in both channels' messages.
MODEL_SOURCE = "Diagnosis source: model "
PRELIMINARY = "rule-based, preliminary: AI diagnosis in progress"

Times = dict[str, dict[str, float]]  # channel -> group marker -> arrival (time.monotonic())


def _no_times() -> dict[str, Times]:
    return {kind: {channel: {} for channel in CHANNELS} for kind in KINDS}


@dataclass
class Recorder:
    """Arrival times by kind, channel and group marker, and counts of what arrived."""

    times: dict[str, Times] = field(default_factory=_no_times)
    counts: collections.Counter[str] = field(default_factory=collections.Counter)
    changed: asyncio.Condition = field(default_factory=asyncio.Condition)

    def clear(self) -> None:
        for by_channel in self.times.values():
            for markers in by_channel.values():
                markers.clear()
        self.counts.clear()

    async def record(self, channel: str, body: dict[str, Any], reply: bool, at: float) -> None:
        """One message as it arrived; the first of each kind per group keeps its time."""
        text = json.dumps(body, ensure_ascii=False)
        self.counts[f"{channel} {'replies' if reply else 'messages'}"] += 1
        if not reply and PRELIMINARY in text:
            self.counts[f"{channel} preliminary"] += 1
        marker = marker_in(text)
        if marker is None:
            return
        self.times["reply" if reply else "first"][channel].setdefault(marker, at)
        if MODEL_SOURCE in text:
            self.times["diagnosed"][channel].setdefault(marker, at)
        async with self.changed:
            self.changed.notify_all()

    async def record_edit(
        self,
        channel: str,
        body: dict[str, Any],
        target: dict[str, Any] | None,
        applied: bool,
        at: float,
    ) -> None:
        """One edit as it arrived; `target` is the message it edits as the fake held it before
        (its group marker, when the edit's own text has none)."""
        if not applied:
            self.counts[f"{channel} edits refused"] += 1
            return
        self.counts[f"{channel} edits"] += 1
        text = json.dumps(body, ensure_ascii=False)
        marker = marker_in(text) or marker_in(json.dumps(target or {}, ensure_ascii=False))
        if marker is None or MODEL_SOURCE not in text:
            return
        self.times["diagnosed"][channel].setdefault(marker, at)
        async with self.changed:
            self.changed.notify_all()

    def arrivals(self, markers: list[str], kind: str) -> Times:
        times = self.times[kind]
        return {ch: {m: times[ch][m] for m in markers if m in times[ch]} for ch in CHANNELS}

    def complete(self, markers: list[str], kind: str) -> bool:
        times = self.times[kind]
        return all(m in times[ch] for ch in CHANNELS for m in markers)

    async def wait(self, markers: list[str], kind: str, seconds: float) -> bool:
        """True once every marker has an arrival of this kind on every channel; False after
        `seconds`."""
        async with self.changed:
            try:
                async with asyncio.timeout(seconds):
                    await self.changed.wait_for(lambda: self.complete(markers, kind))
            except TimeoutError:
                return False
        return True
