"""The service's outside world for the bench, in a process of its own: `python -m bench.fakes`.

Slack, Telegram and the LLM are the fakes of tests/loopback.py; Prometheus is a tiny fake here that
answers every query at once with a small valid result. They run in their own process, not in the
bench's event loop: at 200 notifications a second the service makes some 800 requests a second to
them, and answering those in the loop that times the webhook posts would show up in its timings.

Each top-level chat message, each reply and each edit (Slack chat.update, Telegram
editMessageText) is recorded with its arrival time (`time.monotonic()`, CLOCK_MONOTONIC: the same
clock in every process on the machine, so the bench compares it with the time it posted) under the
group marker it shows (bench/payloads.py), by bench/recorder.py. A small control API on a port of
its own resets the records, sets the LLM's delay, waits for messages, counts LLM calls and hands
out the prompt of a group.

The process prints one JSON line with every address, then serves until SIGTERM or SIGINT.
`Fakes` is the bench's handle on that process.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import json
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from typing import IO, Any

import aiohttp
from aiohttp import web

from bench.payloads import ROOT, marker_in
from bench.recorder import Recorder, Times
from tests.loopback import FakeLLM, FakeSlack, FakeTelegram, LoopbackServer

PROMPTS_KEPT = 500
SAMPLES = 60


@dataclass
class RecordingSlack(FakeSlack):
    """FakeSlack that records the arrival of every chat.postMessage and chat.update."""

    recorder: Recorder = field(default_factory=Recorder)

    async def _api(self, request: web.Request) -> web.Response:
        arrived = time.monotonic()
        method = request.match_info["method"]
        if method not in ("chat.postMessage", "chat.update"):
            return await super()._api(request)
        body = await self.read_body(request)
        if method == "chat.postMessage":
            await self.recorder.record("slack", body, bool(body.get("thread_ts")), arrived)
            return await super()._api(request)
        target = self.messages.get(str(body.get("ts")))
        response = await super()._api(request)
        applied = json.loads(response.text or "{}").get("ok") is True
        await self.recorder.record_edit("slack", body, target, applied, arrived)
        return response


@dataclass
class RecordingTelegram(FakeTelegram):
    """FakeTelegram that records the arrival of every sendMessage and editMessageText."""

    recorder: Recorder = field(default_factory=Recorder)

    async def _api(self, request: web.Request) -> web.Response:
        arrived = time.monotonic()
        method = request.match_info["method"]
        if method not in ("sendMessage", "editMessageText"):
            return await super()._api(request)
        body = await self.read_body(request)
        if method == "sendMessage":
            reply = bool(body.get("reply_parameters"))
            await self.recorder.record("telegram", body, reply, arrived)
            return await super()._api(request)
        target = self._find(str(body.get("chat_id")), body.get("message_id"))
        target = dict(target) if target is not None else None  # as it was before this edit
        response = await super()._api(request)
        await self.recorder.record_edit("telegram", body, target, response.status == 200, arrived)
        return response


@dataclass
class RecordingLLM(FakeLLM):
    """FakeLLM that keeps the messages of the latest calls, by the group marker in the prompt."""

    prompts: collections.OrderedDict[str, dict[str, str]] = field(
        default_factory=collections.OrderedDict
    )

    async def _chat(self, request: web.Request) -> web.Response:
        body = await request.json()
        messages = {m.get("role", ""): str(m.get("content", "")) for m in body.get("messages", [])}
        marker = marker_in(messages.get("user", ""))
        if marker is not None:
            self.prompts[marker] = messages
            while len(self.prompts) > PROMPTS_KEPT:
                self.prompts.popitem(last=False)
        return await super()._chat(request)


def matrix(start: float, end: float, step: float) -> dict[str, Any]:
    """query_range's answer: one series, no labels but its name, so it is every alert's own."""
    count = max(1, min(SAMPLES, int((end - start) / max(step, 1.0)) + 1))
    values = [[start + i * step, f"{0.2 + 0.013 * i + 0.05 * (i % 7):.4f}"] for i in range(count)]
    series = {"metric": {"__name__": "api_health_status"}, "values": values}
    return {"status": "success", "data": {"resultType": "matrix", "result": [series]}}


@dataclass
class FakePrometheus(LoopbackServer):
    """/api/v1/query_range and /api/v1/query, answered at once; buildinfo for `check`."""

    queries: int = 0

    def routes(self, app: web.Application) -> None:
        for method in ("GET", "POST"):
            app.router.add_route(method, "/api/v1/query_range", self._range)
            app.router.add_route(method, "/api/v1/query", self._instant)
        app.router.add_get("/api/v1/status/buildinfo", self._buildinfo)

    @staticmethod
    async def _params(request: web.Request) -> dict[str, str]:
        params = dict(request.query)
        if request.method == "POST":
            params.update({k: str(v) for k, v in (await request.post()).items()})
        return params

    async def _range(self, request: web.Request) -> web.Response:
        self.queries += 1
        params = await self._params(request)
        now = time.time()
        start = float(params.get("start", now - 1800))
        end = float(params.get("end", now))
        return web.json_response(matrix(start, end, float(params.get("step", 30))))

    async def _instant(self, request: web.Request) -> web.Response:
        self.queries += 1
        sample = {"metric": {"__name__": "api_health_status"}, "value": [time.time(), "0"]}
        data = {"resultType": "vector", "result": [sample]}
        return web.json_response({"status": "success", "data": data})

    async def _buildinfo(self, request: web.Request) -> web.Response:
        return web.json_response({"status": "success", "data": {"version": "2.42.0-bench"}})


@dataclass
class Control(LoopbackServer):
    """The bench's handle on the fakes: reset, wait, arrivals, stats, prompt."""

    recorder: Recorder = field(default_factory=Recorder)
    slack: RecordingSlack | None = None
    telegram: RecordingTelegram | None = None
    llm: RecordingLLM | None = None
    prometheus: FakePrometheus | None = None

    def routes(self, app: web.Application) -> None:
        app.router.add_post("/reset", self._reset)
        app.router.add_post("/wait", self._wait)
        app.router.add_post("/arrivals", self._arrivals)
        app.router.add_get("/stats", self._stats)
        app.router.add_get("/prompt", self._prompt)

    async def _reset(self, request: web.Request) -> web.Response:
        assert self.slack and self.telegram and self.llm and self.prometheus
        options = await request.json()
        self.recorder.clear()
        self.llm.delay = float(options.get("llm_delay", 0.0))
        self.llm.chat_calls = 0
        self.llm.prompts.clear()
        self.prometheus.queries = 0
        for server in (self.slack, self.telegram, self.llm):
            server.requests.clear()
        self.slack.messages.clear()
        self.telegram.sent.clear()
        return web.json_response({"ok": True})

    async def _wait(self, request: web.Request) -> web.Response:
        options = await request.json()
        markers, kind = list(options["markers"]), str(options.get("kind", "first"))
        done = await self.recorder.wait(markers, kind, float(options.get("timeout", 10)))
        return web.json_response({"done": done, "arrivals": self.recorder.arrivals(markers, kind)})

    async def _arrivals(self, request: web.Request) -> web.Response:
        options = await request.json()
        markers, kind = list(options["markers"]), str(options["kind"])
        return web.json_response(self.recorder.arrivals(markers, kind))

    async def _stats(self, request: web.Request) -> web.Response:
        assert self.llm and self.prometheus
        return web.json_response(
            {
                "llm_calls": self.llm.chat_calls,
                "prometheus_queries": self.prometheus.queries,
                "counts": dict(self.recorder.counts),
            }
        )

    async def _prompt(self, request: web.Request) -> web.Response:
        assert self.llm
        messages = self.llm.prompts.get(request.query.get("marker", ""))
        if messages is None:
            return web.json_response({"error": "no prompt for this marker"}, status=404)
        return web.json_response(messages)


