"""Every long-lived part of the pipeline, built from Settings in one place and closed in reverse.

The pipeline's process (and `serve` with PIPELINE_PROCESS=false), `replay` and `check` all build
the same Runtime, so what the CLI exercises is exactly what the server runs. The webhook's process
with the pipeline apart builds only its part (app/services.py's Front).
"""

from __future__ import annotations

import logging
import ssl
from dataclasses import dataclass, field

import httpx

from app.chart_process import stop_renderer
from app.config import Settings
from app.cost import Ledger, PriceTable
from app.delivery import Dispatcher
from app.diagnosis_lane import DiagnosisLane
from app.enrich import Enricher
from app.llm import LLMClient
from app.metrics import Metrics
from app.notifiers.build import build_notifiers
from app.notifiers.channels import shown
from app.notifiers.slack import SlackBotNotifier
from app.pipeline import Pipeline
from app.pipeline_process import PipelineProcess
from app.prometheus import ContextBuilder, PrometheusClient
from app.prompts import Prompts
from app.routing import parse_matchers
from app.runbooks import Runbooks
from app.silencing import Silencer, open_silencer
from app.slack_clicks import SlackActions
from app.store import Store, open_store
from app.store.base import ignore_answer
from app.telegram_poller import POLL_SECONDS, RETRY_SECONDS, TelegramPoller
from app.worker import WorkerPool

log = logging.getLogger(__name__)

# Queries to Prometheus in flight at once. httpx looks at every pooled connection on every request,
# so a pool as large as WORKERS costs CPU on each query for no gain: a query takes milliseconds.
PROMETHEUS_CONNECTIONS = 8


@dataclass
class Runtime:
    settings: Settings
    store: Store
    metrics: Metrics
    prometheus: PrometheusClient
    llm: LLMClient
    enricher: Enricher
    dispatcher: Dispatcher
    workers: WorkerPool
    pipeline: Pipeline
    lane: DiagnosisLane | None = None
    # With ALERTMANAGER_URL: silences from chat buttons; with Slack buttons on, their endpoint.
    silencer: Silencer | None = None
    slack_actions: SlackActions | None = None
    telegram_poller: TelegramPoller | None = None
    _clients: list[httpx.AsyncClient] = field(default_factory=list)

    def channels(self) -> dict[str, bool]:
        return shown(n.name for n in self.dispatcher.notifiers)

    def wake(self) -> None:
        """A notification was accepted: one worker looks now."""
        self.workers.wake()

    @property
    def pipeline_process(self) -> PipelineProcess | None:
        """None: the pipeline runs in this process."""
        return None

    async def pipeline_status(self) -> tuple[int, int, bytes | None]:
        """Workers alive, WORKERS, and the pipeline's metrics."""
        return self.workers.alive, self.workers.size, self.metrics.exposition("pipeline")

    def start(self) -> None:
        """The page workers and, with a model configured, the LLM lane, in this process."""
        self.workers.start()
        if self.lane is not None:
            self.lane.start()
        if self.telegram_poller is not None:
            self.telegram_poller.start()

    async def close(self) -> None:
        if self.telegram_poller is not None:
            await self.telegram_poller.stop()
        await self.workers.stop()
        if self.lane is not None:
            await self.lane.stop()
        for notifier in self.dispatcher.notifiers:
            close = getattr(notifier, "close", None)
            if close is not None:
                await close()
        for client in self._clients:
            await client.aclose()
        try:
            await self.store.close()
        finally:
            await stop_renderer()


def prometheus_http_client(settings: Settings) -> httpx.AsyncClient:
    """The HTTP client for PROMETHEUS_URL: basic auth, tenant headers and TLS as configured."""
    auth = None
    if settings.prometheus_username is not None:
        password = settings.prometheus_password
        auth = httpx.BasicAuth(
            settings.prometheus_username, password.get_secret_value() if password else ""
        )
    verify: ssl.SSLContext | bool = settings.prometheus_tls_verify
    if settings.prometheus_ca_file is not None and settings.prometheus_tls_verify:
        verify = ssl.create_default_context(cafile=str(settings.prometheus_ca_file))
    elif not settings.prometheus_tls_verify:
        log.warning("PROMETHEUS_TLS_VERIFY=false: Prometheus's certificate is not checked")
    return httpx.AsyncClient(
        timeout=settings.prometheus_timeout_seconds,
        auth=auth,
        headers=settings.prometheus_header_map,
        verify=verify,
        limits=httpx.Limits(max_connections=PROMETHEUS_CONNECTIONS),
    )


