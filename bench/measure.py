"""The measurements of one bench run; each starts a fresh server process (and a fresh store).

- `ack_phase`: the webhook ack path of the service, then of the bare FastAPI app: an open-loop
  steady rate of 10-alert notifications (latency from each post's scheduled time to its answer,
  so a stalled server cannot hide its backlog of waiting posts), then closed-loop throughput.
- `pipeline_phase`: one notification at a time, from the start of its POST to its first chat
  message at the fakes (instant LLM); then the real prompts of a 1-alert and a 100-alert group.

The storms, many groups posted at once with a slow LLM, are bench/storms.py's. Figures are
returned as a flat dict, keyed as bench/report.py lists them.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import math
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

import aiohttp

from bench.fakes import Fakes
from bench.payloads import Notification, group, groups
from bench.recorder import CHANNELS
from bench.servers import WEBHOOK_TOKEN, Launcher, Server, Stores

HEADERS = {"Content-Type": "application/json", "Authorization": f"Bearer {WEBHOOK_TOKEN}"}
Figures = dict[str, float]
TokenCounter = Callable[[str], int]


class BenchError(Exception):
    """A measurement could not be made (a lost message, a refused post); the run goes on."""


@dataclass
class Bench:
    """What the measurements are made with: the processes, the fakes and the sizes."""

    launcher: Launcher
    fakes: Fakes
    count_tokens: TokenCounter
    rate: float = 200.0
    duration: float = 10.0
    posts: int = 2000
    clients: int = 16
    samples: int = 100
    groups: int = 200
    group_size: int = 5
    llm_delay: float = 1.0
    slow_llm_delay: float = 20.0  # the slow-LLM storm's: pages may not wait for it
    llm_concurrency: int = 16
    workers: int = 32
    pipeline_process: str = "auto"
    warmup: int = 20
    say: Callable[[str], None] = field(default=print)

    @property
    def service_env(self) -> dict[str, str]:
        """LLM_CONCURRENCY, WORKERS and PIPELINE_PROCESS for every service process (code without
        a setting ignores it)."""
        env = {"LLM_CONCURRENCY": str(self.llm_concurrency), "WORKERS": str(self.workers)}
        if self.pipeline_process != "auto":  # builds where it is a bool do not take "auto"
            env["PIPELINE_PROCESS"] = self.pipeline_process
        return env

    @property
    def storm_floor(self) -> float:
        """The least a storm can take: its LLM calls in waves of LLM_CONCURRENCY, the last one
        perhaps not full (200 calls, 16 at a time: 13 waves of 1 s, not 12.5)."""
        return math.ceil(self.groups / self.llm_concurrency) * self.llm_delay

    @property
    def storm_limit(self) -> float:
        """How long a storm's messages are waited for before the missing ones count as lost."""
        return max(60.0, 4 * self.storm_floor + 30)


def percentile(values: list[float], q: float) -> float:
    """The q-th percentile (0-100), interpolated between the two nearest samples."""
    if not values:
        return math.nan
    ordered = sorted(values)
    position = (len(ordered) - 1) * q / 100
    low = math.floor(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def client(connections: int = 64) -> aiohttp.ClientSession:
    """Keep-alive connections (aiohttp sets TCP_NODELAY on each, as Alertmanager's Go client has
    it: without it, Nagle and the server's delayed ACK add ~40 ms to kept-alive requests)."""
    connector = aiohttp.TCPConnector(limit=connections, force_close=False)
    return aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=60))


async def post(session: aiohttp.ClientSession, server: Server, body: bytes) -> int:
    async with session.post(f"{server.url}/alerts", data=body, headers=HEADERS) as response:
        await response.read()
        return response.status


@contextlib.asynccontextmanager
async def running(server: Server) -> AsyncIterator[Server]:
    """The server, ready; stopped afterwards whatever happened. A connection error becomes a
    BenchError that says whether the process is still alive, and how its log ends."""
    try:
        await server.wait_ready()
        yield server
    except (aiohttp.ClientError, TimeoutError) as exc:
        code = server.process.poll()
        state = "still running" if code is None else f"exited with {code}"
        tail = server.log_tail(1500).strip() or "(empty)"
        raise BenchError(f"{server.name} ({state}): {exc!r}; its log ends:\n{tail}") from exc
    finally:
        server.stop()


