// Package postgres is the scale-out storage backend: every trustloop store
// interface over PostgreSQL through pgx (pgxpool), for any number of stateless
// Trustloop nodes.
//
// It owns the PostgreSQL schema (migration/*.sql, embedded, applied on open under a
// lock table rather than advisory locks) and keeps its SQL portable to
// PostgreSQL-compatible distributed databases: no advisory locks, no LISTEN/NOTIFY,
// retries on serialization failures (40001). Like every backend it must never see
// plaintext personal data and never commit one event per transaction on ingest.
package postgres
