"""The PostgreSQL backend's part of the LLM lane (the protocol is in sqlite_diagnoses.py).

`take_diagnosis` locks the diagnosis row before deciding, and `answer_diagnosis` updates it, so
the two serialise on that row across replicas: the answer's RETURNING sees `detached` as the page
left it.
"""

from __future__ import annotations

from app.priority import AGING_SECONDS, EDIT_BEHIND
from app.store.base import (
    Claim,
    DailySpend,
    DiagnosisJob,
    EditTarget,
    LeaseLostError,
    QueuedDiagnosis,
)
from app.store.postgres_db import Conn
from app.store.postgres_schema import (
    ADD_LLM_SPEND,
    ANSWER_DIAGNOSIS,
    ANSWERED_CHANNEL,
    CHANNEL,
    CLAIM_DIAGNOSIS,
    QUEUE_DIAGNOSIS,
    QUEUE_EDIT,
)
from app.store.primitives import PostgresPrimitives


class PostgresDiagnoses(PostgresPrimitives):
    async def queue_diagnosis(self, claim: Claim, context: str, rank: int) -> None:
        # No NOTIFY: this replica's lane is woken directly, and a NOTIFY would wake every
        # replica's page workers for nothing; other lanes find it at their next poll (1 s).
        queued = {"id": claim.notification_id, "rank": rank, "context": context, "owed": False}
        await self._held(claim, lambda conn: conn.execute(QUEUE_DIAGNOSIS, queued))

    async def take_diagnosis(self, claim: Claim) -> str | None:
        return await self._held(claim, lambda conn: self._detach(conn, claim.notification_id))

    async def _detach(self, conn: Conn, notification_id: int) -> str | None:
        """The answer if it is there and still the page's to take; else None, and from now on
        the answer is owed as an edit."""
        params = {"id": notification_id}
        cursor = await conn.execute(
            "SELECT result, detached FROM diagnoses WHERE notification_id = %(id)s FOR UPDATE",
            params,
        )
        row = await cursor.fetchone()
        if row is None:
            return None
        if row[0] is not None and not row[1]:
            return str(row[0])
        await conn.execute(
            "UPDATE diagnoses SET detached = true WHERE notification_id = %(id)s", params
        )
        return None

    async def _owe(self, conn: Conn, notification_id: int, owed: QueuedDiagnosis) -> None:
        """In the page's transaction: its diagnosis is owed as an edit. Queued detached if it is
        not queued yet; an answer already there (a retried page that waited before) is queued as
        its edit at once. The page's row lock keeps any other page worker out; the lane's answer
        serialises on the diagnosis row (`_detach` locks it)."""
        queued = {"id": notification_id, "rank": owed.rank, "context": owed.context, "owed": True}
        if (await conn.execute(QUEUE_DIAGNOSIS, queued)).rowcount == 1:
            return  # queued now, owed from the start
        answer = await self._detach(conn, notification_id)
        if answer is not None:
            await self._queue_edit(conn, notification_id, answer)

    async def _queue_edit(self, conn: Conn, notification_id: int, result: str) -> None:
        await conn.execute(
            QUEUE_EDIT,
            self._params(
                id=notification_id, result=result, aging=AGING_SECONDS, behind=EDIT_BEHIND
            ),
        )
        await conn.execute("SELECT pg_notify(%s, '')", (CHANNEL,))

    async def claim_diagnosis(self, owner: str, lease: float) -> DiagnosisJob | None:
        rows = await self._fetch(CLAIM_DIAGNOSIS, self._params(owner=owner, lease=lease))
        if not rows:
            return None
        notification_id, fence, context, payload, age = rows[0]
        claim = Claim(notification_id, owner, fence)
        return DiagnosisJob(payload, context, max(0.0, float(age)), claim)

    async def answer_diagnosis(self, claim: Claim, result: str) -> bool:
        params = self._params(
            id=claim.notification_id, fence=claim.token, result=result, channel=ANSWERED_CHANNEL
        )

        async def answer(conn: Conn) -> bool:
            row = await (await conn.execute(ANSWER_DIAGNOSIS, params)).fetchone()
            if row is None:
                raise LeaseLostError(f"diagnosis of {claim.notification_id}: claim taken over")
            if not row[0]:
                return False
            await self._queue_edit(conn, claim.notification_id, result)
            return True

        return await self._db.run(answer)

    async def llm_backlog(self) -> int:
        async def count(conn: Conn) -> int:
            cursor = await conn.execute(
                "SELECT count(*) FROM diagnoses WHERE state IN ('queued', 'running')"
            )
            row = await cursor.fetchone()
            return int(row[0]) if row else 0

        return await self._db.run(count, reserved=True, single=True)

    async def diagnosis_answered(self, notification_id: int) -> bool:
        rows = await self._fetch(
            "SELECT 1 FROM diagnoses WHERE notification_id = %(id)s AND state = 'answered'",
            {"id": notification_id},
        )
        return bool(rows)

    async def add_llm_spend(
        self, day: str, usd: float, prompt_tokens: int, completion_tokens: int
    ) -> None:
        spend = {"day": day, "usd": usd, "prompt": prompt_tokens, "completion": completion_tokens}
        await self._db.run(lambda conn: conn.execute(ADD_LLM_SPEND, spend), single=True)

    async def llm_spend(self, day: str) -> DailySpend:
        rows = await self._fetch(
            "SELECT usd, prompt_tokens, completion_tokens, calls FROM llm_spend"
            " WHERE day = %(day)s",
            {"day": day},
        )
        return DailySpend.from_rows(rows)

    async def edit_target(self, notification_id: int) -> EditTarget | None:
        rows = await self._fetch(
            "SELECT n.enrichment, n.incident_id IS NULL OR i.ended_at IS NULL"
            " FROM notifications n LEFT JOIN incidents i ON i.id = n.incident_id"
            " WHERE n.id = %(id)s",
            {"id": notification_id},
        )
        return EditTarget(rows[0][0], bool(rows[0][1])) if rows else None

    async def revise(self, claim: Claim, target_id: int, enrichment: str) -> None:
        await self._write_held(
            claim,
            "UPDATE notifications SET enrichment = %(enrichment)s"
            " WHERE id = %(target)s AND EXISTS (SELECT 1 FROM held)",
            {"enrichment": enrichment, "target": target_id},
        )
