-- Operators: staff accounts of the admin console. email is normalized
-- (trimmed, lower-case), unique across workspaces; password_hash is a PHC string
-- (argon2id, package password), never the password. roles and purposes are
-- space-separated like api_keys'.
CREATE TABLE operators (
	id            INTEGER PRIMARY KEY,
	workspace_id  INTEGER NOT NULL REFERENCES workspaces(id),
	email         TEXT NOT NULL,
	name          TEXT NOT NULL,
	password_hash TEXT NOT NULL,
	roles         TEXT NOT NULL,
	purposes      TEXT NOT NULL,
	created_at    INTEGER NOT NULL,
	disabled_at   INTEGER,
	-- One account per email across workspaces: the sign-in form names no
	-- workspace, so an email must say which one it signs in to.
	UNIQUE (email)
);
