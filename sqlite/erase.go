package sqlite

import (
	"context"
	"database/sql"
	"fmt"
	"strconv"
	"time"

	"github.com/trustloop/trustloop"
)

// Erase removes a subject in one transaction on the writer connection.
// secure_delete (set on every connection that writes) overwrites the deleted
// cells in the database pages; ScrubLog, called next, drops the WAL frames
// that still hold their old images, so that then no file of the store holds a
// deleted row's bytes. Payloads in segment files stay: they are ciphertext
// whose key this transaction destroys.
func (db *DB) Erase(ctx context.Context, e *trustloop.Erasure) (trustloop.ErasureCounts, error) {
	db.mu.Lock()
	defer db.mu.Unlock()
	// The subjects' audit index rows go below: none may arrive after them from
	// the journal.
	if err := db.applyAuditLocked(ctx); err != nil {
		return trustloop.ErasureCounts{}, err
	}
	return db.erase(ctx, e)
}

// ScrubLog checkpoints and truncates the WAL, between two writes.
func (db *DB) ScrubLog(ctx context.Context) error {
	db.mu.Lock()
	defer db.mu.Unlock()
	return db.truncateWAL(ctx)
}

// truncateWAL folds the WAL into the database and truncates it, under db.mu.
// TRUNCATE waits (busy_timeout) for readers on older snapshots; a reader that
// kept one past it leaves the WAL unfolded, which is reported: the frames
// would still hold the old images of rows just deleted or rewritten.
func (db *DB) truncateWAL(ctx context.Context) error {
	for attempt := 0; ; attempt++ {
		var busy, logFrames, done int64
		if err := db.write.QueryRowContext(ctx, `PRAGMA wal_checkpoint(TRUNCATE)`).Scan(&busy, &logFrames, &done); err != nil {
			return fmt.Errorf("sqlite: checkpoint: %w", err)
		}
		if busy == 0 {
			return nil
		}
		if attempt == 5 {
			return fmt.Errorf("sqlite: the WAL could not be truncated (readers busy)")
		}
	}
}

// Rekey rewrites a subject under fresh keys in one transaction (ScrubLog
// then drops the WAL frames of the old ciphertext). A rewritten payload goes
// into its row (the segment file keeps the old ciphertext, whose key this
// transaction replaces).
func (db *DB) Rekey(ctx context.Context, r *trustloop.Rekey) error {
	db.mu.Lock()
	defer db.mu.Unlock()
	tx, err := db.write.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("sqlite: rekey: %w", err)
	}
	defer tx.Rollback()
	ws := r.WorkspaceID
	for _, k := range r.Keys {
		if _, err := tx.ExecContext(ctx, `UPDATE subject_keys SET wrapped = ? WHERE workspace_id = ? AND id = ?`, k.Wrapped, ws, k.ID); err != nil {
			return fmt.Errorf("sqlite: rekey: %w", err)
		}
	}
	for _, e := range r.Events {
		if _, err := tx.ExecContext(ctx, `UPDATE events SET payload = ?, seg = NULL, off = NULL, len = NULL WHERE workspace_id = ? AND seq = ?`,
			e.Payload, ws, e.Seq); err != nil {
			return fmt.Errorf("sqlite: rekey: %w", err)
		}
	}
	for _, ir := range r.Identities {
		if _, err := tx.ExecContext(ctx, `UPDATE identities SET sealed = ? WHERE workspace_id = ? AND blind = ?`, ir.Sealed, ws, ir.Blind); err != nil {
			return fmt.Errorf("sqlite: rekey: %w", err)
		}
	}
	for _, p := range r.Profiles {
		if _, err := tx.ExecContext(ctx, `UPDATE profiles SET state = ? WHERE workspace_id = ? AND id = ?`, p.State, ws, p.ID); err != nil {
			return fmt.Errorf("sqlite: rekey: %w", err)
		}
	}
	if r.Complete != nil {
		req, err := r.Complete()
		if err != nil {
			return err
		}
		if err := completeRequest(ctx, tx, req, ms(db.Now())); err != nil {
			return err
		}
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("sqlite: rekey: %w", err)
	}
	return nil
}

