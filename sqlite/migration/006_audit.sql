-- The audit log (T7): one append-only log per workspace, hashed as an RFC 6962
-- tree. An entry row holds the entry's canonical encoding: the leaf data, with no
-- personal data.
CREATE TABLE audit_entries (
	workspace_id INTEGER NOT NULL,
	idx          INTEGER NOT NULL,
	data         BLOB NOT NULL,
	PRIMARY KEY (workspace_id, idx)
) WITHOUT ROWID;

-- The tree hashes each entry's append added (tlog stored hashes, 32 bytes each,
-- concatenated), so a proof reads O(log n) rows. Kept apart from the entries on
-- purpose: an edit that moves or rewrites entry rows leaves the hashes the
-- checkpoints were made from, so a verifier can point at the entry that changed.
CREATE TABLE audit_hashes (
	workspace_id INTEGER NOT NULL,
	idx          INTEGER NOT NULL,
	hashes       BLOB NOT NULL,
	PRIMARY KEY (workspace_id, idx)
) WITHOUT ROWID;

-- Each log's size. Appends lock and advance it in their transaction (on
-- PostgreSQL with SELECT … FOR UPDATE), which is what serializes appenders.
CREATE TABLE audit_heads (
	workspace_id INTEGER PRIMARY KEY,
	size         INTEGER NOT NULL
);

-- Signed tree heads (sumdb notes), one per (workspace, size).
CREATE TABLE audit_checkpoints (
	workspace_id INTEGER NOT NULL,
	size         INTEGER NOT NULL,
	hash         BLOB NOT NULL,
	note         BLOB NOT NULL,
	created_at   INTEGER NOT NULL,
	PRIMARY KEY (workspace_id, size)
) WITHOUT ROWID;
