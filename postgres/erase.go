package postgres

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/trustloop/trustloop"
)

// Erase removes a subject in one transaction (retried on serialization
// failures). What PostgreSQL keeps of deleted tuples until VACUUM, in its WAL
// and in replicas is ciphertext and blind indexes whose key rows this
// transaction deletes; docs/privacy.md says what operators must do about
// backups.
func (db *DB) Erase(ctx context.Context, e *trustloop.Erasure) (trustloop.ErasureCounts, error) {
	var c trustloop.ErasureCounts
	err := retry(ctx, func() error {
		var err error
		c, err = db.erase(ctx, e)
		return err
	})
	return c, err
}

// ScrubLog has nothing to do: the server's WAL, dead tuples (until VACUUM)
// and replicas are out of a client's reach, and hold only ciphertext and blind
// indexes whose key rows the erasure deleted.
func (db *DB) ScrubLog(context.Context) error { return nil }

func (db *DB) erase(ctx context.Context, e *trustloop.Erasure) (c trustloop.ErasureCounts, err error) {
	tx, err := db.pool.Begin(ctx)
	if err != nil {
		return c, fmt.Errorf("postgres: erase: %w", err)
	}
	defer tx.Rollback(ctx)
	ws := e.WorkspaceID
	now := time.Now().UnixMilli()
	exec := func(n *int64, q string, args ...any) {
		if err != nil {
			return
		}
		tag, xerr := tx.Exec(ctx, q, args...)
		if xerr != nil {
			err = fmt.Errorf("postgres: erase: %w", xerr)
			return
		}
		if n != nil {
			*n += tag.RowsAffected()
		}
	}
	if len(e.KeyIDs) > 0 {
		if len(e.Seqs) > 0 {
			exec(&c.Events, `DELETE FROM events WHERE seq = ANY($1) AND workspace_id = $2 AND key_id = ANY($3)`, e.Seqs, ws, e.KeyIDs)
		}
		if e.ScanEvents {
			exec(&c.Events, `DELETE FROM events WHERE workspace_id = $1 AND key_id = ANY($2)`, ws, e.KeyIDs)
		}
		// timeline and audience_members have no workspace column: their keys
		// and profiles are checked against the workspace's own.
		exec(&c.TimelineRuns, `DELETE FROM timeline WHERE key_id IN (SELECT id FROM subject_keys WHERE workspace_id = $1 AND id = ANY($2))`, ws, e.KeyIDs)
		exec(&c.SubjectKeys, `DELETE FROM subject_keys WHERE workspace_id = $1 AND id = ANY($2)`, ws, e.KeyIDs)
	}
	// Events applied to the subject's profiles under keys that are not the
	// subject's (a blocked value's, shared with others), by position: a
	// subject may have no key of its own at all (a profile known by its email
	// alone, made by an event under a blocked anonymous id).
	if len(e.ForeignSeqs) > 0 {
		exec(&c.Events, `DELETE FROM events WHERE seq = ANY($1) AND workspace_id = $2`, e.ForeignSeqs, ws)
	}
	if len(e.TimelineKeys) > 0 {
		// Foreign timelines are keyed by the negated profile id; correlated,
		// so the check reads one profile row, not the workspace's ids.
		exec(&c.TimelineRuns, `DELETE FROM timeline t WHERE t.key_id = ANY($1)
			AND EXISTS (SELECT 1 FROM profiles p WHERE p.id = -t.key_id AND p.workspace_id = $2)`,
			e.TimelineKeys, ws)
	}
	if len(e.ProfileIDs) > 0 {
		p := e.ProfileIDs
		exec(&c.Identities, `DELETE FROM identities WHERE workspace_id = $1 AND profile_id = ANY($2)`, ws, p)
		exec(&c.Profiles, `DELETE FROM profiles WHERE workspace_id = $1 AND id = ANY($2)`, ws, p)
		exec(&c.Merges, `DELETE FROM merges WHERE workspace_id = $1 AND (into_profile = ANY($2) OR from_profile = ANY($2))`, ws, p)
		exec(nil, `DELETE FROM separations WHERE workspace_id = $1 AND (a = ANY($2) OR b = ANY($2))`, ws, p)
		exec(&c.AudienceMemberships, `DELETE FROM audience_members WHERE profile_id = ANY($1)
			AND audience_id IN (SELECT id FROM audiences WHERE workspace_id = $2)`, p, ws)
		names := make([]string, len(p))
		for i, id := range p {
			names[i] = strconv.FormatInt(id, 10)
		}
		exec(nil, `DELETE FROM audit_subjects WHERE workspace_id = $1 AND subject = ANY($2)`, ws, names)
	}
	if len(e.Blinds) > 0 {
		b := e.Blinds
		exec(&c.Identities, `DELETE FROM identities WHERE workspace_id = $1 AND blind = ANY($2)`, ws, b)
		exec(&c.ConsentRecords, `DELETE FROM consent_records WHERE workspace_id = $1 AND subject = ANY($2)`, ws, b)
		exec(&c.ConsentReceipts, `DELETE FROM consent_receipts WHERE workspace_id = $1 AND subject = ANY($2)`, ws, b)
		exec(nil, `DELETE FROM consent_subjects WHERE workspace_id = $1 AND subject = ANY($2)`, ws, b)
		exec(nil, `UPDATE jobs SET state = 'cancelled', updated_at = $1 WHERE state = 'queued' AND workspace_id = $2 AND ref IN
			(SELECT id FROM privacy_requests WHERE workspace_id = $2 AND id <> $4 AND subject = ANY($3))`, now, ws, b, e.RequestID)
		exec(&c.PrivacyRequests, `UPDATE privacy_requests SET subject = NULL, suppression = NULL, payload = NULL,
			status = CASE WHEN status IN ('received', 'verified', 'in_progress') THEN 'rejected' ELSE status END,
			reject_reason = CASE WHEN status IN ('received', 'verified', 'in_progress') THEN 'subject_erased' ELSE reject_reason END,
			version = version + 1, updated_at = $1 WHERE workspace_id = $2 AND id <> $4 AND subject = ANY($3)`, now, ws, b, e.RequestID)
	}
	for _, h := range e.Suppress {
		exec(&c.Suppressions, `INSERT INTO suppressions (workspace_id, hash, created_at) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING`, ws, h, now)
	}
	if err != nil {
		return c, err
	}
	if e.Complete != nil {
		r, err := e.Complete(c)
		if err != nil {
			return c, err
		}
		if err := completeRequest(ctx, tx, r, now); err != nil {
			return c, err
		}
	}
	if err := tx.Commit(ctx); err != nil {
		return c, fmt.Errorf("postgres: erase: %w", err)
	}
	return c, nil
}

