"""The PostgreSQL backend's delivery records: per channel and per step, and the thread references
of incidents (what Store promises about them is in base.py; the fencing is PostgresStore._held)."""

# ruff: noqa: S608 (every statement is fixed text; values travel as query parameters)
from __future__ import annotations

from app.store.base import Claim, Delivery, MessageRef, deliveries_from
from app.store.postgres_db import Conn
from app.store.postgres_schema import NOW, text
from app.store.primitives import PostgresPrimitives


class PostgresDeliveries(PostgresPrimitives):
    async def deliveries(self, notification_id: int) -> dict[str, Delivery]:
        async def read(conn: Conn) -> dict[str, Delivery]:
            cursor = await conn.execute(
                "SELECT channel, status, ref, error FROM deliveries WHERE notification_id = %s",
                (notification_id,),
            )
            outcomes = await cursor.fetchall()
            cursor = await conn.execute(
                "SELECT channel, step, ref FROM delivery_steps WHERE notification_id = %s",
                (notification_id,),
            )
            return deliveries_from(outcomes, await cursor.fetchall())

        return await self._db.run(read)

    async def record_step(self, claim: Claim, channel: str, step: str, ref: str | None) -> None:
        await self._write_held(
            claim,
            "INSERT INTO delivery_steps (notification_id, channel, step, ref, done_at)"
            f" SELECT id, %(channel)s, %(step)s, %(ref)s, {NOW} FROM held"
            " ON CONFLICT (notification_id, channel, step) DO UPDATE"
            " SET ref = excluded.ref, done_at = excluded.done_at",
            self._params(channel=channel, step=step, ref=ref and text(ref)),
        )

    async def record_delivery(
        self, claim: Claim, channel: str, status: str, ref: str | None, error: str | None
    ) -> None:
        params = self._params(
            channel=channel, status=status, ref=ref and text(ref), error=error and text(error)
        )
        await self._write_held(
            claim,
            "INSERT INTO deliveries (notification_id, channel, status, ref, error, updated_at)"
            f" SELECT id, %(channel)s, %(status)s, %(ref)s, %(error)s, {NOW} FROM held"
            " ON CONFLICT (notification_id, channel) DO UPDATE"
            " SET status = excluded.status, ref = excluded.ref, error = excluded.error,"
            " updated_at = excluded.updated_at",
            params,
        )

    async def message_ref(self, incident_id: int, channel: str) -> MessageRef | None:
        rows = await self._fetch(
            "SELECT r.ref, n.enrichment FROM incident_refs r"
            " LEFT JOIN notifications n ON n.id = r.notification_id"
            " WHERE r.incident_id = %(incident)s AND r.channel = %(channel)s",
            {"incident": incident_id, "channel": channel},
        )
        return MessageRef(ref=str(rows[0][0]), original=rows[0][1]) if rows else None

    async def save_message_ref(
        self, claim: Claim, incident_id: int, channel: str, ref: str
    ) -> None:
        await self._write_held(
            claim,
            "INSERT INTO incident_refs (incident_id, channel, ref, notification_id)"
            " SELECT %(incident)s, %(channel)s, %(ref)s, id FROM held"
            " ON CONFLICT (incident_id, channel) DO UPDATE"
            " SET ref = excluded.ref, notification_id = excluded.notification_id",
            {"incident": incident_id, "channel": channel, "ref": text(ref)},
        )
