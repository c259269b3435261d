-- The persisted levels of the messageId dedupe index (see dedupe_runs.go): sorted
-- runs of keyed message hashes in 4 KiB blocks, and per run a header with its
-- Bloom filter and the first key of every block. upto is the last dedupe_log id
-- the run covers. Keyed hashes only: nothing here is personal data.
CREATE TABLE dedupe_runs (
	id      INTEGER PRIMARY KEY,
	min_day INTEGER NOT NULL,
	max_day INTEGER NOT NULL,
	n       INTEGER NOT NULL,
	upto    INTEGER NOT NULL,
	bloom   BLOB NOT NULL,
	firsts  BLOB NOT NULL
);

CREATE TABLE dedupe_blocks (
	run_id INTEGER NOT NULL,
	block  INTEGER NOT NULL,
	keys   BLOB NOT NULL,
	PRIMARY KEY (run_id, block)
) WITHOUT ROWID;
