package postgres

import (
	"context"
	"errors"
	"fmt"
	"strings"

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
		return nil, trustloop.Errorf(trustloop.ENOTFOUND, "API key not found.")
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
