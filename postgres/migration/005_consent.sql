-- Consent records: one chain per subject (a blind index), each record holding
-- the hash of the one before (trustloop.ConsentRecordHash). Receipts are the
-- signed JWS documents handed to customers, kept as issued.
CREATE TABLE consent_records (
    workspace_id   BIGINT NOT NULL,
    subject        BYTEA   NOT NULL,
    seq            BIGINT NOT NULL,
    purpose        TEXT    NOT NULL,
    state          TEXT    NOT NULL,
    at             BIGINT NOT NULL,
    expires_at     BIGINT NOT NULL DEFAULT 0,
    method         TEXT    NOT NULL,
    notice_version TEXT    NOT NULL DEFAULT '',
    jurisdiction   TEXT    NOT NULL DEFAULT '',
    source_id      BIGINT NOT NULL DEFAULT 0,
    evidence       TEXT    NOT NULL DEFAULT '',
    receipt_id     TEXT    NOT NULL DEFAULT '',
    prev_hash      BYTEA   NOT NULL,
    hash           BYTEA   NOT NULL,
    PRIMARY KEY (workspace_id, subject, seq)
);
CREATE INDEX consent_records_purpose ON consent_records (workspace_id, purpose);

CREATE TABLE consent_receipts (
    workspace_id BIGINT NOT NULL,
    id           TEXT    NOT NULL,
    subject      BYTEA   NOT NULL,
    at           BIGINT NOT NULL,
    body         BYTEA   NOT NULL,
    PRIMARY KEY (workspace_id, id)
);
