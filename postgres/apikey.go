package postgres

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/trustloop/trustloop"
)

// FindAPIKeyBySecretHash returns an API key by the hash of its secret.
func (db *DB) FindAPIKeyBySecretHash(ctx context.Context, hash []byte) (*trustloop.APIKey, error) {
	k := &trustloop.APIKey{}
	var roles, purposes string
	var created int64
	var revoked *int64
	err := db.pool.QueryRow(ctx, `SELECT id, workspace_id, name, secret_hash, roles, purposes, created_at, revoked_at
		FROM api_keys WHERE secret_hash = $1`, hash).Scan(&k.ID, &k.WorkspaceID, &k.Name, &k.SecretHash, &roles, &purposes, &created, &revoked)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, trustloop.Errorf(trustloop.ENOTFOUND, "API key not found.").
			WithHint("List the keys with GET /v1/api-keys.")
	} else if err != nil {
		return nil, fmt.Errorf("postgres: find api key: %w", err)
	}
	k.Roles, k.Purposes = strings.Fields(roles), strings.Fields(purposes)
	k.CreatedAt = fromMS(created)
	if revoked != nil {
		t := fromMS(*revoked)
		k.RevokedAt = &t
	}
	return k, nil
}

// CreateAPIKey stores a new API key.
func (db *DB) CreateAPIKey(ctx context.Context, k *trustloop.APIKey) error {
	k.CreatedAt = db.Now().UTC().Truncate(time.Millisecond)
	err := db.pool.QueryRow(ctx, `INSERT INTO api_keys (workspace_id, name, secret_hash, roles, purposes, created_at) VALUES ($1, $2, $3, $4, $5, $6) RETURNING id`,
		k.WorkspaceID, k.Name, k.SecretHash, strings.Join(k.Roles, " "), strings.Join(k.Purposes, " "), ms(k.CreatedAt)).Scan(&k.ID)
	if err != nil {
		return fmt.Errorf("postgres: create api key: %w", err)
	}
	return nil
}

// ListAPIKeys returns a workspace's keys.
func (db *DB) ListAPIKeys(ctx context.Context, workspaceID int64) ([]*trustloop.APIKey, error) {
	rows, err := db.pool.Query(ctx, `SELECT id, workspace_id, name, secret_hash, roles, purposes, created_at, revoked_at
		FROM api_keys WHERE workspace_id = $1 ORDER BY id`, workspaceID)
	if err != nil {
		return nil, fmt.Errorf("postgres: list api keys: %w", err)
	}
	defer rows.Close()
	var out []*trustloop.APIKey
	for rows.Next() {
		k := &trustloop.APIKey{}
		var roles, purposes string
		var created int64
		var revoked *int64
		if err := rows.Scan(&k.ID, &k.WorkspaceID, &k.Name, &k.SecretHash, &roles, &purposes, &created, &revoked); err != nil {
			return nil, fmt.Errorf("postgres: list api keys: %w", err)
		}
		k.Roles, k.Purposes, k.CreatedAt = strings.Fields(roles), strings.Fields(purposes), fromMS(created)
		if revoked != nil {
			t := fromMS(*revoked)
			k.RevokedAt = &t
		}
		out = append(out, k)
	}
	return out, rows.Err()
}

// RevokeAPIKey revokes a key unless it is the workspace's last active admin
// key. The workspace's active admin keys are locked first, so two nodes
// revoking the last two admin keys at once cannot both succeed.
func (db *DB) RevokeAPIKey(ctx context.Context, workspaceID, id int64, at time.Time) error {
	return retry(ctx, func() error {
		tx, err := db.pool.Begin(ctx)
		if err != nil {
			return fmt.Errorf("postgres: revoke api key: %w", err)
		}
		defer tx.Rollback(ctx)
		rows, err := tx.Query(ctx, `SELECT id, roles FROM api_keys WHERE workspace_id = $1 AND revoked_at IS NULL ORDER BY id FOR UPDATE`, workspaceID)
		if err != nil {
			return fmt.Errorf("postgres: revoke api key: %w", err)
		}
		admins, found, isAdmin := 0, false, false
		for rows.Next() {
			var kid int64
			var roles string
			if err := rows.Scan(&kid, &roles); err != nil {
				rows.Close()
				return fmt.Errorf("postgres: revoke api key: %w", err)
			}
			admin := slices.Contains(strings.Fields(roles), trustloop.RoleAdmin)
			if admin {
				admins++
			}
			if kid == id {
				found, isAdmin = true, admin
			}
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return fmt.Errorf("postgres: revoke api key: %w", err)
		}
		if !found {
			var exists bool
			if err := tx.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM api_keys WHERE workspace_id = $1 AND id = $2)`, workspaceID, id).Scan(&exists); err != nil {
				return fmt.Errorf("postgres: revoke api key: %w", err)
			}
			if exists {
				return nil // already revoked
			}
			return trustloop.Errorf(trustloop.ENOTFOUND, "No API key with this id in the workspace.").WithHint("GET /v1/api-keys lists them.")
		}
		if isAdmin && admins <= 1 {
			return trustloop.Errorf(trustloop.ECONFLICT, "This is the workspace's last active admin key.").
				WithHint("Create another admin key first, then revoke this one.")
		}
		if _, err := tx.Exec(ctx, `UPDATE api_keys SET revoked_at = $1 WHERE workspace_id = $2 AND id = $3`, ms(at), workspaceID, id); err != nil {
			return fmt.Errorf("postgres: revoke api key: %w", err)
		}
		return tx.Commit(ctx)
	})
}
