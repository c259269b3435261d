package sqlite_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/trustloop/trustloop"
	"github.com/trustloop/trustloop/sqlite"
	"github.com/trustloop/trustloop/storetest"
)

func randBytes(n int) []byte {
	b := make([]byte, n)
	rand.Read(b)
	return b
}

// group makes n events of size bytes each under key id.
func group(b *trustloop.Bootstrap, keyID int64, n, size int) []trustloop.StoredEvent {
	now := time.UnixMilli(1_760_000_000_000).UTC()
	out := make([]trustloop.StoredEvent, n)
	for i := range out {
		out[i] = trustloop.StoredEvent{WorkspaceID: b.Workspace.ID, SourceID: b.Source.ID, MessageHash: randBytes(16),
			KeyID: keyID, Type: trustloop.EventTrack, ReceivedAt: now, Timestamp: now, Payload: randBytes(size)}
	}
	return out
}

func listAll(t *testing.T, db *sqlite.DB, ws int64) []trustloop.StoredEvent {
	t.Helper()
	var out []trustloop.StoredEvent
	var after int64
	for {
		page, err := db.ListEvents(context.Background(), ws, after, 500)
		if err != nil {
			t.Fatal(err)
		}
		if len(page) == 0 {
			return out
		}
		out = append(out, page...)
		after = page[len(page)-1].Seq
	}
}

func samePayloads(t *testing.T, got, want []trustloop.StoredEvent) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%d events stored, want %d", len(got), len(want))
	}
	for i := range got {
		if !bytes.Equal(got[i].Payload, want[i].Payload) || !bytes.Equal(got[i].MessageHash, want[i].MessageHash) {
			t.Fatalf("event %d came back changed", i)
		}
	}
}

func segmentFiles(t *testing.T, dir string) map[string]int64 {
	t.Helper()
	ents, err := os.ReadDir(filepath.Join(dir, "segments"))
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]int64{}
	for _, e := range ents {
		fi, err := e.Info()
		if err != nil {
			t.Fatal(err)
		}
		out[e.Name()] = fi.Size()
	}
	return out
}

// Small groups keep payloads in the row, large ones in segments; both read back
// the same, across a reopen and across segment files.
func TestSegmentsInlineAndRolled(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	opt := sqlite.Options{SegmentMaxBytes: 300 << 10}
	db, err := sqlite.OpenWith(ctx, dir, opt)
	if err != nil {
		t.Fatal(err)
	}
	b := storetest.MustBootstrap(t, db)
	var want []trustloop.StoredEvent
	for i, g := range []struct{ n, size int }{{3, 100}, {200, 1000}, {1, 50}, {250, 1000}, {100, 1200}, {2, 10}} {
		evs := group(b, 7, g.n, g.size)
		if n, err := db.AppendEvents(ctx, &trustloop.CommitBatch{Events: evs}); err != nil || n != g.n {
			t.Fatalf("group %d: AppendEvents = %d, %v", i, n, err)
		}
		want = append(want, evs...)
	}
	samePayloads(t, listAll(t, db, b.Workspace.ID), want)
	if files := segmentFiles(t, dir); len(files) < 2 {
		t.Fatalf("segments %v: want the writer to have rolled to a second file", files)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	db, err = sqlite.OpenWith(ctx, dir, opt)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	samePayloads(t, listAll(t, db, b.Workspace.ID), want)

	ro, err := sqlite.OpenReadOnly(ctx, dir)
	if err != nil {
		t.Fatal(err)
	}
	defer ro.Close()
	samePayloads(t, listAll(t, ro, b.Workspace.ID), want)
}

// A crash between the segment sync and the commit leaves bytes (and maybe a whole
// file) nobody points at: the next open cuts them, and new groups go where they were.
func TestSegmentsUncommittedTailIsCut(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	db, err := sqlite.Open(ctx, dir)
	if err != nil {
		t.Fatal(err)
	}
	b := storetest.MustBootstrap(t, db)
	want := group(b, 7, 300, 1000)
	if _, err := db.AppendEvents(ctx, &trustloop.CommitBatch{Events: want}); err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	before := segmentFiles(t, dir)
	last := filepath.Join(dir, "segments", "0000000000000001.seg")
	f, err := os.OpenFile(last, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.Write(bytes.Repeat([]byte{0xAB}, 5000))
	f.Close()
	os.WriteFile(filepath.Join(dir, "segments", "0000000000000002.seg"), []byte("stray"), 0o600)

	db, err = sqlite.Open(ctx, dir)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	after := segmentFiles(t, dir)
	if len(after) != 1 || after["0000000000000001.seg"] != before["0000000000000001.seg"] {
		t.Fatalf("segments after reopen = %v, want %v", after, before)
	}
	more := group(b, 7, 300, 1000)
	if _, err := db.AppendEvents(ctx, &trustloop.CommitBatch{Events: more}); err != nil {
		t.Fatal(err)
	}
	samePayloads(t, listAll(t, db, b.Workspace.ID), append(want, more...))
}

// A group refused for a key conflict writes nothing, in the rows or the segment.
func TestSegmentsConflictTakesBytesBack(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	db, err := sqlite.Open(ctx, dir)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	b := storetest.MustBootstrap(t, db)
	key := trustloop.SubjectKey{ID: 7, WorkspaceID: b.Workspace.ID, Blind: randBytes(32), Wrapped: randBytes(60), CreatedAt: time.Now()}
	want := group(b, 7, 300, 1000)
	if _, err := db.AppendEvents(ctx, &trustloop.CommitBatch{NewKeys: []trustloop.SubjectKey{key}, Events: want}); err != nil {
		t.Fatal(err)
	}
	size := segmentFiles(t, dir)["0000000000000001.seg"]
	again := key
	again.ID = 8 // same blind: another writer's key for the same subject
	_, err = db.AppendEvents(ctx, &trustloop.CommitBatch{NewKeys: []trustloop.SubjectKey{again}, Events: group(b, 8, 300, 1000)})
	if trustloop.ErrorCode(err) != trustloop.ECONFLICT {
		t.Fatalf("conflicting key: err = %v, want conflict", err)
	}
	if got := segmentFiles(t, dir)["0000000000000001.seg"]; got != size {
		t.Fatalf("segment grew from %d to %d bytes for a refused group", size, got)
	}
	samePayloads(t, listAll(t, db, b.Workspace.ID), want)
}
