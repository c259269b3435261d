package postgres_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/trustloop/trustloop/postgres/pgtest"

	"github.com/trustloop/trustloop"
	"github.com/trustloop/trustloop/postgres"
	"github.com/trustloop/trustloop/projection"
	"github.com/trustloop/trustloop/storetest"
)

// MustOpen opens a store in a fresh schema of the database named by
// TRUSTLOOP_TEST_DATABASE_URL, dropped when the test ends. Without that variable
// the test is skipped with a line saying so.
func MustOpen(tb testing.TB) *postgres.DB {
	tb.Helper()
	db, err := postgres.Open(context.Background(), mustSchema(tb))
	if err != nil {
		tb.Fatal(err)
	}
	return db
}

func mustSchema(tb testing.TB) string { return pgtest.Schema(tb, "PostgreSQL suite") }

func TestConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) trustloop.Store { return MustOpen(t) })
}

func TestBadURL(t *testing.T) {
	_, err := postgres.Open(context.Background(), "postgres://%zz")
	if trustloop.ErrorCode(err) != trustloop.EINVALID {
		t.Fatalf("err = %v, want invalid", err)
	}
}

// TestProjectionAcrossNodes: two nodes commit overlapping groups at once. The
// unique constraint decides which commit stores each event, and the projector of
// that commit, and only it, must be told the event is new; its changes must be
// committed with it.
func TestProjectionAcrossNodes(t *testing.T) {
	url := mustSchema(t)
	ctx := context.Background()
	var nodes [2]*postgres.DB
	for i := range nodes {
		db, err := postgres.Open(ctx, url)
		if err != nil {
			t.Fatal(err)
		}
		defer db.Close()
		nodes[i] = db
	}
	b := storetest.MustBootstrap(t, nodes[0])
	const rounds, size = 20, 50
	now := time.Now().UTC().Truncate(time.Millisecond)
	for r := 0; r < rounds; r++ {
		// The nodes' batches overlap in their middle third, in opposite orders:
		// each node surely stores its own third, and the middle goes to whichever
		// commit gets there first, so a commit's returned rows are a mix.
		events := make([]trustloop.StoredEvent, size)
		for i := range events {
			events[i] = trustloop.StoredEvent{WorkspaceID: b.Workspace.ID, SourceID: b.Source.ID, MessageHash: random(16),
				KeyID: int64(i + 1), Type: trustloop.EventTrack, ReceivedAt: now, Timestamp: now, Payload: random(40)}
		}
		var fresh [2]map[string]bool
		var stored [2]int
		var errs [2]error
		var wg sync.WaitGroup
		for n := range nodes {
			batch := slices.Clone(events[:2*size/3])
			if n == 1 {
				batch = slices.Clone(events[size/3:])
				slices.Reverse(batch)
			}
			fresh[n] = map[string]bool{}
			wg.Add(1)
			go func() {
				defer wg.Done()
				stored[n], errs[n] = nodes[n].AppendEvents(ctx, &trustloop.CommitBatch{Events: batch,
					Project: func(_ context.Context, idx []int, seqs []int64) (*trustloop.ProjectionChanges, error) {
						// A retried commit calls the projector again: the last call is the one committed.
						clear(fresh[n])
						c := &trustloop.ProjectionChanges{}
						for j, i := range idx {
							fresh[n][string(batch[i].MessageHash)] = true
							c.Profiles = append(c.Profiles, trustloop.ProfileRecord{ID: int64(r*size) + batch[i].KeyID,
								WorkspaceID: b.Workspace.ID, KeyID: int64(n), State: batch[i].MessageHash, AppliedSeq: seqs[j],
								CreatedAt: now, UpdatedAt: now})
						}
						return c, nil
					}})
			}()
		}
		wg.Wait()
		if errs[0] != nil || errs[1] != nil {
			t.Fatalf("round %d: %v, %v", r, errs[0], errs[1])
		}
		if stored[0]+stored[1] != size || stored[0] != len(fresh[0]) || stored[1] != len(fresh[1]) {
			t.Fatalf("round %d: stored %v, projected %d and %d; want %d in all, each node's count matching its projection",
				r, stored, len(fresh[0]), len(fresh[1]), size)
		}
		ids := make([]int64, size)
		for i := range ids {
			ids[i] = int64(r*size + i + 1)
		}
		profiles, err := nodes[0].FindProfiles(ctx, b.Workspace.ID, ids)
		if err != nil || len(profiles) != size {
			t.Fatalf("round %d: %d profiles, %v; want %d", r, len(profiles), err, size)
		}
		for _, e := range events {
			new0, new1 := fresh[0][string(e.MessageHash)], fresh[1][string(e.MessageHash)]
			if new0 == new1 {
				t.Fatalf("round %d: an event was new to %v nodes", r, map[bool]string{true: "both", false: "neither"}[new0])
			}
			// The profile was written by the node that stored the event, which
			// was told the event's position.
			p := profiles[int64(r*size)+e.KeyID]
			if (p.KeyID == 0) != new0 {
				t.Fatalf("round %d: profile written by node %d, which did not store the event", r, p.KeyID)
			}
			at, err := nodes[1].EventsBySeq(ctx, b.Workspace.ID, []int64{p.AppliedSeq})
			if err != nil || len(at) != 1 || !bytes.Equal(at[0].MessageHash, e.MessageHash) {
				t.Fatalf("round %d: the projector was given position %d for an event stored elsewhere (%v)", r, p.AppliedSeq, err)
			}
		}
	}
}

