"""The SQLite backend's part of the admin commands (`list`, `show`, `retry`; see Store in base.py)."""

from __future__ import annotations

import sqlite3

from app.store.base import NotificationRecord
from app.store.primitives import SQLitePrimitives

RECORD = (
    "SELECT id, kind, group_id, state, attempts, received_at, finished_at, last_error, payload,"
    " enrichment FROM notifications"
)


class SQLiteAdmin(SQLitePrimitives):
    async def notifications(
        self, since: float | None, failed_only: bool, limit: int
    ) -> list[NotificationRecord]:
        rows = await self._fetch(
            f"{RECORD} WHERE received_at >= ? AND (state = 'failed' OR NOT ?)"
            " ORDER BY id DESC LIMIT ?",
            (since if since is not None else float("-inf"), failed_only, limit),
        )
        return [NotificationRecord(*row) for row in rows]

    async def notification(self, notification_id: int) -> NotificationRecord | None:
        rows = await self._fetch(f"{RECORD} WHERE id = ?", (notification_id,))
        return NotificationRecord(*rows[0]) if rows else None

    async def requeue(self, notification_id: int) -> bool:
        def requeue(conn: sqlite3.Connection) -> bool:
            requeued = conn.execute(
                "UPDATE notifications SET state = 'pending', attempts = 0, next_attempt_at = 0,"
                " owner = NULL, lease_until = 0, finished_at = NULL"
                " WHERE id = ? AND state = 'failed'",
                (notification_id,),
            ).rowcount
            if requeued:
                conn.execute(
                    "DELETE FROM deliveries WHERE notification_id = ? AND status = 'failed'",
                    (notification_id,),
                )
            return bool(requeued)

        return await self._tx(requeue)
