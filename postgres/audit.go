package postgres

import (
	"context"
	"errors"
	"fmt"
	"math"

	"github.com/jackc/pgx/v5"
	"github.com/trustloop/trustloop"
	"golang.org/x/mod/sumdb/tlog"
)

var _ trustloop.AuditStore = (*DB)(nil)

// querier is what both a transaction and the pool offer.
type querier interface {
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
}

// AppendAudit appends entries to their workspaces' logs in one transaction.
// Several nodes append at once: each workspace's head row is locked (SELECT …
// FOR UPDATE, in workspace order so two batches never wait on each other in a
// cycle) before its size is read, so the hashes computed here are over the log
// as committed and the indexes are dense. A waiting appender reads the head its
// predecessor committed (READ COMMITTED re-reads a row it waited for); under
// SERIALIZABLE (CockroachDB) the loser gets 40001 and retry runs it again.
func (db *DB) AppendAudit(ctx context.Context, entries []trustloop.AuditEntry) error {
	return db.appendAudit(ctx, entries, false)
}

// AppendAuditLazy is AppendAudit committed with synchronous_commit off: the
// commit returns before its WAL is flushed (PostgreSQL's WAL writer flushes
// it within three wal_writer_delay, 600 ms by default). It survives a crash
// of any Trustloop node; a crash of the database server can lose it, but
// never without every commit after it (the WAL is flushed in order), so a
// checkpoint, committed strictly, never covers a lost entry. It costs one
// statement more (SET LOCAL) and forgets the kept tip (below).
func (db *DB) AppendAuditLazy(ctx context.Context, entries []trustloop.AuditEntry) error {
	return db.appendAudit(ctx, entries, true)
}

func (db *DB) appendAudit(ctx context.Context, entries []trustloop.AuditEntry, lazy bool) error {
	if len(entries) == 0 {
		return nil
	}
	wss, groups := trustloop.AuditGroups(entries)
	indexes := make([]int64, len(entries))
	var tips map[int64]trustloop.AuditTip // the last attempt's
	err := retry(ctx, func() error {
		tips = make(map[int64]trustloop.AuditTip, len(wss))
		tx, err := db.pool.Begin(ctx)
		if err != nil {
			return err
		}
		defer tx.Rollback(ctx)
		if lazy {
			if _, err := tx.Exec(ctx, `SET LOCAL synchronous_commit TO OFF`); err != nil {
				return err
			}
		}
		// A workspace's first append makes its head row; ON CONFLICT DO NOTHING
		// waits for a concurrent maker, then leaves its row alone.
		if _, err := tx.Exec(ctx, `INSERT INTO audit_heads (workspace_id, size)
			SELECT unnest($1::bigint[]), 0 ON CONFLICT DO NOTHING`, wss); err != nil {
			return err
		}
		rows, err := tx.Query(ctx, `SELECT workspace_id, size FROM audit_heads WHERE workspace_id = ANY($1::bigint[])
			ORDER BY workspace_id FOR UPDATE`, wss)
		if err != nil {
			return err
		}
		sizes := make(map[int64]int64, len(wss))
		var ws, size int64
		if _, err := pgx.ForEachRow(rows, []any{&ws, &size}, func() error { sizes[ws] = size; return nil }); err != nil {
			return err
		}
		for _, ws := range wss {
			size, ok := sizes[ws]
			if !ok {
				return fmt.Errorf("audit head of workspace %d missing", ws)
			}
			batch := make([]trustloop.AuditEntry, len(groups[ws]))
			for j, i := range groups[ws] {
				batch[j] = entries[i]
			}
			// The frontier kept from this node's last append when the locked
			// head still has its size (trustloop.AuditTips), else read.
			data, hashes, tip, err := db.auditTips.Append(ws, size, batch, func(idx []int64) ([]tlog.Hash, error) {
				return readAuditHashes(ctx, tx, ws, idx)
			})
			if err != nil {
				return err
			}
			tips[ws] = tip
			idxs := make([]int64, len(batch))
			for j := range batch {
				idxs[j] = batch[j].Index
			}
			if _, err := tx.Exec(ctx, `INSERT INTO audit_entries (workspace_id, idx, data)
				SELECT $1::bigint, * FROM unnest($2::bigint[], $3::bytea[])`, ws, idxs, data); err != nil {
				return err
			}
			if _, err := tx.Exec(ctx, `INSERT INTO audit_hashes (workspace_id, idx, hashes)
				SELECT $1::bigint, * FROM unnest($2::bigint[], $3::bytea[])`, ws, idxs, hashes); err != nil {
				return err
			}
			var subs []string
			var subIdx []int64
			for _, e := range batch {
				if e.Subject != "" {
					subs, subIdx = append(subs, e.Subject), append(subIdx, e.Index)
				}
			}
			if len(subs) > 0 {
				if _, err := tx.Exec(ctx, `INSERT INTO audit_subjects (workspace_id, subject, idx)
					SELECT $1::bigint, * FROM unnest($2::text[], $3::bigint[])`, ws, subs, subIdx); err != nil {
					return err
				}
			}
			if _, err := tx.Exec(ctx, `UPDATE audit_heads SET size = $2 WHERE workspace_id = $1`, ws, size+int64(len(batch))); err != nil {
				return err
			}
			for j, i := range groups[ws] {
				indexes[i] = idxs[j]
			}
		}
		return tx.Commit(ctx)
	})
	if err != nil {
		db.auditTips.Forget(wss...) // committed or not may be unknown
		if trustloop.ErrorCode(err) == trustloop.EINTERNAL {
			return fmt.Errorf("postgres: audit append: %w", err)
		}
		return err
	}
	if lazy {
		// A lazy commit is lost if the server crashes before its flush, and
		// another node may then append other entries at the same indexes: the
		// rule the kept tip rests on (a log of the same size is the same log)
		// no longer holds, so the next append reads the hashes again.
		db.auditTips.Forget(wss...)
	} else {
		for ws, t := range tips {
			db.auditTips.Keep(ws, t)
		}
	}
	for i := range entries {
		entries[i].Index = indexes[i]
	}
	return nil
}

