package projection_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/trustloop/trustloop"
	"github.com/trustloop/trustloop/profile"
	"github.com/trustloop/trustloop/projection"
)

// serviceOver is e.service over another store (a wrapper of e.db).
func (e *env) serviceOver(store projection.Store) *projection.Service {
	svc := projection.New(store, e.kr, e.rules, profile.Config{})
	svc.Now = e.clock.Now
	return svc
}

func (e *env) timelineUpto() int64 {
	e.t.Helper()
	n, err := e.db.TimelineUpto(context.Background())
	if err != nil {
		e.t.Fatal(err)
	}
	return n
}

// Timeline runs stay in memory longer than profile state: a flush writes the
// profiles but not the young short runs, reads still see every event, and after
// a crash Recover rebuilds the runs from the events' keys without replaying a
// profile or counting an event twice. Once old enough, they are written.
func TestTimelineWrittenBehindLonger(t *testing.T) {
	e := newEnv(t)
	svc := e.service()
	last := e.someHistory(svc)
	want := e.snapshot(svc)
	e.clock.Advance(svc.FlushAfter + time.Second)
	if _, err := svc.Flush(context.Background(), false); err != nil {
		t.Fatal(err)
	}
	newest := last[len(last)-1]
	if up := e.projectedUpto(); up != newest {
		t.Fatalf("ProjectedUpto = %d, want %d: the profiles are written", up, newest)
	}
	if up := e.timelineUpto(); up != 0 {
		t.Fatalf("TimelineUpto = %d, want 0: the runs are young and short", up)
	}
	e.sameAs(want, e.snapshot(svc), true)

	e.reopen() // a crash: the runs were only in memory
	svc2 := e.service()
	svc2.Now = e.clock.Now
	n, err := svc2.Recover(context.Background(), []int64{e.ws})
	if err != nil || n != 0 {
		t.Fatalf("Recover = %d, %v; want no profile replay", n, err)
	}
	// Recover ends with a full flush: the rebuilt runs are stored now.
	if up := e.timelineUpto(); up != newest {
		t.Fatalf("TimelineUpto after Recover = %d, want %d", up, newest)
	}
	e.sameAs(want, e.snapshot(svc2), false)

	// Without a crash, a run is written once it is TimelineAfter old.
	svc3 := e.service()
	seqs := e.commit(svc3, track("t1", "u-9", "", e.clock.Now(), "Clicked", obj{}))
	e.clock.Advance(svc3.FlushAfter + time.Second)
	if _, err := svc3.Flush(context.Background(), false); err != nil {
		t.Fatal(err)
	}
	if up := e.timelineUpto(); up >= seqs[0] {
		t.Fatalf("TimelineUpto = %d, not below the young run at %d", up, seqs[0])
	}
	e.clock.Advance(svc3.TimelineAfter)
	if _, err := svc3.Flush(context.Background(), false); err != nil {
		t.Fatal(err)
	}
	if up := e.timelineUpto(); up != seqs[0] {
		t.Fatalf("TimelineUpto = %d, want %d once the run is old", up, seqs[0])
	}
	if evs, err := e.db.ProfileEvents(context.Background(), e.ws, []int64{e.keyOf(t, "u-9")}, 0, 10); err != nil || len(evs) != 1 {
		t.Fatalf("stored timeline of u-9 = %d events, %v; want 1", len(evs), err)
	}
}

// Runs are swept too: once the oldest is due, every pending run is written,
// young ones included, in key order (FlushBatch runs a transaction); mid-sweep
// the timeline watermark stays below the runs not yet written.
func TestTimelineSweep(t *testing.T) {
	e := newEnv(t)
	svc := e.service()
	svc.FlushBatch = 1
	ctx := context.Background()
	a := e.commit(svc, track("a1", "u-a", "", e.clock.Now(), "Clicked", obj{}))[0]
	e.clock.Advance(svc.TimelineAfter / 2)
	b := e.commit(svc, track("b1", "u-b", "", e.clock.Now(), "Clicked", obj{}))[0]
	e.clock.Advance(svc.TimelineAfter/2 + time.Second) // a's run due, b's not
	first, second := a, b                              // in key order
	if e.keyOf(t, "u-b") < e.keyOf(t, "u-a") {
		first, second = b, a
	}
	if _, _, err := svc.FlushStep(ctx, false); err != nil {
		t.Fatal(err)
	}
	if up := e.timelineUpto(); up != second-1 {
		t.Errorf("TimelineUpto after the sweep's first run (at %d) = %d, want %d: below the run not yet written", first, up, second-1)
	}
	if _, err := svc.Flush(ctx, false); err != nil {
		t.Fatal(err)
	}
	if up := e.timelineUpto(); up != b {
		t.Errorf("TimelineUpto after the sweep = %d, want %d: the young run is written too", up, b)
	}
	for _, u := range []string{"u-a", "u-b"} {
		if evs, err := e.db.ProfileEvents(ctx, e.ws, []int64{e.keyOf(t, u)}, 0, 10); err != nil || len(evs) != 1 {
			t.Errorf("stored timeline of %s = %d events, %v; want 1", u, len(evs), err)
		}
	}
}