func (db *DB) erase(ctx context.Context, e *trustloop.Erasure) (c trustloop.ErasureCounts, err error) {
	tx, err := db.write.BeginTx(ctx, nil)
	if err != nil {
		return c, fmt.Errorf("sqlite: erase: %w", err)
	}
	defer tx.Rollback()
	ws := e.WorkspaceID
	exec := func(n *int64, q string, args ...any) {
		if err != nil {
			return
		}
		var res sql.Result
		if res, err = tx.ExecContext(ctx, q, args...); err != nil {
			err = fmt.Errorf("sqlite: erase: %w", err)
			return
		}
		if n != nil {
			k, _ := res.RowsAffected()
			*n += k
		}
	}
	keys := int64Args(e.KeyIDs)
	profiles := int64Args(e.ProfileIDs)
	blinds := make([]any, len(e.Blinds))
	for i, b := range e.Blinds {
		blinds[i] = b
	}
	// Events by position (from the timelines), only those sealed under the
	// subject's keys: a stale position can never take another's event.
	if len(keys) > 0 {
		for start := 0; start < len(e.Seqs); start += 500 {
			chunk := int64Args(e.Seqs[start:min(start+500, len(e.Seqs))])
			exec(&c.Events, `DELETE FROM events WHERE seq IN (`+marks(len(chunk))+`) AND workspace_id = ? AND key_id IN (`+marks(len(keys))+`)`,
				append(append(chunk, ws), keys...)...)
		}
		if e.ScanEvents {
			exec(&c.Events, `DELETE FROM events WHERE workspace_id = ? AND key_id IN (`+marks(len(keys))+`)`, append([]any{ws}, keys...)...)
		}
		// timeline and audience_members have no workspace column: their keys
		// and profiles are checked against the workspace's own.
		exec(&c.TimelineRuns, `DELETE FROM timeline WHERE key_id IN (SELECT id FROM subject_keys WHERE workspace_id = ? AND id IN (`+marks(len(keys))+`))`,
			append([]any{ws}, keys...)...)
		exec(&c.SubjectKeys, `DELETE FROM subject_keys WHERE workspace_id = ? AND id IN (`+marks(len(keys))+`)`, append([]any{ws}, keys...)...)
	}
	// Events applied to the subject's profiles under keys that are not the
	// subject's (a blocked value's, shared with others), by position: a
	// subject may have no key of its own at all (a profile known by its email
	// alone, made by an event under a blocked anonymous id).
	for start := 0; start < len(e.ForeignSeqs); start += 500 {
		chunk := int64Args(e.ForeignSeqs[start:min(start+500, len(e.ForeignSeqs))])
		exec(&c.Events, `DELETE FROM events WHERE seq IN (`+marks(len(chunk))+`) AND workspace_id = ?`, append(chunk, ws)...)
	}
	if tk := int64Args(e.TimelineKeys); len(tk) > 0 {
		// Foreign timelines are keyed by the negated profile id; correlated,
		// so the check reads one profile row, not the workspace's ids.
		exec(&c.TimelineRuns, `DELETE FROM timeline WHERE key_id IN (`+marks(len(tk))+`)
			AND EXISTS (SELECT 1 FROM profiles p WHERE p.id = -timeline.key_id AND p.workspace_id = ?)`,
			append(tk, ws)...)
	}
	if len(profiles) > 0 {
		in := `(` + marks(len(profiles)) + `)`
		exec(&c.Identities, `DELETE FROM identities WHERE workspace_id = ? AND profile_id IN `+in, append([]any{ws}, profiles...)...)
		exec(&c.Profiles, `DELETE FROM profiles WHERE workspace_id = ? AND id IN `+in, append([]any{ws}, profiles...)...)
		exec(&c.Merges, `DELETE FROM merges WHERE workspace_id = ? AND (into_profile IN `+in+` OR from_profile IN `+in+`)`,
			append(append([]any{ws}, profiles...), profiles...)...)
		exec(nil, `DELETE FROM separations WHERE workspace_id = ? AND (a IN `+in+` OR b IN `+in+`)`,
			append(append([]any{ws}, profiles...), profiles...)...)
		exec(&c.AudienceMemberships, `DELETE FROM audience_members WHERE profile_id IN `+in+`
			AND audience_id IN (SELECT id FROM audiences WHERE workspace_id = ?)`, append(profiles, ws)...)
		names := make([]any, len(profiles))
		for i, p := range e.ProfileIDs {
			names[i] = strconv.FormatInt(p, 10)
		}
		exec(nil, `DELETE FROM audit_subjects WHERE workspace_id = ? AND subject IN `+in, append([]any{ws}, names...)...)
		exec(nil, `DELETE FROM audit_subjects_recent WHERE workspace_id = ? AND subject IN `+in, append([]any{ws}, names...)...)
	}
	if len(blinds) > 0 {
		in := `(` + marks(len(blinds)) + `)`
		args := append([]any{ws}, blinds...)
		exec(&c.Identities, `DELETE FROM identities WHERE workspace_id = ? AND blind IN `+in, args...)
		exec(&c.ConsentRecords, `DELETE FROM consent_records WHERE workspace_id = ? AND subject IN `+in, args...)
		exec(&c.ConsentReceipts, `DELETE FROM consent_receipts WHERE workspace_id = ? AND subject IN `+in, args...)
		exec(nil, `DELETE FROM consent_subjects WHERE workspace_id = ? AND subject IN `+in, args...)
		// The subject's other requests keep their ids, times and outcomes,
		// not whom they were about; open ones end (nothing is left to do).
		exec(nil, `UPDATE jobs SET state = 'cancelled', updated_at = ? WHERE state = 'queued' AND workspace_id = ? AND ref IN
			(SELECT id FROM privacy_requests WHERE workspace_id = ? AND id <> ? AND subject IN `+in+`)`,
			append([]any{ms(db.Now()), ws, ws, e.RequestID}, blinds...)...)
		exec(&c.PrivacyRequests, `UPDATE privacy_requests SET subject = NULL, suppression = NULL, payload = NULL,
			status = CASE WHEN status IN ('received', 'verified', 'in_progress') THEN 'rejected' ELSE status END,
			reject_reason = CASE WHEN status IN ('received', 'verified', 'in_progress') THEN 'subject_erased' ELSE reject_reason END,
			version = version + 1, updated_at = ? WHERE workspace_id = ? AND id <> ? AND subject IN `+in,
			append([]any{ms(db.Now()), ws, e.RequestID}, blinds...)...)
	}
	for _, h := range e.Suppress {
		exec(&c.Suppressions, `INSERT INTO suppressions (workspace_id, hash, created_at) VALUES (?, ?, ?) ON CONFLICT DO NOTHING`,
			ws, h, ms(db.Now()))
	}
	if err != nil {
		return c, err
	}
	if e.Complete != nil {
		r, err := e.Complete(c)
		if err != nil {
			return c, err
		}
		if err := completeRequest(ctx, tx, r, ms(db.Now())); err != nil {
			return c, err
		}
	}
	if err := tx.Commit(); err != nil {
		return c, fmt.Errorf("sqlite: erase: %w", err)
	}
	return c, nil
}

