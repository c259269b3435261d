-- Privacy requests (issue 5). A request names its subject only by a blind
-- index (subject), cleared when an erasure completes; payload is sealed input
-- (rectification), cleared on completion. The partial unique index joins a
-- second open request of the same type for the same subject to the first.
CREATE TABLE privacy_requests (
    id               TEXT    PRIMARY KEY,
    workspace_id     INTEGER NOT NULL,
    type             TEXT    NOT NULL,
    status           TEXT    NOT NULL,
    identifier_type  TEXT    NOT NULL,
    subject          BLOB,
    regime           TEXT    NOT NULL,
    received_at      INTEGER NOT NULL,
    ack_due_at       INTEGER NOT NULL,
    due_at           INTEGER NOT NULL,
    extended_at      INTEGER NOT NULL DEFAULT 0,
    extension_reason TEXT    NOT NULL DEFAULT '',
    verified_by      TEXT    NOT NULL DEFAULT '',
    verified_at      INTEGER NOT NULL DEFAULT 0,
    completed_at     INTEGER NOT NULL DEFAULT 0,
    reject_reason    TEXT    NOT NULL DEFAULT '',
    suppress         INTEGER NOT NULL DEFAULT 0,
    suppression      BLOB,
    payload          BLOB,
    result           BLOB,
    receipt          TEXT    NOT NULL DEFAULT '',
    progress         TEXT    NOT NULL DEFAULT '',
    updated_at       INTEGER NOT NULL,
    version          INTEGER NOT NULL
);
CREATE UNIQUE INDEX privacy_requests_open ON privacy_requests (workspace_id, type, subject)
    WHERE status IN ('received', 'verified', 'in_progress');
CREATE INDEX privacy_requests_due ON privacy_requests (workspace_id, due_at, id);
CREATE INDEX privacy_requests_subject ON privacy_requests (workspace_id, subject);

-- The durable job queue: a worker claims a due job under a lease; a job whose
-- worker died is claimed again once its lease ran out.
CREATE TABLE jobs (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    workspace_id INTEGER NOT NULL,
    kind         TEXT    NOT NULL,
    ref          TEXT    NOT NULL,
    state        TEXT    NOT NULL,
    attempts     INTEGER NOT NULL DEFAULT 0,
    max_attempts INTEGER NOT NULL,
    run_at       INTEGER NOT NULL,
    locked_by    TEXT    NOT NULL DEFAULT '',
    locked_until INTEGER NOT NULL DEFAULT 0,
    progress     TEXT    NOT NULL DEFAULT '',
    last_error   TEXT    NOT NULL DEFAULT '',
    created_at   INTEGER NOT NULL,
    updated_at   INTEGER NOT NULL
);
CREATE INDEX jobs_ready ON jobs (state, run_at);
CREATE INDEX jobs_ref ON jobs (workspace_id, ref);

-- Suppression entries an erasure left on request: keyed hashes (under a key of
-- their own, so none equals a blind index) of identifiers whose events are not
-- collected any more.
CREATE TABLE suppressions (
    workspace_id INTEGER NOT NULL,
    hash         BLOB    NOT NULL,
    created_at   INTEGER NOT NULL,
    PRIMARY KEY (workspace_id, hash)
) WITHOUT ROWID;

-- The audit log names a consent subject by a random pseudonym, not its blind
-- index: the log is kept forever, and once an erasure deletes this row nothing
-- links the pseudonym to anyone.
CREATE TABLE consent_subjects (
    workspace_id INTEGER NOT NULL,
    subject      BLOB    NOT NULL,
    pseudonym    TEXT    NOT NULL,
    PRIMARY KEY (workspace_id, subject)
) WITHOUT ROWID;
