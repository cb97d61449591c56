"""Fake chat and LLM APIs served over real HTTP on 127.0.0.1, for tests and end-to-end runs.

Run them standalone to try the service by hand:
    python -m tests.loopback --slack 18601 --telegram 18602 --llm 18603

slack-sdk's async client runs on aiohttp, which respx cannot see, so Slack is faked here as a small
Web API server. Failures are scripted: `fail_next(status, body, headers)` answers the next request
that way. Every request is recorded.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import re
from dataclasses import dataclass, field
from html.parser import HTMLParser
from typing import Any

from aiohttp import web

FAKE_SLACK_TOKEN = "xoxb-fake-test-token"


@dataclass
class Recorded:
    method: str
    body: dict[str, Any]
    headers: dict[str, str]
    peer: tuple[str, int] | None = None  # the client's address: one per TCP connection


@dataclass
class LoopbackServer:
    """An aiohttp app on a free loopback port; subclasses add routes."""

    requests: list[Recorded] = field(default_factory=list)
    _failures: list[tuple[int, Any, dict[str, str]]] = field(default_factory=list)
    _runner: web.AppRunner | None = None
    port: int = 0

    def routes(self, app: web.Application) -> None:
        raise NotImplementedError

    @staticmethod
    async def read_body(request: web.Request) -> dict[str, Any]:
        """A JSON or form body as a dict (slack-sdk and python-telegram-bot send either)."""
        if request.content_type == "application/json":
            return dict(await request.json())
        return dict(await request.post())

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
    """chat.postMessage, chat.update, auth.test, an incoming webhook and files_upload_v2's three
    steps (files.getUploadURLExternal, the upload to the URL it gave, files.completeUploadExternal),
    with Slack's shapes.

    `files` holds every completed upload: its bytes, title, channel and thread.
    """

    token: str = FAKE_SLACK_TOKEN
    channel_id: str = "C0FAKE0001"
    messages: dict[str, dict[str, Any]] = field(default_factory=dict)
    webhook_posts: list[dict[str, Any]] = field(default_factory=list)
    files: list[dict[str, Any]] = field(default_factory=list)
    _uploads: dict[str, dict[str, Any]] = field(default_factory=dict)
    _ts: itertools.count[int] = field(default_factory=lambda: itertools.count(1))

    def routes(self, app: web.Application) -> None:
        app.router.add_post("/api/{method}", self._api)
        app.router.add_post("/services/{path:.*}", self._webhook)
        app.router.add_post("/upload/v1/{file_id}", self._upload)

    @property
    def api_url(self) -> str:
        return f"{self.url}/api/"

    async def _api(self, request: web.Request) -> web.Response:
        method = request.match_info["method"]
        body = {**request.query, **await self.read_body(request)}  # slack-sdk's params: a query
        peer = request.transport.get_extra_info("peername") if request.transport else None
        self.requests.append(Recorded(method, body, dict(request.headers), peer))
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
        if method == "files.getUploadURLExternal":
            return self._upload_url(body)
        if method == "files.completeUploadExternal":
            return self._complete(body)
        return web.json_response({"ok": False, "error": "unknown_method"}, status=404)

    def _upload_url(self, body: dict[str, Any]) -> web.Response:
        if not body.get("filename") or not str(body.get("length", "")).isdigit():
            return web.json_response({"ok": False, "error": "invalid_arguments"})
        file_id = f"F0FAKE{len(self._uploads) + 1:04d}"
        self._uploads[file_id] = {"filename": body["filename"], "length": int(body["length"])}
        upload_url = f"{self.url}/upload/v1/{file_id}"
        return web.json_response({"ok": True, "upload_url": upload_url, "file_id": file_id})

    async def _upload(self, request: web.Request) -> web.Response:
        """The upload itself: raw bytes, exactly the length announced in step one."""
        file_id = request.match_info["file_id"]
        data = await request.read()
        self.requests.append(Recorded("upload", {"file_id": file_id}, dict(request.headers)))
        pending = self._uploads.get(file_id)
        if pending is None or len(data) != pending["length"]:
            return web.Response(status=400, text="upload does not match its URL")
        pending["data"] = data
        return web.Response(text=f"OK - {len(data)}")

    def _complete(self, body: dict[str, Any]) -> web.Response:
        """Shares uploaded files in a channel, in a thread when `thread_ts` names a message."""
        files = json.loads(str(body.get("files", "[]")))
        channel = body.get("channel_id")
        thread = body.get("thread_ts")
        if channel != self.channel_id:
            return web.json_response({"ok": False, "error": "channel_not_found"})
        if thread and thread not in self.messages:
            return web.json_response({"ok": False, "error": "invalid_thread_ts"})
        if not files or any("data" not in self._uploads.get(f.get("id"), {}) for f in files):
            return web.json_response({"ok": False, "error": "file_not_found"})
        for f in files:
            upload = self._uploads[f["id"]]
            self.files.append(
                {"id": f["id"], "title": f.get("title"), "channel": channel, "thread_ts": thread}
                | upload
            )
        return web.json_response({"ok": True, "files": [{"id": f["id"]} for f in files]})

    def _post(self, body: dict[str, Any]) -> web.Response:
        if body.get("channel") not in (self.channel_id, "#alerts", "alerts"):
            return web.json_response({"ok": False, "error": "channel_not_found"})
        ts = f"1700000000.{next(self._ts):06d}"
        self.messages[ts] = {**body, "channel": self.channel_id, "ts": ts}
        return web.json_response({"ok": True, "channel": self.channel_id, "ts": ts})

    def _update(self, body: dict[str, Any]) -> web.Response:
        """The message keeps what the update leaves out (as Slack keeps omitted attachments)."""
        ts = str(body.get("ts"))
        if ts not in self.messages or body.get("channel") != self.messages[ts]["channel"]:
            return web.json_response({"ok": False, "error": "message_not_found"})
        self.messages[ts] = {**self.messages[ts], **body, "updated": True}
        return web.json_response({"ok": True, "channel": self.channel_id, "ts": ts})

    async def _webhook(self, request: web.Request) -> web.Response:
        body = await request.json()
        peer = request.transport.get_extra_info("peername") if request.transport else None
        self.requests.append(Recorded("webhook", body, dict(request.headers), peer))
        if failure := self.scripted_failure():
            return failure
        self.webhook_posts.append(body)
        return web.Response(text="ok")

    def top_level(self) -> list[dict[str, Any]]:
        return [m for m in self.messages.values() if not m.get("thread_ts")]

    def replies(self, ts: str) -> list[dict[str, Any]]:
        return [m for m in self.messages.values() if m.get("thread_ts") == ts]


class _TelegramHTML(HTMLParser):
    """Telegram's HTML rules as far as a sender can break them: known tags, nested, closed."""

    ALLOWED = frozenset(
        {
            "b",
            "strong",
            "i",
            "em",
            "u",
            "ins",
            "s",
            "strike",
            "del",
            "code",
            "pre",
            "a",
            "tg-spoiler",
            "blockquote",
            "span",
        }
    )

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.stack: list[str] = []
        self.text = ""
        self.error: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag not in self.ALLOWED:
            self.error = self.error or f'unsupported start tag "{tag}"'
        self.stack.append(tag)

    def handle_endtag(self, tag: str) -> None:
        if not self.stack or self.stack.pop() != tag:
            self.error = self.error or f'unexpected end tag "{tag}"'

    def handle_data(self, data: str) -> None:
        self.text += data


