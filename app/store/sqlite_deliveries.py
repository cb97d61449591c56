"""The SQLite backend's delivery records: per channel and per step, and the thread references of
incidents (what Store promises about them is in base.py; the fencing is SQLiteStore._held)."""

from __future__ import annotations

import sqlite3

from app.store.base import Claim, Delivery, MessageRef, deliveries_from
from app.store.primitives import SQLitePrimitives


class SQLiteDeliveries(SQLitePrimitives):
    async def deliveries(self, notification_id: int) -> dict[str, Delivery]:
        def read(conn: sqlite3.Connection) -> dict[str, Delivery]:
            return deliveries_from(
                conn.execute(
                    "SELECT channel, status, ref, error FROM deliveries WHERE notification_id = ?",
                    (notification_id,),
                ),
                conn.execute(
                    "SELECT channel, step, ref FROM delivery_steps WHERE notification_id = ?",
                    (notification_id,),
                ),
            )

        return await self._tx(read)

    async def record_step(self, claim: Claim, channel: str, step: str, ref: str | None) -> None:
        await self._held(
            claim,
            lambda c: c.execute(
                "INSERT OR REPLACE INTO delivery_steps"
                " (notification_id, channel, step, ref, done_at) VALUES (?, ?, ?, ?, ?)",
                (claim.notification_id, channel, step, ref, self._clock()),
            ),
        )

    async def record_delivery(
        self, claim: Claim, channel: str, status: str, ref: str | None, error: str | None
    ) -> None:
        await self._held(
            claim,
            lambda c: c.execute(
                "INSERT INTO deliveries (notification_id, channel, status, ref, error, updated_at)"
                " VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (notification_id, channel) DO UPDATE"
                " SET status = excluded.status, ref = excluded.ref, error = excluded.error,"
                " updated_at = excluded.updated_at",
                (claim.notification_id, channel, status, ref, error, self._clock()),
            ),
        )

    async def message_ref(self, incident_id: int, channel: str) -> MessageRef | None:
        rows = await self._fetch(
            "SELECT r.ref, n.enrichment FROM incident_refs r"
            " LEFT JOIN notifications n ON n.id = r.notification_id"
            " WHERE r.incident_id = ? AND r.channel = ?",
            (incident_id, channel),
        )
        return MessageRef(ref=str(rows[0][0]), original=rows[0][1]) if rows else None

    async def save_message_ref(
        self, claim: Claim, incident_id: int, channel: str, ref: str
    ) -> None:
        await self._held(
            claim,
            lambda c: c.execute(
                "INSERT INTO incident_refs (incident_id, channel, ref, notification_id)"
                " VALUES (?, ?, ?, ?) ON CONFLICT (incident_id, channel) DO UPDATE"
                " SET ref = excluded.ref, notification_id = excluded.notification_id",
                (incident_id, channel, ref, claim.notification_id),
            ),
        )
