package storetest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/trustloop/trustloop"
)

// The profile side of the suite: the projection hook of AppendEvents and every
// ProfileStore method. Profile, merge and key ids are the caller's, so the tests
// pick them; times are whole milliseconds, which is what the stores keep.

var profileBase = time.UnixMilli(1_750_000_000_000).UTC()

// other is a workspace id no test writes to (nor bootstraps): every read through
// it must come back empty or ENOTFOUND.
func other(b *trustloop.Bootstrap) int64 { return b.Workspace.ID + 1000 }

func profileRec(b *trustloop.Bootstrap, id int64, state string) trustloop.ProfileRecord {
	return trustloop.ProfileRecord{ID: id, WorkspaceID: b.Workspace.ID, KeyID: id * 10, State: []byte(state), AppliedSeq: id + 1,
		CreatedAt: profileBase.Add(time.Duration(id) * time.Millisecond), UpdatedAt: profileBase.Add(time.Hour)}
}

func identityRec(b *trustloop.Bootstrap, typ string, profileID int64, firstSeen time.Duration) trustloop.IdentityRecord {
	return trustloop.IdentityRecord{WorkspaceID: b.Workspace.ID, Blind: random(32), Type: typ, ProfileID: profileID,
		KeyID: profileID * 10, Sealed: random(48), FirstSeen: profileBase.Add(firstSeen)}
}

// project commits one new event whose projection is c, and fails the test unless
// the event and c are stored.
func project(t *testing.T, s trustloop.Store, b *trustloop.Bootstrap, c *trustloop.ProjectionChanges) {
	t.Helper()
	called := false
	n, err := s.AppendEvents(context.Background(), &trustloop.CommitBatch{
		Events: []trustloop.StoredEvent{event(b, 1, random(16), time.Now())},
		Project: func(context.Context, []int, []int64) (*trustloop.ProjectionChanges, error) {
			called = true
			return c, nil
		},
	})
	if err != nil || n != 1 || !called {
		t.Fatalf("AppendEvents with a projection = %d, %v (projector called: %v); want 1, nil, true", n, err, called)
	}
}

func sameProfile(g, w trustloop.ProfileRecord) bool {
	return g.ID == w.ID && g.WorkspaceID == w.WorkspaceID && g.KeyID == w.KeyID && bytes.Equal(g.State, w.State) &&
		g.AppliedSeq == w.AppliedSeq && g.MergedInto == w.MergedInto && g.CreatedAt.Equal(w.CreatedAt) && g.UpdatedAt.Equal(w.UpdatedAt)
}

func sameIdentity(g, w trustloop.IdentityRecord) bool {
	return g.WorkspaceID == w.WorkspaceID && bytes.Equal(g.Blind, w.Blind) && g.Type == w.Type && g.ProfileID == w.ProfileID &&
		g.KeyID == w.KeyID && bytes.Equal(g.Sealed, w.Sealed) && g.FirstSeen.Equal(w.FirstSeen)
}

func profileIDs(ps []trustloop.ProfileRecord) []int64 {
	out := []int64{}
	for _, p := range ps {
		out = append(out, p.ID)
	}
	return out
}

func mustFindProfile(t *testing.T, s trustloop.Store, b *trustloop.Bootstrap, id int64) trustloop.ProfileRecord {
	t.Helper()
	got, err := s.FindProfiles(context.Background(), b.Workspace.ID, []int64{id})
	if err != nil {
		t.Fatal(err)
	}
	p, ok := got[id]
	if !ok {
		t.Fatalf("profile %d not found", id)
	}
	return p
}

func mustListProfiles(t *testing.T, s trustloop.Store, ws, audience, after int64, limit int) []int64 {
	t.Helper()
	ps, err := s.ListProfiles(context.Background(), ws, audience, after, limit)
	if err != nil {
		t.Fatal(err)
	}
	return profileIDs(ps)
}

func equalIDs(a, b []int64) bool { return slices.Equal(a, b) || (len(a) == 0 && len(b) == 0) }

// testProjectionHook: the projector's changes are committed with the events, it
// is told which events are new, it may read the store, and it is not called for a
// batch of repeats.
func testProjectionHook(t *testing.T, s trustloop.Store) {
	ctx := context.Background()
	b := MustBootstrap(t, s)
	now := time.Now().UTC().Truncate(time.Millisecond)
	k := newKey(b, 21)
	stored := event(b, k.ID, random(16), now)
	if _, err := s.AppendEvents(ctx, &trustloop.CommitBatch{NewKeys: []trustloop.SubjectKey{k}, Events: []trustloop.StoredEvent{stored}}); err != nil {
		t.Fatal(err)
	}

	// A repeat of a stored event, two new ones, and a repeat of a new one inside
	// the batch: the projector sees indexes 1 and 2 only.
	e1, e2 := event(b, k.ID, random(16), now), event(b, k.ID, random(16), now)
	p := profileRec(b, 7001, "state-1")
	ids := []trustloop.IdentityRecord{identityRec(b, "user_id", p.ID, 0), identityRec(b, "email", p.ID, time.Second)}
	var fresh []int
	var seqs []int64
	calls := 0
	n, err := s.AppendEvents(ctx, &trustloop.CommitBatch{
		Events: []trustloop.StoredEvent{stored, e1, e2, e1},
		Project: func(ctx context.Context, idx []int, positions []int64) (*trustloop.ProjectionChanges, error) {
			calls++
			fresh, seqs = slices.Clone(idx), slices.Clone(positions)
			// The projector may read the store (what was committed before).
			if got, err := s.FindIdentities(ctx, b.Workspace.ID, [][]byte{ids[0].Blind}); err != nil || len(got) != 0 {
				return nil, fmt.Errorf("FindIdentities inside the projector = %d, %v", len(got), err)
			}
			return &trustloop.ProjectionChanges{Profiles: []trustloop.ProfileRecord{p}, Identities: ids}, nil
		},
	})
	if err != nil || n != 2 {
		t.Fatalf("AppendEvents = %d, %v; want 2", n, err)
	}
	if calls != 1 || !slices.Equal(fresh, []int{1, 2}) {
		t.Fatalf("projector called %d times with %v; want once with [1 2]", calls, fresh)
	}
	// seqs are the new events' log positions, index for index.
	all, err := s.ListEvents(ctx, b.Workspace.ID, 0, 100)
	if err != nil || len(all) != 3 {
		t.Fatalf("ListEvents = %d, %v; want 3", len(all), err)
	}
	if len(seqs) != 2 || seqs[0] != all[1].Seq || seqs[1] != all[2].Seq ||
		!bytes.Equal(all[1].MessageHash, e1.MessageHash) || !bytes.Equal(all[2].MessageHash, e2.MessageHash) {
		t.Fatalf("projector got positions %v; stored %d and %d", seqs, all[1].Seq, all[2].Seq)
	}
	// Visible as soon as AppendEvents returns.
	if got := mustFindProfile(t, s, b, p.ID); !sameProfile(got, p) {
		t.Fatalf("profile = %+v, want %+v", got, p)
	}
	found, err := s.FindIdentities(ctx, b.Workspace.ID, [][]byte{ids[0].Blind, ids[1].Blind})
	if err != nil || len(found) != 2 {
		t.Fatalf("FindIdentities = %d, %v; want 2", len(found), err)
	}
	for _, w := range ids {
		if g := found[string(w.Blind)]; !sameIdentity(g, w) {
			t.Fatalf("identity = %+v, want %+v", g, w)
		}
	}

	// All repeats: the projector is not called and nothing is written.
	calls = 0
	n, err = s.AppendEvents(ctx, &trustloop.CommitBatch{
		Events: []trustloop.StoredEvent{e2, stored, e1},
		Project: func(context.Context, []int, []int64) (*trustloop.ProjectionChanges, error) {
			calls++
			return &trustloop.ProjectionChanges{Profiles: []trustloop.ProfileRecord{profileRec(b, 7002, "x")}}, nil
		},
	})
	if err != nil || n != 0 || calls != 0 {
		t.Fatalf("AppendEvents of repeats = %d, %v, projector calls %d; want 0, nil, 0", n, err, calls)
	}
	// Nor for a batch of keys only.
	n, err = s.AppendEvents(ctx, &trustloop.CommitBatch{
		NewKeys: []trustloop.SubjectKey{newKey(b, 22)},
		Project: func(context.Context, []int, []int64) (*trustloop.ProjectionChanges, error) {
			calls++
			return &trustloop.ProjectionChanges{Profiles: []trustloop.ProfileRecord{profileRec(b, 7002, "x")}}, nil
		},
	})
	if err != nil || n != 0 || calls != 0 {
		t.Fatalf("AppendEvents of keys only = %d, %v, projector calls %d; want 0, nil, 0", n, err, calls)
	}
	if got, err := s.FindProfiles(ctx, b.Workspace.ID, []int64{7002}); err != nil || len(got) != 0 {
		t.Fatalf("a projection that should not have run was written: %d, %v", len(got), err)
	}
	// A nil change set is allowed.
	if n, err := s.AppendEvents(ctx, &trustloop.CommitBatch{
		Events:  []trustloop.StoredEvent{event(b, k.ID, random(16), now)},
		Project: func(context.Context, []int, []int64) (*trustloop.ProjectionChanges, error) { return nil, nil },
	}); err != nil || n != 1 {
		t.Fatalf("AppendEvents with a nil projection = %d, %v; want 1", n, err)
	}
	if got, err := s.ListEvents(ctx, b.Workspace.ID, 0, 100); err != nil || len(got) != 4 {
		t.Fatalf("ListEvents = %d, %v; want 4", len(got), err)
	}
}

