"""`alert-enricher list | show ID | retry ID`: what the store holds, for the people who run it.

They open the configured store (STORE_URL) beside the running service, which may keep running:
SQLite allows one more process on its file, PostgreSQL any number.
"""

from __future__ import annotations

import json
import re
import sys
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import TextIO

from pydantic import ValidationError

from app.config import Settings
from app.enrich import title
from app.models import AlertmanagerPayload, EnrichedNotification
from app.prompt_data import PromptBudget, prompt_data
from app.prompts import Prompts
from app.store import NotificationRecord, Store, StoreError, open_store

DURATION = re.compile(r"^(\d+(?:\.\d+)?)([smhd])$")
UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(text: str) -> float:
    """`90s`, `30m`, `1h`, `7d` in seconds."""
    match = DURATION.match(text.strip())
    if match is None:
        raise ValueError(f"{text!r} is not a duration such as 30m, 1h or 7d")
    return float(match[1]) * UNIT_SECONDS[match[2]]


def when(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%d %H:%M:%S")


def describe(record: NotificationRecord) -> str:
    """What the notification is about, in a few words; the payload is untrusted, so only the
    parsed title, never raw text."""
    if record.kind == "edit":
        return "diagnosis edit of an earlier page"
    try:
        payload = AlertmanagerPayload.model_validate_json(record.payload)
    except ValidationError:
        return "(payload not readable)"
    return f"{title(payload)} ({payload.status})"


def one_line(text: str | None, width: int = 60) -> str:
    flat = " ".join((text or "").split())
    return flat if len(flat) <= width else flat[: width - 1] + "…"


async def list_notifications(
    store: Store, since: float | None, failed: bool, limit: int, out: TextIO
) -> int:
    cutoff = time.time() - since if since is not None else None
    records = await store.notifications(cutoff, failed, limit)
    if not records:
        print("no notifications" + (" failed" if failed else "") + " in that time", file=out)
        return 0
    print(f"{'ID':>7}  {'RECEIVED (UTC)':<19}  {'STATE':<10} {'TRIES':>5}  WHAT", file=out)
    for r in records:
        what = describe(r)
        if r.last_error:
            what += f" | {one_line(r.last_error)}"
        print(
            f"{r.id:>7}  {when(r.received_at):<19}  {r.state:<10} {r.attempts:>5}  {what}", file=out
        )
    return 0


async def show(store: Store, settings: Settings, notification_id: int, out: TextIO) -> int:
    record = await store.notification(notification_id)
    if record is None:
        print(f"no notification {notification_id}", file=sys.stderr)
        return 1
    print(f"notification {record.id} ({record.kind}): {describe(record)}", file=out)
    print(f"  state {record.state}, {record.attempts} attempt(s)", file=out)
    print(
        f"  received {when(record.received_at)} UTC, finished {when(record.finished_at)}", file=out
    )
    if record.last_error:
        print(f"  last error: {record.last_error}", file=out)
    print(f"  group {record.group_id}", file=out)
    print("\npayload:", file=out)
    try:
        print(json.dumps(json.loads(record.payload), indent=2, ensure_ascii=False), file=out)
    except ValueError:
        print(record.payload, file=out)
    if record.enrichment is None:
        print("\nnot enriched yet: no context, prompt or diagnosis stored", file=out)
    else:
        enriched = EnrichedNotification.model_validate_json(record.enrichment)
        _enrichment(record, enriched, settings, out)
    deliveries = await store.deliveries(record.id)
    print("\ndeliveries:", file=out)
    if not deliveries:
        print("  none recorded", file=out)
    for channel, delivery in sorted(deliveries.items()):
        detail = delivery.error or delivery.ref or ""
        print(f"  {channel:<10}{delivery.status:<9}{detail}", file=out)
        for step, ref in sorted(delivery.steps.items()):
            print(f"    step {step}: {ref or ''}", file=out)
    return 0


def _enrichment(
    record: NotificationRecord, enriched: EnrichedNotification, settings: Settings, out: TextIO
) -> None:
    print("\ncontext:", file=out)
    for alert in enriched.firing:
        context = alert.context
        if context is None:
            print(f"  {alert.name}: none", file=out)
        elif context.unavailable:
            print(f"  {alert.name}: unavailable: {context.unavailable}", file=out)
        else:
            print(
                f"  {alert.name}: {context.expr}  now {context.current}  {context.sparkline}",
                file=out,
            )
    if record.kind == "alert" and enriched.firing:
        payload = AlertmanagerPayload.model_validate_json(record.payload)
        contexts = [a.context for a in enriched.firing if a.context is not None]
        system, user = Prompts.load(settings.prompts_dir).render(
            data=prompt_data(payload, contexts, PromptBudget(settings.llm_prompt_budget_chars)),
            status=payload.status,
            firing_count=len(payload.firing),
            resolved_count=len(payload.resolved),
            window_minutes=settings.context_window_minutes,
            language=settings.analysis_language,
        )
        print("\nprompt (as the LLM is asked with today's templates):", file=out)
        print(f"--- system ---\n{system}\n--- user ---\n{user}", file=out)
    print(f"\ndiagnosis ({enriched.source.label}):", file=out)
    if enriched.diagnosis is None:
        print("  none (a follow-up: no diagnosis)", file=out)
    else:
        print(enriched.diagnosis.model_dump_json(indent=2), file=out)


async def retry(store: Store, notification_id: int, out: TextIO) -> int:
    if await store.requeue(notification_id):
        print(
            f"notification {notification_id} requeued: the service sends it within a few seconds,"
            " to the channels that did not get it",
            file=out,
        )
        return 0
    record = await store.notification(notification_id)
    reason = "there is none" if record is None else f"it is {record.state}, not failed"
    print(f"notification {notification_id} not requeued: {reason}", file=sys.stderr)
    return 1


async def with_store(settings: Settings, use: Callable[[Store], Awaitable[int]]) -> int:
    """`use` the configured store; a store that fails is one line and exit code 1."""
    try:
        store = await open_store(settings.store_url, 2)
    except StoreError as exc:
        print(f"cannot open the store: {exc}", file=sys.stderr)
        return 1
    try:
        return await use(store)
    except StoreError as exc:
        print(f"store error: {exc}", file=sys.stderr)
        return 1
    finally:
        await store.close()
