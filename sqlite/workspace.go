package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/trustloop/trustloop"
)

// Bootstrap creates the first workspace, source and admin key on an empty store.
func (db *DB) Bootstrap(ctx context.Context, b *trustloop.Bootstrap) (bool, error) {
	return db.createWorkspace(ctx, b, true)
}

// CreateWorkspace creates another workspace with its source and admin key.
func (db *DB) CreateWorkspace(ctx context.Context, b *trustloop.Bootstrap) error {
	created, err := db.createWorkspace(ctx, b, false)
	if err == nil && !created {
		return trustloop.Errorf(trustloop.ECONFLICT, "A workspace with this name exists.").WithHint("Choose another name.")
	}
	return err
}

// createWorkspace creates b's workspace, source and admin key in one
// transaction; with first, only on a store that holds no workspace yet.
func (db *DB) createWorkspace(ctx context.Context, b *trustloop.Bootstrap, first bool) (bool, error) {
	tx, err := db.write.BeginTx(ctx, nil)
	if err != nil {
		return false, fmt.Errorf("sqlite: bootstrap: %w", err)
	}
	defer tx.Rollback()
	var n int
	if err := tx.QueryRowContext(ctx, `SELECT COUNT(*) FROM workspaces`).Scan(&n); err != nil {
		return false, fmt.Errorf("sqlite: bootstrap: %w", err)
	} else if n > 0 && first {
		return false, nil
	}
	now := db.Now().UTC()
	w, s, k := &b.Workspace, &b.Source, &b.AdminKey
	w.CreatedAt, s.CreatedAt, k.CreatedAt = now, now, now
	res, err := tx.ExecContext(ctx, `INSERT INTO workspaces (name, index_key, created_at) VALUES (?, ?, ?)`, w.Name, w.IndexKey, ms(now))
	if err != nil {
		if strings.Contains(err.Error(), "UNIQUE constraint failed") {
			return false, nil
		}
		return false, fmt.Errorf("sqlite: bootstrap: workspace: %w", err)
	}
	w.ID, _ = res.LastInsertId()
	s.WorkspaceID, k.WorkspaceID = w.ID, w.ID
	res, err = tx.ExecContext(ctx, `INSERT INTO sources (workspace_id, name, write_key_hash, allowed_origins, created_at) VALUES (?, ?, ?, ?, ?)`,
		w.ID, s.Name, s.WriteKeyHash, strings.Join(s.AllowedOrigins, " "), ms(now))
	if err != nil {
		return false, fmt.Errorf("sqlite: bootstrap: source: %w", err)
	}
	s.ID, _ = res.LastInsertId()
	res, err = tx.ExecContext(ctx, `INSERT INTO api_keys (workspace_id, name, secret_hash, roles, purposes, created_at) VALUES (?, ?, ?, ?, ?, ?)`,
		w.ID, k.Name, k.SecretHash, strings.Join(k.Roles, " "), strings.Join(k.Purposes, " "), ms(now))
	if err != nil {
		return false, fmt.Errorf("sqlite: bootstrap: api key: %w", err)
	}
	k.ID, _ = res.LastInsertId()
	if err := tx.Commit(); err != nil {
		return false, fmt.Errorf("sqlite: bootstrap: %w", err)
	}
	return true, nil
}

// ListWorkspaces returns every workspace.
func (db *DB) ListWorkspaces(ctx context.Context) ([]*trustloop.Workspace, error) {
	rows, err := db.read.QueryContext(ctx, `SELECT id, name, index_key, created_at FROM workspaces ORDER BY id`)
	if err != nil {
		return nil, fmt.Errorf("sqlite: list workspaces: %w", err)
	}
	defer rows.Close()
	var out []*trustloop.Workspace
	for rows.Next() {
		w := &trustloop.Workspace{}
		var created int64
		if err := rows.Scan(&w.ID, &w.Name, &w.IndexKey, &created); err != nil {
			return nil, fmt.Errorf("sqlite: list workspaces: %w", err)
		}
		w.CreatedAt = fromMS(created)
		out = append(out, w)
	}
	return out, rows.Err()
}

// FindWorkspace returns a workspace by id.
func (db *DB) FindWorkspace(ctx context.Context, id int64) (*trustloop.Workspace, error) {
	w := &trustloop.Workspace{}
	var created int64
	err := db.read.QueryRowContext(ctx, `SELECT id, name, index_key, created_at FROM workspaces WHERE id = ?`, id).
		Scan(&w.ID, &w.Name, &w.IndexKey, &created)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, trustloop.Errorf(trustloop.ENOTFOUND, "Workspace not found.").
			WithHint("The id is wrong or the workspace was deleted; an API key works on its own workspace.")
	} else if err != nil {
		return nil, fmt.Errorf("sqlite: find workspace: %w", err)
	}
	w.CreatedAt = fromMS(created)
	return w, nil
}

