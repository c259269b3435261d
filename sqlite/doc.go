// Package sqlite is the embedded storage backend: every trustloop store interface
// over one SQLite database file (modernc.org/sqlite, pure Go) in the data directory.
//
// It owns the schema (migration/*.sql, embedded and applied on open), the single
// writer connection (WAL, synchronous=FULL, secure_delete), the read pool and the
// append-only segment files that hold large groups' sealed payloads. It
// must never see plaintext personal data: callers hand it sealed payloads and blind
// indexes only. It must never commit one event per transaction on the ingest path.
package sqlite
