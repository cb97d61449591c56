"""OpenAI-compatible chat client (HolySheep, OpenAI, DeepSeek, vLLM, Ollama, LiteLLM) and LLMError.

Every request carries `max_tokens` and, until the server shows it does not take it,
`response_format: json_object`.

Retry policy: 429, 5xx, timeouts and transport errors are retried with exponential backoff and jitter,
honouring `Retry-After` (delta-seconds or an HTTP date), at most `max_attempts` times and never past
`timeout` seconds in total (the whole call, waits included, runs under one deadline). A 400 to a request
with `response_format` is answered by sending the same request once more without it, within the same
attempt and deadline; if the server takes that one, the client stops sending `response_format` for its
lifetime (the reply is still checked as JSON). 400/401/402/403/404 are otherwise permanent and fail at
once in plain words. Every failure, including a reply that is not the JSON we asked for, is one
`LLMError`, which the pipeline answers with the rule-based diagnosis.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any

import httpx
from pydantic import ValidationError
from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception_type,
    stop_after_attempt,
    wait_exponential_jitter,
)
from tenacity.stop import stop_base
from tenacity.wait import wait_base

from app.models import Diagnosis

log = logging.getLogger(__name__)

PERMANENT = {
    400: "LLM API rejected the request (400 bad request)",
    401: "invalid LLM API key (401)",
    402: "LLM account out of credit (402 payment required)",
    403: "LLM API key lacks permission for this model (403)",
    404: "LLM endpoint or model not found (404): check LLM_BASE_URL and LLM_MODEL",
}
MAX_RETRY_AFTER = 60.0
JSON_MODE = {"type": "json_object"}


class LLMError(Exception):
    """The diagnosis could not come from the model; `str(err)` is the plain-words reason."""


class _RetryableError(LLMError):
    def __init__(self, reason: str, retry_after: float | None = None) -> None:
        super().__init__(reason)
        self.retry_after = retry_after


class wait_retry_after(wait_base):  # noqa: N801 - tenacity's naming for wait strategies
    """Wait what the server asked for in Retry-After, else fall back to another strategy."""

    def __init__(self, fallback: wait_base) -> None:
        self._fallback = fallback

    def __call__(self, retry_state: RetryCallState) -> float:
        outcome = retry_state.outcome
        exc = outcome.exception() if outcome else None
        if isinstance(exc, _RetryableError) and exc.retry_after is not None:
            return min(exc.retry_after, MAX_RETRY_AFTER)
        return float(self._fallback(retry_state))


class stop_past_deadline(stop_base):  # noqa: N801 - tenacity's naming for stop strategies
    """Stop when the next wait would end past the deadline: fail now rather than sleep in vain."""

    def __init__(self, deadline: float) -> None:
        self._deadline = deadline

    def __call__(self, retry_state: RetryCallState) -> bool:
        return time.monotonic() + retry_state.upcoming_sleep >= self._deadline


def default_wait() -> wait_base:
    return wait_retry_after(wait_exponential_jitter(multiplier=0.5, max=8, jitter=0.5))


def utc_now() -> datetime:
    return datetime.now(UTC)


def _retry_after(response: httpx.Response, now: datetime) -> float | None:
    """Seconds to wait from a Retry-After of delta-seconds or an HTTP date (RFC 9110), else None."""
    value = response.headers.get("retry-after")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, OverflowError):
        return None  # garbage: fall back to our own backoff
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)  # HTTP dates are always GMT
    return max(0.0, (when - now).total_seconds())


class LLMClient:
    """One chat completion per call (JSON mode while the server takes it).

    Calls are bounded by a semaphore and a total deadline; `now` is the clock that Retry-After
    dates are measured against (injected by tests).
    """

    def __init__(
        self,
        http: httpx.AsyncClient,
        *,
        base_url: str,
        api_key: str | None,
        model: str,
        timeout: float,
        max_attempts: int,
        concurrency: int,
        max_tokens: int = 2048,
        wait: wait_base | None = None,
        now: Callable[[], datetime] = utc_now,
    ) -> None:
        self._http = http
        self._url = base_url.rstrip("/") + "/chat/completions"
        self._models_url = base_url.rstrip("/") + "/models"
        self._api_key = api_key
        self.model = model
        self._timeout = timeout
        self._max_attempts = max_attempts
        self._limit = asyncio.Semaphore(concurrency)
        self._max_tokens = max_tokens
        self._wait = wait if wait is not None else default_wait()
        self._now = now
        self._json_mode = True  # until the server rejects response_format

    @property
    def enabled(self) -> bool:
        return bool(self._api_key)

    async def diagnose(self, system: str, user: str) -> Diagnosis:
        """Ask the model; the reply must validate as a Diagnosis, else LLMError."""
        content = await self.complete_json(system, user)
        try:
            return Diagnosis.model_validate(content)
        except ValidationError as exc:
            fields = sorted({str(err["loc"][0]) for err in exc.errors() if err["loc"]})
            raise LLMError(
                f"LLM reply is missing or has invalid fields: {', '.join(fields)}"
            ) from exc

    async def complete_json(self, system: str, user: str) -> dict[str, Any]:
        if not self._api_key:
            raise LLMError("no LLM API key configured")
        body = {
            "model": self.model,
            "messages": [
                {"role": "system", "content": system},
                {"role": "user", "content": user},
            ],
            "temperature": 0.3,
            "max_tokens": self._max_tokens,
        }
        async with self._limit:  # the budget starts once this call may go out
            deadline = time.monotonic() + self._timeout
            retrying = AsyncRetrying(
                stop=stop_after_attempt(self._max_attempts) | stop_past_deadline(deadline),
                wait=self._wait,
                retry=retry_if_exception_type(_RetryableError),
                reraise=True,
            )
            try:
                async with asyncio.timeout(self._timeout):
                    async for attempt in retrying:
                        with attempt:
                            return await self._send(body, deadline)
            except TimeoutError as exc:
                raise LLMError(f"LLM timed out after {self._timeout:g}s") from exc
        raise LLMError("LLM gave no answer")  # pragma: no cover - AsyncRetrying always re-raises

    async def _send(self, body: dict[str, Any], deadline: float) -> dict[str, Any]:
        """One attempt: JSON mode if the server takes it, else (or after its 400) plain."""
        if not self._json_mode:
            return self._read(await self._post(body, deadline))
        response = await self._post({**body, "response_format": JSON_MODE}, deadline)
        if response.status_code != 400:
            return self._read(response)
        response = await self._post(body, deadline)
        # Only a server that takes the request without it has shown that response_format was the
        # problem; a 400 again means the request itself is wrong, and JSON mode stays on.
        if response.status_code == 200:
            self._stop_json_mode()
        return self._read(response)

    def _stop_json_mode(self) -> None:
        if self._json_mode:
            self._json_mode = False
            log.warning(
                "The LLM server rejects response_format json_object (HTTP 400), so requests are "
                "sent without it from now on; replies are still checked as JSON."
            )

    async def _post(self, body: dict[str, Any], deadline: float) -> httpx.Response:
        remaining = max(0.1, deadline - time.monotonic())
        try:
            return await self._http.post(
                self._url,
                json=body,
                headers={"Authorization": f"Bearer {self._api_key}"},
                timeout=remaining,
            )
        except httpx.TimeoutException as exc:
            raise _RetryableError("LLM request timed out") from exc
        except httpx.HTTPError as exc:
            raise _RetryableError(f"LLM unreachable ({type(exc).__name__})") from exc

    def _read(self, response: httpx.Response) -> dict[str, Any]:
        status = response.status_code
        if status in PERMANENT:
            log.error("%s", PERMANENT[status])
            raise LLMError(PERMANENT[status])
        if status == 429:
            raise _RetryableError("LLM rate limited (429)", _retry_after(response, self._now()))
        if status >= 500:
            raise _RetryableError(
                f"LLM server error ({status})", _retry_after(response, self._now())
            )
        if status != 200:
            raise LLMError(f"LLM API answered HTTP {status}")
        return _content_json(response)

    async def ping(self) -> str:
        """GET /models, for `check`: proves the URL and the key without spending tokens."""
        if not self._api_key:
            raise LLMError("no LLM API key configured")
        try:
            response = await self._http.get(
                self._models_url, headers={"Authorization": f"Bearer {self._api_key}"}
            )
        except httpx.HTTPError as exc:
            raise LLMError(f"LLM unreachable ({type(exc).__name__})") from exc
        if response.status_code in (401, 403):
            raise LLMError(PERMANENT[response.status_code])
        if response.status_code == 404:
            return "reachable (no /models endpoint)"
        if response.status_code != 200:
            raise LLMError(f"LLM API answered HTTP {response.status_code}")
        return "reachable, key accepted"


def _content_json(response: httpx.Response) -> dict[str, Any]:
    try:
        content = response.json()["choices"][0]["message"]["content"]
    except (ValueError, KeyError, IndexError, TypeError) as exc:
        raise LLMError("LLM reply is not a chat completion") from exc
    if not isinstance(content, str):
        raise LLMError("LLM reply has no text content")
    text = content.strip()
    if text.startswith("```"):
        # Some OpenAI-compatible servers ignore json_object mode and fence the JSON.
        text = text.strip("`").removeprefix("json").strip()
    try:
        parsed = json.loads(text)
    except ValueError as exc:
        raise LLMError("LLM reply is not valid JSON") from exc
    if not isinstance(parsed, dict):
        raise LLMError("LLM reply is JSON but not an object")
    return parsed
