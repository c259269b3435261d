package storetest

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"fmt"
	"testing"
	"time"

	"github.com/trustloop/trustloop"
)

// Opener returns a fresh, empty store; the suite closes it.
type Opener func(t *testing.T) trustloop.Store

// Run runs the whole suite against the backend.
func Run(t *testing.T, open Opener) {
	for _, tc := range []struct {
		name string
		fn   func(*testing.T, trustloop.Store)
	}{
		{"Bootstrap", testBootstrap},
		{"BootstrapOnce", testBootstrapOnce},
		{"FindNotFound", testFindNotFound},
		{"AppendAndList", testAppendAndList},
		{"Dedupe", testDedupe},
		{"SubjectKeys", testSubjectKeys},
		{"KeyConflictWritesNothing", testKeyConflict},
		{"LargeBatch", testLargeBatch},
		{"Stats", testStats},
		{"ProjectionHook", testProjectionHook},
		{"ProjectionFailureWritesNothing", testProjectionFailure},
		{"Identities", testIdentities},
		{"Profiles", testProfiles},
		{"ProfileEvents", testProfileEvents},
		{"WriteProjection", testWriteProjection},
		{"FlushManyProfiles", testFlushManyProfiles},
		{"MergeAndSplit", testMergeAndSplit},
		{"Audiences", testAudiences},
		{"Settings", testSettings},
		{"AuditAppend", testAuditAppend},
		{"AuditInvalidWritesNothing", testAuditInvalid},
		{"AuditWorkspaces", testAuditWorkspaces},
		{"AuditBySubject", testAuditBySubject},
		{"AuditConcurrent", testAuditConcurrent},
		{"AuditCheckpoints", testAuditCheckpoints},
		{"Consent", testConsent},
		{"APIKeys", testAPIKeys},
		{"CreateWorkspace", testCreateWorkspace},
		{"PrivacyRequests", testPrivacyRequests},
		{"PrivacyRequestOpenOnce", testPrivacyRequestOpenOnce},
		{"PrivacyRequestRace", testPrivacyRequestRace},
		{"PrivacyList", testPrivacyList},
		{"SubjectPrivacyRequests", testSubjectPrivacyRequests},
		{"PrivacyUpdate", testPrivacyUpdate},
		{"Jobs", testJobs},
		{"JobLease", testJobLease},
		{"JobRetry", testJobRetry},
		{"JobsConcurrent", testJobsConcurrent},
		{"Erase", testErase},
		{"EraseScan", testEraseScan},
		{"EraseFailureWritesNothing", testEraseFailure},
		{"EraseUnknown", testEraseUnknown},
		{"EraseOtherWorkspace", testEraseOtherWorkspace},
		{"Rekey", testRekey},
		{"DeleteEvents", testDeleteEvents},
		{"ExpiredConsent", testExpiredConsent},
		{"Suppressions", testSuppressions},
		{"Operators", testOperators},
		{"DailyCounts", testDailyCounts},
		{"ConsentDaily", testConsentDaily},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := open(t)
			defer s.Close()
			tc.fn(t, s)
		})
	}
}

func random(n int) []byte {
	b := make([]byte, n)
	rand.Read(b)
	return b
}

// Bootstrap returns a bootstrap spec with random secrets.
func Bootstrap(name string) *trustloop.Bootstrap {
	wk := sha256.Sum256(random(16))
	ak := sha256.Sum256(random(16))
	return &trustloop.Bootstrap{
		Workspace: trustloop.Workspace{Name: name, IndexKey: random(60)},
		Source:    trustloop.Source{Name: "web", WriteKeyHash: wk[:], AllowedOrigins: []string{"https://shop.example", "https://m.shop.example"}},
		AdminKey:  trustloop.APIKey{Name: "admin", SecretHash: ak[:], Roles: []string{trustloop.RoleAdmin}, Purposes: []string{"essential", "analytics"}},
	}
}

