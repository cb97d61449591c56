"""The Notifier Protocol: a channel has a name, sends a message and edits one it sent."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Protocol

from app.models import EnrichedNotification


class NotifyError(Exception):
    """A channel did not take the message. `retryable` says whether trying later may help."""

    def __init__(self, channel: str, reason: str, *, retryable: bool) -> None:
        super().__init__(f"{channel}: {reason}")
        self.channel = channel
        self.reason = reason
        self.retryable = retryable


@dataclass(frozen=True)
class Thread:
    """The group's first message in this channel: its reference and what it showed."""

    ref: str
    original: EnrichedNotification | None = None


@dataclass(frozen=True)
class Sent:
    """This channel's earlier delivery of the message being edited: its reference and the refs of
    its steps (Telegram parts `part-1`..., Slack `post` or `reply`)."""

    ref: str | None
    steps: dict[str, str | None] = field(default_factory=dict)


Send = Callable[[], Awaitable[str | None]]


class Progress:
    """The steps of one channel's delivery that already went out, and the way to take the next.

    A channel's message can take several calls (Telegram parts, Slack's reply then its update). A
    retry must repeat only what did not go out, so each call is a named step: done steps return the
    reference recorded for them; a new step first checks that the worker still holds its claim,
    then sends, then is recorded. Without a store (replay, previews) nothing is checked or kept.
    """

    def __init__(
        self,
        done: dict[str, str | None] | None = None,
        *,
        hold: Callable[[], Awaitable[None]] | None = None,
        record: Callable[[str, str | None], Awaitable[None]] | None = None,
    ) -> None:
        self._done = dict(done or {})
        self._hold = hold
        self._record = record

    async def step(self, name: str, send: Send) -> str | None:
        if name in self._done:
            return self._done[name]
        if self._hold is not None:
            await self._hold()
        ref = await send()
        self._done[name] = ref
        if self._record is not None:
            await self._record(name, ref)
        return ref


class Notifier(Protocol):
    name: str

    async def send(
        self,
        notification: EnrichedNotification,
        thread: Thread | None,
        progress: Progress | None = None,
    ) -> str | None:
        """Deliver one message, as a follow-up in `thread` when given, each call a `progress` step.

        Returns this message's reference (for follow-ups) or None; raises NotifyError.
        """
        ...

    async def edit(
        self,
        notification: EnrichedNotification,
        sent: Sent,
        progress: Progress | None = None,
    ) -> str | None:
        """Show `notification` (the same notification, now with its final diagnosis) in place of
        the message `sent`; where the channel cannot edit, post the diagnosis as a follow-up.

        Every API call is a `progress` step, named differently from send()'s steps ("edit",
        "edit-part-2", "edit-extra-1", "follow-up"), so a retry repeats nothing that went out.
        Returns the edited (or follow-up) message's reference. Raises NotifyError (retryable or
        not) like send().
        """
        ...
