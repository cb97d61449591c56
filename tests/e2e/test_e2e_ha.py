"""High availability (issue 9): replicas of the service sharing one PostgreSQL database.

Each replica is `make run` on a port of its own; the replicas share all work through the database.
Each has a different LLM_MODEL (`replica-0`, `replica-1`), which the fake LLM records with every
request, so a test knows which replica is diagnosing a notification (and the message says which one
it came from). Most tests share one pair of replicas on one database (started once per module);
the replicas are put back into shape (restarted, resumed) and the fakes emptied before each test.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import json
import re
import shutil
import signal
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import httpx
import psycopg
import pytest
import pytest_asyncio

from app.store.postgres_schema import SCHEMA_VERSION
from tests.e2e.conftest import Fakes
from tests.e2e.exporter import Exporter
from tests.e2e.stack import WEBHOOK_TOKEN, Process, Stack
from tests.fakes import FIXTURES
from tests.loopback import FakeLLM, FakeSlack, FakeTelegram, Recorded, all_text
from tests.pgserver import PostgresServer

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.timeout(240),
    pytest.mark.asyncio(loop_scope="module"),  # the module's fakes live on the module's loop
]

T = TypeVar("T")
LEASE_SECONDS = 3.0
TAPPER = 1001  # the Telegram user allowed to tap the silence buttons
LLM_BUDGET_SECONDS = 4.0
AUTH = {"Authorization": f"Bearer {WEBHOOK_TOKEN}"}
REPLICA_ENV = [{"LLM_MODEL": "replica-0"}, {"LLM_MODEL": "replica-1"}]
DONE = 'alert_enricher_notifications_processed_total{outcome="done"}'
LOST = 'alert_enricher_notifications_processed_total{outcome="lost"}'
STORE_ERRORS = 'alert_enricher_webhooks_total{outcome="store_error"}'
AM_FAILED = 'alertmanager_notification_requests_failed_total{integration="webhook"}'
GROUP = re.compile(r"\bha-[a-z]+-\d{3}\b")
FIRING = (FIXTURES / "alertmanager-0.25-firing_apidown_binance.json").read_text()


def ha_env(fakes: Fakes, store_url: str, **extra: str) -> dict[str, str]:
    return {
        **fakes.service_env(),
        "STORE_URL": store_url,
        "LEASE_SECONDS": str(LEASE_SECONDS),
        "LLM_TIMEOUT_SECONDS": str(LLM_BUDGET_SECONDS),
        # Pages wait for their diagnosis here, so a stalled worker holds a claim across the LLM
        # call, which is what the fencing tests stop it in (page-first: test_e2e_page_first.py).
        "PAGE_WITHIN_SECONDS": "60",
        "CONTEXT_WINDOW_MINUTES": "1",
        "PROMETHEUS_URL": "http://127.0.0.1:9",  # nothing there: "metrics unavailable", at once
        "TELEGRAM_ALLOWED_USER_IDS": str(TAPPER),  # silence buttons: one replica polls Telegram
        **extra,
    }


def exchange(tag: str, number: int) -> str:
    return f"ha-{tag}-{number:03d}"


def notification(tag: str, number: int) -> dict[str, Any]:
    """The binance APIDown fixture as a group of its own: exchange, group key and fingerprint."""
    name = exchange(tag, number)
    payload: dict[str, Any] = json.loads(FIRING.replace("binance", name))
    payload["alerts"][0]["fingerprint"] = hashlib.sha256(name.encode()).hexdigest()[:16]
    return payload


def groups_in(text: str) -> set[str]:
    return set(GROUP.findall(text))


def per_group(texts: list[str]) -> Counter[str]:
    """Messages per group; each message must be about exactly one group."""
    counts: Counter[str] = Counter()
    for text in texts:
        found = groups_in(text)
        assert len(found) == 1, f"a message about {found or 'no group'}: {text[:300]}"
        counts.update(found)
    return counts


def slack_per_group(fakes: Fakes) -> Counter[str]:
    return per_group(["\n".join(all_text(m)) for m in fakes.slack.messages.values()])


def telegram_per_group(fakes: Fakes) -> Counter[str]:
    return per_group([str(m["visible"]) for m in fakes.telegram.sent])


def replica_of(request: Recorded) -> int:
    """Which replica sent this LLM request: each has its own LLM_MODEL."""
    return int(str(request.body["model"]).removeprefix("replica-"))


async def metric(url: str, name: str) -> float:
    async with httpx.AsyncClient() as client:
        text = (await client.get(f"{url}/metrics", timeout=10)).text
    found = re.search(rf"^{re.escape(name)} ([0-9.e+]+)$", text, re.M)
    return float(found.group(1)) if found else 0.0


async def health(url: str) -> httpx.Response:
    async with httpx.AsyncClient() as client:
        return await client.get(f"{url}/health", timeout=30)


async def until(check: Callable[[], Awaitable[T | None]], timeout: float = 30, what: str = "") -> T:
    """Poll the async `check` until it returns something truthy."""
    deadline = time.monotonic() + timeout
    while True:
        result = await check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what or check}")
        await asyncio.sleep(0.1)


async def eventually(check: Callable[[], T], timeout: float = 30, what: str = "") -> T:
    async def wrapped() -> T:
        return check()

    return await until(wrapped, timeout, what)


async def done_counts(urls: list[str]) -> list[float]:
    return list(await asyncio.gather(*(metric(url, DONE) for url in urls)))


async def settle(
    urls: list[str], before: list[float], finished: int, timeout: float = 60
) -> list[float]:
    """Wait until these replicas finished `finished` more notifications between them and the
    shared store holds nothing unfinished; return how many each one finished."""

    async def check() -> list[float] | None:
        counts = await done_counts(urls)
        backlog = (await health(urls[0])).json()["components"]["workers"]["backlog"]
        done = [after - base for after, base in zip(counts, before, strict=True)]
        return done if sum(done) >= finished and backlog == 0 else None

    return await until(check, timeout, f"{finished} notifications finished")


async def post(client: httpx.AsyncClient, url: str, body: dict[str, Any]) -> httpx.Response:
    return await client.post(f"{url}/alerts", json=body, headers=AUTH, timeout=30)


def service_pid(process: Process) -> int:
    """The service's own process: `make run`'s child."""
    assert process.proc is not None and process.proc.poll() is None, f"{process.name} exited"
    pid = process.proc.pid
    children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    assert len(children) == 1, f"make has children {children}"
    return int(children[0])


def reset(fakes: Fakes) -> None:
    """Forget what the fakes recorded and anything scripted, between tests sharing them."""
    fakes.slack.messages.clear()
    fakes.slack.webhook_posts.clear()
    fakes.telegram.sent.clear()
    fakes.telegram.answers.clear()
    for server in (fakes.slack, fakes.telegram, fakes.llm):
        server.requests.clear()
        server._failures.clear()
    fakes.llm._hangs.clear()
    fakes.llm._prose = 0


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def ha_fakes() -> AsyncIterator[Fakes]:
    servers = Fakes(slack=FakeSlack(), telegram=FakeTelegram(), llm=FakeLLM())
    for server in (servers.slack, servers.telegram, servers.llm):
        await server.start()
    yield servers
    for server in (servers.slack, servers.telegram, servers.llm):
        await server.stop()


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def pair(
    postgres_server: PostgresServer, tmp_path_factory: pytest.TempPathFactory, ha_fakes: Fakes
) -> AsyncIterator[Stack]:
    """Two replicas on one fresh database, for the module's tests to share."""
    url = postgres_server.create_database(f"ha_{uuid.uuid4().hex[:12]}")
    stack = Stack(
        tmp_path_factory.mktemp("ha-pair"),
        exporter_port=9,  # no Prometheus here, so nothing scrapes it
        service_env=ha_env(ha_fakes, url),
        replicas=2,
        replica_env=REPLICA_ENV,
    )
    await asyncio.to_thread(stack.start_services)
    yield stack
    await asyncio.to_thread(stack.stop)


