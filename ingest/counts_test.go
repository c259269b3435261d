package ingest

import (
	"cmp"
	"context"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/trustloop/trustloop"
	"github.com/trustloop/trustloop/keyring"
	"github.com/trustloop/trustloop/sqlite"
	"github.com/trustloop/trustloop/storetest"
)

// refuseSecret admits every message but those named "Secret".
func refuseSecret(_ context.Context, _ *trustloop.Source, m *trustloop.Message, _, _, _ []byte) ([]string, error) {
	if m.Event == "Secret" {
		return nil, nil
	}
	return []string{"analytics"}, nil
}

// countsString renders daily counts as "day name=n; …".
func countsString(cs []trustloop.DailyCount) string {
	out := ""
	for _, c := range cs {
		out += fmt.Sprintf("%s %s=%d; ", c.Day.Format(time.DateOnly), c.Name, c.N)
	}
	return out
}

// TestDailyCounts sends events over two days, some refused for lack of
// consent, a repeat and one with a timestamp ahead of its receipt, through the
// pipeline into SQLite, and reads the dashboard's counts after the flush on
// Close.
func TestDailyCounts(t *testing.T) {
	ctx := context.Background()
	db, err := sqlite.Open(ctx, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	kr := keyring.New(keyring.NewKey(), 1000)
	b := storetest.Bootstrap("default")
	b.Workspace.IndexKey = kr.NewIndexKey()
	if created, err := db.Bootstrap(ctx, b); err != nil || !created {
		t.Fatalf("Bootstrap = %v, %v", created, err)
	}
	if err := kr.AddWorkspace(&b.Workspace); err != nil {
		t.Fatal(err)
	}
	obs := &fakeObserver{}
	// Only Close flushes here: the period is longer than any test run.
	p := New(db, kr, obs, slog.New(slog.DiscardHandler), refuseSecret, Config{CountsEvery: time.Hour})

	// Received now (the dedupe window counts from receipt); timestamps
	// today and yesterday.
	now := time.Now().UTC().Truncate(time.Millisecond)
	today := trustloop.UTCDay(now)
	yesterday := today.AddDate(0, 0, -1)
	at := func(id, user, event string, ts time.Time) trustloop.Message {
		m := msg(id, user)
		m.Event, m.ReceivedAt, m.Timestamp = event, now, ts
		return m
	}
	secret := func(id string, ts time.Time) trustloop.Message { return at(id, "alice", "Secret", ts) }
	requests := [][]trustloop.Message{
		{at("a1", "alice", "View", yesterday.Add(3*time.Hour)), at("a2", "alice", "View", today), secret("s1", yesterday.Add(time.Hour))},
		{at("b1", "bob", "View", now.Add(48*time.Hour))},                                          // a clock ahead counts on the day of receipt
		{secret("s2", today), secret("s3", today), secret("s4", yesterday)},                       // refused only: never reaches the writer
		{at("a1", "alice", "View", yesterday.Add(3*time.Hour)), at("c1", "carol", "View", today)}, // a1 again: a repeat
	}
	for i, r := range requests {
		if err := p.Ingest(ctx, &b.Source, r); err != nil {
			t.Fatalf("request %d: %v", i, err)
		}
	}
	// Nothing is in the store before a flush.
	if got, err := db.DailyCounts(ctx, b.Workspace.ID, time.Time{}); err != nil || len(got) != 0 {
		t.Fatalf("counts before the flush: %s, %v", countsString(got), err)
	}
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	if err := p.Close(); err != nil { // closing twice is harmless
		t.Fatal(err)
	}
	got, err := db.DailyCounts(ctx, b.Workspace.ID, time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	d := func(t time.Time) string { return t.Format(time.DateOnly) }
	want := fmt.Sprintf("%s events_collected=1; %s events_dropped_no_consent=2; %s events_collected=3; %s events_dropped_no_consent=2; ",
		d(yesterday), d(yesterday), d(today), d(today))
	if countsString(got) != want {
		t.Fatalf("DailyCounts = %s\nwant %s", countsString(got), want)
	}
	// The dashboard agrees with the metrics.
	commits, dropped := obs.snapshot()
	stored := 0
	for _, c := range commits {
		stored += c.stored
	}
	if stored != 4 || dropped["no_consent"] != 4 {
		t.Fatalf("metrics: stored %d, no_consent %d; want 4 and 4", stored, dropped["no_consent"])
	}
}

// countingStore is the fake event store with daily counts.
type countingStore struct {
	*fakeStore
	mu     sync.Mutex
	counts map[string]int64 // "ws day name"
	fail   bool
	failed int // flushes refused while fail, that carried counts
}

func (s *countingStore) AddDailyCounts(_ context.Context, cs []trustloop.DailyCount) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.fail {
		if len(cs) > 0 {
			s.failed++
		}
		return fmt.Errorf("store down")
	}
	for _, c := range cs {
		s.counts[fmt.Sprintf("%d %s %s", c.WorkspaceID, c.Day.Format(time.DateOnly), c.Name)] += c.N
	}
	return nil
}

func (s *countingStore) DailyCounts(context.Context, int64, time.Time) ([]trustloop.DailyCount, error) {
	return nil, nil
}

func (s *countingStore) ConsentDaily(context.Context, int64, time.Time) ([]trustloop.ConsentDay, error) {
	return nil, nil
}

func (s *countingStore) get(key string) int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.counts[key]
}