// testProjectionFailure: a projector that fails, or changes that cannot be
// written, leave nothing of the batch: no events, no keys, no profile.
func testProjectionFailure(t *testing.T, s trustloop.Store) {
	ctx := context.Background()
	b := MustBootstrap(t, s)
	project(t, s, b, &trustloop.ProjectionChanges{
		Profiles: []trustloop.ProfileRecord{profileRec(b, 1, "a"), profileRec(b, 2, "b")},
		Merges: []trustloop.MergeRecord{{ID: 900, WorkspaceID: b.Workspace.ID, Into: 1, From: 2, Moved: [][]byte{random(32)},
			Linking: [][]byte{random(32)}, MessageHash: random(16), At: profileBase}},
	})
	check := func(what string, k trustloop.SubjectKey, id trustloop.IdentityRecord, profile int64) {
		t.Helper()
		if evs, err := s.ListEvents(ctx, b.Workspace.ID, 0, 100); err != nil || len(evs) != 1 {
			t.Fatalf("%s: %d events stored, %v; want only the first commit's", what, len(evs), err)
		}
		if got, err := s.FindSubjectKeys(ctx, b.Workspace.ID, [][]byte{k.Blind}); err != nil || len(got) != 0 {
			t.Fatalf("%s: key written (%d, %v)", what, len(got), err)
		}
		if got, err := s.FindProfiles(ctx, b.Workspace.ID, []int64{profile, 1}); err != nil || len(got) != 1 || string(got[1].State) != "a" {
			t.Fatalf("%s: profiles changed: %+v, %v", what, got, err)
		}
		if got, err := s.FindIdentities(ctx, b.Workspace.ID, [][]byte{id.Blind}); err != nil || len(got) != 0 {
			t.Fatalf("%s: identity written (%d, %v)", what, len(got), err)
		}
	}

	failed := errors.New("projector failed")
	k := newKey(b, 31)
	id := identityRec(b, "user_id", 3, 0)
	_, err := s.AppendEvents(ctx, &trustloop.CommitBatch{
		NewKeys: []trustloop.SubjectKey{k},
		Events:  []trustloop.StoredEvent{event(b, k.ID, random(16), time.Now()), event(b, k.ID, random(16), time.Now())},
		Project: func(context.Context, []int, []int64) (*trustloop.ProjectionChanges, error) { return nil, failed },
	})
	if !errors.Is(err, failed) {
		t.Fatalf("AppendEvents with a failing projector: err = %v, want the projector's", err)
	}
	check("failing projector", k, id, 3)

	// Changes the store refuses (a merge id stored already) fail the whole commit.
	k = newKey(b, 32)
	_, err = s.AppendEvents(ctx, &trustloop.CommitBatch{
		NewKeys: []trustloop.SubjectKey{k},
		Events:  []trustloop.StoredEvent{event(b, k.ID, random(16), time.Now())},
		Project: func(context.Context, []int, []int64) (*trustloop.ProjectionChanges, error) {
			p := profileRec(b, 1, "changed")
			return &trustloop.ProjectionChanges{
				Profiles:   []trustloop.ProfileRecord{p, profileRec(b, 3, "c")},
				Identities: []trustloop.IdentityRecord{id},
				Merges: []trustloop.MergeRecord{{ID: 900, WorkspaceID: b.Workspace.ID, Into: 1, From: 3, Moved: [][]byte{random(32)},
					Linking: [][]byte{random(32)}, MessageHash: random(16), At: profileBase}},
			}, nil
		},
	})
	if err == nil {
		t.Fatal("AppendEvents with a duplicate merge id succeeded")
	}
	check("refused changes", k, id, 3)
}

