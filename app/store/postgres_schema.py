"""The PostgreSQL backend's SQL: the schema, the claim and what a claim's holder may write.

Every time in it is the database server's clock (`now()`, the start of the statement's transaction),
so replicas whose clocks disagree still agree on when a lease runs out. `%(skew)s` shifts that clock
by a number of seconds: always 0 in the service, moved forwards by the contract tests to let time pass.
"""

# ruff: noqa: S608 (every statement is fixed text; values travel as query parameters)
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from app.incident import Firing

SCHEMA_VERSION = 7  # 4: indexes for incident memory; 5: role_leases; 6: alert_firings; 7: accept()

# Advisory lock classes (the first int4 of pg_advisory_xact_lock(int4, int4)): "AE" plus a number.
MIGRATE_LOCK = 0x41450001
PURGE_LOCK = 0x41450002
GROUP_LOCK = 0x41450003  # the second int4 is hashtext(group_id)

CHANNEL = "alert_enricher_work"  # NOTIFY channel: work may be claimable now
# NOTIFY channel, payload a notification id: its page's diagnosis is answered, for the page
# waiting for it, on whichever replica (the lane that answered may be another one's).
ANSWERED_CHANNEL = "alert_enricher_answered"

NOW = "(now() + make_interval(secs => %(skew)s))"

