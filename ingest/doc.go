// Package ingest owns an event's way from a validated message to the durable log:
// the consent admission stage, blind-indexing and keying by subject, sealing, and
// the single writer that group-commits everything waiting into one transaction and
// only then releases the callers (T8: acknowledged means durable).
//
// It must never acknowledge an event before the commit that holds it returns, never
// commit one transaction per event, and never let plaintext identifiers or payloads
// past it: the store receives only sealed payloads and keyed hashes.
package ingest