async def build_runtime(settings: Settings, store: Store | None = None) -> Runtime:
    """Open the store (or use `store`), build clients, notifiers, pipeline and (not yet started)
    workers."""
    prompts = Prompts.load(settings.prompts_dir)  # a broken template fails here, at start
    runbooks = Runbooks.load(settings.runbooks_dir)  # so does a RUNBOOKS_DIR that is not one
    metrics = Metrics()
    if store is None:
        store = await open_store(settings.store_url, settings.store_pool_size)
    prometheus_http = prometheus_http_client(settings)
    llm_http = httpx.AsyncClient(
        timeout=settings.llm_timeout_seconds,
        limits=httpx.Limits(max_connections=settings.llm_concurrency * 2),
    )
    token = settings.prometheus_token
    prometheus = PrometheusClient(
        prometheus_http, settings.prometheus_url, token.get_secret_value() if token else None
    )
    contexts = ContextBuilder(
        prometheus,
        window_minutes=settings.context_window_minutes,
        graph_base=settings.graph_base_url,
        max_alerts=settings.max_context_alerts,
        timeout=settings.prometheus_timeout_seconds,
        metrics=metrics,
    )
    key = settings.llm_api_key
    llm = LLMClient(
        llm_http,
        base_url=settings.llm_base_url,
        api_key=key.get_secret_value() if key else None,
        model=settings.llm_model,
        timeout=settings.llm_timeout_seconds,
        max_attempts=settings.llm_max_attempts,
        concurrency=settings.llm_concurrency,
        max_tokens=settings.llm_max_tokens,
        metrics=metrics,
    )
    ledger = Ledger(
        store,
        PriceTable(settings.price_overrides),
        metrics,
        daily_budget_usd=settings.llm_daily_budget_usd,
    )
    enricher = Enricher(
        contexts,
        llm,
        prompts,
        metrics,
        language=settings.analysis_language,
        window_minutes=settings.context_window_minutes,
        prompt_budget=settings.llm_prompt_budget_chars,
        ledger=ledger,
        alertmanager_url=settings.alertmanager_url,
        runbooks=runbooks,
        history=store,
    )
    routes = {
        "slack": parse_matchers(settings.slack_matchers),
        "telegram": parse_matchers(settings.telegram_matchers),
    }
    dispatcher = Dispatcher(build_notifiers(settings), store, metrics, routes)
    lane = None
    if llm.enabled:
        lane = DiagnosisLane(
            store,
            enricher,
            metrics,
            concurrency=settings.llm_concurrency,
            max_queue_seconds=settings.llm_max_queue_seconds,
            # The model's whole deadline and then some: a live lane worker never loses its claim.
            lease_seconds=settings.llm_timeout_seconds + settings.lease_seconds,
        )
    pipeline = Pipeline(
        store,
        enricher,
        dispatcher,
        metrics,
        lane=lane,
        page_within_seconds=settings.page_within_seconds,
    )
    workers = WorkerPool(
        store,
        pipeline.run,
        metrics,
        count=settings.workers,
        lease_seconds=settings.lease_seconds,
        max_attempts=settings.max_processing_attempts,
        retention_seconds=settings.retention_hours * 3600,
        also_wake=lane.wake if lane else lambda: None,
        answered=lane.answered if lane else ignore_answer,
    )
    if lane is not None:
        lane.on_edit_queued = workers.wake
    clients = [prometheus_http, llm_http]
    silencer, slack_actions, telegram_poller = None, None, None
    if settings.alertmanager_url:
        silencer, alertmanager_http = open_silencer(settings.alertmanager_url, store)
        clients.append(alertmanager_http)
        slack = next((n for n in dispatcher.notifiers if isinstance(n, SlackBotNotifier)), None)
        secret = settings.slack_signing_secret
        if settings.slack_buttons and slack is not None and secret is not None:
            slack_actions = SlackActions(secret.get_secret_value(), silencer, slack)
        if settings.telegram_buttons and settings.telegram_bot_token and settings.telegram_chat_id:
            telegram_poller = TelegramPoller(
                settings.telegram_bot_token.get_secret_value(),
                settings.telegram_api_url,
                store,
                silencer,
                chat_id=settings.telegram_chat_id,
                allowed=settings.telegram_allowed_ids,
                # LEASE_SECONDS, as for claims: how long a dead replica keeps the role
                lease_seconds=settings.lease_seconds,
                poll_seconds=max(1, min(POLL_SECONDS, int(settings.lease_seconds / 3))),
                retry_seconds=min(RETRY_SECONDS, settings.lease_seconds / 3),
            )
    return Runtime(
        settings=settings,
        store=store,
        metrics=metrics,
        prometheus=prometheus,
        llm=llm,
        enricher=enricher,
        dispatcher=dispatcher,
        workers=workers,
        pipeline=pipeline,
        lane=lane,
        silencer=silencer,
        slack_actions=slack_actions,
        telegram_poller=telegram_poller,
        _clients=clients,
    )