// completeRequest writes an erasure's own request, completed, inside its
// transaction (optimistic like UpdatePrivacyRequest).
func completeRequest(ctx context.Context, tx *sql.Tx, r *trustloop.PrivacyRequest, now int64) error {
	res, err := tx.ExecContext(ctx, `UPDATE privacy_requests SET status = ?, completed_at = ?, subject = NULL, suppression = NULL,
		payload = NULL, result = ?, receipt = ?, progress = ?, updated_at = ?, version = version + 1
		WHERE workspace_id = ? AND id = ? AND version = ?`,
		r.Status, ms(r.CompletedAt), r.Result, r.Receipt, r.Progress, now, r.WorkspaceID, r.ID, r.Version)
	if err != nil {
		return fmt.Errorf("sqlite: erase: request: %w", err)
	}
	if n, _ := res.RowsAffected(); n != 1 {
		return trustloop.Errorf(trustloop.ECONFLICT, "The privacy request changed while it was being completed.").WithHint("Retry.")
	}
	r.Version++
	r.Subject, r.Suppression, r.Payload = nil, nil, nil
	return nil
}

// MergedProfiles returns the profiles merged into the given ones by merges not
// split since.
func (db *DB) MergedProfiles(ctx context.Context, workspaceID int64, into []int64) ([]int64, error) {
	if len(into) == 0 {
		return nil, nil
	}
	rows, err := db.read.QueryContext(ctx, `SELECT from_profile FROM merges WHERE workspace_id = ? AND split_at IS NULL
		AND into_profile IN (`+marks(len(into))+`)`, append([]any{workspaceID}, int64Args(into)...)...)
	if err != nil {
		return nil, fmt.Errorf("sqlite: merged profiles: %w", err)
	}
	defer rows.Close()
	var out []int64
	for rows.Next() {
		var id int64
		if err := rows.Scan(&id); err != nil {
			return nil, fmt.Errorf("sqlite: merged profiles: %w", err)
		}
		out = append(out, id)
	}
	return out, rows.Err()
}

