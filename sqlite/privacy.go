package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/trustloop/trustloop"
)

// The statuses of an open request, written out as in the partial index
// privacy_requests_open so that a query naming them can use it.
const openRequestSQL = `('received', 'verified', 'in_progress')`

const requestCols = `id, workspace_id, type, status, identifier_type, subject, regime, received_at, ack_due_at, due_at,
	extended_at, extension_reason, verified_by, verified_at, completed_at, reject_reason, suppress, suppression,
	payload, result, receipt, progress, updated_at, version`

// CreatePrivacyRequest stores r and enqueues job in one transaction, unless an
// open request of the same workspace, type and subject exists: then nothing is
// stored and that one is returned.
func (db *DB) CreatePrivacyRequest(ctx context.Context, r *trustloop.PrivacyRequest, job *trustloop.Job) (*trustloop.PrivacyRequest, error) {
	db.mu.Lock()
	defer db.mu.Unlock()
	tx, err := db.write.BeginTx(ctx, nil)
	if err != nil {
		return nil, fmt.Errorf("sqlite: create privacy request: %w", err)
	}
	defer tx.Rollback()
	// A NULL subject equals nothing, in this query as in the unique index.
	if r.Subject != nil {
		existing, err := openRequest(ctx, tx, r)
		if err != nil || existing != nil {
			return existing, err
		}
	}
	updated := r.UpdatedAt
	if updated.IsZero() {
		updated = r.ReceivedAt
	}
	_, err = tx.ExecContext(ctx, `INSERT INTO privacy_requests (`+requestCols+`)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 1)`,
		r.ID, r.WorkspaceID, r.Type, r.Status, r.IdentifierType, r.Subject, r.Regime, optMS(r.ReceivedAt),
		optMS(r.AckDueAt), optMS(r.DueAt), optMS(r.ExtendedAt), r.ExtensionReason, r.VerifiedBy, optMS(r.VerifiedAt),
		optMS(r.CompletedAt), r.RejectReason, r.Suppress, r.Suppression, r.Payload, r.Result,
		r.Receipt, r.Progress, optMS(updated))
	if err != nil {
		msg := err.Error()
		switch {
		case strings.Contains(msg, "UNIQUE constraint failed: privacy_requests.id"):
			return nil, trustloop.Errorf(trustloop.ECONFLICT, "A privacy request with this id exists.").
				WithHint("Give every request a new id (trustloop.NewRequestID).")
		case strings.Contains(msg, "UNIQUE constraint failed"):
			// Not reached while this process holds the one writer, but the index
			// is what makes it so: another open request won; it is the answer.
			existing, ferr := openRequest(ctx, tx, r)
			if ferr == nil && existing != nil {
				return existing, nil
			}
		}
		return nil, fmt.Errorf("sqlite: create privacy request: %w", err)
	}
	var j trustloop.Job
	if job != nil {
		j = *job
		j.Ref, j.WorkspaceID = r.ID, r.WorkspaceID
		if err := db.enqueueJob(ctx, tx, &j); err != nil {
			return nil, err
		}
	}
	if err := tx.Commit(); err != nil {
		return nil, fmt.Errorf("sqlite: create privacy request: %w", err)
	}
	// r and job change only once the transaction is in.
	r.Version, r.UpdatedAt = 1, fromOptMS(optMS(updated))
	if job != nil {
		*job = j
	}
	return nil, nil
}

// openRequest returns the open request of r's workspace, type and subject, or
// nil.
func openRequest(ctx context.Context, tx *sql.Tx, r *trustloop.PrivacyRequest) (*trustloop.PrivacyRequest, error) {
	got, err := scanRequest(tx.QueryRowContext(ctx, `SELECT `+requestCols+` FROM privacy_requests
		WHERE workspace_id = ? AND type = ? AND subject = ? AND status IN `+openRequestSQL,
		r.WorkspaceID, r.Type, r.Subject))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, nil
	} else if err != nil {
		return nil, fmt.Errorf("sqlite: create privacy request: open request: %w", err)
	}
	return got, nil
}

// FindPrivacyRequest returns a request of the workspace.
func (db *DB) FindPrivacyRequest(ctx context.Context, workspaceID int64, id string) (*trustloop.PrivacyRequest, error) {
	r, err := scanRequest(db.queryRow(ctx, `SELECT `+requestCols+` FROM privacy_requests WHERE workspace_id = ? AND id = ?`,
		workspaceID, id))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, trustloop.Errorf(trustloop.ENOTFOUND, "No privacy request with this id.").
			WithHint("Request ids come from POST /v1/privacy-requests and the list of requests.")
	} else if err != nil {
		return nil, fmt.Errorf("sqlite: find privacy request: %w", err)
	}
	return r, nil
}

