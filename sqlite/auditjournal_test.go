package sqlite_test

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/trustloop/trustloop"
	"github.com/trustloop/trustloop/sqlite"
	"golang.org/x/mod/sumdb/tlog"
)

const journalWS = 7

// journalEntry is the i-th data use of the tests' workspace, about subject
// 1,000,000+i%subjects.
func journalEntry(i, subjects int) trustloop.AuditEntry {
	return trustloop.AuditEntry{WorkspaceID: journalWS, Time: time.UnixMilli(1_790_000_000_000 + int64(i)).UTC(),
		Kind: trustloop.AuditDataUse, Actor: trustloop.AuditActor{Kind: trustloop.ActorAPIKey, ID: "key:1"},
		Purpose: "marketing", Subject: fmt.Sprint(1_000_000 + i%subjects), Categories: []string{"behavior"},
		Action: "GET /v1/profiles/{id}"}
}

// checkAuditLog reads a workspace's whole log and checks that it has want
// entries, each the i-th journalEntry, with the stored hashes tlog computes.
func checkAuditLog(t *testing.T, db *sqlite.DB, ws int64, want int, subjects int) {
	t.Helper()
	ctx := context.Background()
	size, err := db.AuditSize(ctx, ws)
	if err != nil || size != int64(want) {
		t.Fatalf("AuditSize = %d, %v; want %d", size, err, want)
	}
	recs, err := db.AuditRecords(ctx, ws, 0, size)
	if err != nil || len(recs) != want {
		t.Fatalf("%d records, %v; want %d", len(recs), err, want)
	}
	checkTlogHashes(t, recs)
	for i, r := range recs {
		e := journalEntry(i, subjects)
		e.Index = int64(i)
		data, err := e.Encode()
		if err != nil {
			t.Fatal(err)
		}
		if r.Index != int64(i) || !bytes.Equal(r.Data, data) {
			t.Fatalf("record %d: index %d, data %q; want %q", i, r.Index, r.Data, data)
		}
	}
}

// checkTlogHashes checks that records are a log's [0, len) and that each
// carries the stored hashes tlog computes for it.
func checkTlogHashes(t *testing.T, recs []trustloop.AuditRecord) {
	t.Helper()
	var ref []tlog.Hash
	reader := tlog.HashReaderFunc(func(idx []int64) ([]tlog.Hash, error) {
		out := make([]tlog.Hash, len(idx))
		for i, x := range idx {
			out[i] = ref[x]
		}
		return out, nil
	})
	for i, r := range recs {
		if r.Index != int64(i) {
			t.Fatalf("record %d has index %d", i, r.Index)
		}
		hs, err := tlog.StoredHashes(int64(i), r.Data, reader)
		if err != nil {
			t.Fatal(err)
		}
		ref = append(ref, hs...)
		var b []byte
		for _, h := range hs {
			b = append(b, h[:]...)
		}
		if !bytes.Equal(r.Hashes, b) {
			t.Fatalf("record %d: stored hashes differ from tlog's", i)
		}
	}
}

// appendEntries appends entries [from, to) in batches of batch.
func appendEntries(t testing.TB, db *sqlite.DB, from, to, batch, subjects int) {
	for i := from; i < to; i += batch {
		var es []trustloop.AuditEntry
		for k := i; k < min(i+batch, to); k++ {
			es = append(es, journalEntry(k, subjects))
		}
		if err := db.AppendAudit(context.Background(), es); err != nil {
			t.Fatal(err)
		}
		for k, e := range es {
			if e.Index != int64(i+k) {
				t.Fatalf("entry %d got index %d", i+k, e.Index)
			}
		}
	}
}