@dataclass
class OpenLoop:
    latencies: list[float]
    statuses: collections.Counter[int]
    late: float  # how far behind its schedule the bench itself fell at worst (s)


async def open_loop(
    session: aiohttp.ClientSession, server: Server, bodies: list[bytes], rate: float
) -> OpenLoop:
    """Send at fixed times, never waiting for an answer before the next send is due."""
    result = OpenLoop([], collections.Counter(), 0.0)

    async def one(body: bytes, due: float) -> None:
        status = await post(session, server, body)
        result.latencies.append(time.monotonic() - due)
        result.statuses[status] += 1

    start = time.monotonic() + 0.05
    tasks = []
    for index, body in enumerate(bodies):
        due = start + index / rate
        if (wait := due - time.monotonic()) > 0:
            await asyncio.sleep(wait)
        result.late = max(result.late, time.monotonic() - due)
        tasks.append(asyncio.create_task(one(body, due)))
    await asyncio.gather(*tasks)
    return result


@dataclass
class ClosedLoop:
    elapsed: float
    statuses: collections.Counter[int]
    started: list[float]  # when each body's POST started, by index
    last_answer: float


async def closed_loop(
    session: aiohttp.ClientSession, server: Server, bodies: list[bytes], clients: int
) -> ClosedLoop:
    """`clients` posters, each posting the next body as soon as its previous one is answered."""
    result = ClosedLoop(0.0, collections.Counter(), [math.nan] * len(bodies), 0.0)
    queue = collections.deque(enumerate(bodies))

    async def poster() -> None:
        while queue:
            index, body = queue.popleft()
            result.started[index] = time.monotonic()
            result.statuses[await post(session, server, body)] += 1
            result.last_answer = time.monotonic()

    began = time.monotonic()
    await asyncio.gather(*(poster() for _ in range(clients)))
    result.elapsed = time.monotonic() - began
    return result


async def backlog(session: aiohttp.ClientSession, server: Server) -> int | None:
    """/health's components.workers.backlog (None when the store cannot say)."""
    async with session.get(f"{server.url}/health") as response:
        value = (await response.json())["components"]["workers"]["backlog"]
        return None if value is None else int(value)


async def drain(session: aiohttp.ClientSession, server: Server, limit: float) -> float:
    """Seconds until the backlog is 0; BenchError past `limit` seconds."""
    began = time.monotonic()
    while await backlog(session, server) != 0:
        if time.monotonic() - began > limit:
            raise BenchError(f"backlog not processed within {limit:.0f} s")
        await asyncio.sleep(0.05)
    return time.monotonic() - began


def others(statuses: collections.Counter[int], expected: int = 202) -> int:
    return sum(count for status, count in statuses.items() if status != expected)


async def ack(bench: Bench, server: Server, service: bool) -> Figures:
    """Warm up, then the steady rate, then the closed loop. The service's backlog is processed
    before each (how fast that goes is a figure too); what the closed loop leaves is handed back
    when the server stops (its store is thrown away)."""
    bodies = [n.body for n in groups(round(bench.rate * bench.duration), 10)]
    closed_bodies = [n.body for n in groups(bench.posts, 10)]
    figures: Figures = {}
    # A session per load: connections left idle while the backlog drains are closed by the server
    # after its keep-alive (5 s), and a POST racing that close fails as a reset.
    async with client() as session:
        for note in groups(bench.warmup, 10):
            await post(session, server, note.body)
        if service:
            await drain(session, server, 120)
    async with client() as session:
        began = time.monotonic()
        steady = await open_loop(session, server, bodies, bench.rate)
        if service:
            figures["drain"] = await drain(session, server, 600)
            figures["processed"] = len(bodies) / (time.monotonic() - began)
    async with client() as session:
        closed = await closed_loop(session, server, closed_bodies, bench.clients)
    figures |= {
        "p50": percentile(steady.latencies, 50) * 1000,
        "p99": percentile(steady.latencies, 99) * 1000,
        "rps": bench.posts / closed.elapsed,
        "errors": others(steady.statuses) + others(closed.statuses),
        "late": steady.late * 1000,
    }
    return figures


