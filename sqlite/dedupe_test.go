package sqlite

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"testing"
	"time"

	"github.com/trustloop/trustloop"
	"github.com/trustloop/trustloop/storetest"
	"pgregory.net/rapid"
)

func randomHash() []byte {
	h := make([]byte, 16)
	rand.Read(h)
	return h
}

// seqKey is the i-th of a sequence of distinct keys. Its hash is a digest, as the
// keyed message hashes the store sees are: the set indexes slots by the low bits
// of the hash as they are, without mixing, so it relies on them being uniform.
func seqKey(i uint64) dedupeKey {
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], i)
	h := sha256.Sum256(b[:])
	return makeKey(1, h[:16])
}

func TestHashSetAddHas(t *testing.T) {
	var s hashSet
	if s.has(seqKey(1)) {
		t.Fatal("empty set has a key")
	}
	s.add(seqKey(1))
	s.add(seqKey(1))
	if !s.has(seqKey(1)) || s.n != 1 {
		t.Fatalf("after adding one key twice: has=%v n=%d", s.has(seqKey(1)), s.n)
	}
	if s.has(seqKey(2)) {
		t.Fatal("set has a key never added")
	}
}

func TestHashSetGrowth(t *testing.T) {
	const n = 300_000 // from 1,024 slots to 524,288: ten doublings
	var s hashSet
	for i := range uint64(n) {
		s.add(seqKey(i))
		if s.n*4 > len(s.slots)*3 {
			t.Fatalf("load over 3/4 at %d keys: %d slots", s.n, len(s.slots))
		}
	}
	if s.n != n {
		t.Fatalf("n = %d, want %d", s.n, n)
	}
	if len(s.slots)&(len(s.slots)-1) != 0 {
		t.Fatalf("%d slots is not a power of two", len(s.slots))
	}
	for i := range uint64(n) {
		if !s.has(seqKey(i)) {
			t.Fatalf("key %d lost across resizes", i)
		}
	}
	for i := uint64(n); i < n+10_000; i++ {
		if s.has(seqKey(i)) {
			t.Fatalf("key %d found, never added", i)
		}
	}
	// Keys that all land in one bucket (equal low bits of k[0]) probe past each other.
	var c hashSet
	for i := range uint64(2000) {
		c.add(dedupeKey{i << 32, i + 1})
	}
	for i := range uint64(2000) {
		if !c.has(dedupeKey{i << 32, i + 1}) || c.has(dedupeKey{i << 32, i + 2}) {
			t.Fatalf("clustered key %d", i)
		}
	}
}

func TestMakeKeyZero(t *testing.T) {
	// Source 0 and an all-zero hash fold to the all-zero key, which marks an empty
	// slot; makeKey moves it.
	zero := makeKey(0, make([]byte, 16))
	if zero == (dedupeKey{}) {
		t.Fatal("makeKey returned the empty-slot key")
	}
	var s hashSet
	if s.has(zero) {
		t.Fatal("empty set has the zero key")
	}
	s.add(seqKey(5))
	if s.has(zero) {
		t.Fatal("set has the zero key, never added")
	}
	s.add(zero)
	if !s.has(zero) || s.n != 2 {
		t.Fatalf("zero key: has=%v n=%d", s.has(zero), s.n)
	}
	for range 5000 { // and it survives resizes
		s.add(makeKey(7, randomHash()))
	}
	if !s.has(zero) || !s.has(seqKey(5)) {
		t.Fatal("zero key lost across resizes")
	}
	// The source is folded in: one hash under two sources is two keys.
	h := randomHash()
	if makeKey(1, h) == makeKey(2, h) {
		t.Fatal("the source is not part of the key")
	}
	// Short hashes are padded, not a panic.
	if makeKey(1, []byte{1}) == makeKey(1, []byte{2}) {
		t.Fatal("short hashes collide")
	}
}

// TestHashSetProperty checks hashSet against a map, over keys drawn from small
// ranges so that repeats and probe collisions are common.
func TestHashSetProperty(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		var s hashSet
		ref := map[dedupeKey]bool{}
		word := rapid.OneOf(rapid.Uint64Range(0, 64), rapid.Uint64())
		key := rapid.Custom(func(t *rapid.T) dedupeKey {
			k := dedupeKey{word.Draw(t, "k0"), word.Draw(t, "k1")}
			if k == (dedupeKey{}) { // not a key: makeKey never makes it
				k[1] = 1
			}
			return k
		})
		for range rapid.IntRange(0, 3000).Draw(t, "ops") {
			k := key.Draw(t, "key")
			if rapid.Bool().Draw(t, "add") {
				s.add(k)
				ref[k] = true
			}
			if got := s.has(k); got != ref[k] {
				t.Fatalf("has(%v) = %v, want %v", k, got, ref[k])
			}
			if s.n != len(ref) {
				t.Fatalf("n = %d, want %d", s.n, len(ref))
			}
		}
		for k := range ref {
			if !s.has(k) {
				t.Fatalf("key %v lost", k)
			}
		}
	})
}

const day = 24 * time.Hour