// ListPrivacyRequests returns requests by due date, then id, after f's
// position.
func (db *DB) ListPrivacyRequests(ctx context.Context, workspaceID int64, f trustloop.PrivacyFilter) ([]*trustloop.PrivacyRequest, error) {
	q := `SELECT ` + requestCols + ` FROM privacy_requests WHERE workspace_id = ?`
	args := []any{workspaceID}
	if f.Status != "" {
		q += ` AND status = ?`
		args = append(args, f.Status)
	}
	if !f.AfterDue.IsZero() {
		q += ` AND (due_at, id) > (?, ?)`
		args = append(args, optMS(f.AfterDue), f.AfterID)
	}
	q += ` ORDER BY due_at, id LIMIT ?`
	args = append(args, requestLimit(f.Limit))
	return db.requests(ctx, "list privacy requests", q, args...)
}

// requestLimit is a list's page size: 50 unless asked, at most 500.
func requestLimit(n int) int {
	if n <= 0 {
		return 50
	}
	return min(n, 1000) // the API asks one more than its page of up to 500
}

// SubjectPrivacyRequests returns the requests naming any of the subjects, by
// received time.
func (db *DB) SubjectPrivacyRequests(ctx context.Context, workspaceID int64, subjects [][]byte) ([]*trustloop.PrivacyRequest, error) {
	if len(subjects) == 0 {
		return nil, nil
	}
	args := []any{workspaceID}
	for _, s := range subjects {
		args = append(args, s)
	}
	return db.requests(ctx, "subject privacy requests", `SELECT `+requestCols+` FROM privacy_requests
		WHERE workspace_id = ? AND subject IN (`+marks(len(subjects))+`) ORDER BY received_at, id`, args...)
}

func (db *DB) requests(ctx context.Context, op, q string, args ...any) ([]*trustloop.PrivacyRequest, error) {
	rows, err := db.read.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("sqlite: %s: %w", op, err)
	}
	defer rows.Close()
	var out []*trustloop.PrivacyRequest
	for rows.Next() {
		r, err := scanRequest(rows)
		if err != nil {
			return nil, fmt.Errorf("sqlite: %s: %w", op, err)
		}
		out = append(out, r)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("sqlite: %s: %w", op, err)
	}
	return out, nil
}

// UpdatePrivacyRequest writes r if its stored version is still r.Version,
// with job enqueued in the same transaction.
func (db *DB) UpdatePrivacyRequest(ctx context.Context, r *trustloop.PrivacyRequest, job *trustloop.Job) error {
	db.mu.Lock()
	defer db.mu.Unlock()
	tx, err := db.write.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("sqlite: update privacy request: %w", err)
	}
	defer tx.Rollback()
	now := ms(db.Now())
	res, err := tx.ExecContext(ctx, `UPDATE privacy_requests SET type = ?, status = ?, identifier_type = ?, subject = ?,
		regime = ?, received_at = ?, ack_due_at = ?, due_at = ?, extended_at = ?, extension_reason = ?, verified_by = ?,
		verified_at = ?, completed_at = ?, reject_reason = ?, suppress = ?, suppression = ?, payload = ?, result = ?,
		receipt = ?, progress = ?, updated_at = ?, version = version + 1
		WHERE workspace_id = ? AND id = ? AND version = ?`,
		r.Type, r.Status, r.IdentifierType, r.Subject, r.Regime, optMS(r.ReceivedAt), optMS(r.AckDueAt),
		optMS(r.DueAt), optMS(r.ExtendedAt), r.ExtensionReason, r.VerifiedBy, optMS(r.VerifiedAt), optMS(r.CompletedAt),
		r.RejectReason, r.Suppress, r.Suppression, r.Payload, r.Result, r.Receipt, r.Progress,
		now, r.WorkspaceID, r.ID, r.Version)
	if err != nil {
		if strings.Contains(err.Error(), "UNIQUE constraint failed") {
			return trustloop.Errorf(trustloop.ECONFLICT, "Another open request of this type exists for the subject.").
				WithHint("Work on that request instead.")
		}
		return fmt.Errorf("sqlite: update privacy request: %w", err)
	}
	if n, _ := res.RowsAffected(); n != 1 {
		var exists int
		if err := tx.QueryRowContext(ctx, `SELECT COUNT(*) FROM privacy_requests WHERE workspace_id = ? AND id = ?`,
			r.WorkspaceID, r.ID).Scan(&exists); err != nil {
			return fmt.Errorf("sqlite: update privacy request: %w", err)
		}
		if exists == 0 {
			return trustloop.Errorf(trustloop.ENOTFOUND, "No privacy request with this id.").
				WithHint("Request ids look like prq_… and come from POST /v1/privacy-requests.")
		}
		return trustloop.Errorf(trustloop.ECONFLICT, "The privacy request changed meanwhile.").
			WithHint("Read it again and apply your change to what you read.")
	}
	var j trustloop.Job
	if job != nil {
		j = *job
		j.Ref, j.WorkspaceID = r.ID, r.WorkspaceID
		if err := db.enqueueJob(ctx, tx, &j); err != nil {
			return err
		}
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("sqlite: update privacy request: %w", err)
	}
	r.Version++
	r.UpdatedAt = fromOptMS(now)
	if job != nil {
		*job = j
	}
	return nil
}