func (s *countingStore) failedFlushes() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.failed
}

func (s *countingStore) setFail(v bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.fail = v
}

// TestDailyCountsFlushPeriodically: counts reach the store on the timer, and a
// failed flush keeps them for the next.
func TestDailyCountsFlushPeriodically(t *testing.T) {
	cs := &countingStore{fakeStore: newFakeStore(), counts: map[string]int64{}, fail: true}
	kr := keyring.New(keyring.NewKey(), 1000)
	ws := &trustloop.Workspace{ID: 1, Name: "default", IndexKey: kr.NewIndexKey()}
	if err := kr.AddWorkspace(ws); err != nil {
		t.Fatal(err)
	}
	src := &trustloop.Source{ID: 10, WorkspaceID: 1}
	p := New(cs, kr, nil, slog.New(slog.DiscardHandler), refuseSecret, Config{CountsEvery: 20 * time.Millisecond})
	defer p.Close()
	s := msg("s1", "bob")
	s.Event = "Secret"
	if err := p.Ingest(context.Background(), src, []trustloop.Message{msg("m1", "alice"), msg("m2", "alice"), s}); err != nil {
		t.Fatal(err)
	}
	// Until a flush carrying the counts has failed: nothing is stored.
	for deadline := time.Now().Add(wait); cs.failedFlushes() == 0; time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("no flush was tried")
		}
	}
	if n := len(cs.counts); n != 0 {
		t.Fatalf("a failed flush stored %d counts", n)
	}
	cs.setFail(false)
	day := received.Format(time.DateOnly)
	deadline := time.Now().Add(wait)
	for cs.get("1 "+day+" events_collected") != 2 || cs.get("1 "+day+" events_dropped_no_consent") != 1 {
		if time.Now().After(deadline) {
			t.Fatalf("counts after the flushes: %v", cs.counts)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestDayOf(t *testing.T) {
	rec := time.Date(2025, 3, 30, 0, 30, 0, 0, time.UTC)
	for _, c := range []struct {
		name         string
		ts, received time.Time
		wantYYYYMMDD string
	}{
		{"timestamp's day", rec.Add(-2 * time.Hour), rec, "2025-03-29"},
		{"same day", rec.Add(-time.Minute), rec, "2025-03-30"},
		{"clock ahead: clamped to the receipt", rec.Add(24 * time.Hour), rec, "2025-03-30"},
		{"no timestamp", time.Time{}, rec, "2025-03-30"},
		{"other zone, same instant", rec.Add(-2 * time.Hour).In(time.FixedZone("X", 5*3600)), rec, "2025-03-29"},
		{"before 1970", time.Date(1969, 12, 31, 23, 0, 0, 0, time.UTC), rec, "1969-12-31"},
		{"midnight", time.Date(2025, 3, 30, 0, 0, 0, 0, time.UTC), rec, "2025-03-30"},
		{"a millisecond before", time.Date(2025, 3, 29, 23, 59, 59, 999e6, time.UTC), rec, "2025-03-29"},
	} {
		got := time.UnixMilli(dayOf(c.ts, c.received)).UTC().Format(time.DateOnly)
		if got != c.wantYYYYMMDD {
			t.Errorf("%s: dayOf = %s, want %s", c.name, got, c.wantYYYYMMDD)
		}
	}
}

func TestTakeRepeats(t *testing.T) {
	for _, c := range []struct {
		counts  map[dayKey]int64
		repeats int64
		want    string
	}{
		{map[dayKey]int64{{1, 10}: 2, {1, 11}: 2}, 1, "{1 10}=1 {1 11}=2"},
		{map[dayKey]int64{{1, 11}: 2, {1, 10}: 2, {1, 9}: 1}, 4, "{1 11}=1"},
		{map[dayKey]int64{{2, 10}: 3, {1, 10}: 3}, 4, "{2 10}=2"},
		{map[dayKey]int64{{1, 10}: 5}, 5, ""},
		{map[dayKey]int64{{1, 10}: 5}, 0, "{1 10}=5"},
	} {
		takeRepeats(c.counts, nil, c.repeats)
		var keys []dayKey
		for k := range c.counts {
			keys = append(keys, k)
		}
		slices.SortFunc(keys, func(a, b dayKey) int { return cmp.Or(cmp.Compare(a.day, b.day), cmp.Compare(a.ws, b.ws)) })
		got := ""
		for _, k := range keys {
			got += fmt.Sprintf(" %v=%d", k, c.counts[k])
		}
		if strings.TrimSpace(got) != c.want {
			t.Errorf("takeRepeats(%d) = %q, want %q", c.repeats, got, c.want)
		}
	}
}

// TestCountingAllocatesNothing: counting a committed group and a request's
// refusals allocates nothing per event once the writer's map has grown.
func TestCountingAllocatesNothing(t *testing.T) {
	c := &counter{m: map[dayKey]dayCounts{}, group: map[dayKey]int64{}}
	base := time.Date(2025, 3, 30, 12, 0, 0, 0, time.UTC)
	events := make([]trustloop.StoredEvent, 4096)
	for i := range events {
		// Three workspaces over two days, interleaved: the map path, not
		// only the run fast path.
		events[i] = trustloop.StoredEvent{WorkspaceID: int64(1 + i%3), ReceivedAt: base, Timestamp: base.Add(-time.Duration(i%2) * 24 * time.Hour)}
	}
	req := &request{}
	for range 3 {
		req.drops.add(dayKey{1, 20000})
	}
	group := []*request{req}
	c.committed(group, events, len(events), nil) // grows the maps
	allocs := testing.AllocsPerRun(20, func() {
		c.committed(group, events, len(events)-7, nil)
		var d drops
		for i := range 100 {
			d.add(dayKey{1, int64(20000 + i%2)})
		}
	})
	if allocs != 0 {
		t.Fatalf("%.1f allocations per group of %d events", allocs, len(events))
	}
	var total int64
	for _, v := range c.m {
		total += v.collected
	}
	if want := int64(len(events) + 21*(len(events)-7)); total != want {
		t.Fatalf("collected %d, want %d", total, want)
	}
}

// TestCommittedFresh: when the store said which events were new, those are
// counted, whatever their days; a refusal travels with its request.
func TestCommittedFresh(t *testing.T) {
	c := &counter{m: map[dayKey]dayCounts{}, group: map[dayKey]int64{}}
	d1, d2 := time.Date(2025, 3, 29, 12, 0, 0, 0, time.UTC), time.Date(2025, 3, 30, 12, 0, 0, 0, time.UTC)
	events := []trustloop.StoredEvent{
		{WorkspaceID: 1, ReceivedAt: d2, Timestamp: d2}, // a repeat
		{WorkspaceID: 1, ReceivedAt: d2, Timestamp: d1},
		{WorkspaceID: 2, ReceivedAt: d2, Timestamp: d2},
	}
	req := &request{}
	req.drops.add(dayKey{1, dayOf(d1, d2)})
	c.committed([]*request{req}, events, 2, []int{1, 2})
	k1, k2 := dayKey{1, dayOf(d1, d2)}, dayKey{2, dayOf(d2, d2)}
	if len(c.m) != 2 || c.m[k1] != (dayCounts{1, 1}) || c.m[k2] != (dayCounts{1, 0}) {
		t.Fatalf("counted %v", c.m)
	}
	// Without a list every event is counted.
	clear(c.m)
	c.committed(nil, events, 3, nil)
	if c.m[dayKey{1, dayOf(d2, d2)}].collected != 1 || c.m[k1].collected != 1 || c.m[k2].collected != 1 {
		t.Fatalf("counted %v", c.m)
	}
	// A stale list (an earlier attempt's: it disagrees with stored) is not
	// used, by the counts or the recommender.
	if f, s := current([]int{1, 2}, []int64{7, 8}, 0); f != nil || s != nil {
		t.Fatalf("current kept a stale list: %v %v", f, s)
	}
	if f, _ := current([]int{1, 2}, []int64{7, 8}, 2); len(f) != 2 {
		t.Fatal("current dropped this commit's list")
	}
}

// A request refusing events of more days than its slots hold adds the rest
// at once; a group whose events were all erased still counts its refusals;
// this node's unflushed counts are readable per workspace.
func TestCountsOverflowAndPending(t *testing.T) {
	c := &counter{m: map[dayKey]dayCounts{}, group: map[dayKey]int64{}}
	req := &request{}
	base := time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)
	for i := range 6 {
		if k := (dayKey{1, dayOf(base.AddDate(0, 0, i), base.AddDate(0, 1, 0))}); !req.drops.add(k) {
			c.dropOne(k)
		}
	}
	if got := len(c.m); got != 2 { // 4 in the request's slots, 2 added at once
		t.Fatalf("added at once: %d days, want 2", got)
	}
	c.committed([]*request{req}, nil, 0, nil) // all its events erased
	if len(c.m) != 6 {
		t.Fatalf("days counted: %d, want 6", len(c.m))
	}
	for k, v := range c.m {
		if v != (dayCounts{dropped: 1}) {
			t.Errorf("%v: %+v", k, v)
		}
	}
	c.addLocked(dayKey{2, dayOf(base, base)}, dayCounts{collected: 3})
	if got := c.pending(2); len(got) != 1 || got[0].N != 3 || got[0].Name != trustloop.CountEventsCollected || !got[0].Day.Equal(trustloop.UTCDay(base)) {
		t.Fatalf("pending of workspace 2: %+v", got)
	}
	if got := c.pending(1); len(got) != 6 {
		t.Fatalf("pending of workspace 1: %d", len(got))
	}
}