func random(n int) []byte {
	b := make([]byte, n)
	rand.Read(b)
	return b
}

// TestProfileEventsFullPages: positions in a timeline whose events are not the
// workspace's (a key id shared across workspaces, or an event gone) do not make a
// page short, since a short page tells the reader the timeline ended.
// (storetest does not require it: the SQLite store cuts the page first.)
func TestProfileEventsFullPages(t *testing.T) {
	ctx := context.Background()
	db := MustOpen(t)
	defer db.Close()
	b := storetest.MustBootstrap(t, db)
	now := time.Now().UTC()
	var evs []trustloop.StoredEvent
	for i := 0; i < 6; i++ {
		ws := b.Workspace.ID
		if i >= 3 { // the newest three are another workspace's
			ws += 1000
		}
		evs = append(evs, trustloop.StoredEvent{WorkspaceID: ws, SourceID: b.Source.ID, MessageHash: random(16), KeyID: 5,
			Type: trustloop.EventTrack, ReceivedAt: now, Timestamp: now, Payload: random(10)})
	}
	if _, err := db.AppendEvents(ctx, &trustloop.CommitBatch{Events: evs}); err != nil {
		t.Fatal(err)
	}
	mine, err := db.ListEvents(ctx, b.Workspace.ID, 0, 10)
	if err != nil || len(mine) != 3 {
		t.Fatalf("ListEvents = %d, %v", len(mine), err)
	}
	theirs, err := db.ListEvents(ctx, b.Workspace.ID+1000, 0, 10)
	if err != nil || len(theirs) != 3 {
		t.Fatalf("ListEvents = %d, %v", len(theirs), err)
	}
	var run []int64
	for _, e := range append(mine, theirs...) {
		run = append(run, e.Seq)
	}
	if err := db.WriteProjection(ctx, &trustloop.ProjectionChanges{Timeline: []trustloop.TimelineRun{{KeyID: 5, Seqs: run}}}); err != nil {
		t.Fatal(err)
	}
	got, err := db.ProfileEvents(ctx, b.Workspace.ID, []int64{5}, 0, 2)
	if err != nil || len(got) != 2 || got[0].Seq != mine[2].Seq || got[1].Seq != mine[1].Seq {
		t.Fatalf("ProfileEvents = %d events, %v; want the workspace's two newest", len(got), err)
	}
}

// The projection service runs on this store too (--profiles with --database-url).
var _ projection.Store = (*postgres.DB)(nil)

// TestProjectionLookups covers the two reads the projection service needs beyond
// trustloop.ProfileStore (not in storetest, which keeps to the root interfaces).
func TestProjectionLookups(t *testing.T) {
	ctx := context.Background()
	db := MustOpen(t)
	defer db.Close()
	b := storetest.MustBootstrap(t, db)
	ws := b.Workspace.ID
	k1 := trustloop.SubjectKey{ID: 11, WorkspaceID: ws, Blind: random(32), Wrapped: random(40), CreatedAt: time.UnixMilli(1_700_000_000_000).UTC()}
	k2 := trustloop.SubjectKey{ID: 12, WorkspaceID: ws, Blind: random(32), Wrapped: random(40), CreatedAt: k1.CreatedAt}
	if _, err := db.AppendEvents(ctx, &trustloop.CommitBatch{NewKeys: []trustloop.SubjectKey{k1, k2}}); err != nil {
		t.Fatal(err)
	}
	keys, err := db.FindSubjectKeysByID(ctx, ws, []int64{11, 13})
	if err != nil || len(keys) != 1 || !bytes.Equal(keys[11].Wrapped, k1.Wrapped) || !bytes.Equal(keys[11].Blind, k1.Blind) ||
		!keys[11].CreatedAt.Equal(k1.CreatedAt) {
		t.Fatalf("FindSubjectKeysByID = %+v, %v; want key 11 only", keys, err)
	}
	if keys, err := db.FindSubjectKeysByID(ctx, ws+1000, []int64{11, 12}); err != nil || len(keys) != 0 {
		t.Fatalf("FindSubjectKeysByID from another workspace = %+v, %v", keys, err)
	}

	at := time.UnixMilli(1_750_000_000_000).UTC()
	id := func(ws, profile int64, seen time.Duration) trustloop.IdentityRecord {
		return trustloop.IdentityRecord{WorkspaceID: ws, Blind: random(32), Type: "user_id", ProfileID: profile, KeyID: 11,
			Sealed: random(20), FirstSeen: at.Add(seen * time.Second)}
	}
	ids := []trustloop.IdentityRecord{id(ws, 1, 3), id(ws, 2, 1), id(ws, 1, 2), id(ws, 3, 0), id(ws+1000, 1, 0)}
	if err := db.WriteProjection(ctx, &trustloop.ProjectionChanges{Identities: ids}); err != nil {
		t.Fatal(err)
	}
	got, err := db.IdentitiesOfProfiles(ctx, ws, []int64{1, 2, 9})
	if err != nil || len(got) != 3 || !bytes.Equal(got[0].Blind, ids[1].Blind) || !bytes.Equal(got[1].Blind, ids[2].Blind) ||
		!bytes.Equal(got[2].Blind, ids[0].Blind) {
		t.Fatalf("IdentitiesOfProfiles = %+v, %v; want the workspace's identities of 1 and 2 by first_seen", got, err)
	}
	if got, err := db.IdentitiesOfProfiles(ctx, ws, nil); err != nil || len(got) != 0 {
		t.Fatalf("IdentitiesOfProfiles(none) = %+v, %v", got, err)
	}
}
