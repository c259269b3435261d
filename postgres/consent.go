package postgres

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"

	"github.com/trustloop/trustloop"
)

// AppendConsent appends records to their subjects' chains and stores the
// receipt in one transaction. Two nodes appending to one subject at once both
// read the same chain head; the primary key (workspace, subject, seq) lets only
// one commit, and the other runs again on the new head.
func (db *DB) AppendConsent(ctx context.Context, recs []trustloop.ConsentRecord, sign func([]trustloop.ConsentRecord) (*trustloop.ConsentReceipt, error)) error {
	var err error
	for attempt := 0; attempt < 5; attempt++ {
		err = retry(ctx, func() error { return db.appendConsent(ctx, recs, sign) })
		if !isUniqueViolation(err) {
			break
		}
	}
	if isUniqueViolation(err) {
		return trustloop.Errorf(trustloop.ECONFLICT, "The subject's consent changed meanwhile on another node.").
			WithHint("Send the change again.")
	}
	return err
}

func (db *DB) appendConsent(ctx context.Context, recs []trustloop.ConsentRecord, sign func([]trustloop.ConsentRecord) (*trustloop.ConsentReceipt, error)) error {
	tx, err := db.pool.Begin(ctx)
	if err != nil {
		return fmt.Errorf("postgres: append consent: %w", err)
	}
	defer tx.Rollback(ctx)
	done := make([]trustloop.ConsentRecord, len(recs))
	copy(done, recs)
	type head struct {
		seq  int64
		hash []byte
	}
	heads := map[string]head{}
	for i := range done {
		r := &done[i]
		h, ok := heads[string(r.Subject)]
		if !ok {
			err := tx.QueryRow(ctx, `SELECT seq, hash FROM consent_records WHERE workspace_id = $1 AND subject = $2
				ORDER BY seq DESC LIMIT 1`, r.WorkspaceID, r.Subject).Scan(&h.seq, &h.hash)
			if err != nil && !errors.Is(err, pgx.ErrNoRows) {
				return fmt.Errorf("postgres: append consent: chain head: %w", err)
			}
		}
		if r.Pseudonym, err = pseudonymTx(ctx, tx, r.WorkspaceID, r.Subject); err != nil {
			return err
		}
		r.Seq, r.PrevHash = h.seq+1, h.hash
		if r.PrevHash == nil {
			r.PrevHash = []byte{}
		}
		r.Hash = trustloop.ConsentRecordHash(r.PrevHash, r)
		heads[string(r.Subject)] = head{r.Seq, r.Hash}
		_, err := tx.Exec(ctx, `INSERT INTO consent_records (workspace_id, subject, seq, purpose, state, at, expires_at,
			method, notice_version, jurisdiction, source_id, evidence, receipt_id, prev_hash, hash)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)`,
			r.WorkspaceID, r.Subject, r.Seq, r.Purpose, r.State, ms(r.At), expiresMS(r), r.Method, r.NoticeVersion,
			r.Jurisdiction, r.SourceID, r.Evidence, r.ReceiptID, r.PrevHash, r.Hash)
		if err != nil {
			return fmt.Errorf("postgres: append consent: %w", err)
		}
	}
	if sign != nil {
		rc, err := sign(done)
		if err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `INSERT INTO consent_receipts (workspace_id, id, subject, at, body) VALUES ($1, $2, $3, $4, $5)`,
			rc.WorkspaceID, rc.ID, rc.Subject, ms(rc.At), rc.Body); err != nil {
			return fmt.Errorf("postgres: append consent: receipt: %w", err)
		}
	}
	if err := tx.Commit(ctx); err != nil {
		return fmt.Errorf("postgres: append consent: %w", err)
	}
	copy(recs, done)
	return nil
}

// pseudonymTx returns the subject's audit pseudonym, made on first use (a
// racing node's insert makes this transaction retry, like the chain's).
func pseudonymTx(ctx context.Context, tx pgx.Tx, ws int64, subject []byte) (string, error) {
	var p string
	err := tx.QueryRow(ctx, `SELECT pseudonym FROM consent_subjects WHERE workspace_id = $1 AND subject = $2`, ws, subject).Scan(&p)
	if errors.Is(err, pgx.ErrNoRows) {
		p = trustloop.NewPseudonym()
		_, err = tx.Exec(ctx, `INSERT INTO consent_subjects (workspace_id, subject, pseudonym) VALUES ($1, $2, $3)`, ws, subject, p)
	}
	if err != nil {
		return "", fmt.Errorf("postgres: consent pseudonym: %w", err)
	}
	return p, nil
}

func expiresMS(r *trustloop.ConsentRecord) int64 {
	if r.ExpiresAt.IsZero() {
		return 0
	}
	return ms(r.ExpiresAt)
}

// ConsentRecords returns a subject's chain.
func (db *DB) ConsentRecords(ctx context.Context, workspaceID int64, subject []byte) ([]trustloop.ConsentRecord, error) {
	rows, err := db.pool.Query(ctx, `SELECT seq, purpose, state, at, expires_at, method, notice_version, jurisdiction,
		source_id, evidence, receipt_id, prev_hash, hash FROM consent_records WHERE workspace_id = $1 AND subject = $2 ORDER BY seq`,
		workspaceID, subject)
	if err != nil {
		return nil, fmt.Errorf("postgres: consent records: %w", err)
	}
	defer rows.Close()
	var out []trustloop.ConsentRecord
	for rows.Next() {
		r := trustloop.ConsentRecord{WorkspaceID: workspaceID, Subject: subject}
		var at, exp int64
		if err := rows.Scan(&r.Seq, &r.Purpose, &r.State, &at, &exp, &r.Method, &r.NoticeVersion, &r.Jurisdiction,
			&r.SourceID, &r.Evidence, &r.ReceiptID, &r.PrevHash, &r.Hash); err != nil {
			return nil, fmt.Errorf("postgres: consent records: %w", err)
		}
		r.At = fromMS(at)
		if exp != 0 {
			r.ExpiresAt = fromMS(exp)
		}
		out = append(out, r)
	}
	return out, rows.Err()
}

// FindConsentReceipt returns a receipt of the workspace.
func (db *DB) FindConsentReceipt(ctx context.Context, workspaceID int64, id string) (*trustloop.ConsentReceipt, error) {
	rc := &trustloop.ConsentReceipt{ID: id, WorkspaceID: workspaceID}
	var at int64
	err := db.pool.QueryRow(ctx, `SELECT subject, at, body FROM consent_receipts WHERE workspace_id = $1 AND id = $2`,
		workspaceID, id).Scan(&rc.Subject, &at, &rc.Body)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, trustloop.Errorf(trustloop.ENOTFOUND, "No consent receipt with this id.").
			WithHint("Receipt ids come from PUT /v1/profiles/{id}/consent and the consent history.")
	} else if err != nil {
		return nil, fmt.Errorf("postgres: find consent receipt: %w", err)
	}
	rc.At = fromMS(at)
	return rc, nil
}

// ConsentPurposeUsed reports whether any record names the purpose.
func (db *DB) ConsentPurposeUsed(ctx context.Context, workspaceID int64, purpose string) (bool, error) {
	var used bool
	err := db.pool.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM consent_records WHERE workspace_id = $1 AND purpose = $2)`,
		workspaceID, purpose).Scan(&used)
	if err != nil {
		return false, fmt.Errorf("postgres: consent purpose used: %w", err)
	}
	return used, nil
}