@pytest_asyncio.fixture(loop_scope="module")
async def replicas(pair: Stack, ha_fakes: Fakes) -> Stack:
    """The shared pair, both running (a test before may have stopped or killed one)."""
    for replica in range(pair.replicas):
        process = pair.processes[pair.replica_name(replica)]
        process.signal(signal.SIGCONT)
        if process.proc is None or process.proc.poll() is not None:
            await asyncio.to_thread(pair.start_service, True, replica)
    await settle(pair.replica_urls, await done_counts(pair.replica_urls), 0)  # nothing open
    reset(ha_fakes)
    return pair


async def test_the_same_notification_posted_to_both_replicas_is_accepted_once_and_sent_once(
    replicas: Stack, ha_fakes: Fakes
) -> None:
    urls = replicas.replica_urls
    before = await done_counts(urls)
    body = notification("dup", 0)
    async with httpx.AsyncClient() as client:
        answers = await asyncio.gather(*(post(client, url, body) for url in urls))

    assert sorted(a.status_code for a in answers) == [200, 202]
    accepted, duplicate = sorted(answers, key=lambda a: -a.status_code)
    assert duplicate.json() == {"status": "duplicate", "id": accepted.json()["id"]}
    await settle(urls, before, 1)
    assert slack_per_group(ha_fakes) == {exchange("dup", 0): 1}
    assert telegram_per_group(ha_fakes) == {exchange("dup", 0): 1}
    assert len(ha_fakes.llm.requests) == 1


