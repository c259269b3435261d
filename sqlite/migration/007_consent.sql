-- Consent records: one chain per subject (a blind index), each record holding
-- the hash of the one before (trustloop.ConsentRecordHash). Receipts are the
-- signed JWS documents handed to customers, kept as issued.
CREATE TABLE consent_records (
    workspace_id   INTEGER NOT NULL,
    subject        BLOB    NOT NULL,
    seq            INTEGER NOT NULL,
    purpose        TEXT    NOT NULL,
    state          TEXT    NOT NULL,
    at             INTEGER NOT NULL,
    expires_at     INTEGER NOT NULL DEFAULT 0,
    method         TEXT    NOT NULL,
    notice_version TEXT    NOT NULL DEFAULT '',
    jurisdiction   TEXT    NOT NULL DEFAULT '',
    source_id      INTEGER NOT NULL DEFAULT 0,
    evidence       TEXT    NOT NULL DEFAULT '',
    receipt_id     TEXT    NOT NULL DEFAULT '',
    prev_hash      BLOB    NOT NULL,
    hash           BLOB    NOT NULL,
    PRIMARY KEY (workspace_id, subject, seq)
) WITHOUT ROWID;
CREATE INDEX consent_records_purpose ON consent_records (workspace_id, purpose);

CREATE TABLE consent_receipts (
    workspace_id INTEGER NOT NULL,
    id           TEXT    NOT NULL,
    subject      BLOB    NOT NULL,
    at           INTEGER NOT NULL,
    body         BLOB    NOT NULL,
    PRIMARY KEY (workspace_id, id)
) WITHOUT ROWID;
