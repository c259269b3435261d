package projection_test

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/trustloop/trustloop"
	"github.com/trustloop/trustloop/profile"
	"github.com/trustloop/trustloop/projection"
)

// profileID is the id of the profile an identifier belongs to.
func (e *env) profileID(svc *projection.Service, typ, value string) int64 {
	e.t.Helper()
	id, err := projection.ParseID(e.lookup(svc, typ, value).ProfileID)
	if err != nil {
		e.t.Fatal(err)
	}
	return id
}

// Events that join a known profile are held, not applied, until a decode
// needs the profile: reads see them at once, a flush writes them applied, and
// a new service reads them from the store.
func TestHeldEventsReadAndWritten(t *testing.T) {
	e := newEnv(t)
	svc := e.service()
	at := e.clock.Now()
	e.commit(svc, identify("m1", "u1", "", at, obj{"plan": "free"}))
	for i := range 3 {
		e.commit(svc, track(fmt.Sprintf("t%d", i), "u1", "", at.Add(time.Duration(i+1)*time.Second), "Order Completed",
			obj{"revenue": 5, "product_id": fmt.Sprintf("p%d", i)}))
	}
	id := e.profileID(svc, trustloop.IDUserID, "u1")
	if n := svc.HeldEvents(id); n != 3 {
		t.Fatalf("held events = %d, want 3", n)
	}
	e.checkCounts(e.lookup(svc, trustloop.IDUserID, "u1"), 4, 3)
	if n := svc.HeldEvents(id); n != 3 {
		t.Fatalf("after a read, held events = %d, want 3 (a read installs nothing)", n)
	}
	if _, err := svc.Flush(context.Background(), true); err != nil {
		t.Fatal(err)
	}
	if n := svc.HeldEvents(id); n != 0 {
		t.Fatalf("after a flush, held events = %d, want 0", n)
	}
	e.checkCounts(e.lookup(svc, trustloop.IDUserID, "u1"), 4, 3)
	e.reopen()
	p := e.lookup(e.service(), trustloop.IDUserID, "u1")
	e.checkCounts(p, 4, 3)
	if got := computed(p, profile.ComputedLastViewedProducts); fmt.Sprint(got) != "[]" {
		t.Fatalf("last viewed = %v (orders are not views)", got)
	}
}

// flushingHeld gives u1 a profile holding t1 (made by track), then starts a
// full flush that stops in its write, having applied t1: the tests then
// commit a group beside it and let it go on (gs.release), reading its outcome
// from flushed.
func (e *env) flushingHeld(t1 trustloop.Message) (svc *projection.Service, gs *gateStore, id int64, flushed chan error) {
	e.t.Helper()
	gs = &gateStore{failingStore: &failingStore{Store: e.db}, entered: make(chan struct{}), release: make(chan struct{})}
	svc = e.serviceOver(gs)
	e.commit(svc, identify("m1", "u1", "", e.clock.Now(), obj{"plan": "free"}))
	e.commit(svc, t1)
	id = e.profileID(svc, trustloop.IDUserID, "u1")
	flushed = make(chan error, 1)
	go func() { _, err := svc.Flush(context.Background(), true); flushed <- err }()
	<-gs.entered
	return svc, gs, id, flushed
}

// A flush applies the events it picked; a group that holds more events for
// the same profile meanwhile keeps them, and the flush's result replaces only
// what it applied.
func TestHeldEventsFoldBackAcrossAGroup(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	at := e.clock.Now()
	svc, gs, id, flushed := e.flushingHeld(track("t1", "u1", "", at.Add(time.Second), "Order Completed", obj{"revenue": 5}))
	e.commit(svc, track("t2", "u1", "", at.Add(2*time.Second), "Order Completed", obj{"revenue": 7}))
	if n := svc.HeldEvents(id); n != 2 {
		t.Fatalf("held events during the flush = %d, want 2", n)
	}
	close(gs.release)
	if err := <-flushed; err != nil {
		t.Fatal(err)
	}
	if n := svc.HeldEvents(id); n != 1 {
		t.Fatalf("after the flush, held events = %d, want 1 (t2: the flush applied t1)", n)
	}
	p := e.lookup(svc, trustloop.IDUserID, "u1")
	e.checkCounts(p, 3, 2)
	if got := computed(p, profile.ComputedLifetimeValue); got != 12.0 {
		t.Fatalf("lifetime value = %v, want 12", got)
	}
	if _, err := svc.Flush(ctx, true); err != nil {
		t.Fatal(err)
	}
	e.reopen()
	e.checkCounts(e.lookup(e.service(), trustloop.IDUserID, "u1"), 3, 2)
}