// FindSourceByWriteKeyHash returns the source of a write key.
func (db *DB) FindSourceByWriteKeyHash(ctx context.Context, hash []byte) (*trustloop.Source, error) {
	s := &trustloop.Source{}
	var origins string
	var created int64
	err := db.read.QueryRowContext(ctx, `SELECT id, workspace_id, name, write_key_hash, allowed_origins, created_at
		FROM sources WHERE write_key_hash = ?`, hash).Scan(&s.ID, &s.WorkspaceID, &s.Name, &s.WriteKeyHash, &origins, &created)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, trustloop.Errorf(trustloop.ENOTFOUND, "Source not found.").
			WithHint("Check the source id: the console lists the sources of the workspace.")
	} else if err != nil {
		return nil, fmt.Errorf("sqlite: find source: %w", err)
	}
	s.AllowedOrigins = strings.Fields(origins)
	s.CreatedAt = fromMS(created)
	return s, nil
}

// Stats counts rows (live profiles only).
func (db *DB) Stats(ctx context.Context) (trustloop.Stats, error) {
	var st trustloop.Stats
	for _, c := range []struct {
		table string
		dst   *int64
	}{
		{"workspaces", &st.Workspaces}, {"sources", &st.Sources}, {"events", &st.Events}, {"subject_keys", &st.SubjectKeys},
		{"profiles WHERE merged_into = 0", &st.Profiles}, {"identities", &st.Identities},
		{"consent_records", &st.ConsentRecords},
	} {
		if err := db.read.QueryRowContext(ctx, `SELECT COUNT(*) FROM `+c.table).Scan(c.dst); err != nil {
			return st, fmt.Errorf("sqlite: stats: %w", err)
		}
	}
	if err := db.flushAudit(ctx); err != nil {
		return st, err
	}
	if err := db.read.QueryRowContext(ctx, `SELECT COALESCE(SUM(size), 0) FROM audit_heads`).Scan(&st.AuditEntries); err != nil {
		return st, fmt.Errorf("sqlite: stats: %w", err)
	}
	return st, nil
}

// FindAPIKeyBySecretHash returns an API key by the hash of its secret.
func (db *DB) FindAPIKeyBySecretHash(ctx context.Context, hash []byte) (*trustloop.APIKey, error) {
	k := &trustloop.APIKey{}
	var roles, purposes string
	var created int64
	var revoked sql.NullInt64
	err := db.queryRow(ctx, `SELECT id, workspace_id, name, secret_hash, roles, purposes, created_at, revoked_at
		FROM api_keys WHERE secret_hash = ?`, hash).Scan(&k.ID, &k.WorkspaceID, &k.Name, &k.SecretHash, &roles, &purposes, &created, &revoked)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, trustloop.Errorf(trustloop.ENOTFOUND, "API key not found.").
			WithHint("List the keys with GET /v1/api-keys.")
	} else if err != nil {
		return nil, fmt.Errorf("sqlite: find api key: %w", err)
	}
	k.Roles, k.Purposes = strings.Fields(roles), strings.Fields(purposes)
	k.CreatedAt = fromMS(created)
	if revoked.Valid {
		t := fromMS(revoked.Int64)
		k.RevokedAt = &t
	}
	return k, nil
}

// FindSetting returns a workspace setting.
func (db *DB) FindSetting(ctx context.Context, workspaceID int64, name string) ([]byte, int64, error) {
	var v []byte
	var version int64
	err := db.read.QueryRowContext(ctx, `SELECT value, version FROM settings WHERE workspace_id = ? AND name = ?`, workspaceID, name).Scan(&v, &version)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, 0, trustloop.Errorf(trustloop.ENOTFOUND, "The setting %q was never set.", name).
			WithHint("Nothing was saved under this name yet, so the defaults apply; save it first.")
	} else if err != nil {
		return nil, 0, fmt.Errorf("sqlite: find setting: %w", err)
	}
	return v, version, nil
}