func testIdentities(t *testing.T, s trustloop.Store) {
	ctx := context.Background()
	b := MustBootstrap(t, s)
	i1 := identityRec(b, "user_id", 1, 3*time.Second)
	i2 := identityRec(b, "email", 1, 1*time.Second)
	i3 := identityRec(b, "anonymous_id", 2, 2*time.Second)
	project(t, s, b, &trustloop.ProjectionChanges{
		Profiles:   []trustloop.ProfileRecord{profileRec(b, 1, "a"), profileRec(b, 2, "b")},
		Identities: []trustloop.IdentityRecord{i1, i2, i3},
	})
	unknown := random(32)
	got, err := s.FindIdentities(ctx, b.Workspace.ID, [][]byte{i1.Blind, i3.Blind, unknown})
	if err != nil || len(got) != 2 {
		t.Fatalf("FindIdentities = %d, %v; want 2 (the unknown one missing)", len(got), err)
	}
	if _, ok := got[string(unknown)]; ok {
		t.Fatal("an unknown blind index was found")
	}
	for _, w := range []trustloop.IdentityRecord{i1, i3} {
		if g := got[string(w.Blind)]; !sameIdentity(g, w) {
			t.Fatalf("identity = %+v, want %+v", g, w)
		}
	}
	if got, err := s.FindIdentities(ctx, b.Workspace.ID, nil); err != nil || len(got) != 0 {
		t.Fatalf("FindIdentities(none) = %d, %v", len(got), err)
	}
	// By first_seen.
	list, err := s.ProfileIdentities(ctx, b.Workspace.ID, 1)
	if err != nil || len(list) != 2 || !sameIdentity(list[0], i2) || !sameIdentity(list[1], i1) {
		t.Fatalf("ProfileIdentities(1) = %+v, %v; want email then user_id", list, err)
	}

	// A move changes the profile only: the identity keeps its type, value and
	// first sighting. Inside one change set the last write of an identity wins.
	move := i2
	move.ProfileID, move.Sealed, move.FirstSeen = 2, random(48), profileBase.Add(time.Hour)
	early := i1
	early.ProfileID = 2
	late := i1
	late.ProfileID = 1
	project(t, s, b, &trustloop.ProjectionChanges{Identities: []trustloop.IdentityRecord{move, early, late}})
	got, err = s.FindIdentities(ctx, b.Workspace.ID, [][]byte{i1.Blind, i2.Blind})
	if err != nil {
		t.Fatal(err)
	}
	want2 := i2
	want2.ProfileID = 2
	if g := got[string(i2.Blind)]; !sameIdentity(g, want2) {
		t.Fatalf("moved identity = %+v, want %+v", g, want2)
	}
	if g := got[string(i1.Blind)]; !sameIdentity(g, i1) {
		t.Fatalf("identity written twice in one commit = %+v, want %+v", g, i1)
	}
	if list, err := s.ProfileIdentities(ctx, b.Workspace.ID, 2); err != nil || len(list) != 2 ||
		!sameIdentity(list[0], want2) || !sameIdentity(list[1], i3) {
		t.Fatalf("ProfileIdentities(2) = %+v, %v", list, err)
	}
	if list, err := s.ProfileIdentities(ctx, b.Workspace.ID, 1); err != nil || len(list) != 1 || !sameIdentity(list[0], i1) {
		t.Fatalf("ProfileIdentities(1) after the move = %+v, %v", list, err)
	}
	if list, err := s.ProfileIdentities(ctx, b.Workspace.ID, 99); err != nil || len(list) != 0 {
		t.Fatalf("ProfileIdentities(unknown) = %+v, %v", list, err)
	}

	// The same blind index in another workspace is another identity.
	o := i1
	o.WorkspaceID, o.ProfileID = other(b), 5
	project(t, s, b, &trustloop.ProjectionChanges{Identities: []trustloop.IdentityRecord{o}})
	if got, err := s.FindIdentities(ctx, b.Workspace.ID, [][]byte{i1.Blind}); err != nil || got[string(i1.Blind)].ProfileID != 1 {
		t.Fatalf("another workspace's identity changed this one's: %+v, %v", got, err)
	}
	if got, err := s.FindIdentities(ctx, other(b), [][]byte{i1.Blind, i2.Blind, i3.Blind}); err != nil || len(got) != 1 ||
		!sameIdentity(got[string(o.Blind)], o) {
		t.Fatalf("FindIdentities in the other workspace = %+v, %v; want only its own", got, err)
	}
	if list, err := s.ProfileIdentities(ctx, other(b), 2); err != nil || len(list) != 0 {
		t.Fatalf("ProfileIdentities from another workspace = %d, %v", len(list), err)
	}
}

func testProfiles(t *testing.T, s trustloop.Store) {
	ctx := context.Background()
	b := MustBootstrap(t, s)
	var ps []trustloop.ProfileRecord
	for id := int64(101); id <= 105; id++ {
		ps = append(ps, profileRec(b, id, fmt.Sprint("state-", id)))
	}
	ps[2].MergedInto = 101 // 103 was merged away
	project(t, s, b, &trustloop.ProjectionChanges{Profiles: ps})

	got, err := s.FindProfiles(ctx, b.Workspace.ID, []int64{101, 103, 999})
	if err != nil || len(got) != 2 {
		t.Fatalf("FindProfiles = %d, %v; want 2 (merged-away included, unknown missing)", len(got), err)
	}
	if !sameProfile(got[101], ps[0]) || !sameProfile(got[103], ps[2]) {
		t.Fatalf("FindProfiles = %+v, want %+v and %+v", got, ps[0], ps[2])
	}
	if got, err := s.FindProfiles(ctx, b.Workspace.ID, nil); err != nil || len(got) != 0 {
		t.Fatalf("FindProfiles(none) = %d, %v", len(got), err)
	}

	// Paging over live profiles, by id.
	if ids := mustListProfiles(t, s, b.Workspace.ID, 0, 0, 2); !equalIDs(ids, []int64{101, 102}) {
		t.Fatalf("ListProfiles page 1 = %v", ids)
	}
	if ids := mustListProfiles(t, s, b.Workspace.ID, 0, 102, 2); !equalIDs(ids, []int64{104, 105}) {
		t.Fatalf("ListProfiles page 2 = %v; want the merged-away 103 left out", ids)
	}
	if ids := mustListProfiles(t, s, b.Workspace.ID, 0, 105, 2); len(ids) != 0 {
		t.Fatalf("ListProfiles past the end = %v", ids)
	}

	// Replaced whole; within one change set the last write wins.
	r1, r2 := ps[1], ps[1]
	r1.State, r1.UpdatedAt = []byte("first"), profileBase.Add(2*time.Hour)
	r2.State, r2.KeyID, r2.AppliedSeq, r2.MergedInto, r2.UpdatedAt = []byte("second"), 77, 4242, 101, profileBase.Add(3*time.Hour)
	project(t, s, b, &trustloop.ProjectionChanges{Profiles: []trustloop.ProfileRecord{r1, r2}})
	if g := mustFindProfile(t, s, b, 102); !sameProfile(g, r2) {
		t.Fatalf("replaced profile = %+v, want %+v", g, r2)
	}
	if ids := mustListProfiles(t, s, b.Workspace.ID, 0, 0, 10); !equalIDs(ids, []int64{101, 104, 105}) {
		t.Fatalf("ListProfiles after a merge = %v", ids)
	}

	// Another workspace sees none of them.
	if got, err := s.FindProfiles(ctx, other(b), []int64{101, 102, 103}); err != nil || len(got) != 0 {
		t.Fatalf("FindProfiles from another workspace = %d, %v", len(got), err)
	}
	if ids := mustListProfiles(t, s, other(b), 0, 0, 10); len(ids) != 0 {
		t.Fatalf("ListProfiles from another workspace = %v", ids)
	}
}