def parse_telegram_html(text: str) -> tuple[str, str | None]:
    """(visible text, error) as Telegram would see an HTML message."""
    parser = _TelegramHTML()
    parser.feed(text)
    parser.close()
    if parser.stack and not parser.error:
        parser.error = f'can\'t find end tag corresponding to start tag "{parser.stack[-1]}"'
    return parser.text, parser.error


@dataclass
class FakeTelegram(LoopbackServer):
    """sendMessage, editMessageText, sendPhoto and getMe, rejecting bad HTML and over-long text the
    way the Bot API does.

    `sent` holds one record per message sent, kept current by edits (`text`, `visible`, `edited`);
    `edits` lists every edit that was applied; `current(message_id)` is a message's visible text.
    """

    token: str = "123456:FAKE-telegram-token-for-tests"
    sent: list[dict[str, Any]] = field(default_factory=list)
    edits: list[dict[str, Any]] = field(default_factory=list)
    photos: list[dict[str, Any]] = field(default_factory=list)  # sendPhoto: bytes under "photo"
    # getUpdates: taps queued by tap() until a poll confirms them (offset), answerCallbackQuery's
    # bodies, and the 409s given (a second poller, or a webhook set).
    updates: list[dict[str, Any]] = field(default_factory=list)
    answers: list[dict[str, Any]] = field(default_factory=list)
    conflicts: int = 0
    webhook_set: bool = False
    _update_ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1))
    _news: asyncio.Event = field(default_factory=asyncio.Event)
    _polls: int = 0
    _ids: itertools.count[int] = field(default_factory=lambda: itertools.count(100))

    def routes(self, app: web.Application) -> None:
        app.router.add_post("/bot{token}/{method}", self._api)

    @property
    def api_url(self) -> str:
        return f"{self.url}/bot"

    def current(self, message_id: int) -> str:
        """The text message `message_id` shows now, after any edits."""
        return str(next(m for m in self.sent if m["message_id"] == message_id)["visible"])

    def _find(self, chat_id: str, message_id: object) -> dict[str, Any] | None:
        return next(
            (
                m
                for m in self.sent
                if str(m["message_id"]) == str(message_id) and str(m.get("chat_id")) == chat_id
            ),
            None,
        )

    async def _api(self, request: web.Request) -> web.Response:
        method = request.match_info["method"]
        body = await self.read_body(request)
        self.requests.append(Recorded(method, body, dict(request.headers)))
        if request.match_info["token"] != self.token:
            return web.json_response(
                {"ok": False, "error_code": 401, "description": "Unauthorized"}, status=401
            )
        if failure := self.scripted_failure():
            return failure
        if method == "getMe":
            return web.json_response(
                {
                    "ok": True,
                    "result": {
                        "id": 123456,
                        "is_bot": True,
                        "first_name": "Enricher",
                        "username": "enricher_bot",
                    },
                }
            )
        if method == "sendMessage":
            return self._send(body)
        if method == "editMessageText":
            return self._edit(body)
        if method == "sendPhoto":
            return self._photo(body)
        if method == "getUpdates":
            return await self._get_updates(body, request)
        if method == "answerCallbackQuery":
            self.answers.append(body)
            return web.json_response({"ok": True, "result": True})
        return web.json_response(
            {"ok": False, "error_code": 404, "description": "Not Found"}, status=404
        )

    def _visible(self, body: dict[str, Any]) -> tuple[str, web.Response | None]:
        """The text as the chat shows it, or the Bot API's refusal of it."""
        text = str(body.get("text", ""))
        visible = text
        if body.get("parse_mode") == "HTML":
            visible, error = parse_telegram_html(text)
            if error:
                return visible, self._bad(f"Bad Request: can't parse entities: {error}")
        if len(visible.encode("utf-16-le")) // 2 > 4096:
            return visible, self._bad("Bad Request: message is too long")
        return visible, None

    def _send(self, body: dict[str, Any]) -> web.Response:
        visible, refused = self._visible(body)
        if refused:
            return refused
        message_id = next(self._ids)
        reply = body.get("reply_parameters")
        reply_to = json.loads(str(reply)).get("message_id") if reply else None
        self.sent.append(
            {**body, "message_id": message_id, "reply_to": reply_to, "visible": visible}
        )
        return self._message(body, message_id, visible)

    def tap(
        self,
        data: str,
        message_id: int,
        user_id: int = 1001,
        username: str = "ana",
        chat_id: int = -100123,
    ) -> None:
        """A user taps an inline button whose callback_data is `data` under `message_id`."""
        update_id = next(self._update_ids)
        self.updates.append(
            {
                "update_id": update_id,
                "callback_query": {
                    "id": f"cq-{update_id}",
                    "chat_instance": "ci-1",
                    "data": data,
                    "from": {"id": user_id, "is_bot": False, "first_name": username.title(),
                             "username": username},
                    "message": {"message_id": message_id, "date": 1700000000,
                                "chat": {"id": chat_id, "type": "supergroup"}, "text": "…"},
                },
            }
        )  # fmt: skip
        self._news.set()

    async def _get_updates(self, body: dict[str, Any], request: web.Request) -> web.Response:
        """A long poll as the Bot API answers it: what is not confirmed by `offset`, at once or
        when a tap comes within `timeout`; 409 to the older of two pollers, and with a webhook."""
        if self.webhook_set:
            self.conflicts += 1
            return web.json_response({"ok": False, "error_code": 409, "description": (
                "Conflict: can't use getUpdates method while webhook is active; use deleteWebhook"
                " to delete the webhook first")}, status=409)  # fmt: skip
        offset = int(str(body.get("offset") or 0))
        self.updates = [u for u in self.updates if u["update_id"] >= offset]
        self._polls += 1
        poll = self._polls
        self._news.set()  # an older poll still waiting is terminated by this one
        self._news = asyncio.Event()
        deadline = asyncio.get_running_loop().time() + float(str(body.get("timeout") or 0))
        while not self.updates:
            left = deadline - asyncio.get_running_loop().time()
            if left <= 0:
                break
            news = self._news
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(news.wait(), left)
            if self._polls != poll:
                if request.transport is not None and not request.transport.is_closing():
                    self.conflicts += 1  # a poller still there (not one killed mid-poll)
                return web.json_response({"ok": False, "error_code": 409, "description": (
                    "Conflict: terminated by other getUpdates request; make sure that only one"
                    " bot instance is running")}, status=409)  # fmt: skip
        return web.json_response({"ok": True, "result": self.updates})

    def _photo(self, body: dict[str, Any]) -> web.Response:
        """sendPhoto as a multipart upload: the file part must be a PNG or JPEG of at most 10 MB."""
        photo = body.get("photo")
        if not hasattr(photo, "file"):
            return self._bad("Bad Request: there is no photo in the request")
        data = photo.file.read()
        if len(data) > 10_000_000 or not data.startswith((b"\x89PNG\r\n\x1a\n", b"\xff\xd8")):
            return self._bad("Bad Request: IMAGE_PROCESS_FAILED")
        caption = str(body.get("caption", ""))
        if len(caption) > 1024:
            return self._bad("Bad Request: message caption is too long")
        message_id = next(self._ids)
        reply = body.get("reply_parameters")
        reply_to = json.loads(str(reply)).get("message_id") if reply else None
        record = {k: v for k, v in body.items() if k != "photo"}
        record |= {"message_id": message_id, "reply_to": reply_to, "photo": data}
        record |= {"filename": photo.filename, "content_type": photo.content_type}
        self.photos.append(record)
        return self._message(body, message_id, caption)

    def _edit(self, body: dict[str, Any]) -> web.Response:
        visible, refused = self._visible(body)
        if refused:
            return refused
        record = self._find(str(body.get("chat_id")), body.get("message_id"))
        if record is None:
            return self._bad("Bad Request: message to edit not found")
        shown = ("text", "parse_mode", "reply_markup")
        if all(record.get(key) == body.get(key) for key in shown):
            return self._bad(
                "Bad Request: message is not modified: specified new message content and reply "
                "markup are exactly the same as a current content and reply markup of the message"
            )
        for key in shown:
            record.pop(key, None)
        record.update({key: body[key] for key in shown if key in body})
        record.update(visible=visible, edited=True)
        self.edits.append({**body, "visible": visible})
        return self._message(body, record["message_id"], visible, edit_date=1700000060)

    @staticmethod
    def _message(body: dict[str, Any], message_id: int, visible: str, **extra: Any) -> web.Response:
        chat_id = int(str(body.get("chat_id", "0")).lstrip("-") or 0) * -1
        return web.json_response(
            {
                "ok": True,
                "result": {
                    "message_id": message_id,
                    "date": 1700000000,
                    "chat": {"id": chat_id, "type": "supergroup"},
                    "text": visible,
                    **extra,
                },
            }
        )

    @staticmethod
    def _bad(description: str) -> web.Response:
        return web.json_response(
            {"ok": False, "error_code": 400, "description": description}, status=400
        )


