package trustloop

import (
	"context"
	"encoding/json"
	"time"
)

// ProfileRecord is a unified customer profile as stored: routing columns in the
// clear and the profile's state (traits and computed traits, see the profile
// package) sealed under the data key of the subject that created it.
type ProfileRecord struct {
	ID          int64
	WorkspaceID int64
	// KeyID names the subject key State is sealed with.
	KeyID int64
	State []byte
	// AppliedSeq is the log position of the newest event State reflects: replaying
	// the log after a crash skips events up to it.
	AppliedSeq int64
	// MergedInto is the surviving profile once this one was merged away (the row
	// stays so that the merge can be undone); 0 for a live profile.
	MergedInto int64
	CreatedAt  time.Time
	UpdatedAt  time.Time
}

// IdentityRecord is one identifier of a profile as stored: found by its blind
// index; its value sealed (so the profile API can show it) under a subject key.
type IdentityRecord struct {
	WorkspaceID int64
	Blind       []byte
	Type        string // the identifier type: not personal data
	ProfileID   int64
	KeyID       int64
	Sealed      []byte
	FirstSeen   time.Time
}

// MergeRecord says that profile From was merged into Into by an event: which
// identifiers linked them and which moved. Identifiers are named by blind index.
type MergeRecord struct {
	ID          int64
	WorkspaceID int64
	Into        int64
	From        int64
	Moved       [][]byte
	Linking     [][]byte
	MessageHash []byte
	At          time.Time
	// SplitAt is set once the merge was undone.
	SplitAt *time.Time
}

// ProjectionChanges are profile-side writes: those of a group commit, made in the
// same transaction as its events (new profiles, identities, merges), and those the
// projection writes behind (updated profile state, timeline, memberships).
type ProjectionChanges struct {
	Profiles   []ProfileRecord  // inserted, or state and positions replaced (id, workspace and created_at stay)
	Identities []IdentityRecord // inserted, or moved to another profile
	Merges     []MergeRecord    // inserted (ID assigned by the caller)
	// Members replaces the audience memberships of the listed profiles.
	Members map[int64][]int64
	// Timeline appends log positions to subject keys' timelines.
	Timeline []TimelineRun
	// UptoSeq, when not 0, records that every event up to it is reflected in what
	// is stored.
	UptoSeq int64
	// TimelineUpto, when not 0, records that every event up to it has its
	// position in the stored timelines (timelines are written behind longer than
	// profile state, and rebuilt from EventKeys alone after a crash).
	TimelineUpto int64
	// Behind marks a flush's writes: a profile row is replaced only if the stored
	// one is not newer (a group commit may have written it since the flush took
	// its copy: a merge writes both profiles in its commit) — never a row merged
	// away since, never one whose applied_seq is higher.
	Behind bool
}

// EventKey is an event's log position and subject key.
type EventKey struct {
	Seq   int64
	KeyID int64
}

// TimelineRun is a batch of one subject key's event positions, ascending.
type TimelineRun struct {
	KeyID int64
	Seqs  []int64
}

// Projector computes a group's projection changes inside the commit. fresh are
// the indexes (into CommitBatch.Events) of the events being stored, repeats left
// out, and seqs their log positions. It may read the store; it must not write it.
type Projector func(ctx context.Context, fresh []int, seqs []int64) (*ProjectionChanges, error)

// Audience is a named rule over a profile's traits and computed traits.
type Audience struct {
	ID          int64     `json:"id"`
	WorkspaceID int64     `json:"-"`
	Name        string    `json:"name"`
	Rule        string    `json:"rule"`
	Description string    `json:"description,omitempty"`
	CreatedAt   time.Time `json:"created_at"`
	UpdatedAt   time.Time `json:"updated_at"`
}