SCHEMA = """
CREATE TABLE IF NOT EXISTS alert_enricher_meta (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS notifications (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    idem_key TEXT NOT NULL,
    group_id TEXT NOT NULL,
    payload TEXT NOT NULL,
    received_at TIMESTAMPTZ NOT NULL,
    state TEXT NOT NULL DEFAULT 'pending'
        CHECK (state IN ('pending', 'processing', 'done', 'failed')),
    attempts INTEGER NOT NULL DEFAULT 0,
    owner TEXT,
    lease_until TIMESTAMPTZ NOT NULL DEFAULT '-infinity',
    next_attempt_at TIMESTAMPTZ NOT NULL DEFAULT '-infinity',
    last_error TEXT,
    enrichment TEXT,
    finished_at TIMESTAMPTZ,
    fence BIGINT NOT NULL DEFAULT 0,
    incident_id BIGINT
);
CREATE INDEX IF NOT EXISTS notifications_idem ON notifications (idem_key, received_at);
CREATE INDEX IF NOT EXISTS notifications_open ON notifications (id)
    WHERE state IN ('pending', 'processing');
CREATE INDEX IF NOT EXISTS notifications_open_group ON notifications (group_id, id)
    WHERE state IN ('pending', 'processing');
CREATE INDEX IF NOT EXISTS notifications_finished ON notifications (finished_at)
    WHERE state IN ('done', 'failed');
CREATE TABLE IF NOT EXISTS deliveries (
    notification_id BIGINT NOT NULL REFERENCES notifications (id) ON DELETE CASCADE,
    channel TEXT NOT NULL,
    status TEXT NOT NULL,
    ref TEXT,
    error TEXT,
    updated_at TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (notification_id, channel)
);
CREATE TABLE IF NOT EXISTS delivery_steps (
    notification_id BIGINT NOT NULL REFERENCES notifications (id) ON DELETE CASCADE,
    channel TEXT NOT NULL,
    step TEXT NOT NULL,
    ref TEXT,
    done_at TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (notification_id, channel, step)
);
CREATE TABLE IF NOT EXISTS incidents (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    group_id TEXT NOT NULL,
    firing TEXT NOT NULL,
    opened_at TIMESTAMPTZ NOT NULL,
    updated_at TIMESTAMPTZ NOT NULL,
    ended_at TIMESTAMPTZ
);
CREATE UNIQUE INDEX IF NOT EXISTS incidents_open ON incidents (group_id) WHERE ended_at IS NULL;
CREATE INDEX IF NOT EXISTS incidents_group ON incidents (group_id, ended_at);
CREATE INDEX IF NOT EXISTS notifications_group ON notifications (group_id, id);
CREATE TABLE IF NOT EXISTS incident_refs (
    incident_id BIGINT NOT NULL REFERENCES incidents (id) ON DELETE CASCADE,
    channel TEXT NOT NULL,
    ref TEXT NOT NULL,
    notification_id BIGINT,
    PRIMARY KEY (incident_id, channel)
);
CREATE TABLE IF NOT EXISTS heartbeat (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    at TIMESTAMPTZ NOT NULL
);
-- Version 2, page-first: edits queued beside alerts, ranks, and the LLM lane's diagnoses.
ALTER TABLE notifications ADD COLUMN IF NOT EXISTS kind TEXT NOT NULL DEFAULT 'alert';
ALTER TABLE notifications ADD COLUMN IF NOT EXISTS target_id BIGINT;
ALTER TABLE notifications ADD COLUMN IF NOT EXISTS rank INTEGER NOT NULL DEFAULT 4;
ALTER TABLE notifications ADD COLUMN IF NOT EXISTS priority DOUBLE PRECISION;
UPDATE notifications SET priority = extract(epoch FROM received_at) - 1e10 WHERE priority IS NULL;
ALTER TABLE notifications ALTER COLUMN priority SET NOT NULL;
CREATE INDEX IF NOT EXISTS notifications_priority ON notifications (priority, id)
    WHERE state IN ('pending', 'processing');
CREATE TABLE IF NOT EXISTS diagnoses (
    notification_id BIGINT PRIMARY KEY REFERENCES notifications (id) ON DELETE CASCADE,
    rank INTEGER NOT NULL,
    priority DOUBLE PRECISION NOT NULL,
    context TEXT NOT NULL,
    state TEXT NOT NULL DEFAULT 'queued' CHECK (state IN ('queued', 'running', 'answered')),
    owner TEXT,
    lease_until TIMESTAMPTZ NOT NULL DEFAULT '-infinity',
    fence BIGINT NOT NULL DEFAULT 0,
    detached BOOLEAN NOT NULL DEFAULT false,
    result TEXT
);
CREATE INDEX IF NOT EXISTS diagnoses_open ON diagnoses (priority)
    WHERE state IN ('queued', 'running');
-- Version 3, operate: the LLM's spend per UTC day (LLM_DAILY_BUDGET_USD), shared by replicas.
CREATE TABLE IF NOT EXISTS llm_spend (
    day TEXT PRIMARY KEY,
    usd DOUBLE PRECISION NOT NULL DEFAULT 0,
    prompt_tokens BIGINT NOT NULL DEFAULT 0,
    completion_tokens BIGINT NOT NULL DEFAULT 0,
    calls BIGINT NOT NULL DEFAULT 0
);
-- Version 5: roles one replica at a time holds (the Telegram poller), with a lease.
CREATE TABLE IF NOT EXISTS role_leases (
    name TEXT PRIMARY KEY,
    owner TEXT NOT NULL,
    lease_until TIMESTAMPTZ NOT NULL
);
-- Version 6: each alert's firings (Unix seconds on Alertmanager's clock), its incident memory.
CREATE TABLE IF NOT EXISTS alert_firings (
    fingerprint TEXT NOT NULL,
    started DOUBLE PRECISION NOT NULL,
    ended DOUBLE PRECISION,
    seen_at TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (fingerprint, started)
);
CREATE INDEX IF NOT EXISTS alert_firings_seen ON alert_firings (seen_at);
-- Version 7: accepting in one statement (see ACCEPT), so one round trip. In a PL/pgSQL function
-- each statement takes a new snapshot, so the check after the lock sees every commit before it.
CREATE OR REPLACE FUNCTION alert_enricher_accept(
    p_key TEXT, p_group TEXT, p_payload TEXT, p_window DOUBLE PRECISION, p_rank INTEGER,
    p_aging DOUBLE PRECISION, p_skew DOUBLE PRECISION, p_lock INTEGER, p_channel TEXT
) RETURNS TABLE (accepted_id BIGINT, duplicate BOOLEAN)
LANGUAGE plpgsql AS $$
DECLARE
    at TIMESTAMPTZ := now() + make_interval(secs => p_skew);
    found_id BIGINT;
BEGIN
    PERFORM pg_advisory_xact_lock(p_lock, hashtext(p_group));
    SELECT n.id INTO found_id FROM notifications n
    WHERE n.idem_key = p_key AND n.group_id = p_group
      AND n.received_at >= at - make_interval(secs => p_window)
    LIMIT 1;
    IF found_id IS NOT NULL THEN
        RETURN QUERY SELECT found_id, true;
        RETURN;
    END IF;
    INSERT INTO notifications (idem_key, group_id, payload, received_at, rank, priority)
    VALUES (p_key, p_group, p_payload, at, p_rank, p_rank * p_aging + extract(epoch FROM at))
    RETURNING notifications.id INTO found_id;
    PERFORM pg_notify(p_channel, '');
    RETURN QUERY SELECT found_id, false;
END
$$
"""