// Suppressions returns every suppression hash of the workspace.
func (db *DB) Suppressions(ctx context.Context, workspaceID int64) ([][]byte, error) {
	rows, err := db.read.QueryContext(ctx, `SELECT hash FROM suppressions WHERE workspace_id = ? ORDER BY hash`, workspaceID)
	if err != nil {
		return nil, fmt.Errorf("sqlite: suppressions: %w", err)
	}
	defer rows.Close()
	var out [][]byte
	for rows.Next() {
		var h []byte
		if err := rows.Scan(&h); err != nil {
			return nil, fmt.Errorf("sqlite: suppressions: %w", err)
		}
		out = append(out, h)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("sqlite: suppressions: %w", err)
	}
	return out, nil
}

// scanRequest reads the requestCols of one row.
func scanRequest(row interface{ Scan(...any) error }) (*trustloop.PrivacyRequest, error) {
	r := &trustloop.PrivacyRequest{}
	var received, ackDue, due, extended, verified, completed, updated int64
	err := row.Scan(&r.ID, &r.WorkspaceID, &r.Type, &r.Status, &r.IdentifierType, &r.Subject, &r.Regime, &received, &ackDue,
		&due, &extended, &r.ExtensionReason, &r.VerifiedBy, &verified, &completed, &r.RejectReason, &r.Suppress,
		&r.Suppression, &r.Payload, &r.Result, &r.Receipt, &r.Progress, &updated, &r.Version)
	if err != nil {
		return nil, err
	}
	r.ReceivedAt, r.AckDueAt, r.DueAt = fromOptMS(received), fromOptMS(ackDue), fromOptMS(due)
	r.ExtendedAt, r.VerifiedAt, r.CompletedAt = fromOptMS(extended), fromOptMS(verified), fromOptMS(completed)
	r.UpdatedAt = fromOptMS(updated)
	return r, nil
}

// optMS is ms with the zero time as 0 (unset), which fromOptMS reads back.
func optMS(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return ms(t)
}

func fromOptMS(v int64) time.Time {
	if v == 0 {
		return time.Time{}
	}
	return fromMS(v)
}

const jobCols = `id, workspace_id, kind, ref, state, attempts, max_attempts, run_at, locked_by, locked_until, progress,
	last_error, created_at, updated_at`

// EnqueueJob stores a queued job.
func (db *DB) EnqueueJob(ctx context.Context, j *trustloop.Job) error {
	db.mu.Lock()
	defer db.mu.Unlock()
	tx, err := db.write.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("sqlite: enqueue job: %w", err)
	}
	defer tx.Rollback()
	done := *j
	if err := db.enqueueJob(ctx, tx, &done); err != nil {
		return err
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("sqlite: enqueue job: %w", err)
	}
	*j = done
	return nil
}