// ProfileStore keeps identities, profiles, merges and audiences.
type ProfileStore interface {
	// FindIdentities returns the stored identities of the blind indexes, keyed by
	// string(blind); unknown ones are missing.
	FindIdentities(ctx context.Context, workspaceID int64, blinds [][]byte) (map[string]IdentityRecord, error)
	// ProfileIdentities returns a profile's identities, by first_seen.
	ProfileIdentities(ctx context.Context, workspaceID, profileID int64) ([]IdentityRecord, error)
	// FindProfiles returns the stored profiles of the ids, keyed by id; unknown
	// ones are missing. Merged-away profiles are returned too (MergedInto set).
	FindProfiles(ctx context.Context, workspaceID int64, ids []int64) (map[int64]ProfileRecord, error)
	// ListProfiles returns live profiles with id > after, by id; when audienceID
	// is not 0, only its members.
	ListProfiles(ctx context.Context, workspaceID, audienceID, after int64, limit int) ([]ProfileRecord, error)
	// ProfileEvents returns the events of the keys' stored timelines, newest
	// first, with Seq < before (0: from the newest).
	ProfileEvents(ctx context.Context, workspaceID int64, keyIDs []int64, before int64, limit int) ([]StoredEvent, error)
	// TimelineSeqs returns the positions the keys' stored timelines list,
	// ascending, each once (the events may be gone since).
	TimelineSeqs(ctx context.Context, keyIDs []int64) ([]int64, error)
	// EventsBySeq returns the workspace's events at the given log positions
	// (missing ones left out), in Seq order.
	EventsBySeq(ctx context.Context, workspaceID int64, seqs []int64) ([]StoredEvent, error)
	// WriteProjection writes changes in a transaction of their own (the
	// projection's writes behind the group commits).
	WriteProjection(ctx context.Context, c *ProjectionChanges) error
	// ProjectedUpto returns the highest UptoSeq written (it never moves back).
	ProjectedUpto(ctx context.Context) (int64, error)
	// TimelineUpto returns the highest TimelineUpto written (it never moves
	// back).
	TimelineUpto(ctx context.Context) (int64, error)
	// EventKeys returns the log positions and subject keys of the workspace's
	// events after a position, in order: what a timeline needs, without the
	// payloads.
	EventKeys(ctx context.Context, workspaceID, after int64, limit int) ([]EventKey, error)
	// FindMerge returns a merge record; ENOTFOUND if none.
	FindMerge(ctx context.Context, workspaceID, id int64) (*MergeRecord, error)
	// ProfileMerges returns the merges into or out of a profile, newest first.
	ProfileMerges(ctx context.Context, workspaceID, profileID int64) ([]MergeRecord, error)
	// Separated reports whether a split said the two profiles must stay apart.
	Separated(ctx context.Context, workspaceID, a, b int64) (bool, error)
	// Split undoes a merge in one transaction: the moved identities go back to
	// From, which is live again with fromState; Into gets intoState; the pair is
	// marked separated. ECONFLICT if the merge was split already.
	Split(ctx context.Context, m *MergeRecord, into, from ProfileRecord) error

	// CreateAudience stores a new audience (ID assigned); ECONFLICT if the name is
	// taken in the workspace.
	CreateAudience(ctx context.Context, a *Audience) error
	// UpdateAudience replaces name, rule and description; ENOTFOUND, ECONFLICT.
	UpdateAudience(ctx context.Context, a *Audience) error
	// DeleteAudience removes an audience and its memberships; ENOTFOUND.
	DeleteAudience(ctx context.Context, workspaceID, id int64) error
	// ListAudiences returns the workspace's audiences by id.
	ListAudiences(ctx context.Context, workspaceID int64) ([]*Audience, error)
	// FindAudience returns one; ENOTFOUND.
	FindAudience(ctx context.Context, workspaceID, id int64) (*Audience, error)
	// ProfileAudiences returns the ids of the audiences a profile belongs to.
	ProfileAudiences(ctx context.Context, workspaceID, profileID int64) ([]int64, error)
	// SetMembers replaces the memberships of the given profiles (used when an
	// audience's rule changes and every profile is evaluated again).
	SetMembers(ctx context.Context, workspaceID int64, members map[int64][]int64) error
}

// TimelineEvent is one event of a profile as the API shows it.
type TimelineEvent struct {
	Seq        int64     `json:"-"`
	Type       string    `json:"type"`
	ReceivedAt time.Time `json:"received_at"`
	Timestamp  time.Time `json:"timestamp"`
	Source     int64     `json:"source_id"`
	// Purposes are the purposes the event was collected for.
	Purposes []string        `json:"purposes,omitempty"`
	Message  json.RawMessage `json:"message"`
}