# Firings a processed notification reports (app/incident.py: Firing), in one statement; an end
# is kept once known. An upgrade from version 5 starts the table empty: it fills as notifications
# are processed (reading 7 days of payloads at start could outlast the store's time bound).
SAVE_FIRINGS = f"""
INSERT INTO alert_firings AS a (fingerprint, started, ended, seen_at)
SELECT f, s, e, {NOW}
FROM unnest(%(fingerprints)s::text[], %(starts)s::float8[], %(ends)s::float8[]) AS u (f, s, e)
ON CONFLICT (fingerprint, started) DO UPDATE SET
    ended = COALESCE(a.ended, excluded.ended), seen_at = GREATEST(a.seen_at, excluded.seen_at)
"""

# Seconds since the oldest notification not finished was accepted (NULL with none).
OLDEST_OPEN_AGE = f"""
SELECT extract(epoch FROM {NOW} - min(received_at)) FROM notifications
WHERE state IN ('pending', 'processing')
"""

ADD_LLM_SPEND = """
INSERT INTO llm_spend AS s (day, usd, prompt_tokens, completion_tokens, calls)
VALUES (%(day)s, %(usd)s, %(prompt)s, %(completion)s, 1)
ON CONFLICT (day) DO UPDATE SET
    usd = s.usd + excluded.usd,
    prompt_tokens = s.prompt_tokens + excluded.prompt_tokens,
    completion_tokens = s.completion_tokens + excluded.completion_tokens,
    calls = s.calls + 1
"""

# The oldest claimable notification whose group has nothing earlier still open. SKIP LOCKED lets
# replicas claim side by side; a row another replica is claiming right now is skipped, and its
# group's later notifications stay unclaimable (the row is still open in every snapshot).
CLAIM = f"""
WITH next AS (
    SELECT n.id FROM notifications n
    WHERE n.state IN ('pending', 'processing')
      AND ((n.state = 'pending' AND n.next_attempt_at <= {NOW})
           OR (n.state = 'processing' AND n.lease_until < {NOW}))
      AND NOT EXISTS (
          SELECT 1 FROM notifications e
          WHERE e.group_id = n.group_id AND e.id < n.id AND e.state IN ('pending', 'processing'))
    ORDER BY n.priority, n.id
    LIMIT 1
    FOR UPDATE SKIP LOCKED
)
UPDATE notifications n
SET state = 'processing', owner = %(owner)s, lease_until = {NOW} + make_interval(secs => %(lease)s),
    attempts = n.attempts + 1, fence = n.fence + 1
FROM next WHERE n.id = next.id
RETURNING n.id, n.group_id, n.payload, n.attempts, n.enrichment, n.incident_id, n.fence, n.kind,
    n.target_id, extract(epoch FROM {NOW} - n.received_at)
"""

