package sqlite

import (
	"context"
	"database/sql"
	"fmt"
	"time"

	"github.com/trustloop/trustloop"
)

// eventChunks are the row counts of the prepared multi-row event INSERTs. A group
// of any size is written as a greedy sum of them (100 = 64+32+4), so each group
// costs a handful of statements whatever its size, and every statement is prepared
// once at open: the single writer connection cannot prepare while a transaction
// holds it.
var eventChunks = []int{256, 128, 64, 32, 16, 8, 4, 2, 1}

// eventCols are the bound columns of one event row; the payload column itself is
// the empty blob, since the payload is in a segment (segment.go).
const eventCols = 10

var eventRow = "(?,?,?,?,?,?,?,x'',?,?,?)"

// inlineMaxBytes: a group whose payloads add up to no more than this keeps them in
// the row instead of a segment. Small groups are what a lightly loaded collector
// and the one-event-per-request shape make; for them the segment's own fsync
// (one more per commit) costs more than SQLite's double write of a few pages.
const inlineMaxBytes = 128 << 10

func (db *DB) prepareEventStmts(ctx context.Context) error {
	for _, n := range eventChunks {
		s, err := db.write.PrepareContext(ctx, `INSERT INTO events
			(workspace_id, source_id, message_hash, key_id, type, received_at, ts, payload, seg, off, len) VALUES `+
			repeatRow(n, eventRow))
		if err != nil {
			return fmt.Errorf("sqlite: prepare: %w", err)
		}
		db.eventStmts[n] = s
		s, err = db.write.PrepareContext(ctx, `INSERT INTO events
			(workspace_id, source_id, message_hash, key_id, type, received_at, ts, payload) VALUES `+
			placeholders(n, 8))
		if err != nil {
			return fmt.Errorf("sqlite: prepare: %w", err)
		}
		db.inlineStmts[n] = s
		s, err = db.write.PrepareContext(ctx, `INSERT INTO subject_keys (id, workspace_id, blind, wrapped, created_at) VALUES `+
			placeholders(n, 5)+` ON CONFLICT DO NOTHING`)
		if err != nil {
			return fmt.Errorf("sqlite: prepare: %w", err)
		}
		db.keyStmts[n] = s
	}
	return nil
}

// loadDedupe rebuilds the dedupe set from dedupe_log.
func (db *DB) loadDedupe(ctx context.Context) error {
	now := db.Now()
	db.dd = newDedupe(db.opt.DedupeWindow, db.opt.DedupeMaxEntries)
	cutoff := now.Add(-db.opt.DedupeWindow).UnixMilli()
	if err := db.loadRuns(ctx); err != nil {
		return err
	}
	// Rows a persisted run covers are in its blocks already.
	rows, err := db.write.QueryContext(ctx, `SELECT entries FROM dedupe_log WHERE received_at >= ? AND id > ?`, cutoff, db.coveredUpto)
	if err != nil {
		return fmt.Errorf("sqlite: load dedupe: %w", err)
	}
	defer rows.Close()
	var packed []byte
	for rows.Next() {
		if err := rows.Scan(&packed); err != nil {
			return fmt.Errorf("sqlite: load dedupe: %w", err)
		}
		err := readLogEntries(packed, func(src int64, hash []byte, rec int64) {
			if rec >= cutoff {
				db.dd.add(makeKey(src, hash), rec)
			}
		})
		if err != nil {
			return err
		}
	}
	db.dd.expire(now)
	return rows.Err()
}

// DedupeShortened reports how many days of messageIds were forgotten before the
// window ended because the dedupe set reached its cap.
func (db *DB) DedupeShortened() int {
	db.mu.Lock()
	defer db.mu.Unlock()
	return db.dd.shortened + db.shortenedRuns
}

