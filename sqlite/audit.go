package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"math"
	"strings"

	"github.com/trustloop/trustloop"
	"golang.org/x/mod/sumdb/tlog"
)

var _ trustloop.AuditStore = (*DB)(nil)

const (
	auditEntryInsert   = `INSERT INTO audit_entries (workspace_id, idx, data) VALUES `
	auditHashInsert    = `INSERT INTO audit_hashes (workspace_id, idx, hashes) VALUES `
	auditSubjectInsert = `INSERT INTO audit_subjects_recent (workspace_id, subject, idx) VALUES `
)

// auditChunk is the most audit rows one INSERT carries.
const auditChunk = 256

// querier is what both the write transaction and the read pool offer.
type querier interface {
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
}

const (
	auditHeadSelect = `SELECT size FROM audit_heads WHERE workspace_id = ?`
	auditHeadUpsert = `INSERT INTO audit_heads (workspace_id, size) VALUES (?, ?)
			ON CONFLICT (workspace_id) DO UPDATE SET size = excluded.size`
)

// AppendAudit appends entries to their workspaces' logs: durable in the audit
// journal when it returns (auditjournal.go), in the tables for every read.
func (db *DB) AppendAudit(ctx context.Context, entries []trustloop.AuditEntry) error {
	return db.appendAudit(ctx, entries, false)
}

// AppendAuditLazy is AppendAudit whose entries are written to the audit
// journal, not yet fdatasynced, when it returns: they survive a crash of the
// process, and a crash of the machine once the journal's lazy fdatasync
// (Options.AuditLazySyncDelay later) or the applier's commit has run.
func (db *DB) AppendAuditLazy(ctx context.Context, entries []trustloop.AuditEntry) error {
	return db.appendAudit(ctx, entries, true)
}

func (db *DB) appendAudit(ctx context.Context, entries []trustloop.AuditEntry, lazy bool) error {
	if len(entries) == 0 {
		return nil
	}
	if db.audit == nil {
		return fmt.Errorf("sqlite: audit append: the store is open read-only")
	}
	return db.appendJournal(ctx, entries, lazy)
}

// chunkQueries are the statements insertRows runs for n rows under prefix.
func chunkQueries(prefix string, n int) []string {
	var out []string
	for start := 0; start < n; start += auditChunk {
		out = append(out, prefix+repeatRow(min(auditChunk, n-start), "(?,?,?)"))
	}
	return out
}

// insertRows inserts rows of three values (args, flat) under prefix, at most
// auditChunk per statement, each statement prepared once per row count.
func (db *DB) insertRows(ctx context.Context, tx *sql.Tx, prefix string, args []any) error {
	for start := 0; start < len(args); start += 3 * auditChunk {
		chunk := args[start:min(start+3*auditChunk, len(args))]
		st, err := db.txStmt(ctx, tx, prefix+repeatRow(len(chunk)/3, "(?,?,?)"))
		if err != nil {
			return err
		}
		if _, err := st.ExecContext(ctx, chunk...); err != nil {
			return err
		}
	}
	return nil
}

// auditErr wraps an internal error with the operation and passes application
// errors (EINVALID of a bad entry) through as they are.
func auditErr(op string, err error) error {
	if trustloop.ErrorCode(err) == trustloop.EINTERNAL {
		return fmt.Errorf("sqlite: %s: %w", op, err)
	}
	return err
}

// readAuditHashes reads stored hashes out of the rows that hold them.
func readAuditHashes(ctx context.Context, q querier, workspaceID int64, indexes []int64) ([]tlog.Hash, error) {
	if len(indexes) == 0 {
		return nil, nil
	}
	recs := trustloop.AuditHashRecords(indexes)
	args := make([]any, 0, len(recs)+1)
	args = append(args, workspaceID)
	for _, r := range recs {
		args = append(args, r)
	}
	rows, err := q.QueryContext(ctx, `SELECT idx, hashes FROM audit_hashes WHERE workspace_id = ? AND idx IN (`+
		strings.TrimSuffix(strings.Repeat("?,", len(recs)), ",")+`)`, args...)
	if err != nil {
		return nil, fmt.Errorf("sqlite: audit hashes: %w", err)
	}
	defer rows.Close()
	got := make(map[int64][]byte, len(recs))
	for rows.Next() {
		var idx int64
		var h []byte
		if err := rows.Scan(&idx, &h); err != nil {
			return nil, fmt.Errorf("sqlite: audit hashes: %w", err)
		}
		got[idx] = h
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("sqlite: audit hashes: %w", err)
	}
	return trustloop.PickAuditHashes(indexes, got)
}

// ReadAuditHashes returns stored tree hashes of a workspace's log.
func (db *DB) ReadAuditHashes(ctx context.Context, workspaceID int64, indexes []int64) ([]tlog.Hash, error) {
	if err := db.flushAudit(ctx); err != nil {
		return nil, err
	}
	return readAuditHashes(ctx, db.read, workspaceID, indexes)
}

