"""Settings: the only module that reads the environment (and `.env`)."""

from __future__ import annotations

import json
import re
import ssl
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from pydantic import AliasChoices, Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from app.cost import Price, parse_prices
from app.routing import parse_matchers
from app.store.urls import backend_name, check_store_url, sqlite_path, url_secrets

_HEADER_NAME = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")


def parse_headers(text: str) -> dict[str, str]:
    """`Name=value,Other=value` or a JSON object: extra headers for every Prometheus request."""
    text = text.strip()
    if not text:
        return {}
    if text.startswith("{"):
        try:
            loaded = json.loads(text)
        except ValueError as exc:
            raise ValueError(f"not a JSON object: {exc}") from exc
        if not isinstance(loaded, dict) or not all(isinstance(v, str) for v in loaded.values()):
            raise ValueError("a JSON object of header names to string values is expected")
        pairs = [(str(k), v) for k, v in loaded.items()]
    else:
        pairs = []
        for item in filter(str.strip, text.split(",")):
            name, sep, value = item.partition("=")
            if not sep:
                raise ValueError(f"{name.strip()!r} has no value (use Name=value,Other=value)")
            pairs.append((name.strip(), value.strip()))
    for name, value in pairs:
        if not _HEADER_NAME.match(name):
            raise ValueError(f"{name!r} is not a valid header name")
        if any(ch in value for ch in "\r\n\0"):
            raise ValueError(f"the value of {name} contains a line break")
    return dict(pairs)


LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


def check_http_url(value: str) -> str:
    """An http(s) URL with a host, or ValueError saying what is wrong with it."""
    try:
        parts = urlsplit(value.strip())
    except ValueError as exc:
        raise ValueError(f"not a URL: {exc}") from exc
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError("must be an http:// or https:// URL with a host")
    return value.strip()


def shipped_prompts_dir() -> Path:
    """The templates the project ships: inside an installed wheel, else the checkout's prompts/."""
    here = Path(__file__).resolve().parent
    packaged = here / "prompt_files"
    return packaged if packaged.is_dir() else here.parent / "prompts"


SHIPPED_PROMPTS_DIR = shipped_prompts_dir()


