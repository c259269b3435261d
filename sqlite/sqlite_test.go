package sqlite_test

import (
	"context"
	"database/sql"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/trustloop/trustloop"
	"github.com/trustloop/trustloop/sqlite"
	"github.com/trustloop/trustloop/storetest"
)

// MustOpen opens a store in a fresh temporary directory.
func MustOpen(tb testing.TB) *sqlite.DB {
	tb.Helper()
	db, err := sqlite.Open(context.Background(), tb.TempDir())
	if err != nil {
		tb.Fatal(err)
	}
	return db
}

func TestConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) trustloop.Store { return MustOpen(t) })
}

// TestConformanceSubjectsMerged runs the suite with the audit subjects'
// recent rows merged into their index after every apply (by default they
// are merged thousands at a time, so the suite above reads the recent rows):
// reads and erasures must see both tables alike.
func TestConformanceSubjectsMerged(t *testing.T) {
	storetest.Run(t, func(t *testing.T) trustloop.Store {
		db, err := sqlite.OpenWith(context.Background(), t.TempDir(),
			sqlite.Options{AuditSubjectsMergeAt: 1, AuditApplyDelay: time.Millisecond})
		if err != nil {
			t.Fatal(err)
		}
		return db
	})
}

func TestOpenTwiceIsRefused(t *testing.T) {
	dir := t.TempDir()
	db, err := sqlite.Open(context.Background(), dir)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if _, err := sqlite.Open(context.Background(), dir); trustloop.ErrorCode(err) != trustloop.ECONFLICT {
		t.Fatalf("second Open err = %v, want conflict", err)
	}
}

func TestReopenKeepsData(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	db, err := sqlite.Open(ctx, dir)
	if err != nil {
		t.Fatal(err)
	}
	b := storetest.MustBootstrap(t, db)
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	db, err = sqlite.Open(ctx, dir) // migrations must not run twice
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if _, err := db.FindWorkspace(ctx, b.Workspace.ID); err != nil {
		t.Fatal(err)
	}
}