// enqueueJob inserts j in tx and fills in its id, state and times. Attempts
// and the lease start empty.
func (db *DB) enqueueJob(ctx context.Context, tx *sql.Tx, j *trustloop.Job) error {
	now := fromOptMS(ms(db.Now()))
	j.State, j.Attempts, j.LockedBy, j.LockedUntil = trustloop.JobQueued, 0, "", time.Time{}
	j.CreatedAt, j.UpdatedAt = now, now
	if j.MaxAttempts <= 0 {
		j.MaxAttempts = 10
	}
	if j.RunAt.IsZero() {
		j.RunAt = now
	}
	res, err := tx.ExecContext(ctx, `INSERT INTO jobs (workspace_id, kind, ref, state, attempts, max_attempts, run_at,
		locked_by, locked_until, progress, last_error, created_at, updated_at) VALUES (?, ?, ?, ?, 0, ?, ?, '', 0, ?, ?, ?, ?)`,
		j.WorkspaceID, j.Kind, j.Ref, j.State, j.MaxAttempts, ms(j.RunAt), j.Progress, j.LastError, ms(now), ms(now))
	if err != nil {
		return fmt.Errorf("sqlite: enqueue job: %w", err)
	}
	if j.ID, err = res.LastInsertId(); err != nil {
		return fmt.Errorf("sqlite: enqueue job: %w", err)
	}
	return nil
}

// ClaimJob takes the oldest due job of the kinds, or one whose worker's lease
// ran out, in one write transaction: the one writer makes the read and the
// update a single step, so two workers never hold the same job.
func (db *DB) ClaimJob(ctx context.Context, worker string, kinds []string, now time.Time, lease time.Duration) (*trustloop.Job, error) {
	if len(kinds) == 0 {
		return nil, nil
	}
	in := `(` + marks(len(kinds)) + `)`
	t := ms(now)
	args := []any{t, t}
	for _, k := range kinds {
		args = append(args, k)
	}
	// Workers poll, and most polls find nothing: finding that out on a reader
	// connection spares the ingest writer a wait for the lock. A job that
	// becomes due just after is taken at the next poll.
	var due int
	err := db.read.QueryRowContext(ctx, `SELECT COUNT(*) FROM (SELECT 1 FROM jobs
		WHERE ((state = 'queued' AND run_at <= ?2) OR (state = 'running' AND locked_until < ?2))
		AND kind IN `+in+` LIMIT 1)`, args...).Scan(&due)
	if err != nil {
		return nil, fmt.Errorf("sqlite: claim job: %w", err)
	} else if due == 0 {
		return nil, nil
	}
	db.mu.Lock()
	defer db.mu.Unlock()
	tx, err := db.write.BeginTx(ctx, nil)
	if err != nil {
		return nil, fmt.Errorf("sqlite: claim job: %w", err)
	}
	defer tx.Rollback()
	// A job out of attempts whose lease ran out (its worker died on the last
	// try), or queued again after its last, would never be claimed: it failed.
	if _, err := tx.ExecContext(ctx, `UPDATE jobs SET state = 'failed', locked_by = '', locked_until = 0, updated_at = ?1,
		last_error = CASE WHEN last_error = '' THEN 'out of attempts' ELSE last_error END
		WHERE ((state = 'queued' AND run_at <= ?2) OR (state = 'running' AND locked_until < ?2))
		AND attempts >= max_attempts AND kind IN `+in, args...); err != nil {
		return nil, fmt.Errorf("sqlite: claim job: %w", err)
	}
	j, err := scanJob(tx.QueryRowContext(ctx, `SELECT `+jobCols+` FROM jobs
		WHERE ((state = 'queued' AND run_at <= ?2) OR (state = 'running' AND locked_until < ?2))
		AND attempts < max_attempts AND kind IN `+in+` ORDER BY run_at, id LIMIT 1`, args...))
	if errors.Is(err, sql.ErrNoRows) {
		// Commit what the first statement failed.
		if err := tx.Commit(); err != nil {
			return nil, fmt.Errorf("sqlite: claim job: %w", err)
		}
		return nil, nil
	} else if err != nil {
		return nil, fmt.Errorf("sqlite: claim job: %w", err)
	}
	until := ms(now.Add(lease))
	if _, err := tx.ExecContext(ctx, `UPDATE jobs SET state = 'running', locked_by = ?, locked_until = ?,
		attempts = attempts + 1, updated_at = ? WHERE id = ?`, worker, until, t, j.ID); err != nil {
		return nil, fmt.Errorf("sqlite: claim job: %w", err)
	}
	if err := tx.Commit(); err != nil {
		return nil, fmt.Errorf("sqlite: claim job: %w", err)
	}
	j.State, j.LockedBy, j.LockedUntil, j.UpdatedAt = trustloop.JobRunning, worker, fromOptMS(until), fromOptMS(t)
	j.Attempts++
	return j, nil
}