func testProfileEvents(t *testing.T, s trustloop.Store) {
	ctx := context.Background()
	b := MustBootstrap(t, s)
	now := time.Now().UTC().Truncate(time.Millisecond)
	// Key 1's id in another workspace too, its event the oldest (ids are random,
	// so only a broken read would mix workspaces up).
	foreign := event(b, 1, random(16), now)
	foreign.WorkspaceID = other(b)
	evs := []trustloop.StoredEvent{foreign}
	for i := 0; i < 9; i++ {
		evs = append(evs, event(b, int64(1+i%3), random(16), now.Add(time.Duration(i)*time.Millisecond)))
	}
	if n, err := s.AppendEvents(ctx, &trustloop.CommitBatch{Events: evs}); err != nil || n != len(evs) {
		t.Fatalf("AppendEvents = %d, %v", n, err)
	}
	all, err := s.ListEvents(ctx, b.Workspace.ID, 0, 100)
	if err != nil || len(all) != 9 {
		t.Fatalf("ListEvents = %d, %v", len(all), err)
	}
	theirs, err := s.ListEvents(ctx, other(b), 0, 100)
	if err != nil || len(theirs) != 1 {
		t.Fatalf("ListEvents in the other workspace = %d, %v", len(theirs), err)
	}
	seqs := func(es []trustloop.StoredEvent) []int64 {
		out := []int64{}
		for _, e := range es {
			out = append(out, e.Seq)
		}
		return out
	}
	at := func(idx ...int) []int64 {
		var out []int64
		for _, i := range idx {
			out = append(out, all[i].Seq)
		}
		return out
	}

	// EventKeys: positions and keys after a position, in order, this workspace's
	// only, a page at a time.
	keys, err := s.EventKeys(ctx, b.Workspace.ID, all[2].Seq, 4)
	if err != nil || len(keys) != 4 {
		t.Fatalf("EventKeys = %d, %v; want 4", len(keys), err)
	}
	for i, k := range keys {
		if w := all[3+i]; k.Seq != w.Seq || k.KeyID != w.KeyID {
			t.Fatalf("EventKeys[%d] = %+v, want seq %d key %d", i, k, w.Seq, w.KeyID)
		}
	}
	if keys, err := s.EventKeys(ctx, b.Workspace.ID, all[8].Seq, 10); err != nil || len(keys) != 0 {
		t.Fatalf("EventKeys after the last = %v, %v; want none", keys, err)
	}
	if keys, err := s.EventKeys(ctx, other(b), 0, 10); err != nil || len(keys) != 1 || keys[0].Seq != theirs[0].Seq {
		t.Fatalf("EventKeys in the other workspace = %v, %v; want its one event", keys, err)
	}

	// EventsBySeq: the workspace's events at the positions, in Seq order,
	// unknown positions and other workspaces' events left out.
	got, err := s.EventsBySeq(ctx, b.Workspace.ID, []int64{all[4].Seq, all[1].Seq, all[8].Seq + 1000, theirs[0].Seq, all[3].Seq})
	if err != nil || !equalIDs(seqs(got), at(1, 3, 4)) {
		t.Fatalf("EventsBySeq = %v, %v; want %v", seqs(got), err, at(1, 3, 4))
	}
	for i, w := range []trustloop.StoredEvent{all[1], all[3], all[4]} {
		if g := got[i]; g.WorkspaceID != w.WorkspaceID || g.SourceID != w.SourceID || !bytes.Equal(g.MessageHash, w.MessageHash) ||
			g.KeyID != w.KeyID || g.Type != w.Type || !g.ReceivedAt.Equal(w.ReceivedAt) || !g.Timestamp.Equal(w.Timestamp) ||
			!bytes.Equal(g.Payload, w.Payload) {
			t.Fatalf("EventsBySeq returned %+v, want %+v", g, w)
		}
	}
	if got, err := s.EventsBySeq(ctx, b.Workspace.ID, nil); err != nil || len(got) != 0 {
		t.Fatalf("EventsBySeq(none) = %v, %v", seqs(got), err)
	}
	if got, err := s.EventsBySeq(ctx, other(b), at(0, 1)); err != nil || len(got) != 0 {
		t.Fatalf("EventsBySeq from another workspace = %v, %v", seqs(got), err)
	}

	// Events alone are no timeline.
	if got, err := s.ProfileEvents(ctx, b.Workspace.ID, []int64{1, 2, 3}, 0, 100); err != nil || len(got) != 0 {
		t.Fatalf("ProfileEvents before any timeline = %v, %v", seqs(got), err)
	}
	// Keys cycle 1, 2, 3 through the batch. Key 1's timeline holds the foreign
	// event's position and not all[6]; key 3's is three runs, one repeating a
	// position; key 2's run is written short, then again whole.
	if err := s.WriteProjection(ctx, &trustloop.ProjectionChanges{Timeline: []trustloop.TimelineRun{
		{KeyID: 1, Seqs: append([]int64{theirs[0].Seq}, at(0, 3)...)},
		{KeyID: 3, Seqs: at(2)}, {KeyID: 3, Seqs: at(5, 8)},
		{KeyID: 2, Seqs: at(1)},
	}}); err != nil {
		t.Fatal(err)
	}
	if err := s.WriteProjection(ctx, &trustloop.ProjectionChanges{Timeline: []trustloop.TimelineRun{
		{KeyID: 3, Seqs: at(8)}, {KeyID: 2, Seqs: at(1, 4, 7)}, {KeyID: 4, Seqs: nil},
	}}); err != nil {
		t.Fatal(err)
	}
	want := at(8, 5, 3, 2, 0)
	got, err = s.ProfileEvents(ctx, b.Workspace.ID, []int64{1, 3}, 0, 100)
	if err != nil || !equalIDs(seqs(got), want) {
		t.Fatalf("ProfileEvents = %v, %v; want %v", seqs(got), err, want)
	}
	if !bytes.Equal(got[0].Payload, all[8].Payload) || got[0].Type != all[8].Type || !got[0].ReceivedAt.Equal(all[8].ReceivedAt) {
		t.Fatalf("ProfileEvents changed an event: %+v, want %+v", got[0], all[8])
	}
	if got, err := s.ProfileEvents(ctx, b.Workspace.ID, []int64{2}, 0, 100); err != nil || !equalIDs(seqs(got), at(7, 4, 1)) {
		t.Fatalf("ProfileEvents(2) = %v, %v; want %v (the run written again whole)", seqs(got), err, at(7, 4, 1))
	}
	// Paging with before.
	for _, page := range []struct {
		before int64
		want   []int64
	}{{0, at(8, 5)}, {all[5].Seq, at(3, 2)}, {all[2].Seq, at(0)}, {all[0].Seq, nil}} {
		got, err := s.ProfileEvents(ctx, b.Workspace.ID, []int64{1, 3}, page.before, 2)
		if err != nil || !equalIDs(seqs(got), page.want) {
			t.Fatalf("ProfileEvents before %d = %v, %v; want %v", page.before, seqs(got), err, page.want)
		}
	}
	if got, err := s.ProfileEvents(ctx, b.Workspace.ID, nil, 0, 10); err != nil || len(got) != 0 {
		t.Fatalf("ProfileEvents(no keys) = %v, %v", seqs(got), err)
	}
	if got, err := s.ProfileEvents(ctx, b.Workspace.ID, []int64{404}, 0, 10); err != nil || len(got) != 0 {
		t.Fatalf("ProfileEvents(unknown key) = %v, %v", seqs(got), err)
	}
	// The other workspace sees its own event only.
	got, err = s.ProfileEvents(ctx, other(b), []int64{1, 2, 3}, 0, 10)
	if err != nil || len(got) != 1 || got[0].Seq != theirs[0].Seq {
		t.Fatalf("ProfileEvents in the other workspace = %v, %v; want its one event", seqs(got), err)
	}
	if got, err := s.ProfileEvents(ctx, other(b)+1, []int64{1, 2, 3}, 0, 10); err != nil || len(got) != 0 {
		t.Fatalf("ProfileEvents in an empty workspace = %v, %v", seqs(got), err)
	}
}