// completeRequest writes an erasure's own request, completed, inside its
// transaction.
func completeRequest(ctx context.Context, tx pgx.Tx, r *trustloop.PrivacyRequest, now int64) error {
	tag, err := tx.Exec(ctx, `UPDATE privacy_requests SET status = $1, completed_at = $2, subject = NULL, suppression = NULL,
		payload = NULL, result = $3, receipt = $4, progress = $5, updated_at = $6, version = version + 1
		WHERE workspace_id = $7 AND id = $8 AND version = $9`,
		r.Status, r.CompletedAt.UnixMilli(), r.Result, r.Receipt, r.Progress, now, r.WorkspaceID, r.ID, r.Version)
	if err != nil {
		return fmt.Errorf("postgres: erase: request: %w", err)
	}
	if tag.RowsAffected() != 1 {
		return trustloop.Errorf(trustloop.ECONFLICT, "The privacy request changed while it was being completed.").WithHint("Retry.")
	}
	// r is left as it was: the transaction may yet be retried.
	return nil
}

// MergedProfiles returns the profiles merged into the given ones by merges not
// split since.
func (db *DB) MergedProfiles(ctx context.Context, workspaceID int64, into []int64) ([]int64, error) {
	if len(into) == 0 {
		return nil, nil
	}
	rows, err := db.pool.Query(ctx, `SELECT from_profile FROM merges WHERE workspace_id = $1 AND split_at IS NULL
		AND into_profile = ANY($2)`, workspaceID, into)
	if err != nil {
		return nil, fmt.Errorf("postgres: merged profiles: %w", err)
	}
	ids, err := pgx.CollectRows(rows, pgx.RowTo[int64])
	if err != nil {
		return nil, fmt.Errorf("postgres: merged profiles: %w", err)
	}
	return ids, nil
}

