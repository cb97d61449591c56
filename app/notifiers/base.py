"""The Notifier Protocol: a channel has a name and one async method."""

from __future__ import annotations

from dataclasses import dataclass
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


class Notifier(Protocol):
    name: str

    async def send(self, notification: EnrichedNotification, thread: Thread | None) -> str | None:
        """Deliver one message, as a follow-up in `thread` when given.

        Returns this message's reference (for follow-ups) or None; raises NotifyError.
        """
        ...
