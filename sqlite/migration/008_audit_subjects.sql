-- Which audit entries name a subject: GET /v1/profiles/{id}/data-uses reads a
-- subject's entries without scanning the workspace's log. Written in the same
-- transaction as the entries; not part of the tree (the verifier ignores it).
CREATE TABLE audit_subjects (
    workspace_id INTEGER NOT NULL,
    subject      TEXT    NOT NULL,
    idx          INTEGER NOT NULL,
    PRIMARY KEY (workspace_id, subject, idx)
) WITHOUT ROWID;
