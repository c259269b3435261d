-- See sqlite/migration/011_daily_counts.sql.
CREATE TABLE daily_counts (
	workspace_id BIGINT NOT NULL,
	day          BIGINT NOT NULL,
	name         TEXT NOT NULL,
	n            BIGINT NOT NULL,
	PRIMARY KEY (workspace_id, day, name)
);

CREATE INDEX consent_records_at ON consent_records (workspace_id, at);
