package postgres

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/trustloop/trustloop"
)

// The statuses of an open request, written out as in the partial index
// privacy_requests_open so that the planner can use it for a query naming them.
const openRequestSQL = `('received', 'verified', 'in_progress')`

const requestCols = `id, workspace_id, type, status, identifier_type, subject, regime, received_at, ack_due_at, due_at,
	extended_at, extension_reason, verified_by, verified_at, completed_at, reject_reason, suppress, suppression,
	payload, result, receipt, progress, updated_at, version`

// CreatePrivacyRequest stores r and enqueues job in one transaction, unless an
// open request of the same workspace, type and subject exists: then nothing is
// stored and that one is returned. Two nodes creating the same request at once
// both find none; the partial unique index lets one insert, and the other
// returns the winner's request.
func (db *DB) CreatePrivacyRequest(ctx context.Context, r *trustloop.PrivacyRequest, job *trustloop.Job) (*trustloop.PrivacyRequest, error) {
	var existing *trustloop.PrivacyRequest
	var err error
	// The winner of a race may be completed before the loser reads it again;
	// then the loser's insert is tried anew.
	for attempt := 0; attempt < 3; attempt++ {
		err = retry(ctx, func() error {
			var err error
			existing, err = db.createRequest(ctx, r, job)
			return err
		})
		if !isOpenViolation(err) {
			break
		}
		if existing, err = db.openRequest(ctx, db.pool, r); err != nil || existing != nil {
			return existing, err
		}
	}
	if isOpenViolation(err) {
		return nil, trustloop.Errorf(trustloop.ECONFLICT, "The subject's requests changed meanwhile on another node.").
			WithHint("Send the request again.")
	}
	return existing, err
}

func (db *DB) createRequest(ctx context.Context, r *trustloop.PrivacyRequest, job *trustloop.Job) (*trustloop.PrivacyRequest, error) {
	tx, err := db.pool.Begin(ctx)
	if err != nil {
		return nil, fmt.Errorf("postgres: create privacy request: %w", err)
	}
	defer tx.Rollback(ctx)
	// A NULL subject equals nothing, in this query as in the unique index.
	if r.Subject != nil {
		if existing, err := db.openRequest(ctx, tx, r); err != nil || existing != nil {
			return existing, err
		}
	}
	updated := r.UpdatedAt
	if updated.IsZero() {
		updated = r.ReceivedAt
	}
	_, err = tx.Exec(ctx, `INSERT INTO privacy_requests (`+requestCols+`)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20, $21, $22, $23, 1)`,
		r.ID, r.WorkspaceID, r.Type, r.Status, r.IdentifierType, r.Subject, r.Regime, optMS(r.ReceivedAt),
		optMS(r.AckDueAt), optMS(r.DueAt), optMS(r.ExtendedAt), r.ExtensionReason, r.VerifiedBy, optMS(r.VerifiedAt),
		optMS(r.CompletedAt), r.RejectReason, boolInt(r.Suppress), r.Suppression, r.Payload, r.Result,
		r.Receipt, r.Progress, optMS(updated))
	if err != nil {
		if isUniqueViolation(err) && !isOpenViolation(err) {
			return nil, trustloop.Errorf(trustloop.ECONFLICT, "A privacy request with this id exists.").
				WithHint("Give every request a new id (trustloop.NewRequestID).")
		}
		return nil, fmt.Errorf("postgres: create privacy request: %w", err)
	}
	var j trustloop.Job
	if job != nil {
		j = *job
		j.Ref, j.WorkspaceID = r.ID, r.WorkspaceID
		if err := db.enqueueJob(ctx, tx, &j); err != nil {
			return nil, err
		}
	}
	if err := tx.Commit(ctx); err != nil {
		return nil, fmt.Errorf("postgres: create privacy request: %w", err)
	}
	// r and job change only once the transaction is in (a retried attempt
	// starts from them unchanged).
	r.Version, r.UpdatedAt = 1, fromOptMS(optMS(updated))
	if job != nil {
		*job = j
	}
	return nil, nil
}

// isOpenViolation reports whether err is a violation of the one-open-request
// index (not of the primary key).
func isOpenViolation(err error) bool {
	var pe *pgconn.PgError
	return errors.As(err, &pe) && pe.Code == "23505" && pe.ConstraintName == "privacy_requests_open"
}

