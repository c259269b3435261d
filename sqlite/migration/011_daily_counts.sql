-- The trust dashboard's daily counters: numbers per workspace, UTC day (the
-- midnight starting it, in milliseconds) and counter name, added to by the
-- ingest pipeline's flushes (trustloop.CountStore).
CREATE TABLE daily_counts (
	workspace_id INTEGER NOT NULL,
	day          INTEGER NOT NULL,
	name         TEXT NOT NULL,
	n            INTEGER NOT NULL,
	PRIMARY KEY (workspace_id, day, name)
) WITHOUT ROWID;

-- ConsentDaily groups a workspace's consent records by the day of their time.
CREATE INDEX consent_records_at ON consent_records (workspace_id, at);
