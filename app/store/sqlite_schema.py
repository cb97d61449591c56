"""The SQLite backend's SQL: the schema, its migrations from earlier releases, the claim and what a
claim's holder may write; and which boot of the machine its lease times count from."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

SCHEMA_VERSION = 6  # 5: role_leases; 6: alert_firings
SCHEMA = """
CREATE TABLE IF NOT EXISTS notifications (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    idem_key TEXT NOT NULL,
    group_id TEXT NOT NULL,
    payload TEXT NOT NULL,
    received_at REAL NOT NULL,
    state TEXT NOT NULL DEFAULT 'pending',
    attempts INTEGER NOT NULL DEFAULT 0,
    owner TEXT,
    lease_until REAL NOT NULL DEFAULT 0,
    next_attempt_at REAL NOT NULL DEFAULT 0,
    last_error TEXT,
    enrichment TEXT,
    finished_at REAL,
    fence INTEGER NOT NULL DEFAULT 0,
    incident_id INTEGER,
    kind TEXT NOT NULL DEFAULT 'alert',
    target_id INTEGER,
    rank INTEGER NOT NULL DEFAULT 4,
    priority REAL NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS notifications_idem ON notifications (idem_key, received_at);
CREATE INDEX IF NOT EXISTS notifications_open ON notifications (state, next_attempt_at);
CREATE INDEX IF NOT EXISTS notifications_group ON notifications (group_id, id);
CREATE INDEX IF NOT EXISTS notifications_priority ON notifications (priority, id)
    WHERE state IN ('pending', 'processing');
CREATE TABLE IF NOT EXISTS deliveries (
    notification_id INTEGER NOT NULL REFERENCES notifications (id) ON DELETE CASCADE,
    channel TEXT NOT NULL,
    status TEXT NOT NULL,
    ref TEXT,
    error TEXT,
    updated_at REAL NOT NULL,
    PRIMARY KEY (notification_id, channel)
);
CREATE TABLE IF NOT EXISTS delivery_steps (
    notification_id INTEGER NOT NULL REFERENCES notifications (id) ON DELETE CASCADE,
    channel TEXT NOT NULL,
    step TEXT NOT NULL,
    ref TEXT,
    done_at REAL NOT NULL,
    PRIMARY KEY (notification_id, channel, step)
);
CREATE TABLE IF NOT EXISTS incidents (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    group_id TEXT NOT NULL,
    firing TEXT NOT NULL,
    opened_at REAL NOT NULL,
    updated_at REAL NOT NULL,
    ended_at REAL
);
CREATE UNIQUE INDEX IF NOT EXISTS incidents_open ON incidents (group_id) WHERE ended_at IS NULL;
CREATE INDEX IF NOT EXISTS incidents_group ON incidents (group_id, ended_at);
CREATE TABLE IF NOT EXISTS incident_refs (
    incident_id INTEGER NOT NULL REFERENCES incidents (id) ON DELETE CASCADE,
    channel TEXT NOT NULL,
    ref TEXT NOT NULL,
    notification_id INTEGER,
    PRIMARY KEY (incident_id, channel)
);
CREATE TABLE IF NOT EXISTS diagnoses (
    notification_id INTEGER PRIMARY KEY REFERENCES notifications (id) ON DELETE CASCADE,
    rank INTEGER NOT NULL,
    priority REAL NOT NULL,
    context TEXT NOT NULL,
    state TEXT NOT NULL DEFAULT 'queued',
    owner TEXT,
    lease_until REAL NOT NULL DEFAULT 0,
    fence INTEGER NOT NULL DEFAULT 0,
    detached INTEGER NOT NULL DEFAULT 0,
    result TEXT
);
CREATE INDEX IF NOT EXISTS diagnoses_open ON diagnoses (priority)
    WHERE state IN ('queued', 'running');
CREATE TABLE IF NOT EXISTS heartbeat (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS meta (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS llm_spend (
    day TEXT PRIMARY KEY,
    usd REAL NOT NULL DEFAULT 0,
    prompt_tokens INTEGER NOT NULL DEFAULT 0,
    completion_tokens INTEGER NOT NULL DEFAULT 0,
    calls INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS role_leases (
    name TEXT PRIMARY KEY,
    owner TEXT NOT NULL,
    lease_until REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS alert_firings (
    fingerprint TEXT NOT NULL,
    started REAL NOT NULL,
    ended REAL,
    seen_at REAL NOT NULL,
    PRIMARY KEY (fingerprint, started)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS alert_firings_seen ON alert_firings (seen_at);
"""

# An alert's firing, as a processed notification reports it (app/incident.py: Firing); its end
# is kept once known.
SAVE_FIRING = """
INSERT INTO alert_firings (fingerprint, started, ended, seen_at) VALUES (?, ?, ?, ?)
ON CONFLICT (fingerprint, started) DO UPDATE SET
    ended = COALESCE(alert_firings.ended, excluded.ended),
    seen_at = MAX(alert_firings.seen_at, excluded.seen_at)
"""

# Version 2 (before page-first): every notification was an alert, ranked with the rest.
ADDED_COLUMNS = {
    "kind": "ALTER TABLE notifications ADD COLUMN kind TEXT NOT NULL DEFAULT 'alert'",
    "target_id": "ALTER TABLE notifications ADD COLUMN target_id INTEGER",
    "rank": "ALTER TABLE notifications ADD COLUMN rank INTEGER NOT NULL DEFAULT 4",
    "priority": "ALTER TABLE notifications ADD COLUMN priority REAL NOT NULL DEFAULT 0",
}

# Version 1 (before incidents and fencing): its group state and thread references become open
# incidents, so live threads survive the upgrade. Leases of the old process are void.
MIGRATE_FROM_1 = """
ALTER TABLE notifications ADD COLUMN fence INTEGER NOT NULL DEFAULT 0;
ALTER TABLE notifications ADD COLUMN incident_id INTEGER;
UPDATE notifications SET lease_until = 0, next_attempt_at = 0;
"""
MIGRATE_GROUPS = """
INSERT INTO incidents (group_id, firing, opened_at, updated_at)
    SELECT group_id, firing, updated_at, updated_at FROM groups;
INSERT OR IGNORE INTO incident_refs (incident_id, channel, ref, notification_id)
    SELECT i.id, r.channel, r.ref, r.notification_id
    FROM message_refs r JOIN incidents i ON i.group_id = r.group_id AND i.ended_at IS NULL;
DROP TABLE groups;
DROP TABLE message_refs;
"""


def migrate(conn: sqlite3.Connection, boot: str) -> None:
    """Bring any earlier schema up to SCHEMA_VERSION (inside the caller's transaction), and void
    the leases of another boot."""
    version = conn.execute("PRAGMA user_version").fetchone()[0]
    tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    if version == 0 and "notifications" in tables:  # written by the first release
        for statement in filter(str.strip, MIGRATE_FROM_1.split(";")):
            conn.execute(statement)
    columns = {r[1] for r in conn.execute("PRAGMA table_info(notifications)")}
    for column, statement in ADDED_COLUMNS.items():
        if columns and column not in columns:
            conn.execute(statement)
    if columns and "priority" not in columns:  # what was waiting goes first, in arrival order
        conn.execute("UPDATE notifications SET priority = received_at - 1e10")
    for statement in filter(str.strip, SCHEMA.split(";")):
        conn.execute(statement)
    if "groups" in tables:
        for statement in filter(str.strip, MIGRATE_GROUPS.split(";")):
            conn.execute(statement)
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
    row = conn.execute("SELECT value FROM meta WHERE key = 'boot'").fetchone()
    if row is None or row[0] != boot:
        # Lease and retry times of another boot mean nothing now: its holders are gone.
        conn.execute("UPDATE notifications SET lease_until = 0, next_attempt_at = 0")
        conn.execute("UPDATE diagnoses SET lease_until = 0")
        conn.execute("UPDATE role_leases SET lease_until = 0")
        conn.execute(
            "INSERT INTO meta (key, value) VALUES ('boot', ?)"
            " ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            (boot,),
        )


CLAIM = """
UPDATE notifications
SET state = 'processing', owner = :owner, lease_until = :lease_until, attempts = attempts + 1,
    fence = fence + 1
WHERE id = (
    SELECT n.id FROM notifications n INDEXED BY notifications_priority
    WHERE n.state IN ('pending', 'processing')
      AND ((n.state = 'pending' AND n.next_attempt_at <= :now)
           OR (n.state = 'processing' AND n.lease_until < :now))
      AND NOT EXISTS (
          SELECT 1 FROM notifications e
          WHERE e.group_id = n.group_id AND e.id < n.id AND e.state IN ('pending', 'processing'))
    ORDER BY n.priority, n.id LIMIT 1)
RETURNING id, group_id, payload, attempts, enrichment, incident_id, fence, kind, target_id,
    :wall - received_at
"""

# The LLM lane's next diagnosis, in its page's priority; a run whose lease ran out
# (its process died) is taken again.
CLAIM_DIAGNOSIS = """
UPDATE diagnoses
SET state = 'running', owner = :owner, lease_until = :lease_until, fence = fence + 1
WHERE notification_id = (
    SELECT notification_id FROM diagnoses
    WHERE state IN ('queued', 'running') AND (state = 'queued' OR lease_until < :now)
    ORDER BY priority LIMIT 1)
RETURNING notification_id, fence, context
"""
ANSWER_DIAGNOSIS = """
UPDATE diagnoses SET state = 'answered', result = ?, owner = NULL, lease_until = 0
WHERE notification_id = ? AND fence = ? AND state = 'running'
RETURNING detached
"""
# The edit a detached diagnosis owes its page: queued in the page's group, after the page, one
# rank below it (app/priority.py: EDIT_BEHIND).
QUEUE_EDIT = """
INSERT INTO notifications
    (idem_key, group_id, payload, received_at, kind, target_id, rank, priority)
SELECT 'edit:' || id, group_id, :result, :now, 'edit', id, rank + :behind,
    (rank + :behind) * :aging + :now
FROM notifications WHERE id = :id
"""
# A page's diagnosis, queued once (a retry of the page queues nothing more); `owed`: detached
# from the start, the page goes without it.
QUEUE_DIAGNOSIS = """
INSERT INTO diagnoses (notification_id, rank, priority, context, detached)
SELECT id, :rank, priority, :context, :owed FROM notifications WHERE id = :id
ON CONFLICT (notification_id) DO NOTHING
"""

# What a claim's holder may do with its notification (SET clauses; the fence is checked).
FINISH = "state = 'done', owner = NULL, lease_until = 0, finished_at = ?, last_error = NULL"
RETRY = "state = 'pending', owner = NULL, lease_until = 0, next_attempt_at = ?, last_error = ?"
GIVE_UP = "state = 'failed', owner = NULL, lease_until = 0, finished_at = ?, last_error = ?"
RELEASE = "state = 'pending', owner = NULL, lease_until = 0, attempts = MAX(attempts - 1, 0)"
HELD = "id = ? AND fence = ? AND state = 'processing'"


def boot_id() -> str:
    """Which boot of this machine the monotonic clock counts from."""
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:  # not Linux: boot time by the wall clock, to the minute
        return f"boot-{round((time.time() - time.monotonic()) / 60)}"


# When the oldest notification not finished was accepted (NULL with none).
OLDEST_OPEN = "SELECT MIN(received_at) FROM notifications WHERE state IN ('pending', 'processing')"

# LLM_DAILY_BUDGET_USD: what one diagnosis cost, added to its UTC day's total.
ADD_LLM_SPEND = """
INSERT INTO llm_spend (day, usd, prompt_tokens, completion_tokens, calls)
VALUES (:day, :usd, :prompt, :completion, 1)
ON CONFLICT (day) DO UPDATE SET
    usd = usd + excluded.usd,
    prompt_tokens = prompt_tokens + excluded.prompt_tokens,
    completion_tokens = completion_tokens + excluded.completion_tokens,
    calls = calls + 1
"""