class Settings(BaseSettings):
    """Every setting of the service; names and defaults follow CONTRACT.md."""

    model_config = SettingsConfigDict(
        env_file=".env", extra="ignore", populate_by_name=True, case_sensitive=False
    )

    host: str = "0.0.0.0"  # noqa: S104 - a service listens on all interfaces by default
    port: int = Field(8080, ge=1, le=65535)

    webhook_token: SecretStr | None = None
    webhook_username: str | None = None
    webhook_password: SecretStr | None = None
    max_body_bytes: int = Field(1_048_576, ge=1024)
    allow_unauthenticated: bool = False

    store_url: str = "sqlite:///./data/enricher.db"
    store_pool_size: int = Field(10, ge=1, le=1000)
    dedup_window_seconds: float = Field(600, ge=0)
    lease_seconds: float = Field(30, gt=0)
    # Pipeline workers. More than LLM_CONCURRENCY: a notification waiting for an LLM slot (or on a
    # chat API's Retry-After) holds one worker, and the others keep sending what needs no LLM.
    workers: int = Field(32, ge=1, le=1024)
    # `serve` runs the workers, the LLM lane and the Telegram poller in a process of their own
    # at a lower CPU priority (app/pipeline_process.py), so the webhook's answers never wait
    # behind the pipeline's Python; false runs them in the webhook's process (less memory: one
    # interpreter, not two). `auto` (and true): apart, except with an in-memory SQLite store
    # (measured on both stores: README, "Performance").
    pipeline_process: bool | Literal["auto"] = "auto"
    max_processing_attempts: int = Field(8, ge=1)
    retention_hours: float = Field(168, gt=0)

    prometheus_url: str = "http://localhost:9090"
    prometheus_token: SecretStr | None = None
    prometheus_username: str | None = None
    prometheus_password: SecretStr | None = None
    prometheus_headers: SecretStr | None = None
    prometheus_ca_file: Path | None = None
    prometheus_tls_verify: bool = True
    prometheus_external_url: str | None = None
    prometheus_timeout_seconds: float = Field(5, gt=0)
    context_window_minutes: int = Field(30, ge=1, le=24 * 60)
    max_context_alerts: int = Field(10, ge=0)
    # A PNG of the alert's metric with each new page and escalation (Slack bot mode, Telegram).
    charts: bool = True

    llm_base_url: str = "https://api.holysheep.ai/v1"
    llm_api_key: SecretStr | None = Field(
        None, validation_alias=AliasChoices("llm_api_key", "LLM_API_KEY", "HOLYSHEEP_API_KEY")
    )
    llm_model: str = Field(
        "deepseek-chat", validation_alias=AliasChoices("llm_model", "LLM_MODEL", "ANALYZER_MODEL")
    )
    llm_timeout_seconds: float = Field(20, gt=0)
    llm_max_attempts: int = Field(3, ge=1)
    llm_concurrency: int = Field(8, ge=1)
    # Page first: a page waits at most this long for its LLM diagnosis, then goes out with the
    # rules' preliminary one and is edited when the LLM answers.
    page_within_seconds: float = Field(3, ge=0, le=300)
    # A diagnosis still queued this long after its page was accepted is no longer worth a call.
    llm_max_queue_seconds: float = Field(120, gt=0)
    llm_prompt_budget_chars: int = Field(24_000, ge=2_000)
    llm_max_tokens: int = Field(2048, ge=64)
    # USD per UTC day over every replica; past it, diagnoses are the rules' until the day ends.
    llm_daily_budget_usd: float | None = Field(None, ge=0)
    # Prices per model, USD per million tokens: `model=input/output` or `model=both`, comma-separated
    # (app/cost.py has the defaults).
    llm_prices: str = ""
    analysis_language: str = "en"

    slack_bot_token: SecretStr | None = None
    slack_channel: str | None = None
    slack_webhook_url: SecretStr | None = None
    slack_api_url: str = "https://slack.com/api/"
    slack_matchers: str = ""

    telegram_bot_token: SecretStr | None = None
    telegram_chat_id: str | None = None
    telegram_thread_id: int | None = None
    telegram_api_url: str = "https://api.telegram.org/bot"
    telegram_matchers: str = ""
    # Telegram user ids (comma-separated) whose taps on the silence buttons are obeyed; with
    # ALERTMANAGER_URL, firing messages get the buttons and one replica long-polls getUpdates.
    telegram_allowed_user_ids: str = ""

    alertmanager_url: str | None = None
    # Slack's app signing secret: with ALERTMANAGER_URL and bot mode, messages get silence buttons
    # and POST /slack/actions takes their clicks (app/slack_actions.py).
    slack_signing_secret: SecretStr | None = None

    prompts_dir: Path = SHIPPED_PROMPTS_DIR
    # The team's Markdown runbooks, matched to alerts by name (app/runbooks.py); none when unset.
    runbooks_dir: Path | None = None

    log_level: str = "INFO"
    log_format: Literal["text", "json"] = "text"

    @field_validator(
        "webhook_token",
        "webhook_password",
        "prometheus_token",
        "llm_api_key",
        "slack_bot_token",
        "slack_webhook_url",
        "telegram_bot_token",
        "telegram_thread_id",
        "webhook_username",
        "slack_channel",
        "telegram_chat_id",
        "prometheus_external_url",
        "prometheus_username",
        "prometheus_password",
        "prometheus_headers",
        "prometheus_ca_file",
        "alertmanager_url",
        "slack_signing_secret",
        "runbooks_dir",
        mode="before",
    )
    @classmethod
    def _empty_is_unset(cls, value: object) -> object:
        """`KEY=` in `.env` (as `.env.example` ships them) means unset, not an empty secret."""
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("prompts_dir", mode="before")
    @classmethod
    def _default_prompts(cls, value: object) -> object:
        return SHIPPED_PROMPTS_DIR if isinstance(value, str) and not value.strip() else value

    @field_validator("runbooks_dir")
    @classmethod
    def _runbooks_directory(cls, value: Path | None) -> Path | None:
        if value is not None and not value.is_dir():
            raise ValueError(f"{value} is not a directory")
        return value

    @field_validator("telegram_allowed_user_ids")
    @classmethod
    def _user_ids(cls, value: str) -> str:
        for part in value.split(","):
            if part.strip() and not part.strip().isdigit():
                raise ValueError(f"{part.strip()!r} is not a Telegram user id (digits)")
        return value

    @field_validator("slack_matchers", "telegram_matchers")
    @classmethod
    def _valid_matchers(cls, value: str) -> str:
        parse_matchers(value)  # a typo fails at start, not when the first alert should route
        return value

    @field_validator("prometheus_headers")
    @classmethod
    def _valid_headers(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None:
            parse_headers(value.get_secret_value())  # a typo fails at start
        return value

    @field_validator("prometheus_ca_file")
    @classmethod
    def _readable_ca(cls, value: Path | None) -> Path | None:
        if value is not None:
            try:
                ssl.create_default_context(cafile=str(value))
            except (OSError, ssl.SSLError) as exc:
                raise ValueError(f"cannot load a CA bundle from {value}: {exc}") from exc
        return value

    @field_validator("llm_prices")
    @classmethod
    def _prices(cls, value: str) -> str:
        parse_prices(value)
        return value

    @field_validator("llm_daily_budget_usd", mode="before")
    @classmethod
    def _no_budget(cls, value: object) -> object:
        """`LLM_DAILY_BUDGET_USD=` (empty) means no budget."""
        return None if isinstance(value, str) and not value.strip() else value

    @property
    def price_overrides(self) -> dict[str, Price]:
        return parse_prices(self.llm_prices)

    @field_validator("log_level")
    @classmethod
    def _known_level(cls, value: str) -> str:
        if value.upper() not in LOG_LEVELS:
            raise ValueError(f"must be one of {', '.join(LOG_LEVELS)}")
        return value.upper()

    @field_validator(
        "prometheus_url",
        "prometheus_external_url",
        "llm_base_url",
        "slack_api_url",
        "telegram_api_url",
        "alertmanager_url",
    )
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        return None if value is None else check_http_url(value)

    @field_validator("slack_webhook_url")
    @classmethod
    def _http_secret_url(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None:
            try:
                check_http_url(value.get_secret_value())
            except ValueError:  # never echo the webhook URL: it is the secret
                raise ValueError("must be an https:// Slack incoming-webhook URL") from None
        return value

    @field_validator("store_url")
    @classmethod
    def _supported_store(cls, value: str) -> str:
        return check_store_url(value)

    @model_validator(mode="after")
    def _whole_channels(self) -> Settings:
        """A half-configured channel is an error, never a silent fall-back to the console."""
        pairs = (
            ("SLACK_BOT_TOKEN", self.slack_bot_token, "SLACK_CHANNEL", self.slack_channel),
            (
                "TELEGRAM_BOT_TOKEN",
                self.telegram_bot_token,
                "TELEGRAM_CHAT_ID",
                self.telegram_chat_id,
            ),
        )
        for first, first_value, second, second_value in pairs:
            if (first_value is None) != (second_value is None):
                missing, given = (first, second) if first_value is None else (second, first)
                raise ValueError(f"{missing}: not set, but {given} is: set both (or neither)")
        if self.telegram_thread_id is not None and not self.telegram_enabled:
            raise ValueError("TELEGRAM_THREAD_ID: set, but Telegram is not configured")
        slack = self.slack_bot_enabled or self.slack_webhook_url is not None
        for name, matchers, configured in (
            ("SLACK_MATCHERS", self.slack_matchers, slack),
            ("TELEGRAM_MATCHERS", self.telegram_matchers, self.telegram_enabled),
        ):
            if matchers.strip() and not configured:
                channel = name.split("_")[0].capitalize()
                raise ValueError(f"{name}: set, but {channel} is not configured")
        return self

    @property
    def graph_base_url(self) -> str:
        return (self.prometheus_external_url or self.prometheus_url).rstrip("/")

    @property
    def prometheus_header_map(self) -> dict[str, str]:
        raw = self.prometheus_headers
        return parse_headers(raw.get_secret_value()) if raw is not None else {}

    @property
    def llm_enabled(self) -> bool:
        return self.llm_api_key is not None

    @property
    def pipeline_apart(self) -> bool:
        """PIPELINE_PROCESS: `auto` runs the pipeline apart on both stores; in the benchmark the
        webhook's acks were much faster apart, and storms as fast (README, "Performance")."""
        if backend_name(self.store_url) == "sqlite" and sqlite_path(self.store_url) == ":memory:":
            return False  # the pipeline's and the webhook's must be one database: keep it simple
        return self.pipeline_process in ("auto", True)

    @property
    def slack_bot_enabled(self) -> bool:
        return self.slack_bot_token is not None and bool(self.slack_channel)

    @property
    def telegram_enabled(self) -> bool:
        return self.telegram_bot_token is not None and bool(self.telegram_chat_id)

    @property
    def slack_buttons(self) -> bool:
        """Silence buttons in Slack: bot mode (threads to reply in), a signing secret to check
        clicks with, and the Alertmanager to create silences in."""
        return bool(
            self.slack_signing_secret
            and self.slack_bot_token
            and self.slack_channel
            and self.alertmanager_url
        )

    @property
    def telegram_allowed_ids(self) -> frozenset[int]:
        return frozenset(int(p) for p in self.telegram_allowed_user_ids.split(",") if p.strip())

    @property
    def telegram_buttons(self) -> bool:
        """Silence buttons in Telegram: the bot, someone allowed to tap them, and the Alertmanager
        to create silences in."""
        return bool(
            self.telegram_bot_token
            and self.telegram_chat_id
            and self.telegram_allowed_ids
            and self.alertmanager_url
        )

    def secret_values(self) -> list[str]:
        """The configured secrets, so logs can be scrubbed of them."""
        secrets = [
            self.webhook_token,
            self.webhook_password,
            self.prometheus_token,
            self.prometheus_password,
            self.llm_api_key,
            self.slack_bot_token,
            self.slack_webhook_url,
            self.telegram_bot_token,
            self.slack_signing_secret,
        ]
        values = [s.get_secret_value() for s in secrets if s is not None and s.get_secret_value()]
        values += url_secrets(self.store_url)
        # Header values can be credentials too (an API key header in front of a tenant's Mimir).
        return values + [v for v in self.prometheus_header_map.values() if v]
