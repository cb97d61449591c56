"""A store in another process: the pipeline's process asks the webhook's process to run its calls
on the SQLite store the webhook's process owns (app/pipeline_process.py carries them).

Why: SQLite has one writer at a time. With a connection in each process, the two took turns on a
file lock, and the pipeline's process held it for 15 ms and more at a time while holding it cost
1.5 ms of CPU: its store thread, holding the lock, waited for the interpreter lock its own event
loop's thread held, niced and preempted by the webhook. The webhook's accepts waited behind that
(ack p99 55-65 ms at 200 posts/s). With one connection, in the webhook's process at its priority,
the pipeline's writes are committed with the webhook's own (group_commit.py) and nothing niced ever
holds the database.

A call is a pickle of (sequence number, method, arguments); its answer one of (sequence number,
True, result) or (sequence number, False, (kind, text)), the store's error rebuilt as StoreError or
LeaseLostError on the caller's side (any other exception is a store failure too). Both travel
between our own processes only, and neither may pass MAX_CALL_BYTES: a bigger one is the caller's
StoreError, never a frame the other side would refuse.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import pickle
from collections.abc import Callable
from typing import Any

from app.store.base import LeaseLostError, Store, StoreError, ignore_answer

log = logging.getLogger(__name__)

MAX_CALL_BYTES = 64 * 2**20  # a claim's payload (MAX_BODY_BYTES) with its enrichment and context
CALL_SECONDS = 120.0  # an answer lost (a bug) fails its call instead of holding a worker for good

# What the pipeline's process may ask for: every call of the Store protocol but watch and close,
# which are its own.
REMOTE_CALLS = frozenset(
    name
    for name, member in inspect.getmembers(Store)
    if inspect.iscoroutinefunction(member) and name not in ("watch", "close")
)
Send = Callable[[bytes], None]


class RemoteStore:
    """The Store the pipeline's process uses: each call sent to the service's process, awaited
    until its answer comes back (`answered`, from the process's reader)."""

    def __init__(self, send: Send, timeout: float = CALL_SECONDS) -> None:
        self._send = send
        self._timeout = timeout
        self._seq = 0
        self._waiting: dict[int, asyncio.Future[Any]] = {}
        self._gone: str | None = None

    def __getattr__(self, method: str) -> Callable[..., Any]:
        if method not in REMOTE_CALLS:
            raise AttributeError(method)

        async def call(*args: Any, **kwargs: Any) -> Any:
            return await self._call(method, args, kwargs)

        return call

    async def _call(self, method: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        if self._gone is not None:
            raise StoreError(self._gone)
        self._seq += 1
        seq = self._seq
        call = pickle.dumps((seq, method, args, kwargs))
        if len(call) > MAX_CALL_BYTES:
            raise StoreError(
                f"{method}: {len(call)} bytes, over the {MAX_CALL_BYTES} a call may be"
            )
        answer: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._waiting[seq] = answer
        try:
            self._send(call)
            async with asyncio.timeout(self._timeout):
                return await answer
        except TimeoutError:
            raise StoreError(
                f"{method}: no answer from the service in {self._timeout:g}s"
            ) from None
        finally:
            self._waiting.pop(seq, None)

    def answered(self, body: bytes) -> None:
        """An answer from the service's process."""
        seq, ok, value = pickle.loads(body)  # noqa: S301 - our own parent's
        answer = self._waiting.get(seq)
        if answer is None or answer.done():
            return  # its caller was cancelled; the call itself still ran
        if ok:
            answer.set_result(value)
        else:
            kind, text = value
            answer.set_exception(LeaseLostError(text) if kind == LEASE_LOST else StoreError(text))

    @property
    def is_gone(self) -> bool:
        return self._gone is not None

    def gone(self, why: str) -> None:
        """The service's process is gone: every call waiting, and every later one, fails."""
        self._gone = why
        for answer in self._waiting.values():
            if not answer.done():
                answer.set_exception(StoreError(why))

    async def watch(
        self, wake: Callable[[], None], answered: Callable[[int], None] = ignore_answer
    ) -> None:
        """Nothing to listen to: the service wakes this process's workers over its pipe."""
        await asyncio.Event().wait()

    async def close(self) -> None:
        """The service's process owns the store and closes it."""


LEASE_LOST = "lease_lost"


async def serve_call(store: Any, body: bytes) -> bytes:
    """Run one call of the pipeline's process on `store`; its answer, ready to send back (a
    failure of any kind, the call's own included, is answered rather than raised)."""
    seq = 0
    try:
        seq, method, args, kwargs = pickle.loads(body)  # noqa: S301 - our own child's
        if method not in REMOTE_CALLS:
            raise StoreError(f"no store call {method!r}")
        answer = pickle.dumps((seq, True, await getattr(store, method)(*args, **kwargs)))
        if len(answer) > MAX_CALL_BYTES:
            raise StoreError(f"{method}: an answer of {len(answer)} bytes, over {MAX_CALL_BYTES}")
        return answer
    except LeaseLostError as exc:
        return pickle.dumps((seq, False, (LEASE_LOST, str(exc))))
    except StoreError as exc:
        return pickle.dumps((seq, False, ("store", str(exc))))
    except Exception as exc:  # not the store's contract (a bug): a store failure to the caller
        log.exception("a store call of the pipeline's process failed")
        return pickle.dumps((seq, False, ("store", f"{type(exc).__name__}: {exc}")))
