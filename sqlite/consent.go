package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"

	"github.com/trustloop/trustloop"
)

// AppendConsent appends records to their subjects' chains and stores the
// receipt, in one transaction on the writer connection.
func (db *DB) AppendConsent(ctx context.Context, recs []trustloop.ConsentRecord, sign func([]trustloop.ConsentRecord) (*trustloop.ConsentReceipt, error)) error {
	db.mu.Lock()
	defer db.mu.Unlock()
	tx, err := db.write.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("sqlite: append consent: %w", err)
	}
	defer tx.Rollback()
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
			err := tx.QueryRowContext(ctx, `SELECT seq, hash FROM consent_records WHERE workspace_id = ? AND subject = ?
				ORDER BY seq DESC LIMIT 1`, r.WorkspaceID, r.Subject).Scan(&h.seq, &h.hash)
			if err != nil && !errors.Is(err, sql.ErrNoRows) {
				return fmt.Errorf("sqlite: append consent: chain head: %w", err)
			}
		}
		if r.Pseudonym, err = db.pseudonymTx(ctx, tx, r.WorkspaceID, r.Subject); err != nil {
			return err
		}
		r.Seq, r.PrevHash = h.seq+1, h.hash
		if r.PrevHash == nil {
			r.PrevHash = []byte{}
		}
		r.Hash = trustloop.ConsentRecordHash(r.PrevHash, r)
		heads[string(r.Subject)] = head{r.Seq, r.Hash}
		_, err := tx.ExecContext(ctx, `INSERT INTO consent_records (workspace_id, subject, seq, purpose, state, at, expires_at,
			method, notice_version, jurisdiction, source_id, evidence, receipt_id, prev_hash, hash)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
			r.WorkspaceID, r.Subject, r.Seq, r.Purpose, r.State, ms(r.At), expiresMS(r), r.Method, r.NoticeVersion,
			r.Jurisdiction, r.SourceID, r.Evidence, r.ReceiptID, r.PrevHash, r.Hash)
		if err != nil {
			return fmt.Errorf("sqlite: append consent: %w", err)
		}
	}
	if sign != nil {
		rc, err := sign(done)
		if err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO consent_receipts (workspace_id, id, subject, at, body) VALUES (?, ?, ?, ?, ?)`,
			rc.WorkspaceID, rc.ID, rc.Subject, ms(rc.At), rc.Body); err != nil {
			return fmt.Errorf("sqlite: append consent: receipt: %w", err)
		}
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("sqlite: append consent: %w", err)
	}
	copy(recs, done)
	return nil
}

// pseudonymTx returns the subject's audit pseudonym, made on first use.
func (db *DB) pseudonymTx(ctx context.Context, tx *sql.Tx, ws int64, subject []byte) (string, error) {
	var p string
	err := tx.QueryRowContext(ctx, `SELECT pseudonym FROM consent_subjects WHERE workspace_id = ? AND subject = ?`, ws, subject).Scan(&p)
	if errors.Is(err, sql.ErrNoRows) {
		p = trustloop.NewPseudonym()
		_, err = tx.ExecContext(ctx, `INSERT INTO consent_subjects (workspace_id, subject, pseudonym) VALUES (?, ?, ?)`, ws, subject, p)
	}
	if err != nil {
		return "", fmt.Errorf("sqlite: consent pseudonym: %w", err)
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
	rows, err := db.query(ctx, `SELECT seq, purpose, state, at, expires_at, method, notice_version, jurisdiction,
		source_id, evidence, receipt_id, prev_hash, hash FROM consent_records WHERE workspace_id = ? AND subject = ? ORDER BY seq`,
		workspaceID, subject)
	if err != nil {
		return nil, fmt.Errorf("sqlite: consent records: %w", err)
	}
	defer rows.Close()
	var out []trustloop.ConsentRecord
	for rows.Next() {
		r := trustloop.ConsentRecord{WorkspaceID: workspaceID, Subject: subject}
		var at, exp int64
		if err := rows.Scan(&r.Seq, &r.Purpose, &r.State, &at, &exp, &r.Method, &r.NoticeVersion, &r.Jurisdiction,
			&r.SourceID, &r.Evidence, &r.ReceiptID, &r.PrevHash, &r.Hash); err != nil {
			return nil, fmt.Errorf("sqlite: consent records: %w", err)
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
	err := db.read.QueryRowContext(ctx, `SELECT subject, at, body FROM consent_receipts WHERE workspace_id = ? AND id = ?`,
		workspaceID, id).Scan(&rc.Subject, &at, &rc.Body)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, trustloop.Errorf(trustloop.ENOTFOUND, "No consent receipt with this id.").
			WithHint("Receipt ids come from PUT /v1/profiles/{id}/consent and the consent history.")
	} else if err != nil {
		return nil, fmt.Errorf("sqlite: find consent receipt: %w", err)
	}
	rc.At = fromMS(at)
	return rc, nil
}

// ConsentPurposeUsed reports whether any record names the purpose.
func (db *DB) ConsentPurposeUsed(ctx context.Context, workspaceID int64, purpose string) (bool, error) {
	var n int
	err := db.read.QueryRowContext(ctx, `SELECT COUNT(*) FROM (SELECT 1 FROM consent_records WHERE workspace_id = ? AND purpose = ? LIMIT 1)`,
		workspaceID, purpose).Scan(&n)
	if err != nil {
		return false, fmt.Errorf("sqlite: consent purpose used: %w", err)
	}
	return n > 0, nil
}