@dataclass
class FakeLLM(LoopbackServer):
    """An OpenAI-compatible /v1/chat/completions answering a diagnosis built from the prompt.

    `fail_next` scripts errors; `hang_next(seconds)` delays the next answer; `prose_next()` answers
    text that is not JSON. `delay` seconds are slept before every model answer (a slow model, for
    benchmarks); `chat_calls` counts the chat requests received.
    """

    key: str = "sk-fake-llm-key-for-tests"
    model_reply: dict[str, Any] | None = None
    delay: float = 0.0
    chat_calls: int = 0
    _hangs: list[float] = field(default_factory=list)
    _prose: int = 0

    def routes(self, app: web.Application) -> None:
        app.router.add_post("/v1/chat/completions", self._chat)
        app.router.add_get("/v1/models", self._models)

    @property
    def base_url(self) -> str:
        return f"{self.url}/v1"

    def hang_next(self, seconds: float) -> None:
        self._hangs.append(seconds)

    def prose_next(self) -> None:
        self._prose += 1

    def _authorized(self, request: web.Request) -> bool:
        return request.headers.get("Authorization") == f"Bearer {self.key}"

    async def _models(self, request: web.Request) -> web.Response:
        if not self._authorized(request):
            return web.json_response({"error": {"message": "Incorrect API key"}}, status=401)
        return web.json_response({"object": "list", "data": [{"id": "deepseek-chat"}]})

    async def _chat(self, request: web.Request) -> web.Response:
        body = await request.json()
        self.requests.append(Recorded("chat", body, dict(request.headers)))
        self.chat_calls += 1
        if not self._authorized(request):
            return web.json_response({"error": {"message": "Incorrect API key"}}, status=401)
        # Each request's behaviour is decided when it arrives, so a hung request that wakes up
        # later cannot take a script meant for the next one.
        if failure := self.scripted_failure():
            return failure
        if self._hangs:
            await asyncio.sleep(self._hangs.pop(0))
        elif self._prose:
            self._prose -= 1
            await self._slow()
            return self._completion("The exchange seems down. Restart things and hope.")
        await self._slow()
        return self._completion(json.dumps(self.model_reply or self._diagnose(body)))

    async def _slow(self) -> None:
        if self.delay > 0:
            await asyncio.sleep(self.delay)

    @staticmethod
    def _diagnose(body: dict[str, Any]) -> dict[str, Any]:
        user = body["messages"][-1]["content"]
        current = re.search(r'"current":(-?[0-9.e+-]+)', user)
        exchanges = sorted(set(re.findall(r'"exchange":"([^"]+)"', user)))
        return {
            "diagnosis": f"[fake-llm] {', '.join(exchanges) or 'the service'} failing; "
            f"current value {current.group(1) if current else 'unknown'}.",
            "impact": "[fake-llm] trading on the affected exchange is blocked.",
            "action_items": ["[fake-llm] check the exchange status page", "[fake-llm] fail over"],
            "rollback_plan": "[fake-llm] revert the last change.",
            "estimated_recovery_time": "[fake-llm] 10 minutes",
        }

    @staticmethod
    def _completion(content: str) -> web.Response:
        return web.json_response(
            {
                "id": "chatcmpl-fake",
                "object": "chat.completion",
                "model": "deepseek-chat",
                "choices": [
                    {
                        "index": 0,
                        "finish_reason": "stop",
                        "message": {"role": "assistant", "content": content},
                    }
                ],
            }
        )


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