# The LLM lane (see SQLiteDiagnoses for the protocol), in its pages' priority.
CLAIM_DIAGNOSIS = f"""
WITH next AS (
    SELECT notification_id FROM diagnoses
    WHERE state IN ('queued', 'running') AND (state = 'queued' OR lease_until < {NOW})
    ORDER BY priority
    LIMIT 1
    FOR UPDATE SKIP LOCKED
)
UPDATE diagnoses d
SET state = 'running', owner = %(owner)s, lease_until = {NOW} + make_interval(secs => %(lease)s),
    fence = d.fence + 1
FROM next, notifications n
WHERE d.notification_id = next.notification_id AND n.id = d.notification_id
RETURNING d.notification_id, d.fence, d.context, n.payload,
    extract(epoch FROM {NOW} - n.received_at)
"""
# Not detached: the page may still be waiting for it, here or on another replica; tell it.
ANSWER_DIAGNOSIS = """
WITH answered AS (
    UPDATE diagnoses SET state = 'answered', result = %(result)s, owner = NULL,
        lease_until = '-infinity'
    WHERE notification_id = %(id)s AND fence = %(fence)s AND state = 'running'
    RETURNING detached
)
SELECT detached, CASE WHEN NOT detached THEN pg_notify(%(channel)s, %(id)s::text) END
FROM answered
"""
QUEUE_EDIT = f"""
INSERT INTO notifications
    (idem_key, group_id, payload, received_at, kind, target_id, rank, priority)
SELECT 'edit:' || id, group_id, %(result)s, {NOW}, 'edit', id, rank + %(behind)s,
    (rank + %(behind)s) * %(aging)s + extract(epoch FROM {NOW})
FROM notifications WHERE id = %(id)s
"""
# A page's diagnosis, queued once (a retry of the page queues nothing more); `owed`: detached
# from the start, the page goes without it.
QUEUE_DIAGNOSIS = """
INSERT INTO diagnoses (notification_id, rank, priority, context, detached)
SELECT id, %(rank)s, priority, %(context)s, %(owed)s FROM notifications WHERE id = %(id)s
ON CONFLICT (notification_id) DO NOTHING
"""

HELD = "id = %(id)s AND fence = %(fence)s AND state = 'processing'"

HEARTBEAT = (
    f"INSERT INTO heartbeat (id, at) VALUES (1, {NOW})"
    " ON CONFLICT (id) DO UPDATE SET at = excluded.at"
)

# Accepting, in one statement and so one transaction: under the group's advisory lock, the same
# notification within the dedup window, else the new row (and NOTIFY, sent at its commit).
ACCEPT = (
    "SELECT accepted_id, duplicate FROM alert_enricher_accept(%(key)s, %(group)s, %(payload)s,"
    f" %(window)s, %(rank)s, %(aging)s, %(skew)s, {GROUP_LOCK}, '{CHANNEL}')"
)

# Retention, a batch at a time (see PostgresStore.purge).
_CUTOFF = f"{NOW} - make_interval(secs => %(retention)s)"
PURGE_INCIDENTS = (
    "DELETE FROM incidents WHERE id IN (SELECT id FROM incidents"
    f" WHERE COALESCE(ended_at, updated_at) < {_CUTOFF} LIMIT %(batch)s)"
)
PURGE_FIRINGS = (
    "DELETE FROM alert_firings WHERE (fingerprint, started) IN (SELECT fingerprint, started"
    f" FROM alert_firings WHERE seen_at < {_CUTOFF} LIMIT %(batch)s)"
)
PURGE_NOTIFICATIONS = (
    "DELETE FROM notifications WHERE id IN (SELECT n.id FROM notifications n"
    f" WHERE state IN ('done', 'failed') AND finished_at < {_CUTOFF} AND NOT EXISTS"
    " (SELECT 1 FROM incident_refs r WHERE r.notification_id = n.id)"
    " LIMIT %(batch)s)"
)

# What a claim's holder may do with its notification (SET clauses; the fence is checked).
FINISH = (
    f"state = 'done', owner = NULL, lease_until = '-infinity', finished_at = {NOW},"
    " last_error = NULL"
)
RETRY = (
    "state = 'pending', owner = NULL, lease_until = '-infinity',"
    f" next_attempt_at = {NOW} + make_interval(secs => %(delay)s), last_error = %(error)s"
)
GIVE_UP = (
    f"state = 'failed', owner = NULL, lease_until = '-infinity', finished_at = {NOW},"
    " last_error = %(error)s"
)
RELEASE = (
    "state = 'pending', owner = NULL, lease_until = '-infinity',"
    " attempts = GREATEST(attempts - 1, 0)"
)
RENEW = f"lease_until = {NOW} + make_interval(secs => %(lease)s)"


def text(value: str) -> str:
    """PostgreSQL text cannot hold NUL, which an alert's group key can: map it to U+FFFD."""
    return value.replace("\x00", "\ufffd")


def firing_params(firings: Sequence[Firing]) -> dict[str, list[Any]]:
    """SAVE_FIRINGS's arrays, one element per firing."""
    return {
        "fingerprints": [text(f.fingerprint) for f in firings],
        "starts": [f.started for f in firings],
        "ends": [f.ended for f in firings],
    }