// testWriteProjection: changes written behind the group commits, in their own
// transaction, with the watermark.
func testWriteProjection(t *testing.T, s trustloop.Store) {
	ctx := context.Background()
	b := MustBootstrap(t, s)
	ws := b.Workspace.ID
	if upto, err := s.ProjectedUpto(ctx); err != nil || upto != 0 {
		t.Fatalf("ProjectedUpto on an empty store = %d, %v; want 0", upto, err)
	}
	if upto, err := s.TimelineUpto(ctx); err != nil || upto != 0 {
		t.Fatalf("TimelineUpto on an empty store = %d, %v; want 0", upto, err)
	}
	aud := &trustloop.Audience{WorkspaceID: ws, Name: "all", Rule: "true"}
	if err := s.CreateAudience(ctx, aud); err != nil {
		t.Fatal(err)
	}
	e := event(b, 10, random(16), time.Now())
	if _, err := s.AppendEvents(ctx, &trustloop.CommitBatch{Events: []trustloop.StoredEvent{e}}); err != nil {
		t.Fatal(err)
	}
	evs, err := s.ListEvents(ctx, ws, 0, 10)
	if err != nil || len(evs) != 1 {
		t.Fatalf("ListEvents = %d, %v", len(evs), err)
	}
	p1, p2, p3 := profileRec(b, 1, "one"), profileRec(b, 2, "two"), profileRec(b, 3, "three")
	p3.MergedInto = 1
	id1, id2 := identityRec(b, "user_id", 1, 0), identityRec(b, "email", 2, 0)
	m := trustloop.MergeRecord{ID: 77, WorkspaceID: ws, Into: 1, From: 3, Moved: [][]byte{random(32)}, Linking: [][]byte{id1.Blind},
		MessageHash: random(16), At: profileBase}
	if err := s.WriteProjection(ctx, &trustloop.ProjectionChanges{
		Profiles: []trustloop.ProfileRecord{p1, p2, p3}, Identities: []trustloop.IdentityRecord{id1, id2},
		Merges: []trustloop.MergeRecord{m}, Members: map[int64][]int64{1: {aud.ID}, 2: {aud.ID}},
		Timeline: []trustloop.TimelineRun{{KeyID: 10, Seqs: []int64{evs[0].Seq}}}, UptoSeq: 10, TimelineUpto: 7,
	}); err != nil {
		t.Fatal(err)
	}
	for _, w := range []trustloop.ProfileRecord{p1, p2, p3} {
		if g := mustFindProfile(t, s, b, w.ID); !sameProfile(g, w) {
			t.Fatalf("profile = %+v, want %+v", g, w)
		}
	}
	if got, err := s.FindIdentities(ctx, ws, [][]byte{id1.Blind, id2.Blind}); err != nil || len(got) != 2 {
		t.Fatalf("FindIdentities = %d, %v; want 2", len(got), err)
	}
	if got, err := s.FindMerge(ctx, ws, 77); err != nil || !sameMerge(*got, m) {
		t.Fatalf("FindMerge = %+v, %v; want %+v", got, err, m)
	}
	if ids := mustListProfiles(t, s, ws, aud.ID, 0, 10); !equalIDs(ids, []int64{1, 2}) {
		t.Fatalf("ListProfiles(audience) = %v", ids)
	}
	if got, err := s.ProfileEvents(ctx, ws, []int64{10}, 0, 10); err != nil || len(got) != 1 || got[0].Seq != evs[0].Seq {
		t.Fatalf("ProfileEvents = %d, %v; want the one event", len(got), err)
	}
	if upto, err := s.ProjectedUpto(ctx); err != nil || upto != 10 {
		t.Fatalf("ProjectedUpto = %d, %v; want 10", upto, err)
	}
	if st, err := s.Stats(ctx); err != nil || st.Profiles != 2 || st.Identities != 2 {
		t.Fatalf("Stats = %+v, %v; want 2 live profiles and 2 identities", st, err)
	}

	if upto, err := s.TimelineUpto(ctx); err != nil || upto != 7 {
		t.Fatalf("TimelineUpto = %d, %v; want 7 (its own watermark)", upto, err)
	}

	// The watermarks never move back, and 0 leaves them alone.
	for _, upto := range []int64{5, 0} {
		if err := s.WriteProjection(ctx, &trustloop.ProjectionChanges{UptoSeq: upto, TimelineUpto: upto}); err != nil {
			t.Fatal(err)
		}
		if got, err := s.ProjectedUpto(ctx); err != nil || got != 10 {
			t.Fatalf("ProjectedUpto after writing %d = %d, %v; want 10", upto, got, err)
		}
		if got, err := s.TimelineUpto(ctx); err != nil || got != 7 {
			t.Fatalf("TimelineUpto after writing %d = %d, %v; want 7", upto, got, err)
		}
	}
	if err := s.WriteProjection(ctx, &trustloop.ProjectionChanges{}); err != nil {
		t.Fatalf("WriteProjection(nothing) = %v", err)
	}

	// One transaction: changes the store refuses (a merge id stored already)
	// leave everything as it was.
	changed := p1
	changed.State = []byte("changed")
	if err := s.WriteProjection(ctx, &trustloop.ProjectionChanges{
		Profiles: []trustloop.ProfileRecord{changed}, Identities: []trustloop.IdentityRecord{identityRec(b, "phone", 1, 0)},
		Merges: []trustloop.MergeRecord{m}, Members: map[int64][]int64{1: nil},
		Timeline: []trustloop.TimelineRun{{KeyID: 11, Seqs: []int64{evs[0].Seq}}}, UptoSeq: 20, TimelineUpto: 20,
	}); err == nil {
		t.Fatal("WriteProjection with a duplicate merge id succeeded")
	}
	if g := mustFindProfile(t, s, b, 1); !sameProfile(g, p1) {
		t.Fatalf("a failed WriteProjection changed a profile: %+v", g)
	}
	if upto, err := s.ProjectedUpto(ctx); err != nil || upto != 10 {
		t.Fatalf("ProjectedUpto after a failed write = %d, %v; want 10", upto, err)
	}
	if upto, err := s.TimelineUpto(ctx); err != nil || upto != 7 {
		t.Fatalf("TimelineUpto after a failed write = %d, %v; want 7", upto, err)
	}
	if got, err := s.ProfileEvents(ctx, ws, []int64{11}, 0, 10); err != nil || len(got) != 0 {
		t.Fatalf("a failed WriteProjection wrote a timeline: %d, %v", len(got), err)
	}
	if ids, err := s.ProfileAudiences(ctx, ws, 1); err != nil || !equalIDs(ids, []int64{aud.ID}) {
		t.Fatalf("a failed WriteProjection changed memberships: %v, %v", ids, err)
	}
	if st, err := s.Stats(ctx); err != nil || st.Identities != 2 {
		t.Fatalf("a failed WriteProjection wrote an identity: %+v, %v", st, err)
	}
}

