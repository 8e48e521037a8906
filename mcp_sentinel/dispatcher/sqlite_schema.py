"""The state database's tables, their schema version, and the migrations of older files.

Tables (``SCHEMA_VERSION`` 4):

- ``payloads``: accepted webhook payloads, each stored once as the body that arrived, with its
  queued incidents encoded in one value and the expiry of its dedupe keys, which are read from
  the body (``dispatcher.sqlite_payloads``): intake writes one row per payload, not one per
  alert. Schema 4 added it; a schema 3 file is migrated on open and its rows load as before;
- ``payload_incidents``: a claimed or done incident of a payload, by (payload, position), one
  small row per change, written at investigation rate (``dispatcher.sqlite_payloads``);
- ``incidents``: accepted incidents that came without a payload body (the pollers, replay),
  not finished yet (``dispatcher.sqlite_queue``). A row is found by its ``seq``, which the
  queue assigns and keeps in memory, not by an index on the random incident id: that index,
  and AUTOINCREMENT's bookkeeping, each cost about as much as the row itself on a storm's
  intake. Schema 2 had both; a schema 2 file is migrated on open;
- ``dedupe``: dedupe keys with their wall-clock expiry, except those of payloads (which the
  ``payloads`` rows keep): the pollers' and ``remember_all``'s (``dispatcher.sqlite_queue``).
  Keys are unique by the store's contract (it writes only keys its memory has not seen), not
  by an index: an index on random fingerprints made each insert touch a random page, and cost
  a third of the intake's write. Schema 1 had that index; a schema 1 file is migrated on open;
- ``outbox``: deliveries waiting for their sink's acknowledgement (``sinks.outbox``);
- ``meta``: the schema version.

``ensure`` runs on the database's thread when ``sqlite_db`` opens the file: it creates what is
missing, stamps a new file with ``SCHEMA_VERSION``, migrates an older one in one transaction,
and refuses a newer one by name rather than misread it.
"""

from __future__ import annotations

import sqlite3

SCHEMA_VERSION = 4

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS incidents (
    seq INTEGER PRIMARY KEY,
    incident_id TEXT NOT NULL,
    priority INTEGER NOT NULL,
    card TEXT NOT NULL,
    notification TEXT NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('queued', 'claimed', 'unreadable')),
    claimed_by TEXT,
    enqueued_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS dedupe (
    fingerprint TEXT NOT NULL,
    starts_at TEXT NOT NULL,
    status TEXT NOT NULL,
    expires_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS dedupe_by_expiry ON dedupe (expires_at);
CREATE TABLE IF NOT EXISTS outbox (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    delivery_id TEXT NOT NULL UNIQUE,
    sink TEXT NOT NULL,
    record TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    last_error TEXT,
    created_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS outbox_by_sink ON outbox (sink, id);
CREATE TABLE IF NOT EXISTS payloads (
    seq INTEGER PRIMARY KEY,
    state TEXT NOT NULL CHECK (state IN ('queued', 'finished', 'unreadable')),
    source TEXT NOT NULL,
    received_at TEXT NOT NULL,
    enqueued_at REAL NOT NULL,
    keys_expire_at REAL NOT NULL,
    incident_count INTEGER NOT NULL,
    incidents TEXT NOT NULL,
    dedupe_keys TEXT,
    body BLOB
);
CREATE INDEX IF NOT EXISTS payloads_finished_by_expiry ON payloads (keys_expire_at)
    WHERE state = 'finished';
CREATE TABLE IF NOT EXISTS payload_incidents (
    payload INTEGER NOT NULL,
    position INTEGER NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('claimed', 'done')),
    claimed_by TEXT,
    PRIMARY KEY (payload, position)
) WITHOUT ROWID;
"""

# Schema 1 -> 2: the dedupe table loses its primary key (see the module docstring).
_MIGRATE_1_TO_2 = """
CREATE TABLE dedupe_v2 (
    fingerprint TEXT NOT NULL,
    starts_at TEXT NOT NULL,
    status TEXT NOT NULL,
    expires_at REAL NOT NULL
);
INSERT INTO dedupe_v2 (fingerprint, starts_at, status, expires_at)
    SELECT fingerprint, starts_at, status, expires_at FROM dedupe ORDER BY expires_at;
DROP TABLE dedupe;
ALTER TABLE dedupe_v2 RENAME TO dedupe;
CREATE INDEX dedupe_by_expiry ON dedupe (expires_at);
UPDATE meta SET value = '2' WHERE key = 'schema';
"""

# Schema 2 -> 3: the incidents table loses AUTOINCREMENT and its unique index on the incident
# id (see the module docstring); the rows keep their seq, so their order is kept.
_MIGRATE_2_TO_3 = """
CREATE TABLE incidents_v3 (
    seq INTEGER PRIMARY KEY,
    incident_id TEXT NOT NULL,
    priority INTEGER NOT NULL,
    card TEXT NOT NULL,
    notification TEXT NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('queued', 'claimed', 'unreadable')),
    claimed_by TEXT,
    enqueued_at REAL NOT NULL
);
INSERT INTO incidents_v3
    (seq, incident_id, priority, card, notification, state, claimed_by, enqueued_at)
    SELECT seq, incident_id, priority, card, notification, state, claimed_by, enqueued_at
    FROM incidents ORDER BY seq;
DROP TABLE incidents;
ALTER TABLE incidents_v3 RENAME TO incidents;
UPDATE meta SET value = '3' WHERE key = 'schema';
"""

# Schema 3 -> 4: the payloads and payload_incidents tables are new, and ``_SCHEMA`` (run before
# the migrations) has created them; the incidents and dedupe rows of schema 3 stay as they are
# and load as before.
_MIGRATE_3_TO_4 = """
UPDATE meta SET value = '4' WHERE key = 'schema';
"""

_MIGRATIONS = {1: _MIGRATE_1_TO_2, 2: _MIGRATE_2_TO_3, 3: _MIGRATE_3_TO_4}


class NewerSchemaError(ValueError):
    """The file was written by a newer version; the message says which schema it has."""


def ensure(connection: sqlite3.Connection) -> int | None:
    """Create the tables that are missing and bring the file to ``SCHEMA_VERSION``; return the
    schema it was migrated from, or None when nothing was migrated. Raises
    ``NewerSchemaError`` for a file of a newer schema, and ``sqlite3.Error`` as SQLite does."""
    connection.executescript(_SCHEMA)
    row = connection.execute("SELECT value FROM meta WHERE key = 'schema'").fetchone()
    if row is None:
        connection.execute(
            "INSERT INTO meta (key, value) VALUES ('schema', ?)", (str(SCHEMA_VERSION),)
        )
        return None
    found = int(row[0])
    if found > SCHEMA_VERSION:
        raise NewerSchemaError(
            f"has schema {found}, newer than this version understands ({SCHEMA_VERSION}); "
            "use the newer sentinel"
        )
    if found == SCHEMA_VERSION:
        return None
    steps = " ".join(_MIGRATIONS[version] for version in range(found, SCHEMA_VERSION))
    connection.executescript(f"BEGIN IMMEDIATE; {steps} COMMIT;")
    return found