// TestAuditJournalChild is the process TestAuditJournalCrash kills: it opens
// the store in TRUSTLOOP_JOURNAL_DIR, appends entries TRUSTLOOP_JOURNAL_FROM
// to _TO (reading the log's size after every _FLUSH_EVERY-th batch of 3,
// which moves the journal into the tables and lets it start over), and exits
// without closing the store.
func TestAuditJournalChild(t *testing.T) {
	dir := os.Getenv("TRUSTLOOP_JOURNAL_DIR")
	if dir == "" {
		t.Skip("run by TestAuditJournalCrash")
	}
	num := func(k string) int {
		n, err := strconv.Atoi(os.Getenv(k))
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	from, to, every := num("TRUSTLOOP_JOURNAL_FROM"), num("TRUSTLOOP_JOURNAL_TO"), num("TRUSTLOOP_JOURNAL_FLUSH_EVERY")
	// The applier never runs before the exit: what is not read is left in
	// the journal, however slow this process is.
	db, err := sqlite.OpenWith(context.Background(), dir, sqlite.Options{AuditJournalBytes: 2048, AuditApplyDelay: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	for b, i := 0, from; i < to; b, i = b+1, i+3 {
		appendEntries(t, db, i, min(i+3, to), 3, 5)
		if every > 0 && b%every == every-1 && i+3 < to {
			if _, err := db.AuditSize(context.Background(), journalWS); err != nil {
				t.Fatal(err)
			}
		}
	}
	// Acknowledged and not (necessarily) in the tables: a crash now.
	os.Exit(0)
}

// runJournalChild runs TestAuditJournalChild in its own process.
func runJournalChild(t *testing.T, dir string, from, to, flushEvery int) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestAuditJournalChild$", "-test.count=1")
	cmd.Env = append(os.Environ(), "TRUSTLOOP_JOURNAL_DIR="+dir, fmt.Sprintf("TRUSTLOOP_JOURNAL_FROM=%d", from),
		fmt.Sprintf("TRUSTLOOP_JOURNAL_TO=%d", to), fmt.Sprintf("TRUSTLOOP_JOURNAL_FLUSH_EVERY=%d", flushEvery))
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("child: %v\n%s", err, out)
	}
}

// TestAuditJournalCrash: appends a process acknowledged and then died with
// are in the log when the store opens next, whole and hashed as tlog hashes
// them; a frame the crash cut short is not, and nothing after it is lost.
func TestAuditJournalCrash(t *testing.T) {
	ctx := context.Background()
	journal := func(dir string) string { return filepath.Join(dir, "audit.journal") }
	open := func(t *testing.T, dir string) *sqlite.DB {
		t.Helper()
		db, err := sqlite.OpenWith(ctx, dir, sqlite.Options{AuditJournalBytes: 2048})
		if err != nil {
			t.Fatal(err)
		}
		return db
	}

	t.Run("acknowledged appends survive", func(t *testing.T) {
		dir := t.TempDir()
		runJournalChild(t, dir, 0, 30, 0)
		if fi, err := os.Stat(journal(dir)); err != nil || fi.Size() == 0 {
			t.Fatalf("journal after the crash: %v, %v", fi, err)
		}
		db := open(t, dir)
		checkAuditLog(t, db, journalWS, 30, 5)
		// The log goes on from there, and again after a clean stop.
		appendEntries(t, db, 30, 40, 4, 5)
		if err := db.Close(); err != nil {
			t.Fatal(err)
		}
		db = open(t, dir)
		defer db.Close()
		checkAuditLog(t, db, journalWS, 40, 5)
	})

	t.Run("a torn last frame is dropped whole", func(t *testing.T) {
		dir := t.TempDir()
		runJournalChild(t, dir, 0, 30, 0) // ten frames of three
		fi, err := os.Stat(journal(dir))
		if err != nil {
			t.Fatal(err)
		}
		// Cut the last frame short: its three entries go, none of them half.
		if err := os.Truncate(journal(dir), fi.Size()-5); err != nil {
			t.Fatal(err)
		}
		db := open(t, dir)
		defer db.Close()
		checkAuditLog(t, db, journalWS, 27, 5)
		appendEntries(t, db, 27, 31, 2, 5)
		checkAuditLog(t, db, journalWS, 31, 5)
	})

	t.Run("a flipped byte ends the replay there", func(t *testing.T) {
		dir := t.TempDir()
		runJournalChild(t, dir, 0, 30, 0)
		b, err := os.ReadFile(journal(dir))
		if err != nil {
			t.Fatal(err)
		}
		b[len(b)-3] ^= 0x40
		if err := os.WriteFile(journal(dir), b, 0o600); err != nil {
			t.Fatal(err)
		}
		db := open(t, dir)
		defer db.Close()
		checkAuditLog(t, db, journalWS, 27, 5)
	})

	t.Run("writing starts over and old frames are skipped", func(t *testing.T) {
		dir := t.TempDir()
		// 2 KiB journal: the reads after every 4th batch apply it, and past
		// 2 KiB writing starts over at the file's start, leaving older frames
		// behind the new ones.
		runJournalChild(t, dir, 0, 300, 4)
		fi, err := os.Stat(journal(dir))
		if err != nil {
			t.Fatal(err)
		}
		if fi.Size() > 8<<10 {
			t.Fatalf("journal grew to %d bytes with a 2 KiB wrap", fi.Size())
		}
		db := open(t, dir)
		checkAuditLog(t, db, journalWS, 300, 5)
		if err := db.Close(); err != nil {
			t.Fatal(err)
		}
		// A second crash on top of the same file.
		runJournalChild(t, dir, 300, 420, 3)
		db = open(t, dir)
		defer db.Close()
		checkAuditLog(t, db, journalWS, 420, 5)
	})
}

// TestAuditJournalReadsSeePending: an append is visible to every read of the
// log as soon as it returns, before the applier ran.
func TestAuditJournalReadsSeePending(t *testing.T) {
	ctx := context.Background()
	db := MustOpen(t)
	defer db.Close()
	appendEntries(t, db, 0, 5, 5, 5)
	recs, err := db.AuditRecordsOf(ctx, journalWS, "1000002", 0, 10)
	if err != nil || len(recs) != 1 || recs[0].Index != 2 {
		t.Fatalf("AuditRecordsOf = %v, %v; want entry 2", recs, err)
	}
	appendEntries(t, db, 5, 6, 1, 5)
	if hs, err := db.ReadAuditHashes(ctx, journalWS, []int64{tlog.StoredHashIndex(0, 5)}); err != nil || len(hs) != 1 {
		t.Fatalf("ReadAuditHashes = %v, %v", hs, err)
	}
	appendEntries(t, db, 6, 7, 1, 5)
	st, err := db.Stats(ctx)
	if err != nil || st.AuditEntries != 7 {
		t.Fatalf("Stats().AuditEntries = %d, %v; want 7", st.AuditEntries, err)
	}
	appendEntries(t, db, 7, 9, 2, 5)
	checkAuditLog(t, db, journalWS, 9, 5)
}

// TestAuditJournalErase: an erasure right after appends about the subject
// leaves no index row of the subject, also once the applier ran and after a
// restart.
func TestAuditJournalErase(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	db, err := sqlite.Open(ctx, dir)
	if err != nil {
		t.Fatal(err)
	}
	// Subjects 1000000…1000004; 1000003 is erased.
	appendEntries(t, db, 0, 20, 4, 5)
	if _, err := db.Erase(ctx, &trustloop.Erasure{WorkspaceID: journalWS, ProfileIDs: []int64{1000003}}); err != nil {
		t.Fatal(err)
	}
	check := func() {
		t.Helper()
		if recs, err := db.AuditRecordsOf(ctx, journalWS, "1000003", 0, 100); err != nil || len(recs) != 0 {
			t.Fatalf("after the erasure: %d records of the erased subject, %v", len(recs), err)
		}
		if recs, err := db.AuditRecordsOf(ctx, journalWS, "1000002", 0, 100); err != nil || len(recs) != 4 {
			t.Fatalf("another subject: %d records, %v; want 4", len(recs), err)
		}
	}
	check()
	time.Sleep(100 * time.Millisecond) // the applier's turn
	check()
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	if db, err = sqlite.Open(ctx, dir); err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	check()
	checkAuditLog(t, db, journalWS, 20, 5)
}

// TestAuditJournalConcurrent: appends from many goroutines interleaved with
// reads give one log with no gap or duplicate, hashed as tlog hashes it.
func TestAuditJournalConcurrent(t *testing.T) {
	ctx := context.Background()
	db, err := sqlite.OpenWith(ctx, t.TempDir(), sqlite.Options{AuditJournalBytes: 4096})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	const workers, each = 8, 60
	errs := make(chan error, workers)
	for w := range workers {
		go func() {
			for i := range each {
				e := journalEntry(w*1000+i, 1)
				if err := db.AppendAudit(ctx, []trustloop.AuditEntry{e}); err != nil {
					errs <- err
					return
				}
				if i%10 == 0 {
					if _, err := db.AuditSize(ctx, journalWS); err != nil {
						errs <- err
						return
					}
				}
			}
			errs <- nil
		}()
	}
	for range workers {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	recs, err := db.AuditRecords(ctx, journalWS, 0, workers*each)
	if err != nil || len(recs) != workers*each {
		t.Fatalf("%d records, %v", len(recs), err)
	}
	seen := map[string]bool{}
	for i, r := range recs {
		if seen[string(r.Data)] {
			t.Fatalf("record %d twice", i)
		}
		seen[string(r.Data)] = true
	}
	checkTlogHashes(t, recs)
}
