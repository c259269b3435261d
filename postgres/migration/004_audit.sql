-- The audit log (T7): one append-only log per workspace, hashed as an RFC 6962
-- tree. An entry row holds the entry's canonical encoding: the leaf data, with no
-- personal data.
CREATE TABLE audit_entries (
	workspace_id BIGINT NOT NULL,
	idx          BIGINT NOT NULL,
	data         BYTEA NOT NULL,
	PRIMARY KEY (workspace_id, idx)
);

-- The tree hashes each entry's append added (tlog stored hashes, 32 bytes each,
-- concatenated), so a proof reads O(log n) rows. Kept apart from the entries on
-- purpose: an edit that moves or rewrites entry rows leaves the hashes the
-- checkpoints were made from, so a verifier can point at the entry that changed.
CREATE TABLE audit_hashes (
	workspace_id BIGINT NOT NULL,
	idx          BIGINT NOT NULL,
	hashes       BYTEA NOT NULL,
	PRIMARY KEY (workspace_id, idx)
);

-- Each log's size. Appends lock it (SELECT … FOR UPDATE) and advance it in their
-- transaction: that serializes appenders of one workspace across nodes, without
-- advisory locks.
CREATE TABLE audit_heads (
	workspace_id BIGINT PRIMARY KEY,
	size         BIGINT NOT NULL
);

-- Signed tree heads (sumdb notes), one per (workspace, size).
CREATE TABLE audit_checkpoints (
	workspace_id BIGINT NOT NULL,
	size         BIGINT NOT NULL,
	hash         BYTEA NOT NULL,
	note         BYTEA NOT NULL,
	created_at   BIGINT NOT NULL,
	PRIMARY KEY (workspace_id, size)
);
