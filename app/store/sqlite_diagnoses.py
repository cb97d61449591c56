"""The SQLite backend's part of the LLM lane (see app/diagnosis_lane.py and Store in base.py).

A page's diagnosis is a row of `diagnoses`, queued in the page's transaction, claimed by the lane
with a fenced lease of its own, and answered once. `take_diagnosis` (the page deciding) and
`answer_diagnosis` (the lane answering) both run on the store's one thread, so one of them sees the
other's write: either the page takes the answer, or the answer finds the page detached and queues
the edit it owes. Never both, never neither.
"""

from __future__ import annotations

import sqlite3

from app.priority import AGING_SECONDS, EDIT_BEHIND
from app.store.base import (
    Claim,
    DailySpend,
    DiagnosisJob,
    EditTarget,
    LeaseLostError,
    QueuedDiagnosis,
)
from app.store.primitives import SQLitePrimitives
from app.store.sqlite_schema import (
    ADD_LLM_SPEND,
    ANSWER_DIAGNOSIS,
    CLAIM_DIAGNOSIS,
    QUEUE_DIAGNOSIS,
    QUEUE_EDIT,
)


class SQLiteDiagnoses(SQLitePrimitives):
    async def queue_diagnosis(self, claim: Claim, context: str, rank: int) -> None:
        queued = {"id": claim.notification_id, "rank": rank, "context": context, "owed": 0}
        await self._held(claim, lambda c: c.execute(QUEUE_DIAGNOSIS, queued))

    async def take_diagnosis(self, claim: Claim) -> str | None:
        return await self._held(claim, lambda c: self._detach(c, claim.notification_id))

    def _detach(self, conn: sqlite3.Connection, notification_id: int) -> str | None:
        """The answer if it is there and still the page's to take; else None, and from now on
        the answer is owed as an edit."""
        row = conn.execute(
            "SELECT result, detached FROM diagnoses WHERE notification_id = ?", (notification_id,)
        ).fetchone()
        if row is None:
            return None
        result, detached = row
        if result is not None and not detached:
            return str(result)
        conn.execute(
            "UPDATE diagnoses SET detached = 1 WHERE notification_id = ?", (notification_id,)
        )
        return None

    def _owe(self, conn: sqlite3.Connection, notification_id: int, owed: QueuedDiagnosis) -> None:
        """In the page's transaction: its diagnosis is owed as an edit. Queued detached if it is
        not queued yet; an answer already there (a retried page that waited before) is queued as
        its edit at once."""
        queued = {"id": notification_id, "rank": owed.rank, "context": owed.context, "owed": 1}
        if conn.execute(QUEUE_DIAGNOSIS, queued).rowcount == 1:
            return  # queued now, owed from the start
        answer = self._detach(conn, notification_id)
        if answer is not None:
            self._queue_edit(conn, notification_id, answer)

    def _queue_edit(self, conn: sqlite3.Connection, notification_id: int, result: str) -> None:
        params = {
            "result": result,
            "now": self._clock(),
            "aging": AGING_SECONDS,
            "behind": EDIT_BEHIND,
            "id": notification_id,
        }
        conn.execute(QUEUE_EDIT, params)

    async def claim_diagnosis(self, owner: str, lease: float) -> DiagnosisJob | None:
        now, wall = self._lease_clock(), self._clock()

        def claim(conn: sqlite3.Connection) -> DiagnosisJob | None:
            row = conn.execute(
                CLAIM_DIAGNOSIS, {"owner": owner, "now": now, "lease_until": now + lease}
            ).fetchone()
            if row is None:
                return None
            notification_id, fence, context = row
            payload, received_at = conn.execute(
                "SELECT payload, received_at FROM notifications WHERE id = ?", (notification_id,)
            ).fetchone()
            return DiagnosisJob(
                payload, context, max(0.0, wall - received_at), Claim(notification_id, owner, fence)
            )

        return await self._tx(claim)

    async def answer_diagnosis(self, claim: Claim, result: str) -> bool:
        def answer(conn: sqlite3.Connection) -> bool:
            row = conn.execute(
                ANSWER_DIAGNOSIS, (result, claim.notification_id, claim.token)
            ).fetchone()
            if row is None:
                raise LeaseLostError(f"diagnosis of {claim.notification_id}: claim taken over")
            if not row[0]:
                return False
            self._queue_edit(conn, claim.notification_id, result)
            return True

        return await self._tx(answer)

    async def llm_backlog(self) -> int:
        def count(conn: sqlite3.Connection) -> int:
            # The states of the partial index diagnoses_open: not a scan of every answer kept.
            row = conn.execute(
                "SELECT COUNT(*) FROM diagnoses WHERE state IN ('queued', 'running')"
            ).fetchone()
            return int(row[0])

        return await self._tx(count)

    async def diagnosis_answered(self, notification_id: int) -> bool:
        rows = await self._fetch(
            "SELECT 1 FROM diagnoses WHERE notification_id = ? AND state = 'answered'",
            (notification_id,),
        )
        return bool(rows)

    async def add_llm_spend(
        self, day: str, usd: float, prompt_tokens: int, completion_tokens: int
    ) -> None:
        spend = {"day": day, "usd": usd, "prompt": prompt_tokens, "completion": completion_tokens}
        await self._tx(lambda c: c.execute(ADD_LLM_SPEND, spend))

    async def llm_spend(self, day: str) -> DailySpend:
        rows = await self._fetch(
            "SELECT usd, prompt_tokens, completion_tokens, calls FROM llm_spend WHERE day = ?",
            (day,),
        )
        return DailySpend.from_rows(rows)

    async def edit_target(self, notification_id: int) -> EditTarget | None:
        def read(conn: sqlite3.Connection) -> EditTarget | None:
            row = conn.execute(
                "SELECT n.enrichment, n.incident_id IS NULL OR i.ended_at IS NULL"
                " FROM notifications n LEFT JOIN incidents i ON i.id = n.incident_id"
                " WHERE n.id = ?",
                (notification_id,),
            ).fetchone()
            return None if row is None else EditTarget(row[0], bool(row[1]))

        return await self._tx(read)

    async def revise(self, claim: Claim, target_id: int, enrichment: str) -> None:
        await self._held(
            claim,
            lambda c: c.execute(
                "UPDATE notifications SET enrichment = ? WHERE id = ?", (enrichment, target_id)
            ),
        )