// readAuditHashes reads stored hashes out of the rows that hold them.
func readAuditHashes(ctx context.Context, q querier, workspaceID int64, indexes []int64) ([]tlog.Hash, error) {
	if len(indexes) == 0 {
		return nil, nil
	}
	rows, err := q.Query(ctx, `SELECT idx, hashes FROM audit_hashes WHERE workspace_id = $1 AND idx = ANY($2::bigint[])`,
		workspaceID, trustloop.AuditHashRecords(indexes))
	if err != nil {
		return nil, fmt.Errorf("postgres: audit hashes: %w", err)
	}
	got := map[int64][]byte{}
	var idx int64
	var h []byte
	if _, err := pgx.ForEachRow(rows, []any{&idx, &h}, func() error { got[idx] = h; return nil }); err != nil {
		return nil, fmt.Errorf("postgres: audit hashes: %w", err)
	}
	return trustloop.PickAuditHashes(indexes, got)
}

// ReadAuditHashes returns stored tree hashes of a workspace's log.
func (db *DB) ReadAuditHashes(ctx context.Context, workspaceID int64, indexes []int64) ([]tlog.Hash, error) {
	return readAuditHashes(ctx, db.pool, workspaceID, indexes)
}

// AuditSize returns the number of entries in a workspace's log.
func (db *DB) AuditSize(ctx context.Context, workspaceID int64) (int64, error) {
	var size int64
	err := db.pool.QueryRow(ctx, `SELECT size FROM audit_heads WHERE workspace_id = $1`, workspaceID).Scan(&size)
	if err != nil && !errors.Is(err, pgx.ErrNoRows) {
		return 0, fmt.Errorf("postgres: audit size: %w", err)
	}
	return size, nil
}

// AuditRecords returns the stored records [start, end) of a workspace's log,
// each with the hashes stored at its index.
func (db *DB) AuditRecords(ctx context.Context, workspaceID, start, end int64) ([]trustloop.AuditRecord, error) {
	rows, err := db.pool.Query(ctx, `SELECT e.idx, e.data, h.hashes FROM audit_entries e
		LEFT JOIN audit_hashes h ON h.workspace_id = e.workspace_id AND h.idx = e.idx
		WHERE e.workspace_id = $1 AND e.idx >= $2 AND e.idx < $3 ORDER BY e.idx`, workspaceID, start, end)
	if err != nil {
		return nil, fmt.Errorf("postgres: audit records: %w", err)
	}
	var out []trustloop.AuditRecord
	var r trustloop.AuditRecord
	_, err = pgx.ForEachRow(rows, []any{&r.Index, &r.Data, &r.Hashes}, func() error {
		r.WorkspaceID = workspaceID
		out = append(out, r)
		r = trustloop.AuditRecord{}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("postgres: audit records: %w", err)
	}
	return out, nil
}

// SaveAuditCheckpoint stores a signed checkpoint (once per size).
func (db *DB) SaveAuditCheckpoint(ctx context.Context, c *trustloop.AuditCheckpoint) error {
	if _, err := db.pool.Exec(ctx, `INSERT INTO audit_checkpoints (workspace_id, size, hash, note, created_at)
		VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING`, c.WorkspaceID, c.Size, c.Hash[:], c.Note, ms(c.CreatedAt)); err != nil {
		return fmt.Errorf("postgres: save audit checkpoint: %w", err)
	}
	return nil
}

// LatestAuditCheckpoint returns a workspace's largest checkpoint.
func (db *DB) LatestAuditCheckpoint(ctx context.Context, workspaceID int64) (*trustloop.AuditCheckpoint, error) {
	c := &trustloop.AuditCheckpoint{WorkspaceID: workspaceID}
	var hash []byte
	var created int64
	err := db.pool.QueryRow(ctx, `SELECT size, hash, note, created_at FROM audit_checkpoints
		WHERE workspace_id = $1 ORDER BY size DESC LIMIT 1`, workspaceID).Scan(&c.Size, &hash, &c.Note, &created)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, trustloop.Errorf(trustloop.ENOTFOUND, "No audit checkpoint yet.").
			WithHint("A checkpoint is signed within seconds of the first audit entry; try again shortly.")
	} else if err != nil {
		return nil, fmt.Errorf("postgres: latest audit checkpoint: %w", err)
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
	rows, err := db.pool.Query(ctx, `SELECT e.idx, e.data FROM audit_subjects s
		JOIN audit_entries e ON e.workspace_id = s.workspace_id AND e.idx = s.idx
		WHERE s.workspace_id = $1 AND s.subject = $2 AND s.idx < $3 ORDER BY s.idx DESC LIMIT $4`, workspaceID, subject, before, limit)
	if err != nil {
		return nil, fmt.Errorf("postgres: audit records of subject: %w", err)
	}
	defer rows.Close()
	var out []trustloop.AuditRecord
	for rows.Next() {
		r := trustloop.AuditRecord{WorkspaceID: workspaceID}
		if err := rows.Scan(&r.Index, &r.Data); err != nil {
			return nil, fmt.Errorf("postgres: audit records of subject: %w", err)
		}
		out = append(out, r)
	}
	return out, rows.Err()
}