func sameMerge(g, w trustloop.MergeRecord) bool {
	eq := func(a, b [][]byte) bool {
		return slices.EqualFunc(a, b, bytes.Equal)
	}
	return g.ID == w.ID && g.WorkspaceID == w.WorkspaceID && g.Into == w.Into && g.From == w.From &&
		eq(g.Moved, w.Moved) && eq(g.Linking, w.Linking) && bytes.Equal(g.MessageHash, w.MessageHash) && g.At.Equal(w.At) &&
		(g.SplitAt == nil) == (w.SplitAt == nil)
}

func testMergeAndSplit(t *testing.T, s trustloop.Store) {
	ctx := context.Background()
	b := MustBootstrap(t, s)
	ws := b.Workspace.ID
	p1, p2, p3 := profileRec(b, 1, "one"), profileRec(b, 2, "two"), profileRec(b, 3, "three")
	i1, i2a, i2b, i3 := identityRec(b, "user_id", 1, 0), identityRec(b, "email", 2, time.Second),
		identityRec(b, "anonymous_id", 2, 2*time.Second), identityRec(b, "user_id", 3, 3*time.Second)
	// The same blind index in another workspace, which no split here may move.
	foreign := i2a
	foreign.WorkspaceID, foreign.ProfileID = other(b), 1
	project(t, s, b, &trustloop.ProjectionChanges{
		Profiles:   []trustloop.ProfileRecord{p1, p2, p3},
		Identities: []trustloop.IdentityRecord{i1, i2a, i2b, i3, foreign},
	})
	if sep, err := s.Separated(ctx, ws, 1, 2); err != nil || sep {
		t.Fatalf("Separated before any split = %v, %v", sep, err)
	}

	// 2 is merged into 1 by an event carrying i1 and i2a: 2's identities move.
	merged2 := p2
	merged2.MergedInto = 1
	into1 := p1
	into1.State = []byte("one+two")
	mv1, mv2 := i2a, i2b
	mv1.ProfileID, mv2.ProfileID = 1, 1
	m1 := trustloop.MergeRecord{ID: 501, WorkspaceID: ws, Into: 1, From: 2, Moved: [][]byte{i2a.Blind, i2b.Blind},
		Linking: [][]byte{i1.Blind, i2a.Blind}, MessageHash: random(16), At: profileBase.Add(time.Minute)}
	project(t, s, b, &trustloop.ProjectionChanges{
		Profiles: []trustloop.ProfileRecord{into1, merged2}, Identities: []trustloop.IdentityRecord{mv1, mv2},
		Merges: []trustloop.MergeRecord{m1},
	})
	// Then 3 into 1.
	merged3 := p3
	merged3.MergedInto = 1
	m2 := trustloop.MergeRecord{ID: 502, WorkspaceID: ws, Into: 1, From: 3, Moved: [][]byte{i3.Blind},
		Linking: [][]byte{i3.Blind}, MessageHash: random(16), At: profileBase.Add(2 * time.Minute)}
	mv3 := i3
	mv3.ProfileID = 1
	project(t, s, b, &trustloop.ProjectionChanges{
		Profiles: []trustloop.ProfileRecord{merged3}, Identities: []trustloop.IdentityRecord{mv3}, Merges: []trustloop.MergeRecord{m2},
	})

	got, err := s.FindMerge(ctx, ws, 501)
	if err != nil || !sameMerge(*got, m1) {
		t.Fatalf("FindMerge = %+v, %v; want %+v", got, err, m1)
	}
	if _, err := s.FindMerge(ctx, ws, 999); trustloop.ErrorCode(err) != trustloop.ENOTFOUND {
		t.Fatalf("FindMerge(unknown) err = %v, want not_found", err)
	}
	if _, err := s.FindMerge(ctx, other(b), 501); trustloop.ErrorCode(err) != trustloop.ENOTFOUND {
		t.Fatalf("FindMerge from another workspace err = %v, want not_found", err)
	}
	list, err := s.ProfileMerges(ctx, ws, 1)
	if err != nil || len(list) != 2 || !sameMerge(list[0], m2) || !sameMerge(list[1], m1) {
		t.Fatalf("ProfileMerges(1) = %+v, %v; want 502 then 501", list, err)
	}
	if list, err := s.ProfileMerges(ctx, ws, 2); err != nil || len(list) != 1 || list[0].ID != 501 {
		t.Fatalf("ProfileMerges(2) = %+v, %v; want 501", list, err)
	}
	if list, err := s.ProfileMerges(ctx, ws, 4); err != nil || len(list) != 0 {
		t.Fatalf("ProfileMerges(unknown) = %+v, %v", list, err)
	}
	if list, err := s.ProfileMerges(ctx, other(b), 1); err != nil || len(list) != 0 {
		t.Fatalf("ProfileMerges from another workspace = %+v, %v", list, err)
	}
	if ids := mustListProfiles(t, s, ws, 0, 0, 10); !equalIDs(ids, []int64{1}) {
		t.Fatalf("ListProfiles after the merges = %v; want [1]", ids)
	}

	// A split in another workspace's name finds no merge and changes nothing.
	if err := s.Split(ctx, &trustloop.MergeRecord{ID: 501, WorkspaceID: other(b), Into: 1, From: 2, Moved: m1.Moved},
		profileRec(b, 1, "wrong"), profileRec(b, 2, "wrong")); err == nil {
		t.Fatal("Split of another workspace's merge succeeded")
	}
	if p := mustFindProfile(t, s, b, 1); string(p.State) != "one+two" {
		t.Fatalf("a refused split wrote profile 1: %q", p.State)
	}

	// Undo 501: i2a and i2b go back to 2, which is live again.
	afterInto := into1
	afterInto.State, afterInto.UpdatedAt = []byte("one again"), profileBase.Add(3*time.Hour)
	afterFrom := p2
	afterFrom.State, afterFrom.UpdatedAt = []byte("two again"), profileBase.Add(3*time.Hour)
	if err := s.Split(ctx, got, afterInto, afterFrom); err != nil {
		t.Fatal(err)
	}
	ids, err := s.FindIdentities(ctx, ws, [][]byte{i1.Blind, i2a.Blind, i2b.Blind, i3.Blind})
	if err != nil {
		t.Fatal(err)
	}
	for blind, want := range map[string]int64{string(i1.Blind): 1, string(i2a.Blind): 2, string(i2b.Blind): 2, string(i3.Blind): 1} {
		if ids[blind].ProfileID != want {
			t.Fatalf("after the split an identity is on profile %d, want %d", ids[blind].ProfileID, want)
		}
	}
	if got, err := s.FindIdentities(ctx, other(b), [][]byte{foreign.Blind}); err != nil || !sameIdentity(got[string(foreign.Blind)], foreign) {
		t.Fatalf("the split moved another workspace's identity: %+v, %v", got, err)
	}
	for _, pair := range [][2]int64{{1, 2}, {2, 1}} {
		if sep, err := s.Separated(ctx, ws, pair[0], pair[1]); err != nil || !sep {
			t.Fatalf("Separated(%d, %d) after the split = %v, %v", pair[0], pair[1], sep, err)
		}
	}
	if sep, err := s.Separated(ctx, ws, 1, 3); err != nil || sep {
		t.Fatalf("Separated(1, 3) = %v, %v; want false", sep, err)
	}
	if sep, err := s.Separated(ctx, other(b), 1, 2); err != nil || sep {
		t.Fatalf("Separated in another workspace = %v, %v; want false", sep, err)
	}
	if p := mustFindProfile(t, s, b, 1); !sameProfile(p, afterInto) {
		t.Fatalf("into after the split = %+v, want %+v", p, afterInto)
	}
	if p := mustFindProfile(t, s, b, 2); !sameProfile(p, afterFrom) {
		t.Fatalf("from after the split = %+v, want %+v", p, afterFrom)
	}
	if ids := mustListProfiles(t, s, ws, 0, 0, 10); !equalIDs(ids, []int64{1, 2}) {
		t.Fatalf("ListProfiles after the split = %v; want [1 2]", ids)
	}
	if m, err := s.FindMerge(ctx, ws, 501); err != nil || m.SplitAt == nil {
		t.Fatalf("FindMerge after the split = %+v, %v; want SplitAt set", m, err)
	}
	if m, err := s.FindMerge(ctx, ws, 502); err != nil || m.SplitAt != nil {
		t.Fatalf("the other merge = %+v, %v; want SplitAt unset", m, err)
	}

	// Once is enough: a second split is a conflict and writes nothing.
	if err := s.Split(ctx, got, profileRec(b, 1, "again"), profileRec(b, 2, "again")); trustloop.ErrorCode(err) != trustloop.ECONFLICT {
		t.Fatalf("second Split err = %v, want conflict", err)
	}
	if p := mustFindProfile(t, s, b, 1); !sameProfile(p, afterInto) {
		t.Fatalf("a refused split rewrote profile 1: %+v", p)
	}
}

