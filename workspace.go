package trustloop

import (
	"context"
	"time"
)

// Workspace is a tenant. Everything else belongs to exactly one.
type Workspace struct {
	ID   int64
	Name string
	// IndexKey is the workspace's blind-index key, wrapped by the master key.
	IndexKey  []byte
	CreatedAt time.Time
}

// Source is a channel sending events, with its (public) write key.
type Source struct {
	ID          int64
	WorkspaceID int64
	Name        string
	// WriteKeyHash is SHA-256 of the write key; the key itself is never stored.
	WriteKeyHash []byte
	// AllowedOrigins lists the browser origins allowed by CORS; empty allows any.
	AllowedOrigins []string
	CreatedAt      time.Time
}

// Roles an API key may hold.
const (
	RoleAdmin   = "admin"
	RoleReader  = "reader"
	RolePrivacy = "privacy"
)

// APIKey is a server-side secret with roles and the purposes it may read for.
type APIKey struct {
	ID          int64
	WorkspaceID int64
	Name        string
	// SecretHash is SHA-256 of the secret; the secret itself is never stored.
	SecretHash []byte
	Roles      []string
	Purposes   []string
	CreatedAt  time.Time
	RevokedAt  *time.Time
}

// Bootstrap describes the first workspace made on an empty store.
type Bootstrap struct {
	Workspace Workspace
	Source    Source
	AdminKey  APIKey
}

// Stats counts what a store holds; `trustloop stats` prints it.
type Stats struct {
	Workspaces     int64 `json:"workspaces"`
	Sources        int64 `json:"sources"`
	Events         int64 `json:"events"`
	SubjectKeys    int64 `json:"subject_keys"`
	Profiles       int64 `json:"profiles"`
	Identities     int64 `json:"identities"`
	ConsentRecords int64 `json:"consent_records"`
	AuditEntries   int64 `json:"audit_entries"`
}

// WorkspaceStore keeps tenants, sources and keys.
type WorkspaceStore interface {
	// Bootstrap creates b's workspace, source and admin key if the store holds no
	// workspace yet, in one transaction, filling in their IDs. It reports whether it
	// created them; on a store that already has a workspace it changes nothing.
	Bootstrap(ctx context.Context, b *Bootstrap) (created bool, err error)

	// CreateWorkspace creates another workspace with b's source and admin key,
	// filling in their IDs; ECONFLICT if the name is taken.
	CreateWorkspace(ctx context.Context, b *Bootstrap) error

	// ListWorkspaces returns every workspace, by id.
	ListWorkspaces(ctx context.Context) ([]*Workspace, error)

	// FindWorkspace returns the workspace; ENOTFOUND if there is none.
	FindWorkspace(ctx context.Context, id int64) (*Workspace, error)

	// FindSourceByWriteKeyHash returns the source with this write key hash;
	// ENOTFOUND if there is none.
	FindSourceByWriteKeyHash(ctx context.Context, hash []byte) (*Source, error)

	// FindAPIKeyBySecretHash returns the API key with this secret hash (revoked
	// ones too: the caller refuses them); ENOTFOUND if there is none.
	FindAPIKeyBySecretHash(ctx context.Context, hash []byte) (*APIKey, error)

	// CreateAPIKey stores a new key (its secret hashed), filling in ID and
	// CreatedAt.
	CreateAPIKey(ctx context.Context, k *APIKey) error

	// ListAPIKeys returns a workspace's keys, revoked ones too, by id.
	ListAPIKeys(ctx context.Context, workspaceID int64) ([]*APIKey, error)

	// RevokeAPIKey marks a key of the workspace revoked at the given time;
	// ENOTFOUND if the workspace has no such key, ECONFLICT if it is the
	// workspace's last active admin key (a workspace must keep a way in).
	RevokeAPIKey(ctx context.Context, workspaceID, id int64, at time.Time) error

	// Stats counts what the store holds.
	Stats(ctx context.Context) (Stats, error)
}

// SettingStore keeps a workspace's named settings documents (JSON), versioned.
type SettingStore interface {
	// FindSetting returns a setting's value and version; ENOTFOUND if it was
	// never set.
	FindSetting(ctx context.Context, workspaceID int64, name string) (value []byte, version int64, err error)
	// PutSetting stores a setting if its current version is version (0: not set
	// yet) and returns the new version; ECONFLICT if it changed meanwhile.
	PutSetting(ctx context.Context, workspaceID int64, name string, value []byte, version int64) (int64, error)
}

// Store is everything a storage backend provides.
type Store interface {
	EventStore
	WorkspaceStore
	ProfileStore
	SettingStore
	ConsentStore
	AuditStore
	PrivacyStore
	JobStore
	ErasureStore
	OperatorStore
	CountStore
	// Ping reports whether the store is open and usable.
	Ping(ctx context.Context) error
	Close() error
}
