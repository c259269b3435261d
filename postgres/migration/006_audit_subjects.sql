-- Which audit entries name a subject (see sqlite/migration/008_audit_subjects.sql).
CREATE TABLE audit_subjects (
    workspace_id BIGINT NOT NULL,
    subject      TEXT   NOT NULL,
    idx          BIGINT NOT NULL,
    PRIMARY KEY (workspace_id, subject, idx)
);