// rowQuerier is a pool or a transaction.
type rowQuerier interface {
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

// openRequest returns the open request of r's workspace, type and subject, or
// nil.
func (db *DB) openRequest(ctx context.Context, q rowQuerier, r *trustloop.PrivacyRequest) (*trustloop.PrivacyRequest, error) {
	got, err := scanRequest(q.QueryRow(ctx, `SELECT `+requestCols+` FROM privacy_requests
		WHERE workspace_id = $1 AND type = $2 AND subject = $3 AND status IN `+openRequestSQL,
		r.WorkspaceID, r.Type, r.Subject))
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, nil
	} else if err != nil {
		return nil, fmt.Errorf("postgres: create privacy request: open request: %w", err)
	}
	return got, nil
}

// FindPrivacyRequest returns a request of the workspace.
func (db *DB) FindPrivacyRequest(ctx context.Context, workspaceID int64, id string) (*trustloop.PrivacyRequest, error) {
	r, err := scanRequest(db.pool.QueryRow(ctx, `SELECT `+requestCols+` FROM privacy_requests WHERE workspace_id = $1 AND id = $2`,
		workspaceID, id))
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, trustloop.Errorf(trustloop.ENOTFOUND, "No privacy request with this id.").
			WithHint("Request ids come from POST /v1/privacy-requests and the list of requests.")
	} else if err != nil {
		return nil, fmt.Errorf("postgres: find privacy request: %w", err)
	}
	return r, nil
}

// ListPrivacyRequests returns requests by due date, then id, after f's
// position.
func (db *DB) ListPrivacyRequests(ctx context.Context, workspaceID int64, f trustloop.PrivacyFilter) ([]*trustloop.PrivacyRequest, error) {
	q := `SELECT ` + requestCols + ` FROM privacy_requests WHERE workspace_id = $1`
	args := []any{workspaceID}
	if f.Status != "" {
		args = append(args, f.Status)
		q += fmt.Sprintf(` AND status = $%d`, len(args))
	}
	if !f.AfterDue.IsZero() {
		args = append(args, optMS(f.AfterDue), f.AfterID)
		q += fmt.Sprintf(` AND (due_at, id) > ($%d, $%d)`, len(args)-1, len(args))
	}
	args = append(args, requestLimit(f.Limit))
	q += fmt.Sprintf(` ORDER BY due_at, id LIMIT $%d`, len(args))
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
	return db.requests(ctx, "subject privacy requests", `SELECT `+requestCols+` FROM privacy_requests
		WHERE workspace_id = $1 AND subject = ANY($2::bytea[]) ORDER BY received_at, id`, workspaceID, subjects)
}

func (db *DB) requests(ctx context.Context, op, q string, args ...any) ([]*trustloop.PrivacyRequest, error) {
	rows, err := db.pool.Query(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("postgres: %s: %w", op, err)
	}
	defer rows.Close()
	var out []*trustloop.PrivacyRequest
	for rows.Next() {
		r, err := scanRequest(rows)
		if err != nil {
			return nil, fmt.Errorf("postgres: %s: %w", op, err)
		}
		out = append(out, r)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("postgres: %s: %w", op, err)
	}
	return out, nil
}

// UpdatePrivacyRequest writes r if its stored version is still r.Version,
// with job enqueued in the same transaction.
func (db *DB) UpdatePrivacyRequest(ctx context.Context, r *trustloop.PrivacyRequest, job *trustloop.Job) error {
	return retry(ctx, func() error { return db.updateRequest(ctx, r, job) })
}

