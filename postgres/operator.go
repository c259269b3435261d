package postgres

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/trustloop/trustloop"
)

const operatorColumns = `id, workspace_id, email, name, password_hash, roles, purposes, created_at, disabled_at`

// CreateOperator stores a new operator. Two nodes creating the same email at
// once race on the unique constraint; the loser gets ECONFLICT.
func (db *DB) CreateOperator(ctx context.Context, o *trustloop.Operator) error {
	o.Email = trustloop.NormalizeOperatorEmail(o.Email)
	if err := o.Validate(); err != nil {
		return err
	}
	created := db.Now().UTC().Truncate(time.Millisecond)
	err := db.pool.QueryRow(ctx, `INSERT INTO operators (workspace_id, email, name, password_hash, roles, purposes, created_at, disabled_at)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING id`, o.WorkspaceID, o.Email, o.Name, o.PasswordHash,
		strings.Join(o.Roles, " "), strings.Join(o.Purposes, " "), ms(created), nullMS(o.DisabledAt)).Scan(&o.ID)
	var pe *pgconn.PgError
	switch {
	case isUniqueViolation(err):
		return trustloop.Errorf(trustloop.ECONFLICT, "An operator with this email exists already.").
			WithHint("Choose another email, or change the existing operator.")
	case errors.As(err, &pe) && pe.Code == "23503": // foreign_key_violation
		return trustloop.Errorf(trustloop.ENOTFOUND, "Workspace not found.").
			WithHint("The id is wrong or the workspace was deleted; an API key works on its own workspace.")
	case err != nil:
		return fmt.Errorf("postgres: create operator: %w", err)
	}
	o.CreatedAt = created
	return nil
}

// FindOperatorByEmail returns an operator by (normalized) email.
func (db *DB) FindOperatorByEmail(ctx context.Context, workspaceID int64, email string) (*trustloop.Operator, error) {
	return db.findOperator(ctx, `SELECT `+operatorColumns+` FROM operators WHERE ($1 = 0 OR workspace_id = $1) AND email = $2`,
		workspaceID, trustloop.NormalizeOperatorEmail(email))
}

// FindOperator returns an operator of the workspace by id.
func (db *DB) FindOperator(ctx context.Context, workspaceID, id int64) (*trustloop.Operator, error) {
	return db.findOperator(ctx, `SELECT `+operatorColumns+` FROM operators WHERE workspace_id = $1 AND id = $2`, workspaceID, id)
}

func (db *DB) findOperator(ctx context.Context, query string, args ...any) (*trustloop.Operator, error) {
	o, err := scanOperator(db.pool.QueryRow(ctx, query, args...))
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, trustloop.Errorf(trustloop.ENOTFOUND, "No such operator in the workspace.").
			WithHint("trustloop operators list shows them.")
	} else if err != nil {
		return nil, fmt.Errorf("postgres: find operator: %w", err)
	}
	return o, nil
}

// ListOperators returns a workspace's operators by id.
func (db *DB) ListOperators(ctx context.Context, workspaceID int64) ([]*trustloop.Operator, error) {
	rows, err := db.pool.Query(ctx, `SELECT `+operatorColumns+` FROM operators WHERE workspace_id = $1 ORDER BY id`, workspaceID)
	if err != nil {
		return nil, fmt.Errorf("postgres: list operators: %w", err)
	}
	defer rows.Close()
	var out []*trustloop.Operator
	for rows.Next() {
		o, err := scanOperator(rows)
		if err != nil {
			return nil, fmt.Errorf("postgres: list operators: %w", err)
		}
		out = append(out, o)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("postgres: list operators: %w", err)
	}
	return out, nil
}

// UpdateOperator stores an operator's changes (not its email).
func (db *DB) UpdateOperator(ctx context.Context, o *trustloop.Operator) error {
	o.Email = trustloop.NormalizeOperatorEmail(o.Email)
	if err := o.Validate(); err != nil {
		return err
	}
	tag, err := db.pool.Exec(ctx, `UPDATE operators SET name = $1, password_hash = $2, roles = $3, purposes = $4, disabled_at = $5
		WHERE workspace_id = $6 AND id = $7`, o.Name, o.PasswordHash, strings.Join(o.Roles, " "), strings.Join(o.Purposes, " "),
		nullMS(o.DisabledAt), o.WorkspaceID, o.ID)
	if err != nil {
		return fmt.Errorf("postgres: update operator: %w", err)
	}
	if tag.RowsAffected() != 1 {
		return trustloop.Errorf(trustloop.ENOTFOUND, "No such operator in the workspace.").
			WithHint("trustloop operators list shows them.")
	}
	return nil
}

func scanOperator(row pgx.Row) (*trustloop.Operator, error) {
	o := &trustloop.Operator{}
	var roles, purposes string
	var created int64
	var disabled *int64
	if err := row.Scan(&o.ID, &o.WorkspaceID, &o.Email, &o.Name, &o.PasswordHash, &roles, &purposes, &created, &disabled); err != nil {
		return nil, err
	}
	o.Roles, o.Purposes, o.CreatedAt = strings.Fields(roles), strings.Fields(purposes), fromMS(created)
	if disabled != nil {
		t := fromMS(*disabled)
		o.DisabledAt = &t
	}
	return o, nil
}

// nullMS is t in milliseconds, or nil (NULL).
func nullMS(t *time.Time) *int64 {
	if t == nil {
		return nil
	}
	v := ms(*t)
	return &v
}