func int64Args(v []int64) []any {
	out := make([]any, len(v))
	for i, x := range v {
		out[i] = x
	}
	return out
}

// DeleteEvents deletes events by log position (the retention sweep).
func (db *DB) DeleteEvents(ctx context.Context, workspaceID int64, seqs []int64) (int64, error) {
	if len(seqs) == 0 {
		return 0, nil
	}
	db.mu.Lock()
	defer db.mu.Unlock()
	tx, err := db.write.BeginTx(ctx, nil)
	if err != nil {
		return 0, fmt.Errorf("sqlite: delete events: %w", err)
	}
	defer tx.Rollback()
	var n int64
	for start := 0; start < len(seqs); start += 500 {
		chunk := int64Args(seqs[start:min(start+500, len(seqs))])
		res, err := tx.ExecContext(ctx, `DELETE FROM events WHERE workspace_id = ? AND seq IN (`+marks(len(chunk))+`)`,
			append([]any{workspaceID}, chunk...)...)
		if err != nil {
			return 0, fmt.Errorf("sqlite: delete events: %w", err)
		}
		k, _ := res.RowsAffected()
		n += k
	}
	if err := tx.Commit(); err != nil {
		return 0, fmt.Errorf("sqlite: delete events: %w", err)
	}
	return n, nil
}

// ExpiredConsent returns the latest records of their chains that are given
// and past their expiry.
func (db *DB) ExpiredConsent(ctx context.Context, workspaceID int64, now time.Time, limit int) ([]trustloop.ConsentRecord, error) {
	rows, err := db.read.QueryContext(ctx, `SELECT c.subject, c.seq, c.purpose, c.at, c.expires_at, c.jurisdiction FROM consent_records c
		WHERE c.workspace_id = ? AND c.state = 'given' AND c.expires_at > 0 AND c.expires_at < ?
		AND c.seq = (SELECT MAX(l.seq) FROM consent_records l WHERE l.workspace_id = c.workspace_id AND l.subject = c.subject AND l.purpose = c.purpose)
		LIMIT ?`, workspaceID, ms(now), limit)
	if err != nil {
		return nil, fmt.Errorf("sqlite: expired consent: %w", err)
	}
	defer rows.Close()
	var out []trustloop.ConsentRecord
	for rows.Next() {
		r := trustloop.ConsentRecord{WorkspaceID: workspaceID, State: trustloop.ConsentGiven}
		var at, exp int64
		if err := rows.Scan(&r.Subject, &r.Seq, &r.Purpose, &at, &exp, &r.Jurisdiction); err != nil {
			return nil, fmt.Errorf("sqlite: expired consent: %w", err)
		}
		r.At, r.ExpiresAt = fromMS(at), fromMS(exp)
		out = append(out, r)
	}
	return out, rows.Err()
}
