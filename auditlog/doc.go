// Package auditlog is the tamper-evident audit log (T7): the per-process writer
// that group-commits entries (data uses, consent changes) to the store, the
// signed checkpoints of each workspace's RFC 6962 tree (sumdb notes, Ed25519 with
// the workspace's signing key), inclusion and consistency proofs, and Verify,
// which checks a log as served against its checkpoints and names the first
// entry that was changed, deleted, reordered or inserted, or the rollback.
//
// It owns the tree and its signatures. It must never acknowledge an entry before
// it is committed, sign a tree that does not extend the last one it signed, or
// put personal data in an entry, a log line or an error: entries name subjects
// only by pseudonymous id, and errors name entries only by index.
package auditlog
