package sqlite_test

import (
	"context"
	"database/sql"
	"path/filepath"
	"testing"

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
