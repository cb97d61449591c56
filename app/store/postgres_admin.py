"""The PostgreSQL backend's part of the admin commands (`list`, `show`, `retry`; see Store in
base.py). A requeued notification wakes every replica's workers, as a new one does."""

from __future__ import annotations

from app.store.base import NotificationRecord
from app.store.postgres_schema import CHANNEL
from app.store.primitives import PostgresPrimitives

RECORD = """
SELECT id, kind, group_id, state, attempts, extract(epoch FROM received_at)::float8,
    extract(epoch FROM finished_at)::float8, last_error, payload, enrichment
FROM notifications
"""
REQUEUE = """
WITH requeued AS (
    UPDATE notifications
    SET state = 'pending', attempts = 0, next_attempt_at = '-infinity', owner = NULL,
        lease_until = '-infinity', finished_at = NULL
    WHERE id = %(id)s AND state = 'failed'
    RETURNING id
), forgotten AS (
    DELETE FROM deliveries d USING requeued r
    WHERE d.notification_id = r.id AND d.status = 'failed'
)
SELECT pg_notify(%(channel)s, '') FROM requeued
"""


class PostgresAdmin(PostgresPrimitives):
    async def notifications(
        self, since: float | None, failed_only: bool, limit: int
    ) -> list[NotificationRecord]:
        rows = await self._fetch(
            f"{RECORD} WHERE (%(since)s::float8 IS NULL OR received_at >= to_timestamp(%(since)s))"
            " AND (state = 'failed' OR NOT %(failed)s) ORDER BY id DESC LIMIT %(limit)s",
            {"since": since, "failed": failed_only, "limit": limit},
        )
        return [NotificationRecord(*row) for row in rows]

    async def notification(self, notification_id: int) -> NotificationRecord | None:
        rows = await self._fetch(f"{RECORD} WHERE id = %(id)s", {"id": notification_id})
        return NotificationRecord(*rows[0]) if rows else None

    async def requeue(self, notification_id: int) -> bool:
        rows = await self._fetch(REQUEUE, {"id": notification_id, "channel": CHANNEL})
        return bool(rows)