async def test_replicas_share_200_groups_and_deliver_each_exactly_once(
    replicas: Stack, ha_fakes: Fakes
) -> None:
    urls = replicas.replica_urls
    before = await done_counts(urls)
    groups = 200
    gate = asyncio.Semaphore(8)

    async def send(client: httpx.AsyncClient, number: int) -> int:
        async with gate:  # alternately to each replica, a few at a time
            answer = await post(client, urls[number % 2], notification("grp", number))
            return answer.status_code

    started = time.monotonic()
    async with httpx.AsyncClient() as client:
        statuses = await asyncio.gather(*(send(client, n) for n in range(groups)))
    assert statuses == [202] * groups
    done = await settle(urls, before, groups, timeout=120)
    print(f"\n200 groups: posted and drained in {time.monotonic() - started:.1f}s, done {done}")

    # A page that went out preliminary under the load is followed by its diagnosis as an edit,
    # which is a notification of its own: at least the 200 pages, and every message once (below).
    assert sum(done) >= groups
    assert all(count > 0 for count in done), f"one replica did all the work: {done}"
    expected = {exchange("grp", n): 1 for n in range(groups)}
    assert slack_per_group(ha_fakes) == expected
    assert telegram_per_group(ha_fakes) == expected


RESUMED = ["while-the-other-holds-the-claim", "after-the-other-delivered"]


