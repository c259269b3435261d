-- The store's own random id. The audit journal beside the database file
-- carries it in its header, so that a journal is never replayed into another
-- database (a database file recreated beside an old journal).
CREATE TABLE store_meta (
	name  TEXT PRIMARY KEY,
	value BLOB NOT NULL
);
INSERT INTO store_meta (name, value) VALUES ('id', randomblob(16));
