package storetest

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/trustloop/trustloop"
)

var countDay = time.Date(2025, 3, 30, 0, 0, 0, 0, time.UTC)

// testDailyCounts checks that adding sums (within one call and across calls),
// days are UTC days, the since filter and ordering, workspace isolation, and
// that an invalid count writes nothing.
func testDailyCounts(t *testing.T, s trustloop.Store) {
	ctx := context.Background()
	b := MustBootstrap(t, s)
	ws := b.Workspace.ID
	day1, day2 := countDay, countDay.AddDate(0, 0, 1)
	c := func(ws int64, day time.Time, name string, n int64) trustloop.DailyCount {
		return trustloop.DailyCount{WorkspaceID: ws, Day: day, Name: name, N: n}
	}
	// A time inside the day stands for its day; so does the same instant in
	// another zone.
	berlin := time.FixedZone("CEST", 2*60*60)
	if err := s.AddDailyCounts(ctx, []trustloop.DailyCount{
		c(ws, day1.Add(10*time.Hour), trustloop.CountEventsCollected, 5),
		c(ws, day1, trustloop.CountEventsDropped, 2),
		c(ws, day2.Add(23*time.Hour+59*time.Minute).In(berlin), trustloop.CountEventsCollected, 7),
		c(ws, day2, trustloop.CountEventsCollected, 1),
		c(other(b), day1, trustloop.CountEventsCollected, 100),
	}); err != nil {
		t.Fatal(err)
	}
	if err := s.AddDailyCounts(ctx, []trustloop.DailyCount{c(ws, day1, trustloop.CountEventsCollected, 3)}); err != nil {
		t.Fatal(err)
	}
	if err := s.AddDailyCounts(ctx, nil); err != nil {
		t.Fatalf("adding nothing: %v", err)
	}
	// One invalid count refuses the whole call.
	if err := s.AddDailyCounts(ctx, []trustloop.DailyCount{c(ws, day1, trustloop.CountEventsCollected, 1000),
		c(ws, day1, trustloop.CountEventsCollected, -1)}); trustloop.ErrorCode(err) != trustloop.EINVALID {
		t.Fatalf("a negative count: %v, want invalid", err)
	}
	if err := s.AddDailyCounts(ctx, []trustloop.DailyCount{c(ws, day1, "", 1)}); trustloop.ErrorCode(err) != trustloop.EINVALID {
		t.Fatalf("a count without a name: %v, want invalid", err)
	}
	if err := s.AddDailyCounts(ctx, []trustloop.DailyCount{c(0, day1, trustloop.CountEventsCollected, 1)}); trustloop.ErrorCode(err) != trustloop.EINVALID {
		t.Fatalf("a count without a workspace: %v, want invalid", err)
	}

	str := func(cs []trustloop.DailyCount) string {
		out := ""
		for _, c := range cs {
			if c.WorkspaceID != ws || !c.Day.Equal(trustloop.UTCDay(c.Day)) || c.Day.Location() != time.UTC {
				t.Fatalf("count %+v: not of the workspace or not a UTC midnight", c)
			}
			out += fmt.Sprintf("%s %s=%d; ", c.Day.Format(time.DateOnly), c.Name, c.N)
		}
		return out
	}
	got, err := s.DailyCounts(ctx, ws, time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	want := "2025-03-30 events_collected=8; 2025-03-30 events_dropped_no_consent=2; 2025-03-31 events_collected=8; "
	if str(got) != want {
		t.Fatalf("DailyCounts = %s\nwant %s", str(got), want)
	}
	// since is taken as its UTC day: any time of day2 includes day2.
	if got, err := s.DailyCounts(ctx, ws, day2.Add(18*time.Hour)); err != nil || str(got) != "2025-03-31 events_collected=8; " {
		t.Fatalf("DailyCounts since day2 = %s, %v", str(got), err)
	}
	if got, err := s.DailyCounts(ctx, ws, day2.AddDate(0, 0, 1)); err != nil || len(got) != 0 {
		t.Fatalf("DailyCounts since after the last day = %v, %v", got, err)
	}
	if got, err := s.DailyCounts(ctx, other(b)+1, time.Time{}); err != nil || len(got) != 0 {
		t.Fatalf("DailyCounts of a workspace without counts = %v, %v", got, err)
	}
}

// testConsentDaily checks the per-day grouping of consent records appended
// through AppendConsent: days split at UTC midnight (also before 1970),
// grouping by purpose and state, the since filter, ordering and isolation.
func testConsentDaily(t *testing.T, s trustloop.Store) {
	ctx := context.Background()
	b := MustBootstrap(t, s)
	ws := b.Workspace.ID
	rec := func(ws int64, subject []byte, purpose, state string, at time.Time) trustloop.ConsentRecord {
		r := consentRec(ws, subject, purpose, state)
		r.At = at
		return r
	}
	alice, bob, carol := random(32), random(32), random(32)
	lastMS := countDay.Add(-time.Millisecond) // the last millisecond of the day before
	old := time.Date(1969, 12, 31, 12, 0, 0, 0, time.UTC)
	if err := s.AppendConsent(ctx, []trustloop.ConsentRecord{
		rec(ws, alice, "analytics", trustloop.ConsentGiven, lastMS),
		rec(ws, alice, "marketing", trustloop.ConsentRefused, lastMS),
		rec(ws, bob, "analytics", trustloop.ConsentGiven, countDay),
		rec(ws, carol, "analytics", trustloop.ConsentGiven, countDay.Add(13*time.Hour)),
		rec(ws, carol, "analytics", trustloop.ConsentWithdrawn, countDay.Add(14*time.Hour)),
		rec(ws, bob, "marketing", trustloop.ConsentGiven, countDay.Add(24*time.Hour)),
		rec(ws, carol, "essential", trustloop.ConsentGiven, old),
	}, nil); err != nil {
		t.Fatal(err)
	}
	if err := s.AppendConsent(ctx, []trustloop.ConsentRecord{rec(other(b), alice, "analytics", trustloop.ConsentGiven, countDay)}, nil); err != nil {
		t.Fatal(err)
	}
	str := func(ds []trustloop.ConsentDay) string {
		out := ""
		for _, d := range ds {
			if !d.Day.Equal(trustloop.UTCDay(d.Day)) || d.Day.Location() != time.UTC {
				t.Fatalf("day %+v is not a UTC midnight", d)
			}
			out += fmt.Sprintf("%s %s %s=%d; ", d.Day.Format(time.DateOnly), d.Purpose, d.State, d.N)
		}
		return out
	}
	got, err := s.ConsentDaily(ctx, ws, time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	want := "1969-12-31 essential given=1; " +
		"2025-03-29 analytics given=1; 2025-03-29 marketing refused=1; " +
		"2025-03-30 analytics given=2; 2025-03-30 analytics withdrawn=1; " +
		"2025-03-31 marketing given=1; "
	if str(got) != want {
		t.Fatalf("ConsentDaily = %s\nwant %s", str(got), want)
	}
	got, err = s.ConsentDaily(ctx, ws, countDay.Add(20*time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	if want := "2025-03-30 analytics given=2; 2025-03-30 analytics withdrawn=1; 2025-03-31 marketing given=1; "; str(got) != want {
		t.Fatalf("ConsentDaily since %v = %s\nwant %s", countDay, str(got), want)
	}
	if got, err := s.ConsentDaily(ctx, other(b)+1, time.Time{}); err != nil || len(got) != 0 {
		t.Fatalf("ConsentDaily of a workspace without records = %v, %v", got, err)
	}
}
