-- Unified profiles (issue 3): the identity graph, profile state, merges (kept so a
-- merge can be undone), separations made by splits, audiences and memberships.
-- Values are sealed or blind-indexed; types, ids and times are not personal data.
CREATE TABLE profiles (
	id           INTEGER PRIMARY KEY,
	workspace_id INTEGER NOT NULL,
	key_id       INTEGER NOT NULL,
	state        BLOB NOT NULL,
	applied_seq  INTEGER NOT NULL DEFAULT 0, -- the newest event the state reflects
	merged_into  INTEGER NOT NULL DEFAULT 0,
	created_at   INTEGER NOT NULL,
	updated_at   INTEGER NOT NULL
);
CREATE INDEX profiles_workspace ON profiles (workspace_id, id);

CREATE TABLE identities (
	workspace_id INTEGER NOT NULL,
	blind        BLOB NOT NULL,
	type         TEXT NOT NULL,
	profile_id   INTEGER NOT NULL,
	key_id       INTEGER NOT NULL,
	sealed       BLOB NOT NULL,
	first_seen   INTEGER NOT NULL,
	PRIMARY KEY (workspace_id, blind)
) WITHOUT ROWID;
CREATE INDEX identities_profile ON identities (profile_id);

CREATE TABLE merges (
	id           INTEGER PRIMARY KEY,
	workspace_id INTEGER NOT NULL,
	into_profile INTEGER NOT NULL,
	from_profile INTEGER NOT NULL,
	moved        BLOB NOT NULL,
	linking      BLOB NOT NULL,
	message_hash BLOB NOT NULL,
	at           INTEGER NOT NULL,
	split_at     INTEGER
);
CREATE INDEX merges_into ON merges (into_profile);
CREATE INDEX merges_from ON merges (from_profile);

CREATE TABLE separations (
	workspace_id INTEGER NOT NULL,
	a            INTEGER NOT NULL,
	b            INTEGER NOT NULL,
	PRIMARY KEY (workspace_id, a, b)
) WITHOUT ROWID;

CREATE TABLE audiences (
	id           INTEGER PRIMARY KEY AUTOINCREMENT, -- never reused: a late membership write must not land in a new audience
	workspace_id INTEGER NOT NULL,
	name         TEXT NOT NULL,
	rule         TEXT NOT NULL,
	description  TEXT NOT NULL DEFAULT '',
	created_at   INTEGER NOT NULL,
	updated_at   INTEGER NOT NULL,
	UNIQUE (workspace_id, name)
);

CREATE TABLE audience_members (
	audience_id INTEGER NOT NULL,
	profile_id  INTEGER NOT NULL,
	PRIMARY KEY (audience_id, profile_id)
) WITHOUT ROWID;
CREATE INDEX audience_members_profile ON audience_members (profile_id);

-- A profile's timeline: per subject key, the log positions of its events, packed
-- (delta varints), one row per flush. Written behind like profile state, because an
-- index on events (key_id, seq) would cost a random page write per event.
CREATE TABLE timeline (
	key_id    INTEGER NOT NULL,
	first_seq INTEGER NOT NULL,
	seqs      BLOB NOT NULL,
	PRIMARY KEY (key_id, first_seq)
) WITHOUT ROWID;

-- Every event up to upto_seq is reflected in the stored profiles and timeline; a
-- start replays the log after it (the rest of the projection was in memory).
CREATE TABLE projection_state (
	id       INTEGER PRIMARY KEY CHECK (id = 1),
	upto_seq INTEGER NOT NULL
);
INSERT INTO projection_state (id, upto_seq) VALUES (1, 0);

-- Workspace settings documents (JSON; e.g. "profiles": identity rules and
-- computed traits), versioned for optimistic concurrency.
CREATE TABLE settings (
	workspace_id INTEGER NOT NULL,
	name         TEXT NOT NULL,
	value        BLOB NOT NULL,
	version      INTEGER NOT NULL,
	updated_at   INTEGER NOT NULL,
	PRIMARY KEY (workspace_id, name)
) WITHOUT ROWID;