async def serve() -> None:
    """Start every fake, print their addresses as one JSON line, serve until told to stop."""
    recorder = Recorder()
    slack, telegram = RecordingSlack(recorder=recorder), RecordingTelegram(recorder=recorder)
    llm, prometheus = RecordingLLM(), FakePrometheus()
    control = Control(
        recorder=recorder, slack=slack, telegram=telegram, llm=llm, prometheus=prometheus
    )
    for server in (slack, telegram, llm, prometheus, control):
        await server.start()
    addresses = {
        "control": control.url,
        "slack_api_url": slack.api_url,
        "slack_token": slack.token,
        "slack_channel": slack.channel_id,
        "telegram_api_url": telegram.api_url,
        "telegram_token": telegram.token,
        "llm_base_url": llm.base_url,
        "llm_key": llm.key,
        "prometheus_url": prometheus.url,
    }
    print(json.dumps(addresses), flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    await stop.wait()
    for server in (control, slack, telegram, llm, prometheus):
        await server.stop()


class Fakes:
    """The fakes' process, seen from the bench: its addresses and its control API."""

    def __init__(self, process: subprocess.Popen[str], addresses: dict[str, str]) -> None:
        self.process = process
        self.addresses = addresses
        self._session: aiohttp.ClientSession | None = None

    @classmethod
    def start(cls, log: IO[str]) -> Fakes:
        process = subprocess.Popen(
            [sys.executable, "-m", "bench.fakes"],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=log,
            text=True,
        )
        assert process.stdout is not None
        line = process.stdout.readline()
        if not line:
            process.wait(timeout=10)
            raise SystemExit(
                f"bench.fakes did not start (exit {process.returncode}); see {log.name}"
            )
        return cls(process, json.loads(line))

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

    def env(self) -> dict[str, str]:
        """The service's settings for these fakes."""
        a = self.addresses
        return {
            "PROMETHEUS_URL": a["prometheus_url"],
            "SLACK_API_URL": a["slack_api_url"],
            "SLACK_BOT_TOKEN": a["slack_token"],
            "SLACK_CHANNEL": a["slack_channel"],
            "TELEGRAM_API_URL": a["telegram_api_url"],
            "TELEGRAM_BOT_TOKEN": a["telegram_token"],
            "TELEGRAM_CHAT_ID": "-100123",
            "LLM_BASE_URL": a["llm_base_url"],
            "LLM_API_KEY": a["llm_key"],
        }

    async def __aenter__(self) -> Fakes:
        self._session = aiohttp.ClientSession(self.addresses["control"])
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._session is not None:
            await self._session.close()

    @property
    def session(self) -> aiohttp.ClientSession:
        assert self._session is not None, "use `async with fakes:`"
        return self._session

    async def reset(self, llm_delay: float = 0.0) -> None:
        async with self.session.post("/reset", json={"llm_delay": llm_delay}) as response:
            response.raise_for_status()

    async def wait(
        self, markers: list[str], kind: str = "first", seconds: float = 10.0
    ) -> tuple[bool, Times]:
        """(every marker has an arrival of `kind` (bench/recorder.py) on both channels within
        `seconds`, arrival times so far)."""
        options = {"markers": markers, "kind": kind, "timeout": seconds}
        client_timeout = aiohttp.ClientTimeout(total=seconds + 30)
        async with self.session.post("/wait", json=options, timeout=client_timeout) as response:
            response.raise_for_status()
            answer = await response.json()
        return bool(answer["done"]), answer["arrivals"]

    async def arrivals(self, markers: list[str], kind: str) -> Times:
        """The arrival times of `kind` so far, without waiting."""
        async with self.session.post("/arrivals", json={"markers": markers, "kind": kind}) as r:
            r.raise_for_status()
            answer: Times = await r.json()
            return answer

    async def stats(self) -> dict[str, Any]:
        async with self.session.get("/stats") as response:
            response.raise_for_status()
            answer: dict[str, Any] = await response.json()
            return answer

    async def prompt(self, marker: str) -> dict[str, str] | None:
        async with self.session.get("/prompt", params={"marker": marker}) as response:
            if response.status == 404:
                return None
            response.raise_for_status()
            answer: dict[str, str] = await response.json()
            return answer


def main() -> None:
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve())


if __name__ == "__main__":
    main()