@pytest.mark.parametrize("resumed", RESUMED)
async def test_a_stopped_replica_whose_lease_was_taken_over_sends_nothing_more(
    replicas: Stack, ha_fakes: Fakes, resumed: str
) -> None:
    """SIGSTOP (a long GC pause, a frozen VM) while the replica waits for the LLM, until the other
    replica has taken the claim over; SIGCONT while that one still works on it (only the fencing
    token tells the two apart then) or once it delivered: the stalled worker sends nothing."""
    urls = replicas.replica_urls
    number = RESUMED.index(resumed)  # a group per variant: the same post again is a duplicate
    group = exchange("stp", number)
    before = await done_counts(urls)
    lost_before = [await metric(url, LOST) for url in urls]
    ha_fakes.llm.hang_next(10)  # the first claimant waits for the LLM, and is stopped there
    # The one taking over waits too, longer than what is left of the stalled one's LLM budget
    # when it resumes, so a stalled worker that was not fenced off would send first.
    ha_fakes.llm.hang_next(LLM_BUDGET_SECONDS - 0.5)
    async with httpx.AsyncClient() as client:
        assert (await post(client, urls[0], notification("stp", number))).status_code == 202
    [first] = await eventually(lambda: ha_fakes.llm.requests, what="a replica asking the LLM")
    holder = replica_of(first)
    other = 1 - holder
    stalled = replicas.processes[replicas.replica_name(holder)]
    stalled.signal(signal.SIGSTOP)
    try:
        await eventually(
            lambda: len(ha_fakes.llm.requests) == 2,
            # The stalled replica's LLM lane holds the diagnosis for LLM_TIMEOUT + LEASE seconds.
            timeout=LEASE_SECONDS + LLM_BUDGET_SECONDS + LEASE_SECONDS + 10,
            what="the other replica taking the claim over",
        )
        if resumed == "after-the-other-delivered":
            await eventually(
                lambda: ha_fakes.slack.messages and ha_fakes.telegram.sent,
                timeout=LLM_BUDGET_SECONDS + 10,
                what="the other replica delivering",
            )
    finally:
        stalled.signal(signal.SIGCONT)

    stalled_outcome = await until(
        lambda: _outcome(urls[holder], lost_before[holder], before[holder]),
        what="the resumed replica to stop or finish",
    )
    done = await settle(urls, before, 1)
    assert slack_per_group(ha_fakes) == {group: 1}
    assert telegram_per_group(ha_fakes) == {group: 1}
    [message] = ha_fakes.slack.messages.values()
    source = re.findall(r"Diagnosis source: [^\n·]*", "\n".join(all_text(message)))
    assert f"model replica-{other}" in str(source), f"not the new holder's diagnosis: {source}"
    assert stalled_outcome == "lost"
    assert done[other] == 1 and done[holder] == 0
    assert [replica_of(r) for r in ha_fakes.llm.requests] == [holder, other]


async def _outcome(url: str, lost_before: float, done_before: float) -> str | None:
    """What a replica did with its one claim: gave it up as lost, or finished it."""
    if await metric(url, LOST) > lost_before:
        return "lost"
    if await metric(url, DONE) > done_before:
        return "done"
    return None


async def test_a_killed_replicas_claim_is_taken_over_and_delivered_exactly_once(
    replicas: Stack, ha_fakes: Fakes
) -> None:
    urls = replicas.replica_urls
    before = await done_counts(urls)
    ha_fakes.llm.hang_next(10)  # the claim's holder is inside its LLM call when it dies
    async with httpx.AsyncClient() as client:
        assert (await post(client, urls[0], notification("kil", 0))).status_code == 202
    [first] = await eventually(lambda: ha_fakes.llm.requests, what="a replica asking the LLM")
    holder = replica_of(first)
    other = 1 - holder

    killed_at = time.monotonic()
    await asyncio.to_thread(replicas.processes[replicas.replica_name(holder)].kill)
    # The dead replica's LLM lane held the diagnosis for LLM_TIMEOUT + LEASE seconds; then the
    # other replica's lane asks again (the fake answers at once) and its page, waiting for it
    # here (PAGE_WITHIN_SECONDS=60), goes out.
    budget = LEASE_SECONDS + LLM_BUDGET_SECONDS + 1
    await eventually(
        lambda: len(ha_fakes.llm.requests) == 2, timeout=budget + 10, what="the takeover"
    )
    taken_over = time.monotonic() - killed_at
    await eventually(
        lambda: ha_fakes.slack.messages and ha_fakes.telegram.sent,
        timeout=budget + 10,
        what="delivery by the other replica",
    )
    delivered = time.monotonic() - killed_at
    print(f"\nkill -9: taken over after {taken_over:.1f}s, delivered after {delivered:.1f}s")

    assert delivered <= budget, f"delivered {delivered:.1f}s after the kill"
    assert replica_of(ha_fakes.llm.requests[1]) == other
    done = await settle([urls[other]], [before[other]], 1)
    assert done == [1]
    assert slack_per_group(ha_fakes) == {exchange("kil", 0): 1}
    assert telegram_per_group(ha_fakes) == {exchange("kil", 0): 1}


