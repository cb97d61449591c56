"""`alert-enricher replay FILE.json [--send] [--chart OUT.png] [--as CHANNEL]`: one saved payload
through the whole pipeline in this process, printed as a channel would show it or delivered."""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

from pydantic import ValidationError

from app.chart_process import render_async
from app.charts import ChartError
from app.config import Settings
from app.models import AlertmanagerPayload, EnrichedNotification
from app.notifiers import slack_blocks, telegram
from app.notifiers.chart_steps import RENDER_SECONDS, charts_for
from app.notifiers.console import render
from app.runtime import build_runtime


def load_payload(path: Path) -> AlertmanagerPayload | None:
    try:
        return AlertmanagerPayload.model_validate_json(path.read_bytes())
    except OSError as exc:
        print(f"cannot read {path}: {exc.strerror}", file=sys.stderr)
    except ValidationError as exc:
        print(f"{path} is not an Alertmanager payload: {exc}", file=sys.stderr)
    return None


def preview(notification: EnrichedNotification, channel: str) -> str:
    """What a channel would be sent: console text, Slack's JSON arguments, or Telegram's HTML."""
    if channel == "slack":
        return json.dumps(slack_blocks.message(notification), ensure_ascii=False, indent=2) + "\n"
    if channel == "telegram":
        parts = telegram.pack(telegram.render(notification))
        return "".join(f"--- part {i}/{len(parts)} ---\n{p}\n" for i, p in enumerate(parts, 1))
    return render(notification)


async def replay(
    settings: Settings,
    payload: AlertmanagerPayload,
    send: bool,
    channel: str = "console",
    chart: Path | None = None,
) -> int:
    """Run one saved payload through the pipeline in-process; print it, or deliver it with --send;
    with `chart`, also write the message's chart(s) there as PNG.

    Replay keeps nothing: unless `--store` names one, its store is a temporary file (it never
    creates ./data/ in whatever directory it runs from).
    """
    if "store_url" not in settings.model_fields_set:
        with tempfile.TemporaryDirectory(prefix="alert-enricher-replay-") as scratch:
            scratch_url = f"sqlite:///{Path(scratch) / 'replay.db'}"
            throwaway = settings.model_copy(update={"store_url": scratch_url})
            return await replay(throwaway, payload, send, channel, chart)
    runtime = await build_runtime(settings)
    try:
        notification = await runtime.enricher.enrich(payload)
        if chart is not None and not await write_charts(notification, chart):
            return 1
        if not send:
            sys.stdout.write(preview(notification, channel))
            return 0
        report = await runtime.dispatcher.deliver(notification)
        for name in report.sent:
            print(f"sent to {name}")
        for name, reason in {**report.retryable, **report.permanent}.items():
            print(f"failed on {name}: {reason}", file=sys.stderr)
        return 0 if not (report.retryable or report.permanent) else 1
    finally:
        await runtime.close()


async def write_charts(notification: EnrichedNotification, path: Path) -> bool:
    """The message's charts as PNG: the first at `path`, the next at `<stem>-2.png`; False (and
    why, on stderr) when there is none to write."""
    charts = charts_for(notification)
    if not charts:
        reasons = {a.context.unavailable for a in notification.firing if a.context}
        why = "; ".join(sorted(r for r in reasons if r)) or "no firing alert with metric context"
        print(f"no chart: {why}", file=sys.stderr)
        return False
    for index, data in enumerate(charts, 1):
        target = path if index == 1 else path.with_name(f"{path.stem}-{index}{path.suffix}")
        try:
            png = await render_async(data, RENDER_SECONDS)
            target.write_bytes(png)
        except (ChartError, OSError) as exc:
            print(f"no chart: {exc}", file=sys.stderr)
            return False
        print(f"chart written to {target} ({len(png):,} bytes): {data.title}", file=sys.stderr)
    return True
