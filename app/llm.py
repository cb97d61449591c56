"""OpenAI-compatible chat client (HolySheep, OpenAI, DeepSeek, vLLM, Ollama, LiteLLM) and LLMError.

Every request carries `max_tokens` and, until the server shows it does not take it,
`response_format: json_object`.

Retry policy (llm_retry.py): 429, 5xx, timeouts and transport errors are retried with exponential
backoff and jitter, honouring `Retry-After` (delta-seconds or an HTTP date), at most `max_attempts`
times and never past `timeout` seconds in total (the whole call, waits included, runs under one
deadline). A 400 to a request with `response_format` is answered by sending the same request once
more without it, within the same attempt and deadline; if the server takes that one, the client
stops sending `response_format` for its lifetime (the reply is still checked as JSON).
400/401/402/403/404 are otherwise permanent and fail at once in plain words. Every failure,
including a reply that is not the JSON we asked for, is one `LLMError`, which the pipeline answers
with the rule-based diagnosis; its `reason` is a short code for the fallback metric, and its `usage`
the tokens the call spent before it failed.

Every reply with a body counts its tokens (the reply's `usage`, else an estimate from the text): a
reply that is not the JSON asked for was still paid for.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import httpx
from pydantic import ValidationError
from tenacity import (
    AsyncRetrying,
    retry_if_exception_type,
    stop_after_attempt,
)
from tenacity.wait import wait_base

from app.cost import Usage, reply_usage
from app.llm_retry import default_wait, retry_after_seconds, stop_past_deadline, utc_now
from app.metrics import Metrics
from app.models import Diagnosis

log = logging.getLogger(__name__)

PERMANENT = {
    400: "LLM API rejected the request (400 bad request)",
    401: "invalid LLM API key (401)",
    402: "LLM account out of credit (402 payment required)",
    403: "LLM API key lacks permission for this model (403)",
    404: "LLM endpoint or model not found (404): check LLM_BASE_URL and LLM_MODEL",
}
JSON_MODE = {"type": "json_object"}


class LLMError(Exception):
    """The diagnosis could not come from the model; `str(err)` is the plain-words reason, `reason`
    one of a few codes (no_key, timeout, unreachable, rate_limited, server_error, refused,
    http_error, bad_json, incomplete), `usage` what the call spent all the same."""

    def __init__(self, message: str, reason: str = "http_error", usage: Usage | None = None):
        super().__init__(message)
        self.reason = reason
        self.usage = usage or Usage()


class _RetryableError(LLMError):
    def __init__(self, message: str, reason: str, retry_after: float | None = None) -> None:
        super().__init__(message, reason)
        self.retry_after = retry_after  # what wait_retry_after (llm_retry.py) waits


@dataclass(frozen=True)
class Answer:
    diagnosis: Diagnosis
    usage: Usage


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
        metrics: Metrics | None = None,
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
        self._metrics = metrics

    @property
    def enabled(self) -> bool:
        return bool(self._api_key)

    async def diagnose(self, system: str, user: str) -> Answer:
        """Ask the model; the reply must validate as a Diagnosis, else LLMError."""
        content, usage = await self.complete_json(system, user)
        try:
            return Answer(Diagnosis.model_validate(content), usage)
        except ValidationError as exc:
            fields = sorted({str(err["loc"][0]) for err in exc.errors() if err["loc"]})
            raise LLMError(
                f"LLM reply is missing or has invalid fields: {', '.join(fields)}",
                "incomplete",
                usage,
            ) from exc

    async def complete_json(self, system: str, user: str) -> tuple[dict[str, Any], Usage]:
        """The reply's JSON object and the tokens the call spent, every attempt's included."""
        if not self._api_key:
            raise LLMError("no LLM API key configured", "no_key")
        body = {
            "model": self.model,
            "messages": [
                {"role": "system", "content": system},
                {"role": "user", "content": user},
            ],
            "temperature": 0.3,
            "max_tokens": self._max_tokens,
        }
        spent: list[Usage] = []
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
                            content = await self._send(body, deadline, spent)
                            return content, sum(spent, Usage())
            except TimeoutError as exc:
                self._count("timeout")
                raise LLMError(
                    f"LLM timed out after {self._timeout:g}s", "timeout", sum(spent, Usage())
                ) from exc
            except LLMError as exc:
                exc.usage = sum(spent, Usage())
                raise
        raise LLMError("LLM gave no answer")  # pragma: no cover - AsyncRetrying always re-raises

    async def _send(
        self, body: dict[str, Any], deadline: float, spent: list[Usage]
    ) -> dict[str, Any]:
        """One attempt: JSON mode if the server takes it, else (or after its 400) plain."""
        if not self._json_mode:
            return self._counted(await self._post(body, deadline), body, spent)
        response = await self._post({**body, "response_format": JSON_MODE}, deadline)
        if response.status_code != 400:
            return self._counted(response, body, spent)
        self._count("rejected_json_mode")
        response = await self._post(body, deadline)
        # Only a server that takes the request without it has shown that response_format was the
        # problem; a 400 again means the request itself is wrong, and JSON mode stays on.
        if response.status_code == 200:
            self._stop_json_mode()
        return self._counted(response, body, spent)

    def _counted(
        self, response: httpx.Response, body: dict[str, Any], spent: list[Usage]
    ) -> dict[str, Any]:
        """The reply read, its tokens added to `spent`, its outcome to the request counter."""
        try:
            content = self._read(response, body, spent)
        except LLMError as exc:
            self._count(exc.reason)
            raise
        self._count("ok")
        return content

    def _count(self, outcome: str) -> None:
        if self._metrics is not None:
            self._metrics.llm_requests.labels(model=self.model, outcome=outcome).inc()

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
            self._count("timeout")
            raise _RetryableError("LLM request timed out", "timeout") from exc
        except httpx.HTTPError as exc:
            self._count("unreachable")
            raise _RetryableError(f"LLM unreachable ({type(exc).__name__})", "unreachable") from exc

    def _read(
        self, response: httpx.Response, body: dict[str, Any], spent: list[Usage]
    ) -> dict[str, Any]:
        status = response.status_code
        if status in PERMANENT:
            log.error("%s", PERMANENT[status])
            raise LLMError(PERMANENT[status], "refused")
        if status == 429:
            raise _RetryableError(
                "LLM rate limited (429)", "rate_limited", retry_after_seconds(response, self._now())
            )
        if status >= 500:
            raise _RetryableError(
                f"LLM server error ({status})",
                "server_error",
                retry_after_seconds(response, self._now()),
            )
        if status != 200:
            raise LLMError(f"LLM API answered HTTP {status}")  # reason: http_error
        prompt = "".join(str(m["content"]) for m in body["messages"])
        try:
            reply = response.json()
        except ValueError:
            spent.append(reply_usage(None, prompt, response.text))
            raise LLMError("LLM reply is not a chat completion", "bad_json") from None
        text: str | None = None
        try:
            text = _reply_text(reply)
        finally:
            spent.append(reply_usage(reply, prompt, text or ""))
        return _content_json(text)

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


def _reply_text(reply: Any) -> str:
    """choices[0].message.content of a chat completion."""
    try:
        content = reply["choices"][0]["message"]["content"]
    except (KeyError, IndexError, TypeError) as exc:
        raise LLMError("LLM reply is not a chat completion", "bad_json") from exc
    if not isinstance(content, str):
        raise LLMError("LLM reply has no text content", "bad_json")
    return content


def _content_json(content: str) -> dict[str, Any]:
    text = content.strip()
    if text.startswith("```"):
        # Some OpenAI-compatible servers ignore json_object mode and fence the JSON.
        text = text.strip("`").removeprefix("json").strip()
    try:
        parsed = json.loads(text)
    except ValueError as exc:
        raise LLMError("LLM reply is not valid JSON", "bad_json") from exc
    if not isinstance(parsed, dict):
        raise LLMError("LLM reply is JSON but not an object", "bad_json")
    return parsed