func (e *env) keyOf(t *testing.T, user string) int64 {
	t.Helper()
	b, err := e.kr.Blind(e.ws, trustloop.IDUserID, user)
	if err != nil {
		t.Fatal(err)
	}
	found, err := e.db.FindSubjectKeys(context.Background(), e.ws, [][]byte{b})
	if err != nil || len(found) != 1 {
		t.Fatalf("subject key of %s: %v, %v", user, found, err)
	}
	return found[string(b)].ID
}

// A run that reaches 64 positions is written at the next flush, however young;
// the rest of a key's events start a new run.
func TestTimelineFullRunWritten(t *testing.T) {
	e := newEnv(t)
	svc := e.service()
	at := e.clock.Now()
	var msgs []trustloop.Message
	for i := range 70 {
		msgs = append(msgs, track(fmt.Sprintf("f%d", i), "u-1", "", at.Add(time.Duration(i)*time.Millisecond), "Clicked", obj{}))
	}
	seqs := e.commit(svc, msgs[:64]...)
	if _, err := svc.Flush(context.Background(), false); err != nil {
		t.Fatal(err)
	}
	if up := e.timelineUpto(); up != seqs[63] {
		t.Fatalf("TimelineUpto = %d, want %d: the full run is written", up, seqs[63])
	}
	// The next events start a new, young run, which holds the watermark.
	e.commit(svc, msgs[64:]...)
	if _, err := svc.Flush(context.Background(), false); err != nil {
		t.Fatal(err)
	}
	if up := e.timelineUpto(); up != seqs[63] {
		t.Fatalf("TimelineUpto = %d, want %d", up, seqs[63])
	}
	stored, err := e.db.ProfileEvents(context.Background(), e.ws, []int64{e.keyOf(t, "u-1")}, 0, 100)
	if err != nil || len(stored) != 64 {
		t.Fatalf("stored timeline = %d events, %v; want 64", len(stored), err)
	}
	p := e.lookup(svc, trustloop.IDUserID, "u-1")
	if got := len(e.events(svc, p)); got != 70 {
		t.Fatalf("timeline read = %d events, want 70 (64 stored, 6 in memory)", got)
	}
}

// failingStore fails WriteProjection while fail is set.
type failingStore struct {
	projection.Store
	fail bool
}

var errWrite = errors.New("injected write failure")

func (f *failingStore) WriteProjection(ctx context.Context, c *trustloop.ProjectionChanges) error {
	if f.fail {
		return errWrite
	}
	return f.Store.WriteProjection(ctx, c)
}

// A flush that fails puts every profile and timeline run back: the next one
// writes them all, each position once, and the watermarks end where they would
// have.
func TestFailedFlushPutsTimelineBack(t *testing.T) {
	e := newEnv(t)
	fs := &failingStore{Store: e.db, fail: true}
	svc := e.serviceOver(fs)
	last := e.someHistory(svc)
	want := e.snapshot(svc)
	if _, err := svc.Flush(context.Background(), true); !errors.Is(err, errWrite) {
		t.Fatalf("Flush = %v, want the injected failure", err)
	}
	e.sameAs(want, e.snapshot(svc), true)
	// More events for the same keys meanwhile, then a flush that works.
	e.clock.Advance(time.Second)
	more := e.commit(svc, track("x1", "u-1", "", e.clock.Now(), "Clicked", obj{}))
	fs.fail = false
	if _, err := svc.Flush(context.Background(), true); err != nil {
		t.Fatal(err)
	}
	newest := max(last[len(last)-1], more[0])
	if up, tl := e.projectedUpto(), e.timelineUpto(); up != newest || tl != newest {
		t.Fatalf("watermarks = %d, %d; want %d", up, tl, newest)
	}
	e.reopen()
	fresh := e.service()
	p := e.lookup(fresh, trustloop.IDEmail, "one@example.com")
	if got := fmt.Sprint(messageIDs(t, e.events(fresh, p))); got != "[x1 h8 h6 h4 h3 h1]" {
		t.Fatalf("stored timeline = %s", got)
	}
}

