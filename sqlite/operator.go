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

const operatorColumns = `id, workspace_id, email, name, password_hash, roles, purposes, created_at, disabled_at`

// CreateOperator stores a new operator.
func (db *DB) CreateOperator(ctx context.Context, o *trustloop.Operator) error {
	o.Email = trustloop.NormalizeOperatorEmail(o.Email)
	if err := o.Validate(); err != nil {
		return err
	}
	created := db.Now().UTC().Truncate(time.Millisecond)
	db.mu.Lock()
	defer db.mu.Unlock()
	res, err := db.write.ExecContext(ctx, `INSERT INTO operators (workspace_id, email, name, password_hash, roles, purposes, created_at, disabled_at)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?)`, o.WorkspaceID, o.Email, o.Name, o.PasswordHash,
		strings.Join(o.Roles, " "), strings.Join(o.Purposes, " "), ms(created), nullMS(o.DisabledAt))
	switch {
	case err != nil && strings.Contains(err.Error(), "UNIQUE constraint failed"):
		return operatorTaken()
	case err != nil && strings.Contains(err.Error(), "FOREIGN KEY constraint failed"):
		return trustloop.Errorf(trustloop.ENOTFOUND, "Workspace not found.").
			WithHint("The id is wrong or the workspace was deleted; an API key works on its own workspace.")
	case err != nil:
		return fmt.Errorf("sqlite: create operator: %w", err)
	}
	o.ID, _ = res.LastInsertId()
	o.CreatedAt = created
	return nil
}

func operatorTaken() error {
	return trustloop.Errorf(trustloop.ECONFLICT, "An operator with this email exists already.").
		WithHint("Choose another email, or change the existing operator.")
}

// FindOperatorByEmail returns an operator by (normalized) email.
func (db *DB) FindOperatorByEmail(ctx context.Context, workspaceID int64, email string) (*trustloop.Operator, error) {
	return db.findOperator(ctx, `SELECT `+operatorColumns+` FROM operators WHERE (? = 0 OR workspace_id = ?) AND email = ?`,
		workspaceID, workspaceID, trustloop.NormalizeOperatorEmail(email))
}

// FindOperator returns an operator of the workspace by id.
func (db *DB) FindOperator(ctx context.Context, workspaceID, id int64) (*trustloop.Operator, error) {
	return db.findOperator(ctx, `SELECT `+operatorColumns+` FROM operators WHERE workspace_id = ? AND id = ?`, workspaceID, id)
}

func (db *DB) findOperator(ctx context.Context, query string, args ...any) (*trustloop.Operator, error) {
	o, err := scanOperator(db.read.QueryRowContext(ctx, query, args...))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, trustloop.Errorf(trustloop.ENOTFOUND, "No such operator in the workspace.").
			WithHint("trustloop operators list shows them.")
	} else if err != nil {
		return nil, fmt.Errorf("sqlite: find operator: %w", err)
	}
	return o, nil
}

// ListOperators returns a workspace's operators by id.
func (db *DB) ListOperators(ctx context.Context, workspaceID int64) ([]*trustloop.Operator, error) {
	rows, err := db.read.QueryContext(ctx, `SELECT `+operatorColumns+` FROM operators WHERE workspace_id = ? ORDER BY id`, workspaceID)
	if err != nil {
		return nil, fmt.Errorf("sqlite: list operators: %w", err)
	}
	defer rows.Close()
	var out []*trustloop.Operator
	for rows.Next() {
		o, err := scanOperator(rows)
		if err != nil {
			return nil, fmt.Errorf("sqlite: list operators: %w", err)
		}
		out = append(out, o)
	}
	return out, rows.Err()
}

// UpdateOperator stores an operator's changes (not its email).
func (db *DB) UpdateOperator(ctx context.Context, o *trustloop.Operator) error {
	o.Email = trustloop.NormalizeOperatorEmail(o.Email)
	if err := o.Validate(); err != nil {
		return err
	}
	db.mu.Lock()
	defer db.mu.Unlock()
	res, err := db.write.ExecContext(ctx, `UPDATE operators SET name = ?, password_hash = ?, roles = ?, purposes = ?, disabled_at = ?
		WHERE workspace_id = ? AND id = ?`, o.Name, o.PasswordHash, strings.Join(o.Roles, " "), strings.Join(o.Purposes, " "),
		nullMS(o.DisabledAt), o.WorkspaceID, o.ID)
	if err != nil {
		return fmt.Errorf("sqlite: update operator: %w", err)
	}
	if n, _ := res.RowsAffected(); n != 1 {
		return trustloop.Errorf(trustloop.ENOTFOUND, "No such operator in the workspace.").
			WithHint("trustloop operators list shows them.")
	}
	return nil
}

func scanOperator(row interface{ Scan(...any) error }) (*trustloop.Operator, error) {
	o := &trustloop.Operator{}
	var roles, purposes string
	var created int64
	var disabled sql.NullInt64
	if err := row.Scan(&o.ID, &o.WorkspaceID, &o.Email, &o.Name, &o.PasswordHash, &roles, &purposes, &created, &disabled); err != nil {
		return nil, err
	}
	o.Roles, o.Purposes, o.CreatedAt = strings.Fields(roles), strings.Fields(purposes), fromMS(created)
	if disabled.Valid {
		t := fromMS(disabled.Int64)
		o.DisabledAt = &t
	}
	return o, nil
}

// nullMS is t in milliseconds, or NULL for nil.
func nullMS(t *time.Time) any {
	if t == nil {
		return nil
	}
	return ms(*t)
}