// DeleteEvents deletes events by log position (the retention sweep).
func (db *DB) DeleteEvents(ctx context.Context, workspaceID int64, seqs []int64) (int64, error) {
	if len(seqs) == 0 {
		return 0, nil
	}
	var n int64
	err := retry(ctx, func() error {
		tag, err := db.pool.Exec(ctx, `DELETE FROM events WHERE workspace_id = $1 AND seq = ANY($2)`, workspaceID, seqs)
		n = tag.RowsAffected()
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("postgres: delete events: %w", err)
	}
	return n, nil
}

// ExpiredConsent returns the latest records of their chains that are given
// and past their expiry.
func (db *DB) ExpiredConsent(ctx context.Context, workspaceID int64, now time.Time, limit int) ([]trustloop.ConsentRecord, error) {
	rows, err := db.pool.Query(ctx, `SELECT c.subject, c.seq, c.purpose, c.at, c.expires_at, c.jurisdiction FROM consent_records c
		WHERE c.workspace_id = $1 AND c.state = 'given' AND c.expires_at > 0 AND c.expires_at < $2
		AND c.seq = (SELECT MAX(l.seq) FROM consent_records l WHERE l.workspace_id = c.workspace_id AND l.subject = c.subject AND l.purpose = c.purpose)
		LIMIT $3`, workspaceID, now.UnixMilli(), limit)
	if err != nil {
		return nil, fmt.Errorf("postgres: expired consent: %w", err)
	}
	defer rows.Close()
	var out []trustloop.ConsentRecord
	for rows.Next() {
		r := trustloop.ConsentRecord{WorkspaceID: workspaceID, State: trustloop.ConsentGiven}
		var at, exp int64
		if err := rows.Scan(&r.Subject, &r.Seq, &r.Purpose, &at, &exp, &r.Jurisdiction); err != nil {
			return nil, fmt.Errorf("postgres: expired consent: %w", err)
		}
		r.At, r.ExpiresAt = fromMS(at), fromMS(exp)
		out = append(out, r)
	}
	return out, rows.Err()
}

// Rekey rewrites a subject under fresh keys in one transaction.
func (db *DB) Rekey(ctx context.Context, r *trustloop.Rekey) error {
	return retry(ctx, func() error {
		tx, err := db.pool.Begin(ctx)
		if err != nil {
			return fmt.Errorf("postgres: rekey: %w", err)
		}
		defer tx.Rollback(ctx)
		ws := r.WorkspaceID
		b := &pgx.Batch{}
		for _, k := range r.Keys {
			b.Queue(`UPDATE subject_keys SET wrapped = $1 WHERE workspace_id = $2 AND id = $3`, k.Wrapped, ws, k.ID)
		}
		for _, e := range r.Events {
			b.Queue(`UPDATE events SET payload = $1 WHERE workspace_id = $2 AND seq = $3`, e.Payload, ws, e.Seq)
		}
		for _, ir := range r.Identities {
			b.Queue(`UPDATE identities SET sealed = $1 WHERE workspace_id = $2 AND blind = $3`, ir.Sealed, ws, ir.Blind)
		}
		for _, p := range r.Profiles {
			b.Queue(`UPDATE profiles SET state = $1 WHERE workspace_id = $2 AND id = $3`, p.State, ws, p.ID)
		}
		if err := tx.SendBatch(ctx, b).Close(); err != nil {
			return fmt.Errorf("postgres: rekey: %w", err)
		}
		if r.Complete != nil {
			req, err := r.Complete()
			if err != nil {
				return err
			}
			if err := completeRequest(ctx, tx, req, time.Now().UnixMilli()); err != nil {
				return err
			}
		}
		if err := tx.Commit(ctx); err != nil {
			return fmt.Errorf("postgres: rekey: %w", err)
		}
		return nil
	})
}
