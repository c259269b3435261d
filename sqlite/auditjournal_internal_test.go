package sqlite

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/trustloop/trustloop"
)

func testEntry(i int) trustloop.AuditEntry {
	return trustloop.AuditEntry{WorkspaceID: 3, Time: time.UnixMilli(1_790_000_000_000 + int64(i)).UTC(),
		Kind: trustloop.AuditDataUse, Actor: trustloop.AuditActor{Kind: trustloop.ActorAPIKey, ID: "key:1"},
		Purpose: "marketing", Subject: fmt.Sprint(500 + i), Categories: []string{"behavior"}, Action: "GET /v1/profiles/{id}"}
}

// copyStore copies the store's files as a crash would leave them.
func copyStore(t *testing.T, from string) string {
	t.Helper()
	to := t.TempDir()
	for _, name := range []string{FileName, FileName + "-wal", auditJournalName} {
		b, err := os.ReadFile(filepath.Join(from, name))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(to, name), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return to
}

// TestAuditJournalStartsOverOnlyWhenApplied: an append that lands while an
// apply past the wrap size runs is not overwritten by writing starting over:
// a crash after the next append still finds all three.
func TestAuditJournalStartsOverOnlyWhenApplied(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	db, err := OpenWith(ctx, dir, Options{AuditJournalBytes: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	j := db.audit
	close(j.stop) // no applier: this test applies
	<-j.done
	j.stop = make(chan struct{})
	j.done = make(chan struct{})
	close(j.done)

	app := func(i int) {
		t.Helper()
		if err := db.AppendAudit(ctx, []trustloop.AuditEntry{testEntry(i)}); err != nil {
			t.Fatal(err)
		}
	}
	app(0)
	appended := make(chan struct{})
	j.testApplying = func() {
		j.testApplying = nil
		// An append during the apply (it waits for j.mu if the apply
		// holds it through, as it must past the wrap size).
		go func() { app(1); close(appended) }()
		select {
		case <-appended:
		case <-time.After(200 * time.Millisecond):
		}
	}
	db.mu.Lock()
	if err := db.applyAuditLocked(ctx); err != nil {
		t.Fatal(err)
	}
	db.mu.Unlock()
	<-appended
	app(2)
	crashed := copyStore(t, dir)
	db2, err := Open(ctx, crashed)
	if err != nil {
		t.Fatal(err)
	}
	defer db2.Close()
	if n, err := db2.AuditSize(ctx, 3); err != nil || n != 3 {
		t.Fatalf("after the crash the log has %d entries, %v; want 3", n, err)
	}
}

// TestAuditJournalAheadOfTables: a journal holding entries past the tables'
// end (a database file restored without its journal) is refused with advice,
// not replayed with a gap.
func TestAuditJournalAheadOfTables(t *testing.T) {
	dir := t.TempDir()
	e := testEntry(0)
	e.Index = 5
	data, err := e.Encode()
	if err != nil {
		t.Fatal(err)
	}
	frame := appendJournalFrame(nil, []journalRec{{ws: 3, idx: 5, data: data, hashes: make([]byte, 32)}})
	if err := os.WriteFile(filepath.Join(dir, auditJournalName), frame, 0o600); err != nil {
		t.Fatal(err)
	}
	_, err = Open(context.Background(), dir)
	var te *trustloop.Error
	if err == nil || !errors.As(err, &te) || te.Hint == "" {
		t.Fatalf("Open = %v; want an error with a hint", err)
	}
}

// TestJournalFrames: frames round-trip; a frame is read whole or not at all.
func TestJournalFrames(t *testing.T) {
	recs := []journalRec{
		{ws: 1, idx: 0, data: []byte("a"), hashes: bytes.Repeat([]byte{1}, 32), subject: "9"},
		{ws: 1, idx: 1, data: []byte("bb"), hashes: bytes.Repeat([]byte{2}, 64)},
		{ws: 1 << 40, idx: 1 << 50, data: bytes.Repeat([]byte("c"), 300), hashes: nil, subject: "x"},
	}
	b := appendJournalFrame(nil, recs[:2])
	one := len(b)
	b = appendJournalFrame(b, recs[2:])
	got, end := parseJournal(b)
	if end != len(b) || fmt.Sprint(got) != fmt.Sprint(recs) {
		t.Fatalf("parse = %v, %d; want %v, %d", got, end, recs, len(b))
	}
	for cut := one; cut < len(b); cut++ {
		got, end := parseJournal(b[:cut])
		if end != one || len(got) != 2 {
			t.Fatalf("cut at %d: %d records ending at %d; want 2 ending at %d", cut, len(got), end, one)
		}
	}
	if got, end := parseJournal(make([]byte, 64)); len(got) != 0 || end != 0 {
		t.Fatalf("zeros parse as %v, %d", got, end)
	}
}

// FuzzParseJournal: no input makes the parser panic, and what it accepts
// encodes back to exactly the bytes it read.
func FuzzParseJournal(f *testing.F) {
	f.Add(appendJournalFrame(nil, []journalRec{{ws: 1, idx: 2, data: []byte("d"), hashes: make([]byte, 32), subject: "s"}}))
	f.Add([]byte{})
	f.Add(make([]byte, 16))
	f.Fuzz(func(t *testing.T, b []byte) {
		_, end := parseJournal(b)
		if end < 0 || end > len(b) {
			t.Fatalf("end %d of %d", end, len(b))
		}
		// Re-encode frame by frame: the records' frames are the bytes read.
		var again []byte
		off := 0
		for off < end {
			n := int(b[off]) | int(b[off+1])<<8 | int(b[off+2])<<16 | int(b[off+3])<<24
			frame, _ := parseJournal(b[off : off+8+n])
			again = appendJournalFrame(again, frame)
			off += 8 + n
		}
		if !bytes.Equal(again, b[:end]) {
			t.Fatalf("re-encoded %x, read %x", again, b[:end])
		}
	})
}
