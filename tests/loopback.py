"""Fake chat and LLM APIs served over real HTTP on 127.0.0.1, for tests and end-to-end runs.

slack-sdk's async client runs on aiohttp, which respx cannot see, so Slack is faked here as a small
Web API server. Failures are scripted: `fail_next(status, body, headers)` answers the next request
that way. Every request is recorded.
"""

from __future__ import annotations

import itertools
import json
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

FAKE_SLACK_TOKEN = "xoxb-fake-test-token"


@dataclass
class Recorded:
    method: str
    body: dict[str, Any]
    headers: dict[str, str]


@dataclass
class LoopbackServer:
    """An aiohttp app on a free loopback port; subclasses add routes."""

    requests: list[Recorded] = field(default_factory=list)
    _failures: list[tuple[int, Any, dict[str, str]]] = field(default_factory=list)
    _runner: web.AppRunner | None = None
    port: int = 0

    def routes(self, app: web.Application) -> None:
        raise NotImplementedError

    def fail_next(self, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
        self._failures.append((status, body, headers or {}))

    def scripted_failure(self) -> web.Response | None:
        if not self._failures:
            return None
        status, body, headers = self._failures.pop(0)
        return web.json_response(body, status=status, headers=headers)

    async def start(self) -> LoopbackServer:
        app = web.Application()
        self.routes(app)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", self.port)
        await site.start()
        server = site._server
        assert server is not None
        self.port = server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        return self

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


@dataclass
class FakeSlack(LoopbackServer):
    """chat.postMessage, chat.update, auth.test and an incoming webhook, with Slack's shapes."""

    token: str = FAKE_SLACK_TOKEN
    channel_id: str = "C0FAKE0001"
    messages: dict[str, dict[str, Any]] = field(default_factory=dict)
    webhook_posts: list[dict[str, Any]] = field(default_factory=list)
    _ts: itertools.count[int] = field(default_factory=lambda: itertools.count(1))

    def routes(self, app: web.Application) -> None:
        app.router.add_post("/api/{method}", self._api)
        app.router.add_post("/services/{path:.*}", self._webhook)

    @property
    def api_url(self) -> str:
        return f"{self.url}/api/"

    async def _body(self, request: web.Request) -> dict[str, Any]:
        if request.content_type == "application/json":
            return dict(await request.json())
        return dict(await request.post())

    async def _api(self, request: web.Request) -> web.Response:
        method = request.match_info["method"]
        body = await self._body(request)
        self.requests.append(Recorded(method, body, dict(request.headers)))
        if failure := self.scripted_failure():
            return failure
        if request.headers.get("Authorization") != f"Bearer {self.token}":
            return web.json_response({"ok": False, "error": "invalid_auth"})
        if method == "auth.test":
            return web.json_response({"ok": True, "user": "enricher", "team": "FakeTeam"})
        if method == "chat.postMessage":
            return self._post(body)
        if method == "chat.update":
            return self._update(body)
        return web.json_response({"ok": False, "error": "unknown_method"}, status=404)

    def _post(self, body: dict[str, Any]) -> web.Response:
        if body.get("channel") not in (self.channel_id, "#alerts", "alerts"):
            return web.json_response({"ok": False, "error": "channel_not_found"})
        ts = f"1700000000.{next(self._ts):06d}"
        self.messages[ts] = {**body, "channel": self.channel_id, "ts": ts}
        return web.json_response({"ok": True, "channel": self.channel_id, "ts": ts})

    def _update(self, body: dict[str, Any]) -> web.Response:
        ts = str(body.get("ts"))
        if ts not in self.messages:
            return web.json_response({"ok": False, "error": "message_not_found"})
        self.messages[ts] = {**self.messages[ts], **body, "updated": True}
        return web.json_response({"ok": True, "channel": self.channel_id, "ts": ts})

    async def _webhook(self, request: web.Request) -> web.Response:
        body = await request.json()
        self.requests.append(Recorded("webhook", body, dict(request.headers)))
        if failure := self.scripted_failure():
            return failure
        self.webhook_posts.append(body)
        return web.Response(text="ok")

    def top_level(self) -> list[dict[str, Any]]:
        return [m for m in self.messages.values() if not m.get("thread_ts")]

    def replies(self, ts: str) -> list[dict[str, Any]]:
        return [m for m in self.messages.values() if m.get("thread_ts") == ts]


def all_text(payload: Any) -> list[str]:
    """Every string inside a Slack payload (to check escaping anywhere)."""
    if isinstance(payload, str):
        return [payload]
    if isinstance(payload, dict):
        return [t for v in payload.values() for t in all_text(v)]
    if isinstance(payload, list):
        return [t for v in payload for t in all_text(v)]
    return []


def as_json(payload: Any) -> str:
    return json.dumps(payload, ensure_ascii=False)