func (db *DB) updateRequest(ctx context.Context, r *trustloop.PrivacyRequest, job *trustloop.Job) error {
	tx, err := db.pool.Begin(ctx)
	if err != nil {
		return fmt.Errorf("postgres: update privacy request: %w", err)
	}
	defer tx.Rollback(ctx)
	now := ms(db.Now())
	tag, err := tx.Exec(ctx, `UPDATE privacy_requests SET type = $1, status = $2, identifier_type = $3, subject = $4,
		regime = $5, received_at = $6, ack_due_at = $7, due_at = $8, extended_at = $9, extension_reason = $10,
		verified_by = $11, verified_at = $12, completed_at = $13, reject_reason = $14, suppress = $15, suppression = $16,
		payload = $17, result = $18, receipt = $19, progress = $20, updated_at = $21, version = version + 1
		WHERE workspace_id = $22 AND id = $23 AND version = $24`,
		r.Type, r.Status, r.IdentifierType, r.Subject, r.Regime, optMS(r.ReceivedAt), optMS(r.AckDueAt),
		optMS(r.DueAt), optMS(r.ExtendedAt), r.ExtensionReason, r.VerifiedBy, optMS(r.VerifiedAt), optMS(r.CompletedAt),
		r.RejectReason, boolInt(r.Suppress), r.Suppression, r.Payload, r.Result, r.Receipt, r.Progress,
		now, r.WorkspaceID, r.ID, r.Version)
	if err != nil {
		if isOpenViolation(err) {
			return trustloop.Errorf(trustloop.ECONFLICT, "Another open request of this type exists for the subject.").
				WithHint("Work on that request instead.")
		}
		return fmt.Errorf("postgres: update privacy request: %w", err)
	}
	if tag.RowsAffected() != 1 {
		var exists bool
		if err := tx.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM privacy_requests WHERE workspace_id = $1 AND id = $2)`,
			r.WorkspaceID, r.ID).Scan(&exists); err != nil {
			return fmt.Errorf("postgres: update privacy request: %w", err)
		}
		if !exists {
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
	if err := tx.Commit(ctx); err != nil {
		return fmt.Errorf("postgres: update privacy request: %w", err)
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
	rows, err := db.pool.Query(ctx, `SELECT hash FROM suppressions WHERE workspace_id = $1 ORDER BY hash`, workspaceID)
	if err != nil {
		return nil, fmt.Errorf("postgres: suppressions: %w", err)
	}
	out, err := pgx.CollectRows(rows, pgx.RowTo[[]byte])
	if err != nil {
		return nil, fmt.Errorf("postgres: suppressions: %w", err)
	}
	return out, nil
}

// scanRequest reads the requestCols of one row.
func scanRequest(row pgx.Row) (*trustloop.PrivacyRequest, error) {
	r := &trustloop.PrivacyRequest{}
	var received, ackDue, due, extended, verified, completed, updated, suppress int64
	err := row.Scan(&r.ID, &r.WorkspaceID, &r.Type, &r.Status, &r.IdentifierType, &r.Subject, &r.Regime, &received, &ackDue,
		&due, &extended, &r.ExtensionReason, &r.VerifiedBy, &verified, &completed, &r.RejectReason, &suppress,
		&r.Suppression, &r.Payload, &r.Result, &r.Receipt, &r.Progress, &updated, &r.Version)
	if err != nil {
		return nil, err
	}
	r.Suppress = suppress != 0
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

// boolInt is a flag as stored: suppress is a BIGINT, like SQLite's INTEGER.
func boolInt(b bool) int64 {
	if b {
		return 1
	}
	return 0
}

const jobCols = `id, workspace_id, kind, ref, state, attempts, max_attempts, run_at, locked_by, locked_until, progress,
	last_error, created_at, updated_at`

// EnqueueJob stores a queued job.
func (db *DB) EnqueueJob(ctx context.Context, j *trustloop.Job) error {
	return retry(ctx, func() error {
		done := *j
		tx, err := db.pool.Begin(ctx)
		if err != nil {
			return fmt.Errorf("postgres: enqueue job: %w", err)
		}
		defer tx.Rollback(ctx)
		if err := db.enqueueJob(ctx, tx, &done); err != nil {
			return err
		}
		if err := tx.Commit(ctx); err != nil {
			return fmt.Errorf("postgres: enqueue job: %w", err)
		}
		*j = done
		return nil
	})
}

// enqueueJob inserts j in tx and fills in its id, state and times. Attempts
// and the lease start empty.
func (db *DB) enqueueJob(ctx context.Context, tx pgx.Tx, j *trustloop.Job) error {
	now := fromOptMS(ms(db.Now()))
	j.State, j.Attempts, j.LockedBy, j.LockedUntil = trustloop.JobQueued, 0, "", time.Time{}
	j.CreatedAt, j.UpdatedAt = now, now
	if j.MaxAttempts <= 0 {
		j.MaxAttempts = 10
	}
	if j.RunAt.IsZero() {
		j.RunAt = now
	}
	err := tx.QueryRow(ctx, `INSERT INTO jobs (workspace_id, kind, ref, state, attempts, max_attempts, run_at,
		locked_by, locked_until, progress, last_error, created_at, updated_at)
		VALUES ($1, $2, $3, $4, 0, $5, $6, '', 0, $7, $8, $9, $9) RETURNING id`,
		j.WorkspaceID, j.Kind, j.Ref, j.State, j.MaxAttempts, ms(j.RunAt), j.Progress, j.LastError, ms(now)).Scan(&j.ID)
	if err != nil {
		return fmt.Errorf("postgres: enqueue job: %w", err)
	}
	return nil
}

// ClaimJob takes the oldest due job of the kinds, or one whose worker's lease
// ran out. FOR UPDATE SKIP LOCKED makes concurrent claimers pass over a row
// another is taking rather than wait for it, and rechecks the conditions on a
// row committed meanwhile, so two workers never hold the same job.
func (db *DB) ClaimJob(ctx context.Context, worker string, kinds []string, now time.Time, lease time.Duration) (*trustloop.Job, error) {
	if len(kinds) == 0 {
		return nil, nil
	}
	t, until := ms(now), ms(now.Add(lease))
	// A job out of attempts whose lease ran out (its worker died on the last
	// try), or queued again after its last, would never be claimed: it failed.
	err := retry(ctx, func() error {
		_, err := db.pool.Exec(ctx, `UPDATE jobs SET state = 'failed', locked_by = '', locked_until = 0, updated_at = $1,
			last_error = CASE WHEN last_error = '' THEN 'out of attempts' ELSE last_error END
			WHERE id IN (SELECT id FROM jobs
				WHERE ((state = 'queued' AND run_at <= $1) OR (state = 'running' AND locked_until < $1))
				AND attempts >= max_attempts AND kind = ANY($2)
				FOR UPDATE SKIP LOCKED)`, t, kinds)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("postgres: claim job: %w", err)
	}
	var j *trustloop.Job
	err = retry(ctx, func() error {
		var err error
		j, err = scanJob(db.pool.QueryRow(ctx, `UPDATE jobs SET state = 'running', locked_by = $1, locked_until = $2,
			attempts = attempts + 1, updated_at = $3
			WHERE id = (SELECT id FROM jobs
				WHERE ((state = 'queued' AND run_at <= $3) OR (state = 'running' AND locked_until < $3))
				AND attempts < max_attempts AND kind = ANY($4)
				ORDER BY run_at, id LIMIT 1 FOR UPDATE SKIP LOCKED)
			RETURNING `+jobCols, worker, until, t, kinds))
		return err
	})
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, nil
	} else if err != nil {
		return nil, fmt.Errorf("postgres: claim job: %w", err)
	}
	return j, nil
}

// ProgressJob records progress and extends the lease while worker holds the
// job.
func (db *DB) ProgressJob(ctx context.Context, id int64, worker, progress string, until time.Time) error {
	var n int64
	err := retry(ctx, func() error {
		tag, err := db.pool.Exec(ctx, `UPDATE jobs SET progress = $1, locked_until = $2, updated_at = $3
			WHERE id = $4 AND locked_by = $5 AND state = 'running'`, progress, optMS(until), ms(db.Now()), id, worker)
		n = tag.RowsAffected()
		return err
	})
	if err != nil {
		return fmt.Errorf("postgres: progress job: %w", err)
	}
	if n != 1 {
		return errJobLost()
	}
	return nil
}

// FinishJob ends worker's hold of a job; queued (a retry) runs again at runAt.
func (db *DB) FinishJob(ctx context.Context, id int64, worker, state, lastError string, runAt time.Time) error {
	if err := checkFinishState(state); err != nil {
		return err
	}
	now := db.Now()
	if runAt.IsZero() {
		runAt = now
	}
	var n int64
	// run_at changes only for a retry; a finished job keeps when it was due.
	err := retry(ctx, func() error {
		tag, err := db.pool.Exec(ctx, `UPDATE jobs SET state = $1, last_error = $2,
			run_at = CASE WHEN $1 = 'queued' THEN $3 ELSE run_at END, locked_by = '', locked_until = 0, updated_at = $4
			WHERE id = $5 AND locked_by = $6 AND state = 'running'`, state, lastError, ms(runAt), ms(now), id, worker)
		n = tag.RowsAffected()
		return err
	})
	if err != nil {
		return fmt.Errorf("postgres: finish job: %w", err)
	}
	if n != 1 {
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
	var n int64
	err := retry(ctx, func() error {
		tag, err := db.pool.Exec(ctx, `UPDATE jobs SET state = 'cancelled', updated_at = $1
			WHERE workspace_id = $2 AND ref = $3 AND state = 'queued'`, ms(db.Now()), workspaceID, ref)
		n = tag.RowsAffected()
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("postgres: cancel jobs: %w", err)
	}
	return int(n), nil
}

// JobsOf returns the jobs with the ref, by id.
func (db *DB) JobsOf(ctx context.Context, workspaceID int64, ref string) ([]trustloop.Job, error) {
	rows, err := db.pool.Query(ctx, `SELECT `+jobCols+` FROM jobs WHERE workspace_id = $1 AND ref = $2 ORDER BY id`,
		workspaceID, ref)
	if err != nil {
		return nil, fmt.Errorf("postgres: jobs of: %w", err)
	}
	defer rows.Close()
	var out []trustloop.Job
	for rows.Next() {
		j, err := scanJob(rows)
		if err != nil {
			return nil, fmt.Errorf("postgres: jobs of: %w", err)
		}
		out = append(out, *j)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("postgres: jobs of: %w", err)
	}
	return out, nil
}

// scanJob reads the jobCols of one row.
func scanJob(row pgx.Row) (*trustloop.Job, error) {
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