// Held events are applied with the settings in force when they were
// collected, as events applied at once are: a settings change makes the next
// event apply them first.
func TestHeldEventsKeepTheirSettings(t *testing.T) {
	for _, next := range []bool{false, true} {
		t.Run(fmt.Sprintf("next event %v", next), func(t *testing.T) {
			e := newEnv(t)
			svc := e.service()
			ctx := context.Background()
			at := e.clock.Now()
			e.commit(svc, identify("m1", "u1", "", at, obj{"plan": "free"}))
			e.commit(svc, track("t1", "u1", "", at.Add(time.Second), "Purchase", obj{"revenue": 5})) // not an order yet
			if n := svc.HeldEvents(e.profileID(svc, trustloop.IDUserID, "u1")); n != 1 {
				t.Fatalf("held events = %d, want 1", n)
			}
			st, err := svc.Settings(ctx, e.ws)
			if err != nil {
				t.Fatal(err)
			}
			st.Computed.OrderEvents = []string{"Purchase"}
			if err := svc.SaveSettings(ctx, e.ws, st); err != nil {
				t.Fatal(err)
			}
			want := int64(0)
			if next {
				e.commit(svc, track("t2", "u1", "", at.Add(2*time.Second), "Purchase", obj{"revenue": 7}))
				want = 1
			}
			e.checkCounts(e.lookup(svc, trustloop.IDUserID, "u1"), 2+want, want)
			if _, err := svc.Flush(ctx, true); err != nil {
				t.Fatal(err)
			}
			e.reopen()
			e.checkCounts(e.lookup(e.service(), trustloop.IDUserID, "u1"), 2+want, want)
		})
	}
}

// What the profile rules skip of held events is counted once, when they are
// applied for good, not by reads.
func TestHeldEventsSkipsCountedOnce(t *testing.T) {
	e := newEnv(t)
	svc := e.service()
	skips := map[string]int{}
	svc.OnSkip = func(kind, reason string) { skips[kind+" "+reason]++ }
	at := e.clock.Now()
	e.commit(svc, identify("m1", "u1", "", at, obj{"plan": "free"}))
	for i := range 3 {
		e.commit(svc, track(fmt.Sprintf("t%d", i), "u1", "", at.Add(time.Duration(i+1)*time.Second), "Viewed",
			obj{"category": 5}))
		e.lookup(svc, trustloop.IDUserID, "u1")
	}
	if n := svc.HeldEvents(e.profileID(svc, trustloop.IDUserID, "u1")); n != 3 {
		t.Fatalf("held events = %d, want 3", n)
	}
	if _, err := svc.Flush(context.Background(), true); err != nil {
		t.Fatal(err)
	}
	e.lookup(svc, trustloop.IDUserID, "u1")
	if got := skips["profile_input "+string(profile.ReasonCategoryInvalid)]; got != 3 {
		t.Fatalf("category_invalid counted %d times, want 3 (%v)", got, skips)
	}
}

// A profile holds at most a bounded number of events: a busy one is decoded
// and its events applied by the group that would pass the bound.
func TestHeldEventsBounded(t *testing.T) {
	e := newEnv(t)
	svc := e.service()
	at := e.clock.Now()
	e.commit(svc, identify("m1", "u1", "", at, obj{"plan": "free"}))
	const n = 100
	most := 0
	for i := range n {
		e.commit(svc, track(fmt.Sprintf("t%d", i), "u1", "", at.Add(time.Duration(i+1)*time.Second), "Clicked", obj{}))
		most = max(most, svc.HeldEvents(e.profileID(svc, trustloop.IDUserID, "u1")))
	}
	if most == 0 || most > 32 {
		t.Fatalf("at most %d events held, want 1..32", most)
	}
	e.checkCounts(e.lookup(svc, trustloop.IDUserID, "u1"), n+1, 0)
}