// ProgressJob records progress and extends the lease while worker holds the
// job.
func (db *DB) ProgressJob(ctx context.Context, id int64, worker, progress string, until time.Time) error {
	db.mu.Lock()
	defer db.mu.Unlock()
	res, err := db.write.ExecContext(ctx, `UPDATE jobs SET progress = ?, locked_until = ?, updated_at = ?
		WHERE id = ? AND locked_by = ? AND state = 'running'`, progress, optMS(until), ms(db.Now()), id, worker)
	if err != nil {
		return fmt.Errorf("sqlite: progress job: %w", err)
	}
	if n, _ := res.RowsAffected(); n != 1 {
		return errJobLost()
	}
	return nil
}

// FinishJob ends worker's hold of a job; queued (a retry) runs again at runAt.
func (db *DB) FinishJob(ctx context.Context, id int64, worker, state, lastError string, runAt time.Time) error {
	if err := checkFinishState(state); err != nil {
		return err
	}
	db.mu.Lock()
	defer db.mu.Unlock()
	now := db.Now()
	if runAt.IsZero() {
		runAt = now
	}
	// run_at changes only for a retry; a finished job keeps when it was due.
	res, err := db.write.ExecContext(ctx, `UPDATE jobs SET state = ?1, last_error = ?2,
		run_at = CASE WHEN ?1 = 'queued' THEN ?3 ELSE run_at END, locked_by = '', locked_until = 0, updated_at = ?4
		WHERE id = ?5 AND locked_by = ?6 AND state = 'running'`, state, lastError, ms(runAt), ms(now), id, worker)
	if err != nil {
		return fmt.Errorf("sqlite: finish job: %w", err)
	}
	if n, _ := res.RowsAffected(); n != 1 {
		return errJobLost()
	}
	return nil
}

func checkFinishState(state string) error {
	switch state {
	case trustloop.JobQueued, trustloop.JobDone, trustloop.JobFailed, trustloop.JobCancelled:
		return nil
	}
	return trustloop.Errorf(trustloop.EINVALID, "A job finishes as queued, done, failed or cancelled, not %q.", state).
		WithHint("This is a bug in the caller; finish the job with one of those states.")
}

func errJobLost() error {
	return trustloop.Errorf(trustloop.ECONFLICT, "The worker no longer holds the job.").
		WithHint("Its lease ran out and another worker may have taken it: stop working on it.")
}

// CancelJobs cancels the queued jobs of the workspace with the ref; a running
// one is left to its worker.
func (db *DB) CancelJobs(ctx context.Context, workspaceID int64, ref string) (int, error) {
	db.mu.Lock()
	defer db.mu.Unlock()
	res, err := db.write.ExecContext(ctx, `UPDATE jobs SET state = 'cancelled', updated_at = ?
		WHERE workspace_id = ? AND ref = ? AND state = 'queued'`, ms(db.Now()), workspaceID, ref)
	if err != nil {
		return 0, fmt.Errorf("sqlite: cancel jobs: %w", err)
	}
	n, _ := res.RowsAffected()
	return int(n), nil
}

// JobsOf returns the jobs with the ref, by id.
func (db *DB) JobsOf(ctx context.Context, workspaceID int64, ref string) ([]trustloop.Job, error) {
	rows, err := db.read.QueryContext(ctx, `SELECT `+jobCols+` FROM jobs WHERE workspace_id = ? AND ref = ? ORDER BY id`,
		workspaceID, ref)
	if err != nil {
		return nil, fmt.Errorf("sqlite: jobs of: %w", err)
	}
	defer rows.Close()
	var out []trustloop.Job
	for rows.Next() {
		j, err := scanJob(rows)
		if err != nil {
			return nil, fmt.Errorf("sqlite: jobs of: %w", err)
		}
		out = append(out, *j)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("sqlite: jobs of: %w", err)
	}
	return out, nil
}

// scanJob reads the jobCols of one row.
func scanJob(row interface{ Scan(...any) error }) (*trustloop.Job, error) {
	j := &trustloop.Job{}
	var runAt, lockedUntil, created, updated int64
	if err := row.Scan(&j.ID, &j.WorkspaceID, &j.Kind, &j.Ref, &j.State, &j.Attempts, &j.MaxAttempts, &runAt, &j.LockedBy,
		&lockedUntil, &j.Progress, &j.LastError, &created, &updated); err != nil {
		return nil, err
	}
	j.RunAt, j.LockedUntil = fromOptMS(runAt), fromOptMS(lockedUntil)
	j.CreatedAt, j.UpdatedAt = fromOptMS(created), fromOptMS(updated)
	return j, nil
}