// MustBootstrap bootstraps s and fails the test otherwise.
func MustBootstrap(t testing.TB, s trustloop.Store) *trustloop.Bootstrap {
	t.Helper()
	b := Bootstrap("default")
	created, err := s.Bootstrap(context.Background(), b)
	if err != nil || !created {
		t.Fatalf("Bootstrap = %v, %v; want created", created, err)
	}
	return b
}

func testBootstrap(t *testing.T, s trustloop.Store) {
	ctx := context.Background()
	b := MustBootstrap(t, s)
	if b.Workspace.ID == 0 || b.Source.ID == 0 || b.AdminKey.ID == 0 {
		t.Fatalf("ids not filled in: %+v", b)
	}
	if b.Source.WorkspaceID != b.Workspace.ID || b.AdminKey.WorkspaceID != b.Workspace.ID {
		t.Fatalf("workspace ids not filled in: %+v", b)
	}
	w, err := s.FindWorkspace(ctx, b.Workspace.ID)
	if err != nil {
		t.Fatal(err)
	}
	all, err := s.ListWorkspaces(ctx)
	if err != nil || len(all) != 1 || all[0].ID != w.ID || !bytes.Equal(all[0].IndexKey, w.IndexKey) {
		t.Fatalf("ListWorkspaces = %v, %v", all, err)
	}
	if w.Name != "default" || !bytes.Equal(w.IndexKey, b.Workspace.IndexKey) || w.CreatedAt.IsZero() {
		t.Fatalf("workspace = %+v", w)
	}
	src, err := s.FindSourceByWriteKeyHash(ctx, b.Source.WriteKeyHash)
	if err != nil {
		t.Fatal(err)
	}
	if src.ID != b.Source.ID || src.WorkspaceID != b.Workspace.ID || src.Name != "web" ||
		fmt.Sprint(src.AllowedOrigins) != fmt.Sprint(b.Source.AllowedOrigins) {
		t.Fatalf("source = %+v, want %+v", src, b.Source)
	}
}

