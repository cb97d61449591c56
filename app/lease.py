"""A worker's hold on one claimed notification: renewed while it works, checked before every effect.

Each claim carries a fencing token (see app/store/base.py). `hold()` renews the lease and raises
LeaseLostError once another worker has claimed the notification or the lease ran out, for instance
after the process stalled longer than LEASE_SECONDS. The delivery code calls it before every message
it sends, so a worker that lost its claim sends nothing more; `keep()` renews in the background and
returns when the claim is lost, so the worker can stop at once.
"""

from __future__ import annotations

import asyncio
import logging

from app.store import Claim, LeaseLostError, Store, StoreError

log = logging.getLogger(__name__)


class Lease:
    def __init__(self, store: Store, claim: Claim, seconds: float) -> None:
        self._store = store
        self.claim = claim
        self._seconds = seconds

    async def hold(self) -> None:
        """Renew now; LeaseLostError when the claim is no longer this worker's."""
        if not await self._store.renew(self.claim, self._seconds):
            raise LeaseLostError(
                f"lost the claim on notification {self.claim.notification_id}"
                " (taken over, or the lease ran out)"
            )

    async def keep(self) -> None:
        """Renew every third of the lease until cancelled; return once the claim is lost."""
        while True:
            await asyncio.sleep(self._seconds / 3)
            try:
                if not await self._store.renew(self.claim, self._seconds):
                    log.warning("lost the lease on notification %s", self.claim.notification_id)
                    return
            except StoreError as exc:  # the next renewal may work; hold() decides before sending
                log.error(
                    "cannot renew lease on notification %s: %s", self.claim.notification_id, exc
                )