async def ack_phase(bench: Bench, stores: Stores) -> Figures:
    """The service's ack path against the bare app's, in the same run."""
    await bench.fakes.reset(llm_delay=0.0)
    server = bench.launcher.service(stores.new_url(), bench.service_env)
    async with running(server):
        mine = await ack(bench, server, service=True)
        rss = sum(server.peak_rss_mib())
    async with running(bench.launcher.bare()) as bare:
        floor = await ack(bench, bare, service=False)
    late = max(mine["late"], floor["late"])
    bench.say(
        f"  ack at {bench.rate:.0f}/s: p50 {mine['p50']:.1f} ms, p99 {mine['p99']:.1f} ms "
        f"(bare {floor['p50']:.1f}, {floor['p99']:.1f}); {bench.clients} clients: "
        f"{mine['rps']:.0f} req/s (bare {floor['rps']:.0f}); the steady rate's notifications "
        f"processed {mine['drain']:.1f} s after it ({mine['processed']:.0f}/s); the bench fell "
        f"behind its schedule by {late:.1f} ms at worst"
    )
    return {
        "ack_p50": mine["p50"],
        "ack_p99": mine["p99"],
        "bare_p50": floor["p50"],
        "bare_p99": floor["p99"],
        "rps": mine["rps"],
        "bare_rps": floor["rps"],
        "ratio": mine["rps"] / floor["rps"] * 100,
        "ack_errors": mine["errors"] + floor["errors"],
        "processed": mine["processed"],
        "late": late,
        "rss_ack": rss,
    }


async def first_message(
    bench: Bench, session: aiohttp.ClientSession, server: Server, note: Notification
) -> tuple[float, float]:
    """Seconds from the start of the POST to the first chat message, and to the last channel's."""
    began = time.monotonic()
    status = await post(session, server, note.body)
    if status != 202:
        raise BenchError(f"POST answered {status}")
    done, arrivals = await bench.fakes.wait([note.marker], "first", seconds=30)
    if not done:
        raise BenchError(f"{note.marker}: no message on every channel within 30 s")
    times = [arrivals[channel][note.marker] for channel in CHANNELS]
    return min(times) - began, max(times) - began


async def prompt_tokens(
    bench: Bench, session: aiohttp.ClientSession, server: Server, size: int
) -> int:
    """Tokens of the system and user messages the service sends the LLM for a group of `size`."""
    note = group(size)
    await first_message(bench, session, server, note)
    messages = await bench.fakes.prompt(note.marker)
    if messages is None:
        raise BenchError(f"no LLM call seen for the {size}-alert group")
    return sum(bench.count_tokens(messages.get(role, "")) for role in ("system", "user"))


async def pipeline_phase(bench: Bench, stores: Stores) -> Figures:
    """Sequential notifications with an instant LLM; then the prompts' sizes."""
    await bench.fakes.reset(llm_delay=0.0)
    first: list[float] = []
    every: list[float] = []
    server = bench.launcher.service(stores.new_url(), bench.service_env)
    async with running(server), client() as session:
        for _ in range(max(3, bench.warmup // 4)):
            await first_message(bench, session, server, group(1))
        for _ in range(bench.samples):
            one, both = await first_message(bench, session, server, group(1))
            first.append(one)
            every.append(both)
        tokens_1 = await prompt_tokens(bench, session, server, 1)
        tokens_100 = await prompt_tokens(bench, session, server, 100)
    figures = {
        "pipe_p50": percentile(first, 50) * 1000,
        "pipe_p99": percentile(first, 99) * 1000,
        "pipe_all_p50": percentile(every, 50) * 1000,
        "pipe_all_p99": percentile(every, 99) * 1000,
        "tokens_1": tokens_1,
        "tokens_100": tokens_100,
    }
    bench.say(
        f"  pipeline, {bench.samples} notifications one at a time: first message p50 "
        f"{figures['pipe_p50']:.1f} ms, p99 {figures['pipe_p99']:.1f} ms (both channels "
        f"{figures['pipe_all_p50']:.1f}, {figures['pipe_all_p99']:.1f}); prompt tokens: "
        f"{tokens_1} (1 alert), {tokens_100} (100 alerts)"
    )
    return figures
