"""The service's own metrics, on a registry per app (so tests can build many apps).

With the pipeline in a process of its own (app/pipeline_process.py), each process counts its own
side: the webhook's process what it accepts and the store's backlog, the pipeline's process the
rest; `/metrics` shows the webhook's side and the pipeline's text, each family once.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Literal

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.metrics_core import Metric

Side = Literal["all", "webhook", "pipeline"]


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.webhooks = Counter(
            "alert_enricher_webhooks_total",
            "Webhook requests by outcome (accepted, duplicate, unauthorized, too_large, invalid, "
            "store_error).",
            ["outcome"],
            registry=r,
        )
        self.alerts_received = Counter(
            "alert_enricher_alerts_received_total",
            "Alerts in accepted notifications, by status.",
            ["status"],
            registry=r,
        )
        self.ack_seconds = Histogram(
            "alert_enricher_webhook_ack_seconds",
            "Time from request to answer for POST /alerts.",
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1),
            registry=r,
        )
        self.processed = Counter(
            "alert_enricher_notifications_processed_total",
            "Notifications taken through the pipeline, by outcome (done, retry, failed).",
            ["outcome"],
            registry=r,
        )
        self.processing_seconds = Histogram(
            "alert_enricher_processing_seconds",
            "Pipeline time per notification, context to last delivery.",
            buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 30, 60),
            registry=r,
        )
        self.backlog = Gauge(
            "alert_enricher_backlog",
            "Notifications accepted and not yet finished.",
            registry=r,
        )
        self.diagnoses = Counter(
            "alert_enricher_diagnoses_total",
            "Diagnoses by source (llm, rules).",
            ["source"],
            registry=r,
        )
        self.llm_seconds = Histogram(
            "alert_enricher_llm_seconds",
            "Time spent on one diagnosis by the LLM, retries included.",
            buckets=(0.25, 0.5, 1, 2, 4, 8, 15, 20, 30, 60),
            registry=r,
        )
        self.deliveries = Counter(
            "alert_enricher_deliveries_total",
            "Messages per channel by outcome (sent, failed, skipped).",
            ["channel", "outcome"],
            registry=r,
        )
        self.time_to_page = Histogram(
            "alert_enricher_time_to_page_seconds",
            "From acceptance to a new or escalating notification's first message on a channel.",
            ["severity"],
            buckets=(0.25, 0.5, 1, 2, 3, 4, 5, 7.5, 10, 15, 30, 60, 120),
            registry=r,
        )
        self.diagnosis_edits = Counter(
            "alert_enricher_diagnosis_edits_total",
            "Preliminary messages given their final diagnosis, per channel, by outcome (edited,"
            " failed, superseded: the incident resolved first).",
            ["channel", "outcome"],
            registry=r,
        )
        self.llm_dropped = Counter(
            "alert_enricher_llm_dropped_total",
            "Diagnoses not asked of the LLM, by reason (queue_expired: older than"
            " LLM_MAX_QUEUE_SECONDS).",
            ["reason"],
            registry=r,
        )
        self.llm_requests = Counter(
            "alert_enricher_llm_requests_total",
            "HTTP requests to the LLM API, by model and outcome (ok, rate_limited, server_error,"
            " timeout, unreachable, refused, http_error, bad_json, rejected_json_mode).",
            ["model", "outcome"],
            registry=r,
        )
        self.llm_tokens = Counter(
            "alert_enricher_llm_tokens_total",
            "Tokens the LLM's replies counted, by model and kind (prompt, completion); estimated"
            " from the text when a server leaves `usage` out.",
            ["model", "kind"],
            registry=r,
        )
        self.llm_cost = Counter(
            "alert_enricher_llm_cost_usd_total",
            "What those tokens cost at the price table's prices (0 for a model it does not know).",
            ["model"],
            registry=r,
        )
        self.fallbacks = Counter(
            "alert_enricher_fallbacks_total",
            "Diagnoses by the rules instead of the LLM, by reason (no_key, timeout, unreachable,"
            " rate_limited, server_error, refused, http_error, bad_json, incomplete, budget,"
            " queue_expired).",
            ["reason"],
            registry=r,
        )
        self.queue_oldest_age = Gauge(
            "alert_enricher_queue_oldest_age_seconds",
            "Age of the oldest notification accepted and not yet finished (0 with none).",
            registry=r,
        )
        self.pipeline_up = Gauge(
            "alert_enricher_pipeline_up",
            "1 when the workers answered this scrape (with PIPELINE_PROCESS, from the pipeline's"
            " process); 0 while a new pipeline process is starting.",
            registry=r,
        )
        self.prometheus_queries = Counter(
            "alert_enricher_prometheus_queries_total",
            "Prometheus API queries for metric context, by outcome (ok, empty, error).",
            ["outcome"],
            registry=r,
        )

    def webhook_families(self) -> frozenset[str]:
        """What the webhook's process counts: requests, alerts accepted, ack time and the store's
        backlog (read from the store at each scrape)."""
        own = (
            self.webhooks,
            self.alerts_received,
            self.ack_seconds,
            self.backlog,
            self.pipeline_up,
        )
        return frozenset(m.name for c in (*own, self.queue_oldest_age) for m in c.describe())

    def exposition(self, side: Side = "all") -> bytes:
        """The text exposition of every family (`all`), or of one process's side."""
        if side == "all":
            return generate_latest(self.registry)
        return generate_latest(_Families(self.registry, self.webhook_families(), side))


class _Families:
    """The families of one side, for generate_latest (it only calls collect)."""

    def __init__(self, registry: CollectorRegistry, webhook: frozenset[str], side: Side) -> None:
        self._registry, self._webhook, self._side = registry, webhook, side

    def collect(self) -> Iterator[Metric]:
        for family in self._registry.collect():
            if (family.name in self._webhook) == (self._side == "webhook"):
                yield family
