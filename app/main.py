"""create_app(settings) and the lifespan that opens the services and starts the pipeline."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from app import slack_actions
from app.config import Settings
from app.routes import credentials_configured, router
from app.services import open_services
from app.store import shown_url

log = logging.getLogger(__name__)


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        services = await open_services(settings)
        app.state.services = services
        channels = [name for name, on in services.channels().items() if on]
        log.info(
            "alert-enricher ready: store %s, LLM %s, channels %s",
            shown_url(settings.store_url),
            f"{settings.llm_model} at {settings.llm_base_url}"
            if services.llm.enabled
            else "off (rule-based diagnosis)",
            ", ".join(channels),
        )
        if settings.alertmanager_url is None:
            log.warning(
                "ALERTMANAGER_URL is not set: silence links point at the externalURL each "
                "Alertmanager sends (start it with --web.external-url), and there are no silence "
                "buttons"
            )
        if not credentials_configured(settings):
            if settings.allow_unauthenticated:
                log.warning(
                    "POST /alerts accepts anyone who can reach %s:%s (ALLOW_UNAUTHENTICATED=true, "
                    "no WEBHOOK_TOKEN): anyone can page your chats and spend LLM credit",
                    settings.host,
                    settings.port,
                )
            else:
                log.warning(
                    "protected mode: no WEBHOOK_TOKEN (or basic auth) set, so POST /alerts answers "
                    "401 to every client but loopback; set WEBHOOK_TOKEN for Alertmanager elsewhere"
                )
        try:
            yield
        finally:
            await services.close()

    app = FastAPI(
        title="alert-enricher",
        summary="Alertmanager webhook receiver that diagnoses alerts and posts them to chat.",
        version="0.1.0",
        lifespan=lifespan,
    )
    app.include_router(router)
    app.include_router(slack_actions.router)
    return app