// DedupeStats says how the messageId index is held: keys in memory, keys in
// persisted runs, and the number of runs.
func (db *DB) DedupeStats() (memory, persisted, runs int) {
	db.mu.Lock()
	defer db.mu.Unlock()
	memory = db.dd.total
	if f := db.frz; f != nil && f.set != nil {
		memory += f.set.total
	} else if f != nil {
		memory += len(f.keys)
	}
	return memory, db.runEntries(), len(db.runs)
}

// AppendEvents writes the payloads of a group to the current segment and syncs it,
// then keys and event rows in one IMMEDIATE transaction, skipping events whose
// (source, message hash) is in the dedupe set or earlier in the batch.
func (db *DB) AppendEvents(ctx context.Context, b *trustloop.CommitBatch) (int, error) {
	db.mu.Lock()
	defer db.mu.Unlock()
	now := db.Now()

	fresh := make([]*trustloop.StoredEvent, 0, len(b.Events))
	freshIdx := make([]int, 0, len(b.Events))
	keys := make([]dedupeKey, 0, len(b.Events))
	// A Go map, not a hashSet: hashSet memory lives outside the garbage-collected
	// heap and must be released, which a per-commit set would leak.
	batchSet := make(map[dedupeKey]struct{}, len(b.Events))
	for i := range b.Events {
		e := &b.Events[i]
		k := makeKey(e.SourceID, e.MessageHash)
		if _, dup := batchSet[k]; dup {
			continue
		}
		if seen, err := db.seen(ctx, k); err != nil {
			return 0, err
		} else if seen {
			continue
		}
		batchSet[k] = struct{}{}
		fresh = append(fresh, e)
		freshIdx = append(freshIdx, i)
		keys = append(keys, k)
	}

	// Payloads first, synced, so that no committed row ever points at bytes a
	// crash could lose; if the rows then fail, the bytes are taken back.
	var segNum, segOff int64
	size := 0
	for _, e := range fresh {
		size += len(e.Payload)
	}
	inline := size <= inlineMaxBytes
	if !inline {
		buf := db.segBuf[:0]
		if cap(buf) < size {
			buf = make([]byte, 0, size)
		}
		for _, e := range fresh {
			buf = append(buf, e.Payload...)
		}
		var err error
		if segNum, segOff, err = db.seg.appendSync(buf); err != nil {
			return 0, err
		}
		if cap(buf) <= 4<<20 {
			db.segBuf = buf // reused; larger ones are let go
		}
	}
	// Until Commit is tried the rows surely are not stored, and the bytes can be
	// taken back (a key-conflict retry writes them again). After a failed Commit
	// they are left: bytes nobody points at are harmless, and the next open cuts
	// them if they are the tail.
	tried := false
	defer func() {
		if !tried && !inline {
			db.seg.undo(segNum, segOff)
		}
	}()

	tx, err := db.write.BeginTx(ctx, nil)
	if err != nil {
		return 0, fmt.Errorf("sqlite: append: begin: %w", err)
	}
	defer tx.Rollback()

	for start := 0; start < len(b.NewKeys); {
		rows := chunk(len(b.NewKeys) - start)
		args := make([]any, 0, rows*5)
		for _, k := range b.NewKeys[start : start+rows] {
			args = append(args, k.ID, k.WorkspaceID, k.Blind, k.Wrapped, ms(k.CreatedAt))
		}
		start += rows
		res, err := tx.StmtContext(ctx, db.keyStmts[rows]).ExecContext(ctx, args...)
		if err != nil {
			return 0, fmt.Errorf("sqlite: append: keys: %w", err)
		}
		if n, _ := res.RowsAffected(); n != int64(rows) {
			return 0, trustloop.Errorf(trustloop.ECONFLICT, "a subject key was created concurrently").
				WithHint("Retry the request; another one created the key at the same moment.")
		}
	}

	args := make([]any, 0, eventChunks[0]*eventCols)
	seqs := make([]int64, 0, len(fresh))
	off := segOff
	for start := 0; start < len(fresh); {
		rows := chunk(len(fresh) - start)
		part := fresh[start : start+rows]
		start += rows
		args = args[:0]
		stmts := db.eventStmts
		for _, e := range part {
			if inline {
				stmts = db.inlineStmts
				args = append(args, e.WorkspaceID, e.SourceID, e.MessageHash, e.KeyID, int64(e.Type),
					ms(e.ReceivedAt), ms(e.Timestamp), e.Payload)
				continue
			}
			n := int64(len(e.Payload))
			args = append(args, e.WorkspaceID, e.SourceID, e.MessageHash, e.KeyID, int64(e.Type),
				ms(e.ReceivedAt), ms(e.Timestamp), segNum, off, n)
			off += n
		}
		res, err := tx.StmtContext(ctx, stmts[rows]).ExecContext(ctx, args...)
		if err != nil {
			return 0, fmt.Errorf("sqlite: append: events: %w", err)
		}
		// One writer and seq an INTEGER PRIMARY KEY: a multi-row insert's rows take
		// consecutive positions ending at the last rowid.
		last, err := res.LastInsertId()
		if err != nil {
			return 0, fmt.Errorf("sqlite: append: events: %w", err)
		}
		for i := range rows {
			seqs = append(seqs, last-int64(rows-1-i))
		}
	}
	if b.Project != nil && len(fresh) > 0 {
		changes, err := b.Project(ctx, freshIdx, seqs)
		if err != nil {
			return 0, err
		}
		if changes != nil {
			if err := writeProjection(ctx, tx, changes); err != nil {
				return 0, err
			}
		}
	}
	var logID int64
	committed := false
	if len(fresh) > 0 {
		packed := make([]byte, 0, len(fresh)*logEntrySize)
		var newest int64
		for _, e := range fresh {
			rec := ms(e.ReceivedAt)
			newest = max(newest, rec)
			packed = appendLogEntry(packed, e.SourceID, e.MessageHash, rec)
		}
		res, err := tx.ExecContext(ctx, `INSERT INTO dedupe_log (received_at, entries) VALUES (?, ?)`, newest, packed)
		if err != nil {
			return 0, fmt.Errorf("sqlite: append: dedupe log: %w", err)
		}
		if logID, err = res.LastInsertId(); err != nil {
			return 0, fmt.Errorf("sqlite: append: dedupe log: %w", err)
		}
	}
	defer func() {
		if !committed {
			db.spillAborted()
		}
	}()
	done, err := db.spillStep(ctx, tx, dayOf(now.Add(-db.opt.DedupeWindow).UnixMilli()))
	if err != nil {
		return 0, err
	}
	if now.Sub(db.lastPrune) > 10*time.Minute {
		// Bounded, so one commit never carries a large delete.
		if _, err := tx.ExecContext(ctx, `DELETE FROM dedupe_log WHERE id IN
			(SELECT id FROM dedupe_log WHERE received_at < ? ORDER BY id LIMIT 1000)`,
			now.Add(-db.opt.DedupeWindow).UnixMilli()); err != nil {
			return 0, fmt.Errorf("sqlite: append: prune dedupe log: %w", err)
		}
	}
	tried = true
	if err := tx.Commit(); err != nil {
		return 0, fmt.Errorf("sqlite: append: commit: %w", err)
	}
	committed = true
	db.spillCommitted(done)
	if now.Sub(db.lastPrune) > 10*time.Minute {
		db.lastPrune = now
	}
	for i, e := range fresh {
		db.dd.add(keys[i], ms(e.ReceivedAt))
	}
	db.dd.expire(now)
	if logID > 0 && db.frz == nil && db.dd.total >= db.opt.DedupeMemEntries {
		// The memory level is full: it becomes a run, sorted in the background
		// and written by the next commits.
		db.freeze(logID)
	}
	if db.walBig.Load() {
		db.walBig.Store(false)
		// Errors here are not the commit's: it is durable already.
		db.write.ExecContext(ctx, `PRAGMA wal_checkpoint(RESTART)`)
	}
	return len(fresh), nil
}

