package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"

	"github.com/trustloop/trustloop"
	"golang.org/x/mod/sumdb/tlog"
)

var _ trustloop.AuditStore = (*DB)(nil)

const (
	auditEntryInsert   = `INSERT INTO audit_entries (workspace_id, idx, data) VALUES `
	auditHashInsert    = `INSERT INTO audit_hashes (workspace_id, idx, hashes) VALUES `
	auditSubjectInsert = `INSERT INTO audit_subjects (workspace_id, subject, idx) VALUES `
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

// AppendAudit appends entries to their workspaces' logs in one transaction. The
// store's writer lock (and SQLite's single writer) serializes appenders, so the
// head read here is the head the transaction advances.
//
// Every data use of the API waits for this commit, so it does as little as it
// can besides the rows and the fsync: every statement is prepared once, and the
// frontier hashes the new ones combine with are kept from the last append
// (trustloop.AuditTips) instead of read back; the head is still read in the
// transaction, and the kept frontier is used only for that size.
func (db *DB) AppendAudit(ctx context.Context, entries []trustloop.AuditEntry) error {
	if len(entries) == 0 {
		return nil
	}
	groups := map[int64][]int{}
	for i := range entries {
		groups[entries[i].WorkspaceID] = append(groups[entries[i].WorkspaceID], i)
	}
	wss := make([]int64, 0, len(groups))
	for ws := range groups {
		wss = append(wss, ws)
	}
	slices.Sort(wss)

	db.mu.Lock()
	defer db.mu.Unlock()
	// The writer pool has one connection, which the transaction holds: the
	// statements it runs are prepared first.
	queries := []string{auditHeadSelect, auditHeadUpsert}
	for _, ws := range wss {
		subjects := 0
		for _, i := range groups[ws] {
			if entries[i].Subject != "" {
				subjects++
			}
		}
		queries = append(queries, chunkQueries(auditEntryInsert, len(groups[ws]))...)
		queries = append(queries, chunkQueries(auditHashInsert, len(groups[ws]))...)
		queries = append(queries, chunkQueries(auditSubjectInsert, subjects)...)
	}
	for _, q := range queries {
		if _, err := db.prepared(ctx, true, q); err != nil {
			return fmt.Errorf("sqlite: audit append: prepare: %w", err)
		}
	}
	tx, err := db.write.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("sqlite: audit append: begin: %w", err)
	}
	defer tx.Rollback()
	headSelect, err := db.txStmt(ctx, tx, auditHeadSelect)
	if err != nil {
		return fmt.Errorf("sqlite: audit append: head: %w", err)
	}
	headUpsert, err := db.txStmt(ctx, tx, auditHeadUpsert)
	if err != nil {
		return fmt.Errorf("sqlite: audit append: head: %w", err)
	}
	indexes := make([]int64, len(entries))
	tips := make(map[int64]trustloop.AuditTip, len(wss))
	for _, ws := range wss {
		var size int64
		err := headSelect.QueryRowContext(ctx, ws).Scan(&size)
		if err != nil && !errors.Is(err, sql.ErrNoRows) {
			return fmt.Errorf("sqlite: audit append: head: %w", err)
		}
		batch := make([]trustloop.AuditEntry, len(groups[ws]))
		for j, i := range groups[ws] {
			batch[j] = entries[i]
		}
		data, hashes, tip, err := db.auditTips.Append(ws, size, batch, func(idx []int64) ([]tlog.Hash, error) {
			return readAuditHashes(ctx, tx, ws, idx)
		})
		if err != nil {
			return auditErr("audit append", err)
		}
		tips[ws] = tip
		// Entries, their tree hashes and the subjects' index rows, many
		// rows per statement.
		var ents, hs, subs []any
		for j := range batch {
			ents = append(ents, ws, batch[j].Index, data[j])
			hs = append(hs, ws, batch[j].Index, hashes[j])
			if batch[j].Subject != "" {
				subs = append(subs, ws, batch[j].Subject, batch[j].Index)
			}
		}
		for _, ins := range []struct {
			query, what string
			args        []any
		}{{auditEntryInsert, "entries", ents}, {auditHashInsert, "hashes", hs}, {auditSubjectInsert, "subjects", subs}} {
			if err := db.insertRows(ctx, tx, ins.query, ins.args); err != nil {
				return fmt.Errorf("sqlite: audit append: %s: %w", ins.what, err)
			}
		}
		if _, err := headUpsert.ExecContext(ctx, ws, size+int64(len(batch))); err != nil {
			return fmt.Errorf("sqlite: audit append: head: %w", err)
		}
		for j, i := range groups[ws] {
			indexes[i] = batch[j].Index
		}
	}
	if err := tx.Commit(); err != nil {
		// Committed or not is unknown here: the next append reads the hashes.
		db.auditTips.Forget(wss...)
		return fmt.Errorf("sqlite: audit append: commit: %w", err)
	}
	for ws, t := range tips {
		db.auditTips.Keep(ws, t)
	}
	for i := range entries {
		entries[i].Index = indexes[i]
	}
	return nil
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
	return readAuditHashes(ctx, db.read, workspaceID, indexes)
}

// AuditSize returns the number of entries in a workspace's log.
func (db *DB) AuditSize(ctx context.Context, workspaceID int64) (int64, error) {
	var size int64
	err := db.read.QueryRowContext(ctx, `SELECT size FROM audit_heads WHERE workspace_id = ?`, workspaceID).Scan(&size)
	if err != nil && !errors.Is(err, sql.ErrNoRows) {
		return 0, fmt.Errorf("sqlite: audit size: %w", err)
	}
	return size, nil
}

// AuditRecords returns the stored records [start, end) of a workspace's log,
// each with the hashes stored at its index.
func (db *DB) AuditRecords(ctx context.Context, workspaceID, start, end int64) ([]trustloop.AuditRecord, error) {
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
		return nil, trustloop.Errorf(trustloop.ENOTFOUND, "No audit checkpoint yet.")
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
	if before <= 0 {
		before = math.MaxInt64
	}
	rows, err := db.read.QueryContext(ctx, `SELECT e.idx, e.data FROM audit_subjects s
		JOIN audit_entries e ON e.workspace_id = s.workspace_id AND e.idx = s.idx
		WHERE s.workspace_id = ? AND s.subject = ? AND s.idx < ? ORDER BY s.idx DESC LIMIT ?`, workspaceID, subject, before, limit)
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
