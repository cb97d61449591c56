"""The Notifier Protocol: a channel has a name and one async method."""

from __future__ import annotations

from typing import Protocol

from app.models import EnrichedNotification


class NotifyError(Exception):
    """A channel did not take the message. `retryable` says whether trying later may help."""

    def __init__(self, channel: str, reason: str, *, retryable: bool) -> None:
        super().__init__(f"{channel}: {reason}")
        self.channel = channel
        self.reason = reason
        self.retryable = retryable


class Notifier(Protocol):
    name: str

    async def send(self, notification: EnrichedNotification, reply_to: str | None) -> str | None:
        """Deliver one message; `reply_to` is the reference of the group's first message, if any.

        Returns this message's reference (for follow-ups) or None; raises NotifyError.
        """
        ...