// chunk is the largest prepared row count not above n.
func chunk(n int) int {
	for _, c := range eventChunks {
		if c <= n {
			return c
		}
	}
	return 1
}

// ListEvents returns events of a workspace after a log position, in order.
func (db *DB) ListEvents(ctx context.Context, workspaceID, after int64, limit int) ([]trustloop.StoredEvent, error) {
	return db.queryEvents(ctx, `SELECT seq, workspace_id, source_id, message_hash, key_id, type, received_at, ts, payload, seg, off, len
		FROM events WHERE workspace_id = ? AND seq > ? ORDER BY seq LIMIT ?`, workspaceID, after, limit)
}

// queryEvents runs a query selecting the event columns, reading payloads that are
// in segments.
func (db *DB) queryEvents(ctx context.Context, q string, args ...any) ([]trustloop.StoredEvent, error) {
	rows, err := db.read.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("sqlite: list events: %w", err)
	}
	defer rows.Close()
	var out []trustloop.StoredEvent
	for rows.Next() {
		var e trustloop.StoredEvent
		var typ, rec, ts int64
		var seg, off, n sql.NullInt64
		if err := rows.Scan(&e.Seq, &e.WorkspaceID, &e.SourceID, &e.MessageHash, &e.KeyID, &typ, &rec, &ts, &e.Payload, &seg, &off, &n); err != nil {
			return nil, fmt.Errorf("sqlite: list events: %w", err)
		}
		if seg.Valid {
			var err error
			if e.Payload, err = db.seg.readAt(seg.Int64, off.Int64, n.Int64); err != nil {
				return nil, err
			}
		}
		e.Type, e.ReceivedAt, e.Timestamp = trustloop.EventType(typ), fromMS(rec), fromMS(ts)
		out = append(out, e)
	}
	return out, rows.Err()
}