async def _serve_forever(ports: dict[str, int]) -> None:
    servers: dict[str, LoopbackServer] = {}
    if ports.get("slack") is not None:
        servers["slack"] = await FakeSlack(port=ports["slack"]).start()
        print(
            f"fake Slack    SLACK_API_URL={servers['slack'].url}/api/ "
            f"SLACK_BOT_TOKEN={FAKE_SLACK_TOKEN} SLACK_CHANNEL=C0FAKE0001",
            flush=True,
        )
    if ports.get("telegram") is not None:
        tg = FakeTelegram(port=ports["telegram"])
        servers["telegram"] = await tg.start()
        print(
            f"fake Telegram TELEGRAM_API_URL={tg.api_url} TELEGRAM_BOT_TOKEN={tg.token} "
            "TELEGRAM_CHAT_ID=-100123",
            flush=True,
        )
    if ports.get("llm") is not None:
        llm = FakeLLM(port=ports["llm"])
        servers["llm"] = await llm.start()
        print(f"fake LLM      LLM_BASE_URL={llm.base_url} LLM_API_KEY={llm.key}", flush=True)
    seen = dict.fromkeys(servers, 0)
    while True:
        await asyncio.sleep(0.2)
        for name, server in servers.items():
            for record in server.requests[seen[name] :]:
                line = {"server": name, "method": record.method, "body": record.body}
                print(json.dumps(line, ensure_ascii=False), flush=True)
            seen[name] = len(server.requests)


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(description=__doc__)
    for name in ("slack", "telegram", "llm"):
        parser.add_argument(f"--{name}", type=int, help=f"port for the fake {name} API")
    args = parser.parse_args()
    asyncio.run(_serve_forever(vars(args)))