// PutSetting stores a workspace setting if its version is still version.
func (db *DB) PutSetting(ctx context.Context, workspaceID int64, name string, value []byte, version int64) (int64, error) {
	db.mu.Lock()
	defer db.mu.Unlock()
	now := ms(db.Now())
	var res sql.Result
	var err error
	if version == 0 {
		res, err = db.write.ExecContext(ctx, `INSERT INTO settings (workspace_id, name, value, version, updated_at) VALUES (?, ?, ?, 1, ?)
			ON CONFLICT DO NOTHING`, workspaceID, name, value, now)
	} else {
		res, err = db.write.ExecContext(ctx, `UPDATE settings SET value = ?, version = version + 1, updated_at = ?
			WHERE workspace_id = ? AND name = ? AND version = ?`, value, now, workspaceID, name, version)
	}
	if err != nil {
		return 0, fmt.Errorf("sqlite: put setting: %w", err)
	}
	if n, _ := res.RowsAffected(); n != 1 {
		return 0, trustloop.Errorf(trustloop.ECONFLICT, "The setting %q was changed meanwhile.", name).
			WithHint("Read it again (GET) and send your change with the version you read.")
	}
	return version + 1, nil
}

// CreateAPIKey stores a new API key.
func (db *DB) CreateAPIKey(ctx context.Context, k *trustloop.APIKey) error {
	k.CreatedAt = db.Now().UTC().Truncate(time.Millisecond)
	res, err := db.write.ExecContext(ctx, `INSERT INTO api_keys (workspace_id, name, secret_hash, roles, purposes, created_at) VALUES (?, ?, ?, ?, ?, ?)`,
		k.WorkspaceID, k.Name, k.SecretHash, strings.Join(k.Roles, " "), strings.Join(k.Purposes, " "), ms(k.CreatedAt))
	if err != nil {
		return fmt.Errorf("sqlite: create api key: %w", err)
	}
	k.ID, _ = res.LastInsertId()
	return nil
}

// ListAPIKeys returns a workspace's keys.
func (db *DB) ListAPIKeys(ctx context.Context, workspaceID int64) ([]*trustloop.APIKey, error) {
	rows, err := db.read.QueryContext(ctx, `SELECT id, workspace_id, name, secret_hash, roles, purposes, created_at, revoked_at
		FROM api_keys WHERE workspace_id = ? ORDER BY id`, workspaceID)
	if err != nil {
		return nil, fmt.Errorf("sqlite: list api keys: %w", err)
	}
	defer rows.Close()
	var out []*trustloop.APIKey
	for rows.Next() {
		k := &trustloop.APIKey{}
		var roles, purposes string
		var created int64
		var revoked sql.NullInt64
		if err := rows.Scan(&k.ID, &k.WorkspaceID, &k.Name, &k.SecretHash, &roles, &purposes, &created, &revoked); err != nil {
			return nil, fmt.Errorf("sqlite: list api keys: %w", err)
		}
		k.Roles, k.Purposes, k.CreatedAt = strings.Fields(roles), strings.Fields(purposes), fromMS(created)
		if revoked.Valid {
			t := fromMS(revoked.Int64)
			k.RevokedAt = &t
		}
		out = append(out, k)
	}
	return out, rows.Err()
}

// RevokeAPIKey revokes a key unless it is the workspace's last active admin key.
func (db *DB) RevokeAPIKey(ctx context.Context, workspaceID, id int64, at time.Time) error {
	db.mu.Lock()
	defer db.mu.Unlock()
	tx, err := db.write.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("sqlite: revoke api key: %w", err)
	}
	defer tx.Rollback()
	var roles string
	var revoked sql.NullInt64
	err = tx.QueryRowContext(ctx, `SELECT roles, revoked_at FROM api_keys WHERE workspace_id = ? AND id = ?`, workspaceID, id).Scan(&roles, &revoked)
	if errors.Is(err, sql.ErrNoRows) {
		return trustloop.Errorf(trustloop.ENOTFOUND, "No API key with this id in the workspace.").WithHint("GET /v1/api-keys lists them.")
	} else if err != nil {
		return fmt.Errorf("sqlite: revoke api key: %w", err)
	}
	if revoked.Valid {
		return nil
	}
	if slices.Contains(strings.Fields(roles), trustloop.RoleAdmin) {
		var admins int
		if err := tx.QueryRowContext(ctx, `SELECT COUNT(*) FROM api_keys WHERE workspace_id = ? AND revoked_at IS NULL
			AND (' ' || roles || ' ') LIKE '% admin %'`, workspaceID).Scan(&admins); err != nil {
			return fmt.Errorf("sqlite: revoke api key: %w", err)
		}
		if admins <= 1 {
			return trustloop.Errorf(trustloop.ECONFLICT, "This is the workspace's last active admin key.").
				WithHint("Create another admin key first, then revoke this one.")
		}
	}
	if _, err := tx.ExecContext(ctx, `UPDATE api_keys SET revoked_at = ? WHERE workspace_id = ? AND id = ?`, ms(at), workspaceID, id); err != nil {
		return fmt.Errorf("sqlite: revoke api key: %w", err)
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("sqlite: revoke api key: %w", err)
	}
	return nil
}