func testBootstrapOnce(t *testing.T, s trustloop.Store) {
	ctx := context.Background()
	first := MustBootstrap(t, s)
	second := Bootstrap("other")
	created, err := s.Bootstrap(ctx, second)
	if err != nil || created {
		t.Fatalf("second Bootstrap = %v, %v; want false, nil", created, err)
	}
	if _, err := s.FindSourceByWriteKeyHash(ctx, second.Source.WriteKeyHash); trustloop.ErrorCode(err) != trustloop.ENOTFOUND {
		t.Fatalf("second bootstrap's source exists: err=%v", err)
	}
	st, err := s.Stats(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if st.Workspaces != 1 || st.Sources != 1 {
		t.Fatalf("stats after second bootstrap = %+v", st)
	}
	if _, err := s.FindWorkspace(ctx, first.Workspace.ID); err != nil {
		t.Fatal(err)
	}
}

func testFindNotFound(t *testing.T, s trustloop.Store) {
	ctx := context.Background()
	MustBootstrap(t, s)
	if _, err := s.FindWorkspace(ctx, 987654); trustloop.ErrorCode(err) != trustloop.ENOTFOUND {
		t.Fatalf("FindWorkspace(unknown) err = %v, want not_found", err)
	}
	if _, err := s.FindSourceByWriteKeyHash(ctx, random(32)); trustloop.ErrorCode(err) != trustloop.ENOTFOUND {
		t.Fatalf("FindSourceByWriteKeyHash(unknown) err = %v, want not_found", err)
	}
}

// event makes a stored event for the bootstrap's source.
func event(b *trustloop.Bootstrap, keyID int64, hash []byte, ts time.Time) trustloop.StoredEvent {
	return trustloop.StoredEvent{
		WorkspaceID: b.Workspace.ID, SourceID: b.Source.ID, MessageHash: hash, KeyID: keyID,
		Type: trustloop.EventTrack, ReceivedAt: ts, Timestamp: ts.Add(-time.Second), Payload: random(200),
	}
}

func newKey(b *trustloop.Bootstrap, id int64) trustloop.SubjectKey {
	return trustloop.SubjectKey{ID: id, WorkspaceID: b.Workspace.ID, Blind: random(32), Wrapped: random(60),
		CreatedAt: time.UnixMilli(1_700_000_000_000).UTC()}
}

func testAppendAndList(t *testing.T, s trustloop.Store) {
	ctx := context.Background()
	b := MustBootstrap(t, s)
	k := newKey(b, 42)
	base := time.UnixMilli(1_750_000_000_123).UTC()
	var want []trustloop.StoredEvent
	for i := 0; i < 10; i++ {
		e := event(b, k.ID, random(16), base.Add(time.Duration(i)*time.Millisecond))
		e.Type = trustloop.EventType(i%6 + 1)
		want = append(want, e)
	}
	n, err := s.AppendEvents(ctx, &trustloop.CommitBatch{NewKeys: []trustloop.SubjectKey{k}, Events: want[:4]})
	if err != nil || n != 4 {
		t.Fatalf("AppendEvents = %d, %v; want 4", n, err)
	}
	n, err = s.AppendEvents(ctx, &trustloop.CommitBatch{Events: want[4:]})
	if err != nil || n != 6 {
		t.Fatalf("AppendEvents = %d, %v; want 6", n, err)
	}
	got, err := s.ListEvents(ctx, b.Workspace.ID, 0, 100)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(want) {
		t.Fatalf("ListEvents returned %d events, want %d", len(got), len(want))
	}
	for i := range got {
		g, w := got[i], want[i]
		if i > 0 && g.Seq <= got[i-1].Seq {
			t.Fatalf("seq not increasing at %d: %d after %d", i, g.Seq, got[i-1].Seq)
		}
		if g.WorkspaceID != w.WorkspaceID || g.SourceID != w.SourceID || !bytes.Equal(g.MessageHash, w.MessageHash) ||
			g.KeyID != w.KeyID || g.Type != w.Type || !g.ReceivedAt.Equal(w.ReceivedAt) || !g.Timestamp.Equal(w.Timestamp) ||
			!bytes.Equal(g.Payload, w.Payload) {
			t.Fatalf("event %d = %+v, want %+v", i, g, w)
		}
	}
	// Paging by position.
	page, err := s.ListEvents(ctx, b.Workspace.ID, got[3].Seq, 2)
	if err != nil {
		t.Fatal(err)
	}
	if len(page) != 2 || page[0].Seq != got[4].Seq || page[1].Seq != got[5].Seq {
		t.Fatalf("page after seq %d = %v", got[3].Seq, page)
	}
	// Another workspace sees nothing.
	if other, err := s.ListEvents(ctx, b.Workspace.ID+1000, 0, 100); err != nil || len(other) != 0 {
		t.Fatalf("other workspace's events = %d, %v", len(other), err)
	}
}

func testDedupe(t *testing.T, s trustloop.Store) {
	ctx := context.Background()
	b := MustBootstrap(t, s)
	// Received now: a store may forget message ids received longer ago than its
	// dedupe window (at least 7 days).
	now := time.Now().UTC().Truncate(time.Millisecond)
	h1, h2 := random(16), random(16)
	batch := &trustloop.CommitBatch{NewKeys: []trustloop.SubjectKey{newKey(b, 7)},
		Events: []trustloop.StoredEvent{event(b, 7, h1, now), event(b, 7, h1, now), event(b, 7, h2, now)}}
	n, err := s.AppendEvents(ctx, batch)
	if err != nil || n != 2 {
		t.Fatalf("AppendEvents with a repeat inside = %d, %v; want 2", n, err)
	}
	n, err = s.AppendEvents(ctx, &trustloop.CommitBatch{Events: []trustloop.StoredEvent{event(b, 7, h2, now), event(b, 7, h1, now)}})
	if err != nil || n != 0 {
		t.Fatalf("AppendEvents of repeats = %d, %v; want 0", n, err)
	}
	// The same message hash from another source is another event.
	e := event(b, 7, h1, now)
	e.SourceID = b.Source.ID + 1
	if n, err = s.AppendEvents(ctx, &trustloop.CommitBatch{Events: []trustloop.StoredEvent{e}}); err != nil || n != 1 {
		t.Fatalf("AppendEvents from another source = %d, %v; want 1", n, err)
	}
	got, err := s.ListEvents(ctx, b.Workspace.ID, 0, 100)
	if err != nil || len(got) != 3 {
		t.Fatalf("ListEvents = %d events, %v; want 3", len(got), err)
	}
	// The first copy is the one kept.
	if !bytes.Equal(got[0].Payload, batch.Events[0].Payload) {
		t.Fatal("a repeat replaced the stored event")
	}
}

func testSubjectKeys(t *testing.T, s trustloop.Store) {
	ctx := context.Background()
	b := MustBootstrap(t, s)
	keys := []trustloop.SubjectKey{newKey(b, 1), newKey(b, 2), newKey(b, 3)}
	if _, err := s.AppendEvents(ctx, &trustloop.CommitBatch{NewKeys: keys}); err != nil {
		t.Fatal(err)
	}
	got, err := s.FindSubjectKeys(ctx, b.Workspace.ID, [][]byte{keys[0].Blind, keys[2].Blind, random(32)})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 {
		t.Fatalf("FindSubjectKeys found %d, want 2", len(got))
	}
	for _, want := range []trustloop.SubjectKey{keys[0], keys[2]} {
		g, ok := got[string(want.Blind)]
		if !ok || g.ID != want.ID || !bytes.Equal(g.Wrapped, want.Wrapped) || g.WorkspaceID != want.WorkspaceID ||
			!g.CreatedAt.Equal(want.CreatedAt) {
			t.Fatalf("key %d = %+v, want %+v", want.ID, g, want)
		}
	}
	if other, err := s.FindSubjectKeys(ctx, b.Workspace.ID+1000, [][]byte{keys[0].Blind}); err != nil || len(other) != 0 {
		t.Fatalf("another workspace found %d keys, %v", len(other), err)
	}
	// More blinds than one lookup chunk.
	var many [][]byte
	for i := 0; i < 1200; i++ {
		many = append(many, random(32))
	}
	many = append(many, keys[1].Blind)
	if got, err := s.FindSubjectKeys(ctx, b.Workspace.ID, many); err != nil || len(got) != 1 {
		t.Fatalf("FindSubjectKeys(1201 blinds) = %d, %v; want 1", len(got), err)
	}
}

func testKeyConflict(t *testing.T, s trustloop.Store) {
	ctx := context.Background()
	b := MustBootstrap(t, s)
	k := newKey(b, 10)
	if _, err := s.AppendEvents(ctx, &trustloop.CommitBatch{NewKeys: []trustloop.SubjectKey{k}}); err != nil {
		t.Fatal(err)
	}
	// Another writer made a key for the same blind index: nothing of this batch
	// may be written.
	dup := k
	dup.ID = 11
	fresh := newKey(b, 12)
	_, err := s.AppendEvents(ctx, &trustloop.CommitBatch{NewKeys: []trustloop.SubjectKey{fresh, dup},
		Events: []trustloop.StoredEvent{event(b, 11, random(16), time.Now())}})
	if trustloop.ErrorCode(err) != trustloop.ECONFLICT {
		t.Fatalf("AppendEvents with a conflicting key: err = %v, want conflict", err)
	}
	if evs, _ := s.ListEvents(ctx, b.Workspace.ID, 0, 10); len(evs) != 0 {
		t.Fatalf("%d events written by a failed batch", len(evs))
	}
	if got, _ := s.FindSubjectKeys(ctx, b.Workspace.ID, [][]byte{fresh.Blind}); len(got) != 0 {
		t.Fatal("a key of a failed batch was written")
	}
}

func testLargeBatch(t *testing.T, s trustloop.Store) {
	ctx := context.Background()
	b := MustBootstrap(t, s)
	now := time.Now()
	batch := &trustloop.CommitBatch{NewKeys: []trustloop.SubjectKey{newKey(b, 99)}}
	for i := 0; i < 5003; i++ {
		batch.Events = append(batch.Events, event(b, 99, random(16), now))
	}
	if n, err := s.AppendEvents(ctx, batch); err != nil || n != 5003 {
		t.Fatalf("AppendEvents(5003) = %d, %v", n, err)
	}
	var total int
	var after int64
	for {
		page, err := s.ListEvents(ctx, b.Workspace.ID, after, 1000)
		if err != nil {
			t.Fatal(err)
		}
		if len(page) == 0 {
			break
		}
		for i := range page {
			if w := batch.Events[total+i]; !bytes.Equal(page[i].Payload, w.Payload) || !bytes.Equal(page[i].MessageHash, w.MessageHash) {
				t.Fatalf("event %d of the large batch came back changed", total+i)
			}
		}
		total += len(page)
		after = page[len(page)-1].Seq
	}
	if total != 5003 {
		t.Fatalf("listed %d events, want 5003", total)
	}
}

func testStats(t *testing.T, s trustloop.Store) {
	ctx := context.Background()
	st, err := s.Stats(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if st != (trustloop.Stats{}) {
		t.Fatalf("empty store stats = %+v", st)
	}
	b := MustBootstrap(t, s)
	if _, err := s.AppendEvents(ctx, &trustloop.CommitBatch{NewKeys: []trustloop.SubjectKey{newKey(b, 5), newKey(b, 6)},
		Events: []trustloop.StoredEvent{event(b, 5, random(16), time.Now()), event(b, 6, random(16), time.Now()), event(b, 6, random(16), time.Now())}}); err != nil {
		t.Fatal(err)
	}
	st, err = s.Stats(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if st.Workspaces != 1 || st.Sources != 1 || st.Events != 3 || st.SubjectKeys != 2 {
		t.Fatalf("stats = %+v", st)
	}
}

func testSettings(t *testing.T, s trustloop.Store) {
	ctx := context.Background()
	b := MustBootstrap(t, s)
	ws := b.Workspace.ID
	if _, _, err := s.FindSetting(ctx, ws, "profiles"); trustloop.ErrorCode(err) != trustloop.ENOTFOUND {
		t.Fatalf("unset setting: err = %v, want not_found", err)
	}
	v, err := s.PutSetting(ctx, ws, "profiles", []byte(`{"a":1}`), 0)
	if err != nil || v != 1 {
		t.Fatalf("first put = %d, %v", v, err)
	}
	if _, err := s.PutSetting(ctx, ws, "profiles", []byte(`{"a":2}`), 0); trustloop.ErrorCode(err) != trustloop.ECONFLICT {
		t.Fatalf("second create: err = %v, want conflict", err)
	}
	if v, err = s.PutSetting(ctx, ws, "profiles", []byte(`{"a":3}`), 1); err != nil || v != 2 {
		t.Fatalf("update = %d, %v", v, err)
	}
	if _, err := s.PutSetting(ctx, ws, "profiles", []byte(`{"a":4}`), 1); trustloop.ErrorCode(err) != trustloop.ECONFLICT {
		t.Fatalf("stale update: err = %v, want conflict", err)
	}
	got, version, err := s.FindSetting(ctx, ws, "profiles")
	if err != nil || version != 2 || string(got) != `{"a":3}` {
		t.Fatalf("setting = %s v%d, %v", got, version, err)
	}
	if _, _, err := s.FindSetting(ctx, ws+1000, "profiles"); trustloop.ErrorCode(err) != trustloop.ENOTFOUND {
		t.Fatalf("another workspace sees the setting: %v", err)
	}
}
