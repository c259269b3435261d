-- The subjects' index rows of the newest audit records, in log order. Written
-- into audit_subjects directly, each record's row lands on a page of its own
-- (the index is ordered by subject), so every apply of the audit journal wrote
-- about one index page per record. Here the rows go to the end of the table,
-- and they are merged into audit_subjects many thousands at a time, in index
-- order, each page written once per merge. A subject's records are those of
-- both tables (sqlite/audit.go).
CREATE TABLE audit_subjects_recent (
    workspace_id INTEGER NOT NULL,
    idx          INTEGER NOT NULL,
    subject      TEXT    NOT NULL,
    PRIMARY KEY (workspace_id, idx)
) WITHOUT ROWID;
