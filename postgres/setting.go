package postgres

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"
	"github.com/trustloop/trustloop"
)

// FindSetting returns a workspace setting.
func (db *DB) FindSetting(ctx context.Context, workspaceID int64, name string) ([]byte, int64, error) {
	var v []byte
	var version int64
	err := db.pool.QueryRow(ctx, `SELECT value, version FROM settings WHERE workspace_id = $1 AND name = $2`, workspaceID, name).Scan(&v, &version)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, 0, trustloop.Errorf(trustloop.ENOTFOUND, "The setting %q was never set.", name).
			WithHint("Nothing was saved under this name yet, so the defaults apply; save it first.")
	} else if err != nil {
		return nil, 0, fmt.Errorf("postgres: find setting: %w", err)
	}
	return v, version, nil
}

// PutSetting stores a workspace setting if its version is still version.
func (db *DB) PutSetting(ctx context.Context, workspaceID int64, name string, value []byte, version int64) (int64, error) {
	now := db.Now().UnixMilli()
	var q string
	var args []any
	if version == 0 {
		q = `INSERT INTO settings (workspace_id, name, value, version, updated_at) VALUES ($1, $2, $3, 1, $4) ON CONFLICT DO NOTHING`
		args = []any{workspaceID, name, value, now}
	} else {
		q = `UPDATE settings SET value = $1, version = version + 1, updated_at = $2 WHERE workspace_id = $3 AND name = $4 AND version = $5`
		args = []any{value, now, workspaceID, name, version}
	}
	tag, err := db.pool.Exec(ctx, q, args...)
	if err != nil {
		return 0, fmt.Errorf("postgres: put setting: %w", err)
	}
	if tag.RowsAffected() != 1 {
		return 0, trustloop.Errorf(trustloop.ECONFLICT, "The setting %q was changed meanwhile.", name).
			WithHint("Read it again (GET) and send your change with the version you read.")
	}
	return version + 1, nil
}