// AuditSize returns the number of entries in a workspace's log.
func (db *DB) AuditSize(ctx context.Context, workspaceID int64) (int64, error) {
	if err := db.flushAudit(ctx); err != nil {
		return 0, err
	}
	return db.auditHead(ctx, db.read, workspaceID)
}

// AuditRecords returns the stored records [start, end) of a workspace's log,
// each with the hashes stored at its index.
func (db *DB) AuditRecords(ctx context.Context, workspaceID, start, end int64) ([]trustloop.AuditRecord, error) {
	if err := db.flushAudit(ctx); err != nil {
		return nil, err
	}
	rows, err := db.read.QueryContext(ctx, `SELECT e.idx, e.data, h.hashes FROM audit_entries e
		LEFT JOIN audit_hashes h ON h.workspace_id = e.workspace_id AND h.idx = e.idx
		WHERE e.workspace_id = ? AND e.idx >= ? AND e.idx < ? ORDER BY e.idx`, workspaceID, start, end)
	if err != nil {
		return nil, fmt.Errorf("sqlite: audit records: %w", err)
	}
	defer rows.Close()
	var out []trustloop.AuditRecord
	for rows.Next() {
		r := trustloop.AuditRecord{WorkspaceID: workspaceID}
		if err := rows.Scan(&r.Index, &r.Data, &r.Hashes); err != nil {
			return nil, fmt.Errorf("sqlite: audit records: %w", err)
		}
		out = append(out, r)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("sqlite: audit records: %w", err)
	}
	return out, nil
}

// SaveAuditCheckpoint stores a signed checkpoint (once per size).
func (db *DB) SaveAuditCheckpoint(ctx context.Context, c *trustloop.AuditCheckpoint) error {
	db.mu.Lock()
	defer db.mu.Unlock()
	if _, err := db.write.ExecContext(ctx, `INSERT INTO audit_checkpoints (workspace_id, size, hash, note, created_at)
		VALUES (?, ?, ?, ?, ?) ON CONFLICT DO NOTHING`, c.WorkspaceID, c.Size, c.Hash[:], c.Note, ms(c.CreatedAt)); err != nil {
		return fmt.Errorf("sqlite: save audit checkpoint: %w", err)
	}
	return nil
}

// LatestAuditCheckpoint returns a workspace's largest checkpoint.
func (db *DB) LatestAuditCheckpoint(ctx context.Context, workspaceID int64) (*trustloop.AuditCheckpoint, error) {
	c := &trustloop.AuditCheckpoint{WorkspaceID: workspaceID}
	var hash []byte
	var created int64
	err := db.read.QueryRowContext(ctx, `SELECT size, hash, note, created_at FROM audit_checkpoints
		WHERE workspace_id = ? ORDER BY size DESC LIMIT 1`, workspaceID).Scan(&c.Size, &hash, &c.Note, &created)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, trustloop.Errorf(trustloop.ENOTFOUND, "No audit checkpoint yet.").
			WithHint("A checkpoint is signed within seconds of the first audit entry; try again shortly.")
	} else if err != nil {
		return nil, fmt.Errorf("sqlite: latest audit checkpoint: %w", err)
	}
	copy(c.Hash[:], hash)
	c.CreatedAt = fromMS(created)
	return c, nil
}

// AuditRecordsOf returns the records naming a subject, newest first, with
// indexes below before (0: from the end), at most limit.
func (db *DB) AuditRecordsOf(ctx context.Context, workspaceID int64, subject string, before int64, limit int) ([]trustloop.AuditRecord, error) {
	if err := db.flushAudit(ctx); err != nil {
		return nil, err
	}
	if before <= 0 {
		before = math.MaxInt64
	}
	// The subject's rows are in the index and among the recent rows not yet
	// merged into it (mergeAuditSubjects): the newest limit of each, then of
	// both. The recent rows have no index by subject; there are at most
	// about AuditSubjectsMergeAt of them.
	rows, err := db.read.QueryContext(ctx, `SELECT e.idx, e.data FROM (
			SELECT idx FROM (SELECT idx FROM audit_subjects
				WHERE workspace_id = ?1 AND subject = ?2 AND idx < ?3 ORDER BY idx DESC LIMIT ?4)
			UNION ALL
			SELECT idx FROM (SELECT idx FROM audit_subjects_recent
				WHERE workspace_id = ?1 AND subject = ?2 AND idx < ?3 ORDER BY idx DESC LIMIT ?4)
		) s JOIN audit_entries e ON e.workspace_id = ?1 AND e.idx = s.idx
		ORDER BY s.idx DESC LIMIT ?4`, workspaceID, subject, before, limit)
	if err != nil {
		return nil, fmt.Errorf("sqlite: audit records of subject: %w", err)
	}
	defer rows.Close()
	var out []trustloop.AuditRecord
	for rows.Next() {
		r := trustloop.AuditRecord{WorkspaceID: workspaceID}
		if err := rows.Scan(&r.Index, &r.Data); err != nil {
			return nil, fmt.Errorf("sqlite: audit records of subject: %w", err)
		}
		out = append(out, r)
	}
	return out, rows.Err()
}