func testAudiences(t *testing.T, s trustloop.Store) {
	ctx := context.Background()
	b := MustBootstrap(t, s)
	ws := b.Workspace.ID
	vip := &trustloop.Audience{WorkspaceID: ws, Name: "vip", Rule: `traits.plan == "gold"`, Description: "Gold customers"}
	churn := &trustloop.Audience{WorkspaceID: ws, Name: "churn", Rule: `computed.days_idle > 30`}
	for _, a := range []*trustloop.Audience{vip, churn} {
		if err := s.CreateAudience(ctx, a); err != nil {
			t.Fatal(err)
		}
		if a.ID == 0 || a.CreatedAt.IsZero() || !a.UpdatedAt.Equal(a.CreatedAt) {
			t.Fatalf("created audience = %+v", a)
		}
	}
	if vip.ID == churn.ID {
		t.Fatal("two audiences got one id")
	}
	if err := s.CreateAudience(ctx, &trustloop.Audience{WorkspaceID: ws, Name: "vip", Rule: "true"}); trustloop.ErrorCode(err) != trustloop.ECONFLICT {
		t.Fatalf("CreateAudience with a taken name err = %v, want conflict", err)
	}
	// Names are unique per workspace only.
	foreign := &trustloop.Audience{WorkspaceID: other(b), Name: "vip", Rule: "true"}
	if err := s.CreateAudience(ctx, foreign); err != nil {
		t.Fatalf("CreateAudience with a name taken in another workspace: %v", err)
	}

	list, err := s.ListAudiences(ctx, ws)
	if err != nil || len(list) != 2 || list[0].ID != vip.ID || list[1].ID != churn.ID {
		t.Fatalf("ListAudiences = %+v, %v", list, err)
	}
	sameAudience := func(g, w *trustloop.Audience) bool {
		return g.ID == w.ID && g.WorkspaceID == w.WorkspaceID && g.Name == w.Name && g.Rule == w.Rule &&
			g.Description == w.Description && g.CreatedAt.Equal(w.CreatedAt) && g.UpdatedAt.Equal(w.UpdatedAt)
	}
	if !sameAudience(list[0], vip) || !sameAudience(list[1], churn) {
		t.Fatalf("ListAudiences = %+v, %+v; want %+v, %+v", list[0], list[1], vip, churn)
	}
	if list, err := s.ListAudiences(ctx, other(b)); err != nil || len(list) != 1 || list[0].ID != foreign.ID {
		t.Fatalf("ListAudiences in the other workspace = %+v, %v", list, err)
	}
	if a, err := s.FindAudience(ctx, ws, vip.ID); err != nil || !sameAudience(a, vip) {
		t.Fatalf("FindAudience = %+v, %v; want %+v", a, err, vip)
	}
	for _, id := range []int64{foreign.ID, 987654} {
		if _, err := s.FindAudience(ctx, ws, id); trustloop.ErrorCode(err) != trustloop.ENOTFOUND {
			t.Fatalf("FindAudience(%d) err = %v, want not_found", id, err)
		}
	}

	// Update: name, rule and description replaced; a taken name is a conflict.
	clash := *churn
	clash.Name = "vip"
	if err := s.UpdateAudience(ctx, &clash); trustloop.ErrorCode(err) != trustloop.ECONFLICT {
		t.Fatalf("UpdateAudience to a taken name err = %v, want conflict", err)
	}
	churn.Name, churn.Rule, churn.Description = "lapsed", `computed.days_idle > 60`, "Idle two months"
	if err := s.UpdateAudience(ctx, churn); err != nil {
		t.Fatal(err)
	}
	if a, err := s.FindAudience(ctx, ws, churn.ID); err != nil || !sameAudience(a, churn) {
		t.Fatalf("FindAudience after update = %+v, %v; want %+v", a, err, churn)
	}
	for _, a := range []*trustloop.Audience{{ID: 987654, WorkspaceID: ws, Name: "x", Rule: "true"},
		{ID: foreign.ID, WorkspaceID: ws, Name: "y", Rule: "true"}} {
		if err := s.UpdateAudience(ctx, a); trustloop.ErrorCode(err) != trustloop.ENOTFOUND {
			t.Fatalf("UpdateAudience(%d) err = %v, want not_found", a.ID, err)
		}
	}
	if a, err := s.FindAudience(ctx, other(b), foreign.ID); err != nil || a.Name != "vip" {
		t.Fatalf("the other workspace's audience after a refused update = %+v, %v", a, err)
	}

	// Members.
	project(t, s, b, &trustloop.ProjectionChanges{Profiles: []trustloop.ProfileRecord{
		profileRec(b, 11, "a"), profileRec(b, 12, "b"), profileRec(b, 13, "c"), profileRec(b, 14, "d")}})
	if err := s.SetMembers(ctx, ws, map[int64][]int64{11: {churn.ID, vip.ID}, 12: {vip.ID}, 13: {churn.ID}}); err != nil {
		t.Fatal(err)
	}
	audiences := func(profile int64) []int64 {
		t.Helper()
		ids, err := s.ProfileAudiences(ctx, ws, profile)
		if err != nil {
			t.Fatal(err)
		}
		return ids
	}
	if got, want := audiences(11), []int64{min(vip.ID, churn.ID), max(vip.ID, churn.ID)}; !equalIDs(got, want) {
		t.Fatalf("ProfileAudiences(11) = %v, want %v (ascending)", got, want)
	}
	if got := audiences(14); len(got) != 0 {
		t.Fatalf("ProfileAudiences(14) = %v, want none", got)
	}
	if ids := mustListProfiles(t, s, ws, vip.ID, 0, 10); !equalIDs(ids, []int64{11, 12}) {
		t.Fatalf("ListProfiles(vip) = %v", ids)
	}
	if ids := mustListProfiles(t, s, ws, vip.ID, 11, 1); !equalIDs(ids, []int64{12}) {
		t.Fatalf("ListProfiles(vip) page 2 = %v", ids)
	}
	if ids := mustListProfiles(t, s, ws, vip.ID, 0, 1); !equalIDs(ids, []int64{11}) {
		t.Fatalf("ListProfiles(vip) page 1 = %v", ids)
	}
	// Replacing: 11 leaves vip, 12 leaves everything; 13 is untouched.
	if err := s.SetMembers(ctx, ws, map[int64][]int64{11: {churn.ID}, 12: nil}); err != nil {
		t.Fatal(err)
	}
	if got := audiences(11); !equalIDs(got, []int64{churn.ID}) {
		t.Fatalf("ProfileAudiences(11) after replace = %v", got)
	}
	if got := audiences(12); len(got) != 0 {
		t.Fatalf("ProfileAudiences(12) after replace = %v", got)
	}
	if ids := mustListProfiles(t, s, ws, churn.ID, 0, 10); !equalIDs(ids, []int64{11, 13}) {
		t.Fatalf("ListProfiles(churn) = %v", ids)
	}
	// Memberships written by a group commit; a merged-away profile leaves the lists.
	merged13 := profileRec(b, 13, "c")
	merged13.MergedInto = 11
	project(t, s, b, &trustloop.ProjectionChanges{Profiles: []trustloop.ProfileRecord{merged13},
		Members: map[int64][]int64{14: {vip.ID, churn.ID}}})
	if ids := mustListProfiles(t, s, ws, churn.ID, 0, 10); !equalIDs(ids, []int64{11, 14}) {
		t.Fatalf("ListProfiles(churn) after a merge = %v; want [11 14]", ids)
	}
	if ids := mustListProfiles(t, s, ws, vip.ID, 0, 10); !equalIDs(ids, []int64{14}) {
		t.Fatalf("ListProfiles(vip) = %v; want [14]", ids)
	}
	// Another workspace sees no memberships.
	if ids, err := s.ProfileAudiences(ctx, other(b), 11); err != nil || len(ids) != 0 {
		t.Fatalf("ProfileAudiences from another workspace = %v, %v", ids, err)
	}
	if ids := mustListProfiles(t, s, other(b), churn.ID, 0, 10); len(ids) != 0 {
		t.Fatalf("ListProfiles(churn) from another workspace = %v", ids)
	}

	// Delete: the audience and its memberships go; not found twice, nor from
	// another workspace.
	if err := s.DeleteAudience(ctx, ws, foreign.ID); trustloop.ErrorCode(err) != trustloop.ENOTFOUND {
		t.Fatalf("DeleteAudience of another workspace's audience err = %v, want not_found", err)
	}
	if err := s.DeleteAudience(ctx, ws, churn.ID); err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteAudience(ctx, ws, churn.ID); trustloop.ErrorCode(err) != trustloop.ENOTFOUND {
		t.Fatalf("second DeleteAudience err = %v, want not_found", err)
	}
	if _, err := s.FindAudience(ctx, ws, churn.ID); trustloop.ErrorCode(err) != trustloop.ENOTFOUND {
		t.Fatalf("FindAudience after delete err = %v, want not_found", err)
	}
	if ids := mustListProfiles(t, s, ws, churn.ID, 0, 10); len(ids) != 0 {
		t.Fatalf("ListProfiles of a deleted audience = %v", ids)
	}
	if got := audiences(14); !equalIDs(got, []int64{vip.ID}) {
		t.Fatalf("ProfileAudiences(14) after delete = %v; want [vip]", got)
	}
	if list, err := s.ListAudiences(ctx, ws); err != nil || len(list) != 1 || list[0].ID != vip.ID {
		t.Fatalf("ListAudiences after delete = %+v, %v", list, err)
	}
	// The name is free again.
	if err := s.CreateAudience(ctx, &trustloop.Audience{WorkspaceID: ws, Name: "lapsed", Rule: "true"}); err != nil {
		t.Fatalf("CreateAudience with a deleted audience's name: %v", err)
	}
	if a, err := s.FindAudience(ctx, other(b), foreign.ID); err != nil || a.ID != foreign.ID {
		t.Fatalf("the other workspace's audience after deletes here = %+v, %v", a, err)
	}
}