def pollers(stack: Stack) -> list[int]:
    """The replicas whose log says they hold the Telegram polling role now (a restarted
    replica's log goes on after its dead predecessor's: its start line ends what that held)."""
    held = []
    for replica in range(stack.replicas):
        lines = [
            line
            for line in stack.logs(stack.replica_name(replica)).splitlines()
            if "telegram poller: " in line
            and any(word in line for word in ("polling getUpdates", "role lost", "started"))
        ]
        if lines and "polling getUpdates" in lines[-1]:
            held.append(replica)
    return held


async def test_one_replica_polls_telegram_and_the_other_takes_over_when_it_is_killed(
    replicas: Stack, ha_fakes: Fakes
) -> None:
    # A replica resumed from SIGSTOP by an earlier test may think it polls until its next turn.
    [holder] = await eventually(
        lambda: pollers(replicas) if len(pollers(replicas)) == 1 else None, what="one poller"
    )
    assert ha_fakes.telegram.conflicts == 0, "never two getUpdates at once"
    async with httpx.AsyncClient() as client:
        answer = await post(client, replicas.replica_urls[0], notification("tap", 0))
    page_id = answer.json()["id"]
    [page] = await eventually(lambda: ha_fakes.telegram.sent, what="the Telegram page")
    killed_at = time.monotonic()
    await asyncio.to_thread(replicas.processes[replicas.replica_name(holder)].kill)
    ha_fakes.telegram.tap(f"silence:{page_id}:1", page["message_id"], user_id=TAPPER)
    # No Alertmanager runs here: the tap is answered with why nothing was made. What matters is
    # that the other replica answers it, after the dead one's lease (LEASE_SECONDS) ran out.
    [tapped] = await eventually(
        lambda: ha_fakes.telegram.answers, timeout=LEASE_SECONDS + 15, what="the other poller"
    )
    print(f"\nkill -9 of the poller: the tap answered after {time.monotonic() - killed_at:.1f}s")
    assert tapped["text"].startswith("Not done: Alertmanager did not take the silence")
    assert 1 - holder in pollers(replicas)
    assert ha_fakes.telegram.conflicts == 0


def error_lines(log: str) -> list[str]:
    return [
        line
        for line in log.splitlines()
        if re.search(r"\b(ERROR|CRITICAL|FATAL|PANIC)\b|Traceback", line)
    ]


class Gate:
    """TCP proxies to PostgreSQL, one port per replica, holding every connection until `open()`:
    replicas started together then reach the database at the same instant, not ~100 ms apart as
    their start-up times would have them."""

    def __init__(self, upstream_port: int, ports: int) -> None:
        self.upstream_port = upstream_port
        self.held = [0] * ports
        self.ports: list[int] = []
        self._open = asyncio.Event()
        self._servers: list[asyncio.Server] = []

    async def start(self) -> Gate:
        for index in range(len(self.held)):
            server = await asyncio.start_server(
                functools.partial(self._relay, index), "127.0.0.1", 0
            )
            self._servers.append(server)
            self.ports.append(server.sockets[0].getsockname()[1])
        return self

    def open(self) -> None:
        self._open.set()

    async def _relay(
        self, index: int, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        self.held[index] += 1
        await self._open.wait()
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.upstream_port)
        except OSError:
            writer.close()
            return
        await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))

    async def close(self) -> None:
        for server in self._servers:
            server.close()
            await server.wait_closed()


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while chunk := await reader.read(65536):
            writer.write(chunk)
            await writer.drain()
    except OSError:
        pass
    finally:
        writer.close()