func TestDedupeWindow(t *testing.T) {
	now := time.Date(2024, 5, 10, 12, 0, 0, 0, time.UTC)
	d := newDedupe(3*day, 0)
	old, edge, recent, today := seqKey(1), seqKey(2), seqKey(3), seqKey(4)
	d.add(old, now.Add(-5*day).UnixMilli())
	d.add(edge, now.Add(-3*day+time.Hour).UnixMilli())
	d.add(recent, now.Add(-day).UnixMilli())
	d.add(today, now.UnixMilli())
	d.add(today, now.UnixMilli()) // a repeat is not counted twice
	if d.total != 4 {
		t.Fatalf("total = %d, want 4", d.total)
	}
	d.expire(now)
	if d.has(old) {
		t.Fatal("an entry older than the window is remembered")
	}
	for _, k := range []dedupeKey{edge, recent, today} {
		if !d.has(k) {
			t.Fatalf("entry %v within the window forgotten", k)
		}
	}
	if d.total != 3 || d.shortened != 0 {
		t.Fatalf("total = %d, shortened = %d; want 3, 0", d.total, d.shortened)
	}
	// Days later, everything but today's goes.
	d.expire(now.Add(3*day + time.Hour))
	if d.has(edge) || d.has(recent) || !d.has(today) || d.total != 1 {
		t.Fatalf("after 3 days: edge=%v recent=%v today=%v total=%d", d.has(edge), d.has(recent), d.has(today), d.total)
	}
	d.expire(now.Add(10 * day))
	if d.has(today) || d.total != 0 || len(d.days) != 0 {
		t.Fatalf("after the window: total=%d days=%d", d.total, len(d.days))
	}
}

func TestDedupeMaxEntries(t *testing.T) {
	now := time.Date(2024, 5, 10, 12, 0, 0, 0, time.UTC)
	d := newDedupe(8*day, 10)
	var keys [4][]dedupeKey // keys[i]: received i days ago
	for i := 3; i >= 0; i-- {
		for j := range 4 {
			k := seqKey(uint64(100*i + j))
			keys[i] = append(keys[i], k)
			d.add(k, now.Add(-time.Duration(i)*day).UnixMilli())
		}
	}
	d.expire(now)
	// 16 entries, cap 10: the two oldest days (3 and 2 days ago) go.
	if d.total != 8 || d.shortened != 2 {
		t.Fatalf("total = %d, shortened = %d; want 8, 2", d.total, d.shortened)
	}
	for i, ks := range keys {
		for _, k := range ks {
			if d.has(k) != (i < 2) {
				t.Fatalf("key of %d days ago: has = %v", i, d.has(k))
			}
		}
	}
	// The newest day is kept even when it alone is over the cap.
	for j := range 20 {
		d.add(seqKey(uint64(1000+j)), now.UnixMilli())
	}
	d.expire(now)
	if len(d.days) != 1 || d.total != 24 || !d.has(keys[0][0]) || d.shortened != 3 {
		t.Fatalf("days = %d, total = %d, shortened = %d", len(d.days), d.total, d.shortened)
	}
}

