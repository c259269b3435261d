-- Tenants, channels and secrets. Secrets are stored only as SHA-256 hashes; the
-- workspace index key only wrapped by the master key.
CREATE TABLE workspaces (
	id         INTEGER PRIMARY KEY,
	name       TEXT NOT NULL UNIQUE,
	index_key  BLOB NOT NULL,
	created_at INTEGER NOT NULL
);

CREATE TABLE sources (
	id              INTEGER PRIMARY KEY,
	workspace_id    INTEGER NOT NULL REFERENCES workspaces(id),
	name            TEXT NOT NULL,
	write_key_hash  BLOB NOT NULL UNIQUE,
	allowed_origins TEXT NOT NULL DEFAULT '',
	created_at      INTEGER NOT NULL
);

CREATE TABLE api_keys (
	id           INTEGER PRIMARY KEY,
	workspace_id INTEGER NOT NULL REFERENCES workspaces(id),
	name         TEXT NOT NULL,
	secret_hash  BLOB NOT NULL UNIQUE,
	roles        TEXT NOT NULL,
	purposes     TEXT NOT NULL,
	created_at   INTEGER NOT NULL,
	revoked_at   INTEGER
);

-- One data key per subject (root identifier), wrapped by the master key, found by
-- the identifier's blind index. Erasing a subject deletes its row: crypto-shredding.
CREATE TABLE subject_keys (
	id           INTEGER PRIMARY KEY,
	workspace_id INTEGER NOT NULL REFERENCES workspaces(id),
	blind        BLOB NOT NULL,
	wrapped      BLOB NOT NULL,
	created_at   INTEGER NOT NULL,
	UNIQUE (workspace_id, blind)
);

-- The event log, the source of truth. seq is the commit order; key_id names the
-- subject key that sealed payload. No foreign keys and no secondary index keep
-- group commits to appends: (source_id, message_hash) is unique, but enforced by
-- the in-memory dedupe set rebuilt from dedupe_log (see dedupe.go for why).
CREATE TABLE events (
	seq          INTEGER PRIMARY KEY,
	workspace_id INTEGER NOT NULL,
	source_id    INTEGER NOT NULL,
	message_hash BLOB NOT NULL,
	key_id       INTEGER NOT NULL,
	type         INTEGER NOT NULL,
	received_at  INTEGER NOT NULL,
	ts           INTEGER NOT NULL,
	payload      BLOB NOT NULL
);

-- Keyed message hashes in commit order, one packed row per group commit (see
-- dedupe.go), read once at open to rebuild the dedupe set, pruned past the window.
-- received_at is the newest receipt in the row.
CREATE TABLE dedupe_log (
	id          INTEGER PRIMARY KEY,
	received_at INTEGER NOT NULL,
	entries     BLOB NOT NULL
);