async def test_replicas_started_together_on_an_empty_database_create_the_schema_once(
    postgres_server: PostgresServer, tmp_path: Path, ha_fakes: Fakes
) -> None:
    reset(ha_fakes)
    database = f"ha_{uuid.uuid4().hex[:12]}"
    url = postgres_server.create_database(database)
    log_start = postgres_server.log.stat().st_size
    gate = await Gate(postgres_server.port, 2).start()
    through = [
        {**env, "STORE_URL": url.replace(f":{postgres_server.port}/", f":{port}/")}
        for env, port in zip(REPLICA_ENV, gate.ports, strict=True)
    ]
    stack = Stack(
        tmp_path,
        exporter_port=9,
        service_env=ha_env(ha_fakes, url, STORE_POOL_SIZE="2"),
        replicas=2,
        replica_env=through,
    )
    try:
        started = asyncio.ensure_future(asyncio.to_thread(stack.start_services))  # at once
        await eventually(lambda: all(gate.held), timeout=4, what="both replicas at the gate")
        gate.open()
        await started
        for replica_url in stack.replica_urls:
            answer = await health(replica_url)
            assert answer.status_code == 200
            assert answer.json()["components"]["store"]["status"] == "ok"

        before = await done_counts(stack.replica_urls)
        async with httpx.AsyncClient() as client:
            for replica, replica_url in enumerate(stack.replica_urls):
                answer = await post(client, replica_url, notification("new", replica))
                assert answer.status_code == 202
        await settle(stack.replica_urls, before, 2)
    finally:
        gate.open()
        await asyncio.to_thread(stack.stop)
        await gate.close()

    with psycopg.connect(url) as conn:
        meta = conn.execute("SELECT key, value FROM alert_enricher_meta").fetchall()
    assert meta == [("schema_version", str(SCHEMA_VERSION))]
    server_log = postgres_server.log.read_bytes()[log_start:].decode(errors="replace")
    assert [line for line in error_lines(server_log) if database in line] == []
    for replica in range(stack.replicas):
        assert error_lines(stack.logs(stack.replica_name(replica))) == []
    assert slack_per_group(ha_fakes) == {exchange("new", 0): 1, exchange("new", 1): 1}
    assert telegram_per_group(ha_fakes) == {exchange("new", 0): 1, exchange("new", 1): 1}


@pytest.fixture
def own_postgres(postgres_server: PostgresServer) -> Iterator[PostgresServer]:
    """A server of the test's own (skipping, or failing on CI, as `postgres_server` does when
    PostgreSQL is missing): stopping it disturbs no other test's database."""
    directory = Path(tempfile.mkdtemp(prefix="pytest-postgres-ha-"))
    server = PostgresServer(directory).start()
    yield server
    server.stop(mode="immediate")
    shutil.rmtree(directory, ignore_errors=True)


def exchange_per_group(texts: list[str], exchanges: list[str]) -> Counter[str]:
    counts: Counter[str] = Counter()
    for text in texts:
        found = [name for name in exchanges if f"on {name}" in text]
        assert len(found) == 1, f"a message about {found}: {text[:300]}"
        counts.update(found)
    return counts


