"""What the webhook's routes serve with (`Services`), and the webhook's process when the pipeline
runs in a process of its own (`Front`, PIPELINE_PROCESS, the default): the store, the metrics and,
with Slack's buttons on, what a click needs. The chat channels' clients, the LLM's, Prometheus's,
the prompts and runbooks are the pipeline process's: not loading python-telegram-bot, the PromQL
parser and the rest here keeps a third of the memory off this process (slack-sdk is loaded for
Slack's buttons only: a click is answered in the message's thread). `open_services` starts one or
the other (app/runtime.py's Runtime when the pipeline runs here)."""

from __future__ import annotations

import logging
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

from app.config import Settings
from app.metrics import Metrics
from app.notifiers.channels import channel_names, shown
from app.pipeline_process import PipelineProcess, store_served
from app.silencing import open_silencer
from app.slack_clicks import SlackActions
from app.store import Store, open_store

if TYPE_CHECKING:
    from fastapi import FastAPI

log = logging.getLogger(__name__)


class ModelShown(Protocol):
    """The LLM as /health shows it."""

    @property
    def enabled(self) -> bool: ...

    @property
    def model(self) -> str: ...


class Services(Protocol):
    """What the routes use, wherever the pipeline runs."""

    settings: Settings
    store: Store
    metrics: Metrics
    slack_actions: SlackActions | None

    @property
    def llm(self) -> ModelShown: ...

    @property
    def pipeline_process(self) -> PipelineProcess | None:
        """The pipeline's process; None when the pipeline runs in this one."""

    def channels(self) -> dict[str, bool]: ...

    def wake(self) -> None:
        """A notification was accepted: one worker, wherever they run, looks now."""

    async def pipeline_status(self) -> tuple[int, int, bytes | None]:
        """Workers alive, WORKERS, and the pipeline's metrics: None when its process does not
        answer (it died and a new one is starting)."""

    async def close(self) -> None: ...


@dataclass(frozen=True)
class ModelChoice:
    enabled: bool
    model: str


@dataclass(kw_only=True)
class Front:
    """The webhook's process with the pipeline apart: accepts into the store, wakes the pipeline's
    process, reports on both, and acts on Slack's button clicks."""

    settings: Settings
    store: Store
    metrics: Metrics
    llm: ModelChoice
    slack_actions: SlackActions | None = None
    pipeline_process: PipelineProcess | None = None
    # What `close` closes, the store last; every one of them, whichever fails.
    _closing: AsyncExitStack = field(default_factory=AsyncExitStack)

    def channels(self) -> dict[str, bool]:
        return shown(channel_names(self.settings))

    async def start(self) -> None:
        """The pipeline's process, served this process's store on SQLite (one writer)."""
        served = self.store if store_served(self.settings) else None
        self.pipeline_process = PipelineProcess(self.settings, store=served)
        await self.pipeline_process.start()

    def wake(self) -> None:
        if self.pipeline_process is not None:
            self.pipeline_process.wake()

    async def pipeline_status(self) -> tuple[int, int, bytes | None]:
        status = None if self.pipeline_process is None else await self.pipeline_process.status()
        if status is None:
            return 0, self.settings.workers, None
        return status.alive, status.size, status.metrics

    async def close(self) -> None:
        """The pipeline's process first (on SQLite its last store calls run on this store), then
        the clients and the store."""
        try:
            if self.pipeline_process is not None:
                await self.pipeline_process.stop()
        finally:
            await self._closing.aclose()


async def build_front(settings: Settings) -> Front:
    """The store opened, and with Slack's buttons on, what a click needs (the Alertmanager's
    client, the Slack bot's); the pipeline's process is started by `Front.start`."""
    store = await open_store(settings.store_url, settings.store_pool_size)
    front = Front(
        settings=settings,
        store=store,
        metrics=Metrics(),
        llm=ModelChoice(enabled=settings.llm_enabled, model=settings.llm_model),
    )
    front._closing.push_async_callback(store.close)
    try:
        secret, alertmanager_url = settings.slack_signing_secret, settings.alertmanager_url
        if settings.slack_buttons and secret is not None and alertmanager_url is not None:
            from app.notifiers.slack import slack_bot  # noqa: PLC0415 - slack-sdk only for buttons

            slack = slack_bot(settings)
            if slack is not None:
                front._closing.push_async_callback(slack.close)
                silencer, client = open_silencer(alertmanager_url, store)
                front._closing.push_async_callback(client.aclose)
                front.slack_actions = SlackActions(secret.get_secret_value(), silencer, slack)
    except BaseException:
        await front._closing.aclose()
        raise
    return front


async def open_services(settings: Settings) -> Services:
    """The webhook's process's services, their pipeline running: in its own process
    (`Front`), or with PIPELINE_PROCESS=false in this one (app/runtime.py's Runtime)."""
    if settings.pipeline_apart:
        front = await build_front(settings)
        try:
            await front.start()
        except BaseException:
            await front.close()
            raise
        return front
    from app.runtime import build_runtime  # noqa: PLC0415 - the whole pipeline, in this process

    runtime = await build_runtime(settings)
    try:
        runtime.start()
    except BaseException:
        await runtime.close()
        raise
    return runtime


def services_of(app: FastAPI) -> Services:
    services: Services = app.state.services
    return services