// testFlushManyProfiles writes more profiles at once than a statement takes, as a
// flush does, then a behind write where the guard keeps some stored rows (their
// applied_seq is newer) and replaces the others; one row carries memberships.
func testFlushManyProfiles(t *testing.T, s trustloop.Store) {
	ctx := context.Background()
	b := MustBootstrap(t, s)
	ws := b.Workspace.ID
	aud := &trustloop.Audience{WorkspaceID: ws, Name: "all", Rule: "true"}
	if err := s.CreateAudience(ctx, aud); err != nil {
		t.Fatal(err)
	}
	const n = 150
	var first []trustloop.ProfileRecord
	for id := int64(1); id <= n; id++ {
		first = append(first, profileRec(b, id, fmt.Sprintf("v1-%d", id)))
	}
	if err := s.WriteProjection(ctx, &trustloop.ProjectionChanges{Profiles: first}); err != nil {
		t.Fatal(err)
	}
	var second []trustloop.ProfileRecord
	for _, p := range first {
		p.State = []byte(fmt.Sprintf("v2-%d", p.ID))
		if p.ID%3 == 0 {
			p.AppliedSeq-- // older than stored: the guard keeps the row
		} else {
			p.AppliedSeq++
		}
		second = append(second, p)
	}
	if err := s.WriteProjection(ctx, &trustloop.ProjectionChanges{Profiles: second, Behind: true,
		Members: map[int64][]int64{3: {aud.ID}, 4: {aud.ID}}}); err != nil {
		t.Fatal(err)
	}
	got, err := s.FindProfiles(ctx, ws, func() []int64 {
		var ids []int64
		for id := int64(1); id <= n; id++ {
			ids = append(ids, id)
		}
		return ids
	}())
	if err != nil || len(got) != n {
		t.Fatalf("FindProfiles = %d, %v; want %d", len(got), err, n)
	}
	for id := int64(1); id <= n; id++ {
		want := fmt.Sprintf("v2-%d", id)
		if id%3 == 0 {
			want = fmt.Sprintf("v1-%d", id)
		}
		if string(got[id].State) != want {
			t.Fatalf("profile %d state = %q, want %q", id, got[id].State, want)
		}
	}
	// 3's row was kept, so its memberships were not written; 4's were.
	if ids, err := s.ProfileAudiences(ctx, ws, 3); err != nil || len(ids) != 0 {
		t.Fatalf("memberships of the kept row = %v, %v; want none", ids, err)
	}
	if ids, err := s.ProfileAudiences(ctx, ws, 4); err != nil || !equalIDs(ids, []int64{aud.ID}) {
		t.Fatalf("memberships of the replaced row = %v, %v; want [%d]", ids, err, aud.ID)
	}
}