async def test_database_outage_answers_503_then_delivers_every_notification_once(
    own_postgres: PostgresServer, tmp_path: Path, exporter: Exporter, ha_fakes: Fakes
) -> None:
    """PostgreSQL stopped for 10 s while a real Alertmanager sends to both replicas: 503s (which
    Alertmanager retries), then everything lands once, and neither replica was restarted."""
    reset(ha_fakes)
    exchanges = ["binance", "bybit", "okx", "kraken"]
    for name in exchanges:
        exporter.set(name)
    env = ha_env(ha_fakes, own_postgres.create_database("ha_outage"))
    del env["PROMETHEUS_URL"]  # the stack's real Prometheus
    stack = Stack(tmp_path, exporter.port, env, replicas=2, replica_env=REPLICA_ENV)
    urls = stack.replica_urls
    back: asyncio.Task[float] | None = None
    try:
        await asyncio.to_thread(stack.start)
        await asyncio.to_thread(stack.wait_for_history)
        pids = [service_pid(stack.processes[stack.replica_name(r)]) for r in range(2)]

        def slack_text() -> list[str]:
            return ["\n".join(all_text(m)) for m in ha_fakes.slack.top_level()]

        exporter.set("binance", healthy=False)
        await eventually(lambda: len(ha_fakes.telegram.sent) == 1, what="binance delivered")
        await settle(urls, [0, 0], 1)

        await asyncio.to_thread(own_postgres.stop)
        back = asyncio.create_task(_start_after(own_postgres, 10.0))  # whatever runs meanwhile
        exporter.set("bybit", healthy=False)
        exporter.set("okx", healthy=False)
        probe = FIRING.replace("binance", "outage-probe")
        timed = await asyncio.gather(
            *(_timed(health(url)) for url in urls), _timed(_post_raw(urls[0], probe))
        )
        _, scrape_seconds = await _timed(metric(urls[1], DONE))  # what Prometheus would wait
        for answer, _ in timed[:2]:
            assert answer.status_code == 503
            assert answer.json()["components"]["store"]["status"] == "error"
        assert timed[2][0].status_code == 503
        restarted_at = await back

        try:  # at least: one more would be a duplicate, which the counts below name
            await eventually(lambda: len(ha_fakes.telegram.sent) >= 3, timeout=60, what="retries")
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n{what_happened(stack, ha_fakes)}") from None
        recovered = time.monotonic() - restarted_at
        exporter.set("kraken", healthy=False)  # and new traffic flows as before
        await eventually(lambda: len(ha_fakes.telegram.sent) == 4, what="kraken delivered")
        await settle(urls, [0, 0], 4)
        errors = sum([await metric(url, STORE_ERRORS) for url in urls]) - 1  # but the probe's
        am_url = f"http://127.0.0.1:{stack.am_ports[0]}"
        am_failed = await metric(am_url, AM_FAILED)
        print(
            f"\noutage: {errors:.0f} 503s to Alertmanager (it counted {am_failed:.0f} failed"
            f" requests); /health took {timed[0][1]:.1f}s and {timed[1][1]:.1f}s to answer 503,"
            f" POST /alerts {timed[2][1]:.1f}s, /metrics {scrape_seconds:.1f}s; all delivered"
            f" {recovered:.1f}s after the restart"
        )

        assert errors >= 1 and am_failed >= 1, "Alertmanager's requests answered 503"
        assert [service_pid(stack.processes[stack.replica_name(r)]) for r in range(2)] == pids
        once = dict.fromkeys(exchanges, 1)
        assert exchange_per_group(slack_text(), exchanges) == once
        telegram = [str(m["visible"]) for m in ha_fakes.telegram.sent]
        assert exchange_per_group(telegram, exchanges) == once
        assert len(ha_fakes.slack.messages) == 4
    finally:
        if back is not None:
            back.cancel()
        await asyncio.to_thread(stack.stop)


def what_happened(stack: Stack, fakes: Fakes, lines: int = 40) -> str:
    """For a failure's message: what the chat fakes got, and the end of every process's log."""
    story = [
        f"telegram got {[str(m['visible'])[:80] for m in fakes.telegram.sent]}",
        f"slack got {len(fakes.slack.messages)} messages",
    ]
    for name in stack.processes:
        tail = stack.logs(name).splitlines()[-lines:]
        story.append(f"--- {name}.log, last {len(tail)} lines:\n" + "\n".join(tail))
    return "\n".join(story)


async def _post_raw(url: str, body: str) -> httpx.Response:
    async with httpx.AsyncClient() as client:
        return await client.post(f"{url}/alerts", content=body, headers=AUTH, timeout=30)


async def _timed(call: Awaitable[T]) -> tuple[T, float]:
    started = time.monotonic()
    return await call, time.monotonic() - started


async def _start_after(server: PostgresServer, seconds: float) -> float:
    await asyncio.sleep(seconds)  # the outage's length, not a wait for something
    await asyncio.to_thread(server.start)
    return time.monotonic()