// findChunk bounds the IN list of one key lookup.
const findChunk = 500

// FindSubjectKeys looks keys up by blind index.
func (db *DB) FindSubjectKeys(ctx context.Context, workspaceID int64, blinds [][]byte) (map[string]trustloop.SubjectKey, error) {
	out := make(map[string]trustloop.SubjectKey, len(blinds))
	err := queryIn(ctx, db.read, "find subject keys", `SELECT id, blind, wrapped, created_at FROM subject_keys WHERE workspace_id = ? AND blind IN (%s)`,
		workspaceID, blinds, func(rows *sql.Rows) error {
			k, err := scanSubjectKey(rows, workspaceID)
			out[string(k.Blind)] = k
			return err
		})
	return out, err
}

func scanSubjectKey(rows *sql.Rows, ws int64) (trustloop.SubjectKey, error) {
	k := trustloop.SubjectKey{WorkspaceID: ws}
	var created int64
	err := rows.Scan(&k.ID, &k.Blind, &k.Wrapped, &created)
	k.CreatedAt = fromMS(created)
	return k, err
}

// queryIn runs q (whose %s is an IN list) for the workspace and the keys, in
// chunks of findChunk keys, calling each for every row.
func queryIn[K any](ctx context.Context, db *sql.DB, op, q string, workspaceID int64, keys []K, each func(*sql.Rows) error) error {
	for start := 0; start < len(keys); start += findChunk {
		part := keys[start:min(start+findChunk, len(keys))]
		args := make([]any, 0, len(part)+1)
		args = append(args, workspaceID)
		for _, k := range part {
			args = append(args, k)
		}
		rows, err := db.QueryContext(ctx, fmt.Sprintf(q, marks(len(part))), args...)
		if err != nil {
			return fmt.Errorf("sqlite: %s: %w", op, err)
		}
		for rows.Next() {
			if err := each(rows); err != nil {
				rows.Close()
				return fmt.Errorf("sqlite: %s: %w", op, err)
			}
		}
		err = rows.Err()
		rows.Close()
		if err != nil {
			return fmt.Errorf("sqlite: %s: %w", op, err)
		}
	}
	return nil
}