// A group joining many known profiles finishes them in parallel: every event
// counted once, in order with the group's slow-path events for the same
// profiles (a new identifier attached between two fast-path events), and the
// timelines complete.
func TestLargeGroupAcrossProfiles(t *testing.T) {
	e := newEnv(t)
	svc := e.service()
	at := e.clock.Now()
	const users = 300
	var first []trustloop.Message
	for u := range users {
		first = append(first, identify(fmt.Sprintf("i%d", u), fmt.Sprintf("u%d", u), "", at, obj{"plan": "free"}))
	}
	e.commit(svc, first...)
	var msgs []trustloop.Message
	for round := range 3 {
		for u := range users {
			ts := at.Add(time.Duration(round+1) * time.Second)
			if round == 1 && u%10 == 0 {
				// Slow path: a device id not seen before, attached to u's profile.
				msgs = append(msgs, track(fmt.Sprintf("t%d-%d", round, u), fmt.Sprintf("u%d", u), fmt.Sprintf("dev%d", u), ts,
					"Order Completed", obj{"revenue": 2}))
				continue
			}
			msgs = append(msgs, track(fmt.Sprintf("t%d-%d", round, u), fmt.Sprintf("u%d", u), "", ts, "Product Viewed",
				obj{"product_id": fmt.Sprintf("p%d", round)}))
		}
	}
	e.commit(svc, msgs...)
	check := func(svc *projection.Service, when string) {
		for _, u := range []int{0, 1, 10, 157, 299} {
			p := e.lookup(svc, trustloop.IDUserID, fmt.Sprintf("u%d", u))
			orders := int64(0)
			if u%10 == 0 {
				orders = 1
			}
			e.checkCounts(p, 4, orders)
			if got := len(e.events(svc, p)); got != 4 {
				t.Fatalf("%s: u%d timeline = %d events, want 4", when, u, got)
			}
			if u%10 == 0 && len(p.Identities) != 2 {
				t.Fatalf("%s: u%d identities = %v, want user id and anonymous id", when, u, p.Identities)
			}
		}
	}
	check(svc, "in memory")
	if _, err := svc.Flush(context.Background(), true); err != nil {
		t.Fatal(err)
	}
	e.reopen()
	check(e.service(), "stored")
}

// Prepare takes the subject's blind index the caller made instead of a second
// HMAC, for the identifier equal to the subject only: the blind indexes are the
// ones it makes itself.
func TestPrepareReusesGivenBlinds(t *testing.T) {
	e := newEnv(t)
	svc := e.service()
	at := e.clock.Now()
	for _, m := range []trustloop.Message{
		track("p1", "u-1", "a-1", at, "Clicked", obj{}),
		track("p2", "", "a-2", at, "Clicked", obj{}),
		track("p3", " u-3 ", "a-3", at, "Clicked", obj{}), // normalized: not the subject's value
	} {
		var user []byte
		if m.UserID != "" {
			user, _ = e.kr.Blind(e.ws, trustloop.IDUserID, m.UserID)
		}
		anon, err := e.kr.Blind(e.ws, trustloop.IDAnonymousID, m.AnonymousID)
		if err != nil {
			t.Fatal(err)
		}
		ids, want, _ := svc.Prepare(e.ws, &m, e.src, nil, nil)
		_, got, _ := svc.Prepare(e.ws, &m, e.src, user, anon)
		if len(got) != len(ids) || len(want) != len(ids) {
			t.Fatalf("%s: %d blinds for %d identifiers", m.MessageID, len(got), len(ids))
		}
		for i := range ids {
			if !bytes.Equal(got[i], want[i]) {
				t.Fatalf("%s: blind of %s differs with the ids' blinds given", m.MessageID, ids[i].Type)
			}
		}
	}
}

// A timeline sweep left mid-way by a failed flush: Flush(ctx, true) must still
// write every pending run (a split rebuilds profiles from stored timelines
// alone, and a clean stop flushes everything).
func TestFullFlushAfterFailedTimelineStep(t *testing.T) {
	e := newEnv(t)
	fs := &failingStore{Store: e.db}
	svc := e.serviceOver(fs)
	svc.FlushBatch = 1
	ctx := context.Background()
	e.commit(svc, track("a1", "u-a", "", e.clock.Now(), "Clicked", obj{}), track("b1", "u-b", "", e.clock.Now(), "Clicked", obj{}))
	e.clock.Advance(svc.FlushAfter + time.Second)
	if _, err := svc.Flush(ctx, false); err != nil { // profiles written, runs young
		t.Fatal(err)
	}
	e.clock.Advance(svc.TimelineAfter)
	fs.fail = true
	if _, err := svc.Flush(ctx, false); !errors.Is(err, errWrite) {
		t.Fatalf("Flush = %v", err)
	}
	fs.fail = false
	if _, err := svc.Flush(ctx, true); err != nil {
		t.Fatal(err)
	}
	for _, u := range []string{"u-a", "u-b"} {
		evs, err := e.db.ProfileEvents(ctx, e.ws, []int64{e.keyOf(t, u)}, 0, 10)
		if err != nil || len(evs) != 1 {
			t.Errorf("after Flush(all): stored timeline of %s = %d events, %v; want 1", u, len(evs), err)
		}
	}
}