// Where audiences are defined, a change is evaluated at once: nothing is held.
func TestNoHeldEventsWithAudiences(t *testing.T) {
	e := newEnv(t)
	svc := e.service()
	ctx := context.Background()
	at := e.clock.Now()
	big := &trustloop.Audience{WorkspaceID: e.ws, Name: "big spenders", Rule: `computed.lifetime_value >= 10.0`}
	if err := svc.SaveAudience(ctx, big); err != nil {
		t.Fatal(err)
	}
	e.commit(svc, identify("m1", "u1", "", at, obj{"plan": "free"}))
	e.commit(svc, track("t1", "u1", "", at.Add(time.Second), "Order Completed", obj{"revenue": 12}))
	if n := svc.HeldEvents(e.profileID(svc, trustloop.IDUserID, "u1")); n != 0 {
		t.Fatalf("held events = %d, want 0", n)
	}
	if got := e.lookup(svc, trustloop.IDUserID, "u1").Audiences; len(got) != 1 {
		t.Fatalf("audiences = %v, want [big spenders] before any flush", got)
	}
}

// A group that copied a profile before a flush folded its held events in, and
// installs after: it takes the fold and keeps only its own events held; and a
// group that decoded the held events meanwhile does not count their skipped
// parts again. Either way each event's skips are counted once.
func TestHeldEventsAcrossAFlushAndAGroup(t *testing.T) {
	for _, decodes := range []bool{false, true} {
		t.Run(fmt.Sprintf("group decodes %v", decodes), func(t *testing.T) {
			e := newEnv(t)
			ctx := context.Background()
			at := e.clock.Now()
			svc, gs, id, flushed := e.flushingHeld(track("t1", "u1", "", at.Add(time.Second), "Viewed", obj{"category": 5}))
			// Skips counted from here: t1's by the flush (or the group), t2's.
			skips := map[string]int{}
			var mu sync.Mutex
			svc.OnSkip = func(kind, reason string) { mu.Lock(); skips[reason]++; mu.Unlock() }
			next := track("t2", "u1", "", at.Add(2*time.Second), "Viewed", obj{"category": 6})
			if decodes {
				// A new identifier: the slow path loads (decodes) the profile.
				next = message(trustloop.EventTrack, "t2", "u1", "", at.Add(2*time.Second), obj{"event": "Viewed",
					"properties": obj{"category": 6}, "context": obj{"traits": obj{"email": "u1@example.com"}}})
			}
			g, err := prepareGroup(ctx, e.db, e.kr, svc, e.ws, e.src, []trustloop.Message{next})
			if err != nil {
				t.Fatal(err)
			}
			if _, err := commitGroupThen(ctx, e.db, e.kr, svc, g, nil, func() {
				// The group has its copy of u1 and has committed; the flush
				// now writes and folds t1 back before the group installs.
				close(gs.release)
				if err := <-flushed; err != nil {
					t.Error(err)
				}
			}); err != nil {
				t.Fatal(err)
			}
			want := 1 // t2, held
			if decodes {
				want = 0
			}
			if n := svc.HeldEvents(id); n != want {
				t.Fatalf("held events = %d, want %d", n, want)
			}
			if _, err := svc.Flush(ctx, true); err != nil {
				t.Fatal(err)
			}
			e.checkCounts(e.lookup(svc, trustloop.IDUserID, "u1"), 3, 0)
			if got := skips[string(profile.ReasonCategoryInvalid)]; got != 2 {
				t.Fatalf("category_invalid counted %d times, want 2", got)
			}
			e.reopen()
			e.checkCounts(e.lookup(e.service(), trustloop.IDUserID, "u1"), 3, 0)
		})
	}
}

// The byte bound: large traits are applied at once, not held.
func TestHeldEventsByteBound(t *testing.T) {
	e := newEnv(t)
	svc := e.service()
	at := e.clock.Now()
	e.commit(svc, identify("m1", "u1", "", at, obj{"plan": "free"}))
	id := e.profileID(svc, trustloop.IDUserID, "u1")
	big := strings.Repeat("x", 3000)
	for i := range 5 {
		e.commit(svc, identify(fmt.Sprintf("i%d", i), "u1", "", at.Add(time.Duration(i+1)*time.Second), obj{fmt.Sprintf("note%d", i): big}))
		if n := svc.HeldEvents(id); n > 2 {
			t.Fatalf("after %d identify calls of 3 KB traits, %d held (8 KiB bound)", i+1, n)
		}
	}
	p := e.lookup(svc, trustloop.IDUserID, "u1")
	if len(p.Traits) != 6 {
		t.Fatalf("traits = %d, want 6", len(p.Traits))
	}
}