// open opens a store in dir with opt; closed at the end of the test.
func open(t *testing.T, dir string, opt Options) *DB {
	t.Helper()
	db, err := OpenWith(context.Background(), dir, opt)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

func ev(b *trustloop.Bootstrap, hash []byte, received time.Time) trustloop.StoredEvent {
	return trustloop.StoredEvent{WorkspaceID: b.Workspace.ID, SourceID: b.Source.ID, MessageHash: hash, KeyID: 1,
		Type: trustloop.EventTrack, ReceivedAt: received, Timestamp: received, Payload: randomHash()}
}

func mustAppend(t *testing.T, db *DB, events ...trustloop.StoredEvent) int {
	t.Helper()
	n, err := db.AppendEvents(context.Background(), &trustloop.CommitBatch{Events: events})
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func countEvents(t *testing.T, db *DB) int64 {
	t.Helper()
	st, err := db.Stats(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return st.Events
}

func TestDBDedupeWindow(t *testing.T) {
	db := open(t, t.TempDir(), Options{DedupeWindow: 2 * day})
	b := storetest.MustBootstrap(t, db)
	now := time.Now().UTC().Truncate(time.Millisecond)
	clock := now
	db.Now = func() time.Time { return clock }

	a := ev(b, randomHash(), now)
	if n := mustAppend(t, db, a); n != 1 {
		t.Fatalf("stored %d, want 1", n)
	}
	if n := mustAppend(t, db, a); n != 0 {
		t.Fatalf("repeat stored %d, want 0", n)
	}

	// Five days on, a is outside the window: sent again, it is new.
	clock = now.Add(5 * day)
	fresh := ev(b, randomHash(), clock)
	recent := ev(b, randomHash(), clock.Add(-day))
	if n := mustAppend(t, db, fresh, recent); n != 2 {
		t.Fatalf("stored %d, want 2", n)
	}
	if n := mustAppend(t, db, a); n != 1 {
		t.Fatalf("a repeat after the window stored %d, want 1", n)
	}
	if n := mustAppend(t, db, fresh, recent); n != 0 {
		t.Fatalf("repeats within the window stored %d, want 0", n)
	}
	if got := countEvents(t, db); got != 4 {
		t.Fatalf("%d events, want 4", got)
	}
}

func TestDBDedupeMaxEntries(t *testing.T) {
	db := open(t, t.TempDir(), Options{DedupeMaxEntries: 5})
	b := storetest.MustBootstrap(t, db)
	now := time.Now().UTC().Truncate(time.Millisecond)
	db.Now = func() time.Time { return now }

	var older, newer []trustloop.StoredEvent
	for range 4 {
		older = append(older, ev(b, randomHash(), now.Add(-3*day)))
		newer = append(newer, ev(b, randomHash(), now))
	}
	mustAppend(t, db, older...)
	if db.DedupeShortened() != 0 {
		t.Fatal("shortened under the cap")
	}
	mustAppend(t, db, newer...) // 8 > 5: the older day goes early
	if got := db.DedupeShortened(); got != 1 {
		t.Fatalf("DedupeShortened = %d, want 1", got)
	}
	if n := mustAppend(t, db, newer...); n != 0 {
		t.Fatalf("newest day forgotten: stored %d repeats", n)
	}
	if n := mustAppend(t, db, older[0]); n != 1 {
		t.Fatalf("repeat of a dropped day stored %d, want 1 (it was forgotten)", n)
	}
}

func TestDBDedupeSurvivesReopen(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	db, err := OpenWith(ctx, dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	b := storetest.MustBootstrap(t, db)
	now := time.Now().UTC().Truncate(time.Millisecond)
	var events []trustloop.StoredEvent
	for range 300 {
		events = append(events, ev(b, randomHash(), now))
	}
	if n := mustAppend(t, db, events...); n != 300 {
		t.Fatalf("stored %d, want 300", n)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}

	db = open(t, dir, Options{})
	if db.dd.total != 300 {
		t.Fatalf("reopened dedupe set holds %d, want 300", db.dd.total)
	}
	// Same source and message hash, other payload and time: still a repeat.
	again := events[17]
	again.Payload, again.ReceivedAt = randomHash(), now.Add(time.Minute)
	if n := mustAppend(t, db, again); n != 0 {
		t.Fatalf("repeat after reopen stored %d, want 0", n)
	}
	if n := mustAppend(t, db, events...); n != 0 {
		t.Fatalf("repeats after reopen stored %d, want 0", n)
	}
	// Another source with the same hash is another message.
	other := events[17]
	other.SourceID = b.Source.ID + 1
	if n := mustAppend(t, db, other); n != 1 {
		t.Fatalf("same hash, other source stored %d, want 1", n)
	}
	if got := countEvents(t, db); got != 301 {
		t.Fatalf("%d events, want 301", got)
	}
}

func TestDBReopenSkipsExpired(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	opt := Options{DedupeWindow: time.Hour}
	db, err := OpenWith(ctx, dir, opt)
	if err != nil {
		t.Fatal(err)
	}
	b := storetest.MustBootstrap(t, db)
	now := time.Now().UTC().Truncate(time.Millisecond)
	old := ev(b, randomHash(), now.Add(-3*time.Hour))
	recent := ev(b, randomHash(), now.Add(-time.Minute))
	if n := mustAppend(t, db, old, recent); n != 2 {
		t.Fatalf("stored %d, want 2", n)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}

	db = open(t, dir, opt)
	if db.dd.total != 1 {
		t.Fatalf("reopened dedupe set holds %d, want only the recent event", db.dd.total)
	}
	if n := mustAppend(t, db, recent); n != 0 {
		t.Fatalf("recent repeat stored %d, want 0", n)
	}
	if n := mustAppend(t, db, old); n != 1 {
		t.Fatalf("repeat of an event received before the window stored %d, want 1", n)
	}
}

func TestDBDedupeInBatch(t *testing.T) {
	db := open(t, t.TempDir(), Options{})
	b := storetest.MustBootstrap(t, db)
	now := time.Now().UTC()
	h := randomHash()
	if n := mustAppend(t, db, ev(b, h, now), ev(b, randomHash(), now), ev(b, h, now)); n != 2 {
		t.Fatalf("stored %d, want 2", n)
	}
	// A failed commit (key conflict) leaves the dedupe set as it was.
	k := trustloop.SubjectKey{ID: 5, WorkspaceID: b.Workspace.ID, Blind: randomHash(), Wrapped: randomHash(), CreatedAt: now}
	if _, err := db.AppendEvents(context.Background(), &trustloop.CommitBatch{NewKeys: []trustloop.SubjectKey{k}}); err != nil {
		t.Fatal(err)
	}
	lost := ev(b, randomHash(), now)
	_, err := db.AppendEvents(context.Background(), &trustloop.CommitBatch{NewKeys: []trustloop.SubjectKey{k}, Events: []trustloop.StoredEvent{lost}})
	if trustloop.ErrorCode(err) != trustloop.ECONFLICT {
		t.Fatalf("err = %v, want conflict", err)
	}
	if n := mustAppend(t, db, lost); n != 1 {
		t.Fatalf("event of a failed commit stored %d when sent again, want 1", n)
	}
}
