package sqlite

import (
	"context"
	"testing"
	"time"

	"github.com/trustloop/trustloop"
	"github.com/trustloop/trustloop/storetest"
	"pgregory.net/rapid"
)

func TestBloomHasNoFalseNegatives(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		n := rapid.IntRange(1, 3000).Draw(t, "n")
		b := make([]uint64, bloomWords(n))
		keys := make([]dedupeKey, n)
		for i := range keys {
			keys[i] = makeKey(1, randomHash())
			bloomAdd(b, keys[i])
		}
		for _, k := range keys {
			if !bloomHas(b, k) {
				t.Fatalf("key added but not found")
			}
		}
	})
}

func TestBloomFalsePositiveRate(t *testing.T) {
	const n = 100_000
	b := make([]uint64, bloomWords(n))
	for range n {
		bloomAdd(b, makeKey(1, randomHash()))
	}
	fp := 0
	for range n {
		if bloomHas(b, makeKey(1, randomHash())) {
			fp++
		}
	}
	if rate := float64(fp) / n; rate > 0.03 {
		t.Fatalf("false positive rate %.3f, want about 0.01", rate)
	}
}

// settle waits for a background sort of a frozen level, so that the next commit
// writes the run.
func settle(db *DB) {
	db.mu.Lock()
	db.takeSorted(true)
	db.mu.Unlock()
}

// With a small memory level the index spills into runs; every repeat is still
// found, across a reopen, and covered dedupe_log rows are pruned.
func TestDBDedupeSpillsToRuns(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	opt := Options{DedupeMemEntries: 100}
	db, err := OpenWith(ctx, dir, opt)
	if err != nil {
		t.Fatal(err)
	}
	b := storetest.MustBootstrap(t, db)
	now := time.Now().UTC().Truncate(time.Millisecond)
	var all []trustloop.StoredEvent
	for g := 0; g < 40; g++ {
		var group []trustloop.StoredEvent
		for range 50 {
			group = append(group, ev(b, randomHash(), now))
		}
		if n := mustAppend(t, db, group...); n != 50 {
			t.Fatalf("group %d stored %d, want 50", g, n)
		}
		if g%3 == 0 {
			settle(db) // else leave the sort to finish (or not) on its own
		}
		all = append(all, group...)
	}
	// The last frozen level's sort may still be running: wait for it, and
	// let one more commit write its run, so the figures below do not depend
	// on how fast the background sort was (this check failed now and then on
	// a loaded machine with 250 keys still in memory).
	settle(db)
	last := ev(b, randomHash(), now)
	if n := mustAppend(t, db, last); n != 1 {
		t.Fatalf("the last event stored %d, want 1", n)
	}
	all = append(all, last)
	mem, persisted, runs := db.DedupeStats()
	if runs < 10 || persisted < 1500 || mem > 200 {
		t.Fatalf("memory %d, persisted %d in %d runs: want most keys in runs", mem, persisted, runs)
	}
	for i := 0; i < len(all); i += 100 {
		if n := mustAppend(t, db, all[i:min(i+100, len(all))]...); n != 0 {
			t.Fatalf("repeats %d..%d stored %d, want 0", i, i+100, n)
		}
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}

	db, err = OpenWith(ctx, dir, opt)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	for i := 0; i < len(all); i += 250 {
		if n := mustAppend(t, db, all[i:min(i+250, len(all))]...); n != 0 {
			t.Fatalf("after reopen, repeats %d..%d stored %d, want 0", i, i+250, n)
		}
	}
	if got := countEvents(t, db); got != int64(len(all)) {
		t.Fatalf("%d events stored, want %d", got, len(all))
	}
}

// Blocks of a run whose header never committed (a crash mid-spill) are deleted at
// open, and the keys are rebuilt from dedupe_log, which was not pruned.
func TestDBDedupeIncompleteRunIsDropped(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	db, err := OpenWith(ctx, dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	b := storetest.MustBootstrap(t, db)
	now := time.Now().UTC().Truncate(time.Millisecond)
	a := ev(b, randomHash(), now)
	mustAppend(t, db, a)
	if _, err := db.write.Exec(`INSERT INTO dedupe_blocks (run_id, block, keys) VALUES (77, 0, ?)`, packKeys([]dedupeKey{{1, 2}})); err != nil {
		t.Fatal(err)
	}
	db.Close()

	db, err = OpenWith(ctx, dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var n int
	db.write.QueryRow(`SELECT COUNT(*) FROM dedupe_blocks`).Scan(&n)
	if n != 0 {
		t.Fatalf("%d orphan blocks left after open", n)
	}
	if got := mustAppend(t, db, a); got != 0 {
		t.Fatal("a repeat was stored after the reopen")
	}
}

// Runs wholly outside the window are deleted, and their keys forgotten.
func TestDBDedupeRunsExpire(t *testing.T) {
	db := open(t, t.TempDir(), Options{DedupeWindow: 2 * day, DedupeMemEntries: 10})
	b := storetest.MustBootstrap(t, db)
	now := time.Now().UTC().Truncate(time.Millisecond)
	clock := now
	db.Now = func() time.Time { return clock }
	var old []trustloop.StoredEvent
	for range 30 {
		old = append(old, ev(b, randomHash(), now))
	}
	mustAppend(t, db, old...)
	settle(db)
	mustAppend(t, db, ev(b, randomHash(), now)) // writes the frozen run
	if _, _, runs := db.DedupeStats(); runs != 1 {
		t.Fatalf("%d runs, want 1", runs)
	}
	clock = now.Add(4 * day)
	for range 3 { // each commit does one step of upkeep
		mustAppend(t, db, ev(b, randomHash(), clock))
	}
	if _, _, runs := db.DedupeStats(); runs != 0 {
		t.Fatalf("%d runs after the window passed, want 0", runs)
	}
	if n := mustAppend(t, db, old[0]); n != 1 {
		t.Fatalf("a repeat from outside the window stored %d, want 1", n)
	}
}