// A store from before the timeline watermark (migration 005) had its timelines
// written with the profiles, up to upto_seq: the migration starts the new
// watermark there, so the first start does not rebuild every timeline from the
// beginning of the log.
func TestTimelineWatermarkMigration(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	db, err := sqlite.Open(ctx, dir)
	if err != nil {
		t.Fatal(err)
	}
	db.Close()
	// Back to the schema before 005, with a profile watermark at 42.
	raw, err := sql.Open("sqlite", filepath.Join(dir, "trustloop.db"))
	if err != nil {
		t.Fatal(err)
	}
	for _, q := range []string{
		`ALTER TABLE projection_state DROP COLUMN timeline_upto`,
		`UPDATE projection_state SET upto_seq = 42`,
		`DELETE FROM schema_migrations WHERE name = 'migration/005_timeline_upto.sql'`,
	} {
		if _, err := raw.Exec(q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	raw.Close()
	db, err = sqlite.Open(ctx, dir)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if up, err := db.TimelineUpto(ctx); err != nil || up != 42 {
		t.Fatalf("TimelineUpto after the migration = %d, %v; want 42 (the profile watermark)", up, err)
	}
}

// TestScrubLogTruncatesWAL: after an erasure and a rekey, ScrubLog leaves the
// WAL empty, and no file of the data directory holds the erased subject's key,
// blind index, payload, identity value or profile state, nor the rekeyed
// subject's old ones (the payloads are small, so they were in the rows, not in
// a segment file).
func TestScrubLogTruncatesWAL(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	db, err := sqlite.Open(ctx, dir)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	b := storetest.MustBootstrap(t, db)
	ws := b.Workspace.ID
	created := time.UnixMilli(1_750_000_000_000).UTC()
	erased := trustloop.SubjectKey{ID: 7, WorkspaceID: ws, Blind: randBytes(32), Wrapped: randBytes(60), CreatedAt: created}
	kept := trustloop.SubjectKey{ID: 8, WorkspaceID: ws, Blind: randBytes(32), Wrapped: randBytes(60), CreatedAt: created}
	var events []trustloop.StoredEvent
	for _, k := range []trustloop.SubjectKey{erased, kept} {
		events = append(events, trustloop.StoredEvent{WorkspaceID: ws, SourceID: b.Source.ID, MessageHash: randBytes(16), KeyID: k.ID,
			Type: trustloop.EventTrack, ReceivedAt: time.Now(), Timestamp: time.Now(), Payload: randBytes(300)})
	}
	if _, err := db.AppendEvents(ctx, &trustloop.CommitBatch{NewKeys: []trustloop.SubjectKey{erased, kept}, Events: events}); err != nil {
		t.Fatal(err)
	}
	stored, err := db.ListEvents(ctx, ws, 0, 10)
	if err != nil || len(stored) != 2 {
		t.Fatalf("ListEvents = %d, %v", len(stored), err)
	}
	var profiles []trustloop.ProfileRecord
	var identities []trustloop.IdentityRecord
	for _, k := range []trustloop.SubjectKey{erased, kept} {
		profiles = append(profiles, trustloop.ProfileRecord{ID: k.ID * 10, WorkspaceID: ws, KeyID: k.ID, State: randBytes(80), CreatedAt: created, UpdatedAt: created})
		identities = append(identities, trustloop.IdentityRecord{WorkspaceID: ws, Blind: k.Blind, Type: "user_id", ProfileID: k.ID * 10,
			KeyID: k.ID, Sealed: randBytes(48), FirstSeen: created})
	}
	if err := db.WriteProjection(ctx, &trustloop.ProjectionChanges{Profiles: profiles, Identities: identities,
		Timeline: []trustloop.TimelineRun{{KeyID: erased.ID, Seqs: []int64{stored[0].Seq}}, {KeyID: kept.ID, Seqs: []int64{stored[1].Seq}}}}); err != nil {
		t.Fatal(err)
	}
	gone := map[string][]byte{
		"erased wrapped key": erased.Wrapped, "erased blind index": erased.Blind, "erased payload": events[0].Payload,
		"erased identity value": identities[0].Sealed, "erased profile state": profiles[0].State,
		"old wrapped key": kept.Wrapped, "old payload": events[1].Payload, "old identity value": identities[1].Sealed,
		"old profile state": profiles[1].State,
	}
	// Positive control: the scan finds them before.
	if found, _ := storetest.FilesHolding(t, dir, gone); len(found) != len(gone) {
		t.Fatalf("before the erasure the scan finds only %v", found)
	}

	if _, err := db.Erase(ctx, &trustloop.Erasure{WorkspaceID: ws, KeyIDs: []int64{erased.ID}, Seqs: []int64{stored[0].Seq},
		ProfileIDs: []int64{profiles[0].ID}, Blinds: [][]byte{erased.Blind}}); err != nil {
		t.Fatal(err)
	}
	if err := db.Rekey(ctx, &trustloop.Rekey{WorkspaceID: ws, Keys: []trustloop.SubjectKey{{ID: kept.ID, Wrapped: randBytes(60)}},
		Events:     []trustloop.StoredEvent{{Seq: stored[1].Seq, Payload: randBytes(300)}},
		Identities: []trustloop.IdentityRecord{{Blind: kept.Blind, Sealed: randBytes(48)}},
		Profiles:   []trustloop.ProfileRecord{{ID: profiles[1].ID, State: randBytes(80)}}}); err != nil {
		t.Fatal(err)
	}
	wal := filepath.Join(dir, sqlite.FileName+"-wal")
	if fi, err := os.Stat(wal); err != nil || fi.Size() == 0 {
		t.Fatalf("the WAL before ScrubLog: %v, %v; want frames in it", fi, err)
	}
	if err := db.ScrubLog(ctx); err != nil {
		t.Fatalf("ScrubLog = %v", err)
	}
	if fi, err := os.Stat(wal); err == nil && fi.Size() != 0 {
		t.Fatalf("the WAL after ScrubLog is %d bytes; want it truncated", fi.Size())
	} else if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	if found, _ := storetest.FilesHolding(t, dir, gone); len(found) != 0 {
		t.Fatalf("after the erasure, the rekey and ScrubLog the data directory still holds: %v", found)
	}
	// And the store still works: the kept subject reads back rekeyed.
	if evs, err := db.ListEvents(ctx, ws, 0, 10); err != nil || len(evs) != 1 || evs[0].Seq != stored[1].Seq {
		t.Fatalf("ListEvents after the erasure = %d, %v", len(evs), err)
	}
	if err := db.ScrubLog(ctx); err != nil {
		t.Fatalf("ScrubLog with nothing to do = %v", err)
	}
}

// TestOpensFileWith16KiBPages: a new file has 4 KiB pages; files made before
// keep their 16 KiB pages and open, migrate and take writes as before.
func TestOpensFileWith16KiBPages(t *testing.T) {
	ctx := context.Background()
	fresh := t.TempDir()
	made, err := sqlite.Open(ctx, fresh)
	if err != nil {
		t.Fatal(err)
	}
	defer made.Close()
	if got := pageSize(t, fresh); got != 4096 {
		t.Fatalf("a new file has %d-byte pages, want 4096", got)
	}
	dir := t.TempDir()
	raw, err := sql.Open("sqlite", filepath.Join(dir, "trustloop.db"))
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{"PRAGMA page_size = 16384", "PRAGMA journal_mode = WAL", "CREATE TABLE early (x)"} {
		if _, err := raw.Exec(p); err != nil {
			t.Fatal(err)
		}
	}
	raw.Close()
	db, err := sqlite.Open(ctx, dir)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	storetest.MustBootstrap(t, db)
	if got := pageSize(t, dir); got != 16384 {
		t.Fatalf("page size %d, want 16384 kept", got)
	}
}

// pageSize reads the page size of the store file in dir.
func pageSize(t *testing.T, dir string) int {
	t.Helper()
	check, err := sql.Open("sqlite", filepath.Join(dir, "trustloop.db")+"?mode=ro")
	if err != nil {
		t.Fatal(err)
	}
	defer check.Close()
	var size int
	if err := check.QueryRow(`PRAGMA page_size`).Scan(&size); err != nil {
		t.Fatal(err)
	}
	return size
}
