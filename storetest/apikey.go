package storetest

import (
	"context"
	"crypto/sha256"
	"slices"
	"testing"
	"time"

	"github.com/trustloop/trustloop"
)

// testAPIKeys checks creation, listing per workspace, revocation and that the
// last active admin key cannot be revoked.
func testAPIKeys(t *testing.T, s trustloop.Store) {
	ctx := context.Background()
	b := MustBootstrap(t, s)
	ws := b.Workspace.ID
	h := sha256.Sum256(random(16))
	reader := &trustloop.APIKey{WorkspaceID: ws, Name: "reporting", SecretHash: h[:], Roles: []string{trustloop.RoleReader},
		Purposes: []string{"analytics"}}
	if err := s.CreateAPIKey(ctx, reader); err != nil {
		t.Fatal(err)
	}
	if reader.ID == 0 || reader.CreatedAt.IsZero() {
		t.Fatalf("CreateAPIKey did not fill in ID and CreatedAt: %+v", reader)
	}
	got, err := s.FindAPIKeyBySecretHash(ctx, h[:])
	if err != nil || got.ID != reader.ID || !slices.Equal(got.Roles, reader.Roles) || !slices.Equal(got.Purposes, reader.Purposes) || got.RevokedAt != nil {
		t.Fatalf("FindAPIKeyBySecretHash = %+v, %v", got, err)
	}
	keys, err := s.ListAPIKeys(ctx, ws)
	if err != nil || len(keys) != 2 || keys[0].ID != b.AdminKey.ID || keys[1].ID != reader.ID {
		t.Fatalf("ListAPIKeys = %v, %v; want the admin and the reader key", keys, err)
	}
	if others, err := s.ListAPIKeys(ctx, other(b)); err != nil || len(others) != 0 {
		t.Fatalf("another workspace lists %d keys, %v", len(others), err)
	}

	at := time.UnixMilli(1_750_000_000_000).UTC()
	if err := s.RevokeAPIKey(ctx, other(b), reader.ID, at); trustloop.ErrorCode(err) != trustloop.ENOTFOUND {
		t.Fatalf("revoking through another workspace: %v, want not_found", err)
	}
	if err := s.RevokeAPIKey(ctx, ws, reader.ID, at); err != nil {
		t.Fatal(err)
	}
	if err := s.RevokeAPIKey(ctx, ws, reader.ID, at.Add(time.Hour)); err != nil {
		t.Fatalf("revoking twice: %v", err)
	}
	got, _ = s.FindAPIKeyBySecretHash(ctx, h[:])
	if got.RevokedAt == nil || !got.RevokedAt.Equal(at) {
		t.Fatalf("revoked key reads back with RevokedAt %v, want %v", got.RevokedAt, at)
	}
	if err := s.RevokeAPIKey(ctx, ws, b.AdminKey.ID, at); trustloop.ErrorCode(err) != trustloop.ECONFLICT {
		t.Fatalf("revoking the last admin key: %v, want conflict", err)
	}
	h2 := sha256.Sum256(random(16))
	admin2 := &trustloop.APIKey{WorkspaceID: ws, Name: "second admin", SecretHash: h2[:], Roles: []string{trustloop.RoleAdmin}}
	if err := s.CreateAPIKey(ctx, admin2); err != nil {
		t.Fatal(err)
	}
	if err := s.RevokeAPIKey(ctx, ws, b.AdminKey.ID, at); err != nil {
		t.Fatalf("revoking an admin key while another remains: %v", err)
	}
	if err := s.RevokeAPIKey(ctx, ws, 1<<40, at); trustloop.ErrorCode(err) != trustloop.ENOTFOUND {
		t.Fatalf("revoking an unknown key: %v", err)
	}
}

// testCreateWorkspace checks a second workspace beside the first and a taken name.
func testCreateWorkspace(t *testing.T, s trustloop.Store) {
	ctx := context.Background()
	first := MustBootstrap(t, s)
	second := Bootstrap("second")
	if err := s.CreateWorkspace(ctx, second); err != nil {
		t.Fatal(err)
	}
	if second.Workspace.ID == first.Workspace.ID || second.Source.WorkspaceID != second.Workspace.ID || second.AdminKey.WorkspaceID != second.Workspace.ID {
		t.Fatalf("second workspace ids: %+v", second)
	}
	if k, err := s.FindAPIKeyBySecretHash(ctx, second.AdminKey.SecretHash); err != nil || k.WorkspaceID != second.Workspace.ID {
		t.Fatalf("second admin key: %+v, %v", k, err)
	}
	if err := s.CreateWorkspace(ctx, Bootstrap("second")); trustloop.ErrorCode(err) != trustloop.ECONFLICT {
		t.Fatalf("a taken name: %v, want conflict", err)
	}
	if all, _ := s.ListWorkspaces(ctx); len(all) != 2 {
		t.Fatalf("%d workspaces, want 2", len(all))
	}
	if created, err := s.Bootstrap(ctx, Bootstrap("third")); created || err != nil {
		t.Fatalf("Bootstrap on a store with workspaces = %v, %v", created, err)
	}
}
