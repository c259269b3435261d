package recommend

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/trustloop/trustloop"
)

// The failures the fakes below inject: the consent store or the event log
// cannot be read for a while.
var (
	errConsentDown = errors.New("consent store unreadable")
	errLogDown     = errors.New("event log unreadable")
)

// flakyConsent is fakeConsent whose reads fail while an id they concern (a
// blind index) is in down: AllowedEach when one of the subjects asked about is
// down, or, with inServes, Serves when the message names a down id (both are
// "consent unreadable" to the service).
type flakyConsent struct {
	*fakeConsent
	down     map[string]bool
	inServes bool
}

func (f *flakyConsent) AllowedEach(ctx context.Context, ws int64, purposes []string, subjects ...[]byte) ([]bool, []time.Time, error) {
	if !f.inServes {
		for _, s := range subjects {
			if f.down[string(s)] {
				return nil, nil, fmt.Errorf("reading the choices of %s: %w", s, errConsentDown)
			}
		}
	}
	return f.fakeConsent.AllowedEach(ctx, ws, purposes, subjects...)
}

func (f *flakyConsent) Serves(ctx context.Context, ws int64, purpose string, m *trustloop.Message) (bool, error) {
	if f.inServes {
		for _, id := range []struct{ typ, v string }{{trustloop.IDUserID, m.UserID}, {trustloop.IDAnonymousID, m.AnonymousID}} {
			if b, _ := blind(ws, id.typ, id.v); id.v != "" && f.down[string(b)] {
				return false, fmt.Errorf("reading the purposes sealed with an event of %s: %w", b, errConsentDown)
			}
		}
	}
	return f.fakeConsent.Serves(ctx, ws, purpose, m)
}

// flakyLog is fakeLog whose read-back of a subject in fail delivers that many
// of the subject's events and then fails (0: fails before the first; more than
// the subject has: fails after the last, as a read whose end breaks). reads
// counts the read-backs asked for, per subject.
type flakyLog struct {
	*fakeLog
	fail  map[string]int
	reads map[string]int
}

func newFlakyLog() *flakyLog {
	return &flakyLog{fakeLog: &fakeLog{}, fail: map[string]int{}, reads: map[string]int{}}
}

func (l *flakyLog) Subject(ctx context.Context, ws int64, subject []byte, fn func(LogEvent) error) error {
	l.reads[string(subject)]++
	left, failing := l.fail[string(subject)]
	if !failing {
		return l.fakeLog.Subject(ctx, ws, subject, fn)
	}
	for _, e := range l.evs {
		if !bytes.Equal(e.Subject, subject) {
			continue
		}
		if left == 0 {
			break
		}
		left--
		if err := fn(e); err != nil {
			return err
		}
	}
	return fmt.Errorf("reading %s back: %w", subject, errLogDown)
}

// queued returns the workspace's subjects waiting to be read back, sorted.
func queued(s *Service, ws int64) []string {
	s.idleMu.Lock()
	defer s.idleMu.Unlock()
	var out []string
	for u := range s.queue[ws] {
		out = append(out, u)
	}
	slices.Sort(out)
	return out
}

// errCount is how many failures an error returned by Observe reports (it joins
// one per event it could not apply).
func errCount(err error) int {
	if err == nil {
		return 0
	}
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		return len(j.Unwrap())
	}
	return 1
}

// sameWithout reports whether two services' models of workspace 1 are equal
// once the given subjects are taken out of both. It changes both models, so
// callers pass services built only for this comparison.
func sameWithout(a, b *Service, subjects []string) bool {
	for _, s := range []*Service{a, b} {
		w := s.model(1)
		w.mu.Lock()
		for _, u := range subjects {
			w.m.Remove(u)
		}
		w.mu.Unlock()
	}
	return bytes.Equal(a.Encode(1), b.Encode(1))
}

// rebuilt is the model of workspace 1 built from the log from scratch.
func rebuilt(t *testing.T, c *fakeConsent, l *fakeLog) []byte {
	t.Helper()
	fresh := newTestService(t, c, l)
	if _, err := fresh.Rebuild(context.Background(), []int64{1}); err != nil {
		t.Fatalf("rebuild: %v", err)
	}
	return fresh.Encode(1)
}

// obs is one event of a test: who, which item, collected for which purposes.
type obs struct {
	user, anon, item string
	purposes         []string
}

var both = []string{Personalization, Analytics}

// When the consent of an event's ids cannot be read, Observe does not apply
// the event, says so in its error (once per such event), queues the event's
// subject to be read back from the log, and goes on with the other events.
// Once the read-back has run the model is bit for bit the model of a service
// that never failed, and a subject whose choices allow nothing never enters it.
func TestObserveConsentFailure(t *testing.T) {
	type batch struct {
		down []string // ids whose consent cannot be read during this group
		evs  []obs
	}
	cases := []struct {
		name       string
		inServes   bool
		batches    []batch
		wantErrs   []int // per batch
		wantQueued []string
	}{
		{
			name: "two subjects unreadable for a whole group commit",
			batches: []batch{{down: []string{"user_id:alice", "user_id:carol"}, evs: []obs{
				{"alice", "", "p1", both}, {"bob", "", "p1", both}, {"alice", "", "p2", both},
				{"carol", "", "p2", both}, {"bob", "", "p3", both}, {"alice", "", "p3", both},
			}}},
			wantErrs:   []int{4},
			wantQueued: []string{"user_id:alice", "user_id:carol"},
		},
		{
			name:     "the same, failing where the purposes sealed with the event are read",
			inServes: true,
			batches: []batch{{down: []string{"user_id:alice", "user_id:carol"}, evs: []obs{
				{"alice", "", "p1", both}, {"bob", "", "p1", both}, {"alice", "", "p2", both},
				{"carol", "", "p2", both}, {"bob", "", "p3", both}, {"alice", "", "p3", both},
			}}},
			wantErrs:   []int{4},
			wantQueued: []string{"user_id:alice", "user_id:carol"},
		},
		{
			// Alice's later event enters before the failed one is read
			// back: the read-back must put her events back in log order.
			name: "one event between readable ones",
			batches: []batch{
				{evs: []obs{{"alice", "", "p1", both}, {"bob", "", "p2", both}}},
				{down: []string{"user_id:alice"}, evs: []obs{{"alice", "", "p2", both}, {"bob", "", "p3", both}}},
				{evs: []obs{{"alice", "", "p3", both}, {"bob", "", "p1", both}, {"carol", "", "p1", both}}},
			},
			wantErrs:   []int{0, 1, 0},
			wantQueued: []string{"user_id:alice"},
		},
		{
			// What is queued is the subject the event is keyed to (the
			// user), not the id whose consent failed.
			name: "an unreadable anonymous id named on a user's event",
			batches: []batch{{down: []string{"anonymous_id:a1"}, evs: []obs{
				{"alice", "a1", "p1", both}, {"bob", "", "p2", both}, {"", "a1", "p3", both},
				{"alice", "", "p2", both}, {"carol", "a1", "p3", both},
			}}},
			wantErrs:   []int{3},
			wantQueued: []string{"anonymous_id:a1", "user_id:alice", "user_id:carol"},
		},
		{
			// No consent is read for these, so nothing fails and nothing
			// needs reading back.
			name: "events that need no consent read",
			batches: []batch{{down: []string{"user_id:dave", "user_id:null"}, evs: []obs{
				{"dave", "", "p1", []string{"marketing"}}, {"null", "", "p2", both}, {"bob", "", "p3", both},
			}}},
			wantErrs: []int{0},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			c := allowingBoth("user_id:alice", "user_id:bob", "anonymous_id:a1", "user_id:dave")
			// Carol said no to both: nothing of hers may ever be in the model.
			c.set("user_id:carol", Personalization, false)
			c.set("user_id:carol", Analytics, false)
			l := &fakeLog{}
			at := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
			groups := make([][]Event, len(tc.batches))
			for i, b := range tc.batches {
				for _, o := range b.evs {
					at = at.Add(time.Minute)
					m := viewMsg(o.user, o.anon, o.item, at, o.purposes...)
					idType, id := m.Subject()
					sub, _ := blind(1, idType, id)
					l.evs = append(l.evs, LogEvent{Message: m, Subject: sub})
					groups[i] = append(groups[i], Event{WorkspaceID: 1, Message: m, Subject: sub})
				}
			}
			// feed observes the groups as committed, with the given ids'
			// consent unreadable during each (never, for the reference).
			feed := func(flaky bool) (*Service, []error) {
				s := newTestService(t, c, l)
				fc := &flakyConsent{fakeConsent: c, inServes: tc.inServes}
				s.Consent = fc
				var errs []error
				for i, g := range groups {
					fc.down = map[string]bool{}
					if flaky {
						for _, d := range tc.batches[i].down {
							fc.down[d] = true
						}
					}
					errs = append(errs, s.Observe(ctx, slices.Clone(g)))
				}
				fc.down = nil // the store is readable again
				return s, errs
			}
			ref, refErrs := feed(false)
			for _, err := range refErrs {
				if err != nil {
					t.Fatalf("the reference failed: %v", err)
				}
			}
			if len(queued(ref, 1)) != 0 {
				t.Fatalf("the reference queued %v", queued(ref, 1))
			}
			if ref.model(1).m.Has("user_id:carol") {
				t.Fatal("the reference holds carol: the scenario is wrong")
			}

			s, errs := feed(true)
			for i, err := range errs {
				if got := errCount(err); got != tc.wantErrs[i] {
					t.Errorf("group %d: Observe reported %d failures (%v), want one per event it could not apply: %d", i, got, err, tc.wantErrs[i])
				}
				if tc.wantErrs[i] > 0 && !errors.Is(err, errConsentDown) {
					t.Errorf("group %d: Observe returned %v, which does not carry the consent failure", i, err)
				}
			}
			if got := queued(s, 1); !slices.Equal(got, tc.wantQueued) {
				t.Errorf("queued %v, want %v", got, tc.wantQueued)
			}
			if got := s.Pending(1); got != len(tc.wantQueued) {
				t.Errorf("Pending = %d, want %d", got, len(tc.wantQueued))
			}
			if s.model(1).m.Has("user_id:carol") {
				t.Error("carol, who allows nothing, is in the model after her consent could not be read")
			}
			// Everyone not queued was learnt exactly as if nothing had failed
			// (compared on a second run, as the comparison takes subjects out).
			s2, _ := feed(true)
			ref2, _ := feed(false)
			if !sameWithout(s2, ref2, tc.wantQueued) {
				t.Errorf("before the read-back, the subjects not queued differ from the reference: %+v vs %+v", s2.Stats(1), ref2.Stats(1))
			}

			if err := s.ResyncQueued(ctx); err != nil {
				t.Fatalf("read-back with consent readable again: %v", err)
			}
			if got := s.Pending(1); got != 0 {
				t.Errorf("Pending = %d after the read-back", got)
			}
			if !bytes.Equal(s.Encode(1), ref.Encode(1)) {
				t.Errorf("after the read-back the model %+v differs from the never-failing one %+v", s.Stats(1), ref.Stats(1))
			}
			if !bytes.Equal(s.Encode(1), rebuilt(t, c, l)) {
				t.Errorf("after the read-back the model %+v differs from a rebuild from the log", s.Stats(1))
			}
			if s.model(1).m.Has("user_id:carol") {
				t.Error("carol, who allows nothing, is in the model after the read-back")
			}
		})
	}
}

// When the log cannot be read back for a queued subject, ResyncQueued returns
// the failure and keeps the subject (and whatever it had not reached yet)
// queued; the next call tries again. Meanwhile what a consent change took out
// stays out, even from a read-back that failed halfway, and the other subjects
// are read back as usual. Once the log is readable the model is bit for bit
// the model of a service whose reads never failed.
func TestResyncLogFailure(t *testing.T) {
	cases := []struct {
		name    string
		others  int    // subjects besides alice, bob and carol
		failing string // whose read-back fails
		deliver int    // how many of its events the failing read delivers
		// exclusive runs the read-back through Service.Exclusive, as the
		// collector does.
		exclusive bool
	}{
		{name: "fails before the first event", failing: "user_id:alice", deliver: 0},
		{name: "fails after one event", failing: "user_id:alice", deliver: 1},
		{name: "fails after the last event", failing: "user_id:alice", deliver: 99},
		{name: "fails halfway for a subject who now allows nothing", failing: "user_id:carol", deliver: 2},
		{name: "fails for a subject whose consent did not change", failing: "user_id:bob", deliver: 1, exclusive: true},
		{name: "fails with more subjects queued than one turn reads", others: 2 * resyncChunk, failing: "user_id:o042", deliver: 1, exclusive: true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			// setup observes three rounds of everyone's events with every
			// read succeeding, then alice withdraws personalization and carol
			// withdraws everything, and all their consents are reported
			// changed (bob's and the others' choices stay the same): everyone
			// is queued to be read back.
			setup := func() (*Service, *fakeConsent, *flakyLog, *int) {
				c := &fakeConsent{allowed: map[string]map[string]bool{}}
				l := newFlakyLog()
				s := newTestService(t, c, l.fakeLog)
				s.Log = l
				turns := new(int)
				if tc.exclusive {
					s.Exclusive = func(ctx context.Context, fn func(context.Context) error) error {
						*turns++
						return fn(ctx)
					}
				}
				people := []string{"alice", "bob", "carol"}
				for i := range tc.others {
					people = append(people, fmt.Sprintf("o%03d", i))
				}
				for _, p := range people {
					c.set("user_id:"+p, Personalization, true)
					c.set("user_id:"+p, Analytics, true)
				}
				at := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
				for round := range 3 {
					var g []Event
					for i, p := range people {
						at = at.Add(time.Minute)
						m := viewMsg(p, "", fmt.Sprintf("p%d", (i+2*round)%6), at, both...)
						sub := []byte("user_id:" + p)
						l.evs = append(l.evs, LogEvent{Message: m, Subject: sub})
						g = append(g, Event{WorkspaceID: 1, Message: m, Subject: sub})
					}
					if err := s.Observe(ctx, g); err != nil {
						t.Fatalf("observe: %v", err)
					}
				}
				c.set("user_id:alice", Personalization, false)
				c.set("user_id:carol", Personalization, false)
				c.set("user_id:carol", Analytics, false)
				var changed [][]byte
				for _, p := range people {
					changed = append(changed, []byte("user_id:"+p))
				}
				s.ConsentChanged(1, changed)
				return s, c, l, turns
			}
			// noLeak checks what the withdrawals took out is still out.
			noLeak := func(s *Service, when string) {
				t.Helper()
				if s.model(1).m.Personal("user_id:alice") {
					t.Errorf("%s: alice's personalization history is back after she withdrew it", when)
				}
				if s.model(1).m.Has("user_id:carol") {
					t.Errorf("%s: carol, who withdrew everything, is in the model", when)
				}
			}

			ref, refC, refL, _ := setup()
			if err := ref.ResyncQueued(ctx); err != nil {
				t.Fatalf("the reference's read-back failed: %v", err)
			}
			noLeak(ref, "reference")

			s, c, l, turns := setup()
			l.fail[tc.failing] = tc.deliver
			for attempt := 1; attempt <= 2; attempt++ {
				err := s.ResyncQueued(ctx)
				if !errors.Is(err, errLogDown) {
					t.Fatalf("attempt %d: ResyncQueued returned %v, want the log's failure", attempt, err)
				}
				q := queued(s, 1)
				if !slices.Contains(q, tc.failing) {
					t.Fatalf("attempt %d: %s is no longer queued after its read-back failed (queued: %v)", attempt, tc.failing, q)
				}
				if got := s.Pending(1); got != len(q) {
					t.Errorf("attempt %d: Pending = %d, want the %d queued", attempt, got, len(q))
				}
				if got := l.reads[tc.failing]; got != attempt {
					t.Errorf("attempt %d: %s was read back %d times, want once per attempt", attempt, tc.failing, got)
				}
				noLeak(s, fmt.Sprintf("attempt %d", attempt))
			}
			if tc.exclusive && *turns == 0 {
				t.Error("the read-back did not run through Exclusive")
			}

			// The subjects read back before the failure are exactly as in the
			// reference (compared on a second run, as the comparison takes
			// subjects out).
			s2, _, l2, _ := setup()
			l2.fail[tc.failing] = tc.deliver
			if err := s2.ResyncQueued(ctx); !errors.Is(err, errLogDown) {
				t.Fatalf("second run: ResyncQueued returned %v", err)
			}
			ref2, _, _, _ := setup()
			if err := ref2.ResyncQueued(ctx); err != nil {
				t.Fatal(err)
			}
			if !sameWithout(s2, ref2, queued(s2, 1)) {
				t.Errorf("the subjects read back before the failure differ from the reference: %+v vs %+v", s2.Stats(1), ref2.Stats(1))
			}

			delete(l.fail, tc.failing) // the log is readable again
			if err := s.ResyncQueued(ctx); err != nil {
				t.Fatalf("read-back with the log readable: %v", err)
			}
			if got := s.Pending(1); got != 0 {
				t.Errorf("Pending = %d after a successful read-back (queued: %v)", got, queued(s, 1))
			}
			if got := l.reads[tc.failing]; got != 3 {
				t.Errorf("%s was read back %d times, want 3 (two failures, one success)", tc.failing, got)
			}
			noLeak(s, "after the read-back")
			// What was read back before a failure is not read again; what the
			// failure kept it from reaching is read once, later.
			for sub, n := range l.reads {
				if sub != tc.failing && n != 1 {
					t.Errorf("%s was read back %d times, want once", sub, n)
				}
			}
			if got, want := len(l.reads), 3+tc.others; got != want {
				t.Errorf("%d subjects were read back, want all %d", got, want)
			}
			if !bytes.Equal(s.Encode(1), ref.Encode(1)) {
				t.Errorf("the model %+v differs from the never-failing one %+v", s.Stats(1), ref.Stats(1))
			}
			if !bytes.Equal(s.Encode(1), rebuilt(t, c, l.fakeLog)) || !bytes.Equal(ref.Encode(1), rebuilt(t, refC, refL.fakeLog)) {
				t.Errorf("the model %+v differs from a rebuild from the log", s.Stats(1))
			}
		})
	}
}

// allowingBoth is a consent store in which each subject allows personalization
// and analytics.
func allowingBoth(subjects ...string) *fakeConsent {
	c := &fakeConsent{allowed: map[string]map[string]bool{}}
	for _, sub := range subjects {
		c.set(sub, Personalization, true)
		c.set(sub, Analytics, true)
	}
	return c
}

// A subject queued because Observe could not read an event's consent is read
// back only once everything it needs can be read: while the consent store is
// still down, or then the log, ResyncQueued returns that failure and keeps the
// subject queued; then the model equals the never-failing one.
func TestObserveFailureThenReadBackFailures(t *testing.T) {
	ctx := context.Background()
	c := allowingBoth("user_id:alice", "user_id:bob")
	l := newFlakyLog()
	at := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	var evs []Event
	for _, o := range []obs{{"alice", "", "p1", both}, {"bob", "", "p1", both}, {"alice", "", "p2", both}, {"bob", "", "p2", both}, {"alice", "", "p3", both}} {
		at = at.Add(time.Minute)
		m := viewMsg(o.user, "", o.item, at, o.purposes...)
		sub := []byte("user_id:" + o.user)
		l.evs = append(l.evs, LogEvent{Message: m, Subject: sub})
		evs = append(evs, Event{WorkspaceID: 1, Message: m, Subject: sub})
	}
	ref := newTestService(t, c, l.fakeLog)
	for _, ev := range evs {
		if err := ref.Observe(ctx, []Event{ev}); err != nil {
			t.Fatal(err)
		}
	}

	s := newTestService(t, c, l.fakeLog)
	fc := &flakyConsent{fakeConsent: c, down: map[string]bool{}}
	s.Consent, s.Log = fc, l
	for i, ev := range evs {
		// Alice's consent cannot be read for her second event only.
		fc.down["user_id:alice"] = i == 2
		err := s.Observe(ctx, []Event{ev})
		if (err != nil) != (i == 2) || (err != nil && !errors.Is(err, errConsentDown)) {
			t.Fatalf("event %d: Observe returned %v", i, err)
		}
	}
	check := func(want error, what string) {
		t.Helper()
		if err := s.ResyncQueued(ctx); !errors.Is(err, want) {
			t.Fatalf("%s: ResyncQueued returned %v, want %v", what, err, want)
		}
		if got := queued(s, 1); !slices.Equal(got, []string{"user_id:alice"}) {
			t.Fatalf("%s: queued %v, want alice alone", what, got)
		}
	}
	fc.down["user_id:alice"] = true
	check(errConsentDown, "consent still unreadable")
	fc.down["user_id:alice"] = false
	l.fail["user_id:alice"] = 1
	check(errLogDown, "log unreadable")
	delete(l.fail, "user_id:alice")
	if err := s.ResyncQueued(ctx); err != nil || s.Pending(1) != 0 {
		t.Fatalf("read-back with everything readable: %v (pending %d)", err, s.Pending(1))
	}
	if got := l.reads["user_id:alice"]; got != 3 {
		t.Errorf("alice was read back %d times, want 3", got)
	}
	if !bytes.Equal(s.Encode(1), ref.Encode(1)) {
		t.Errorf("the model %+v differs from the never-failing one %+v", s.Stats(1), ref.Stats(1))
	}
}

// wsFailLog fails whole-workspace reads (a rebuild) of one workspace and
// counts the others'.
type wsFailLog struct {
	*fakeLog
	failWS int64
	each   map[int64]int
}

func (l *wsFailLog) Each(ctx context.Context, ws int64, fn func(LogEvent) error) error {
	if ws == l.failWS {
		return fmt.Errorf("rebuilding workspace %d: %w", ws, errLogDown)
	}
	l.each[ws]++
	return l.fakeLog.Each(ctx, ws, fn)
}

// TestRebuildFailureKeepsTheRest: a failed rebuild of one workspace must not
// lose what else was waiting: the other workspaces' rebuilds (they take out
// events that must leave the model) and every queued subject. Before the fix
// ResyncQueued returned with only the failing workspace put back. Map order
// decides whether workspace 2 is rebuilt before workspace 1 fails, so the test
// runs many rounds and accepts either "rebuilt" or "still waiting" for it.
func TestRebuildFailureKeepsTheRest(t *testing.T) {
	for round := range 40 {
		ctx := context.Background()
		c := &fakeConsent{allowed: map[string]map[string]bool{}}
		l := &wsFailLog{fakeLog: &fakeLog{}, failWS: 1, each: map[int64]int{}}
		s := newTestService(t, c, l.fakeLog)
		s.Log = l
		s.Reload(1)
		s.Reload(2)
		s.idleMu.Lock()
		s.queue[3] = map[string]bool{"user_id:dora": true}
		s.idleMu.Unlock()
		if err := s.ResyncQueued(ctx); !errors.Is(err, errLogDown) {
			t.Fatalf("round %d: ResyncQueued = %v, want the log's error", round, err)
		}
		s.idleMu.Lock()
		reload1, reload2 := s.reload[1], s.reload[2]
		s.idleMu.Unlock()
		if !reload1 {
			t.Fatalf("round %d: the failed rebuild of workspace 1 is not waiting to be tried again", round)
		}
		if !reload2 && l.each[2] == 0 {
			t.Fatalf("round %d: workspace 2's rebuild was neither done nor kept", round)
		}
		if got := queued(s, 3); !slices.Equal(got, []string{"user_id:dora"}) {
			t.Fatalf("round %d: workspace 3's queue = %v after the failure, want dora kept", round, got)
		}
		l.failWS = 0 // the log is back
		if err := s.ResyncQueued(ctx); err != nil {
			t.Fatalf("round %d: ResyncQueued after recovery = %v", round, err)
		}
		s.idleMu.Lock()
		left := len(s.reload) + len(s.queue[3])
		s.idleMu.Unlock()
		if left != 0 || l.each[2] == 0 {
			t.Fatalf("round %d: after recovery %d still waiting, workspace 2 rebuilt %d times", round, left, l.each[2])
		}
	}
}

// A subject whose read-back keeps failing does not hold anyone else back: one
// call reads back every other queued subject (more than one turn's worth),
// keeps only the failing one queued, and says how many failed.
func TestResyncFailingSubjectHoldsNoOneBack(t *testing.T) {
	ctx := context.Background()
	c := &fakeConsent{allowed: map[string]map[string]bool{}}
	l := newFlakyLog()
	s := newTestService(t, c, l.fakeLog)
	s.Log = l
	at := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	var changed [][]byte
	for i := range 3 * resyncChunk {
		p := fmt.Sprintf("u%03d", i)
		c.set("user_id:"+p, Personalization, true)
		c.set("user_id:"+p, Analytics, true)
		at = at.Add(time.Minute)
		m := viewMsg(p, "", fmt.Sprintf("p%d", i%7), at, both...)
		sub := []byte("user_id:" + p)
		l.evs = append(l.evs, LogEvent{Message: m, Subject: sub})
		if err := s.Observe(ctx, []Event{{WorkspaceID: 1, Message: m, Subject: sub}}); err != nil {
			t.Fatal(err)
		}
		changed = append(changed, sub)
	}
	s.ConsentChanged(1, changed)
	const failing = "user_id:u100"
	l.fail[failing] = 0
	err := s.ResyncQueued(ctx)
	if q := queued(s, 1); !slices.Equal(q, []string{failing}) {
		t.Fatalf("queued after the call: %d subjects (%v …); want only %s", len(q), q[:min(3, len(q))], failing)
	}
	if !errors.Is(err, errLogDown) || !strings.Contains(err.Error(), "1 subjects") {
		t.Fatalf("ResyncQueued = %v; want the log's failure, for 1 subject", err)
	}
	for i := range 3 * resyncChunk {
		if sub := fmt.Sprintf("user_id:u%03d", i); l.reads[sub] != 1 {
			t.Fatalf("%s was read back %d times, want once", sub, l.reads[sub])
		}
	}
	delete(l.fail, failing)
	if err := s.ResyncQueued(ctx); err != nil || s.Pending(1) != 0 {
		t.Fatalf("with the log readable again: %v, %d pending", err, s.Pending(1))
	}
	if !bytes.Equal(s.Encode(1), rebuilt(t, c, l.fakeLog)) {
		t.Error("the model differs from a rebuild from the log")
	}
}

// An event handed to Observe without its subject (the collector always gives
// it; another caller may not) is not lost when its consent cannot be read:
// its subject is worked out and queued, and when even that fails (the key
// ring) the workspace is rebuilt.
func TestObserveFailureWithoutSubject(t *testing.T) {
	ctx := context.Background()
	c := allowingBoth("user_id:alice", "user_id:bob")
	at := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	l := &fakeLog{}
	var evs []Event
	for i, p := range []string{"alice", "bob", "alice"} {
		m := viewMsg(p, "", fmt.Sprintf("p%d", i), at.Add(time.Duration(i)*time.Minute), both...)
		sub, _ := blind(1, trustloop.IDUserID, p)
		l.evs = append(l.evs, LogEvent{Message: m, Subject: sub})
		evs = append(evs, Event{WorkspaceID: 1, Message: m}) // no Subject
	}

	s := newTestService(t, c, l)
	fc := &flakyConsent{fakeConsent: c, down: map[string]bool{"user_id:alice": true}}
	s.Consent = fc
	if err := s.Observe(ctx, slices.Clone(evs)); errCount(err) != 2 {
		t.Fatalf("Observe = %v; want alice's two failures", err)
	}
	if q := queued(s, 1); !slices.Equal(q, []string{"user_id:alice"}) {
		t.Fatalf("queued %v; want alice", q)
	}
	fc.down = nil
	if err := s.ResyncQueued(ctx); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(s.Encode(1), rebuilt(t, c, l)) {
		t.Error("after the read-back the model differs from a rebuild from the log")
	}

	// The key ring fails too: the subject cannot be named, so the workspace
	// is rebuilt.
	s = newTestService(t, c, l)
	fc = &flakyConsent{fakeConsent: c, down: map[string]bool{"user_id:alice": true}}
	s.Consent = fc
	keysDown := true
	s.Blind = func(ws int64, typ, v string) ([]byte, error) {
		if keysDown && v == "alice" {
			return nil, errors.New("key ring unreadable")
		}
		return blind(ws, typ, v)
	}
	if err := s.Observe(ctx, slices.Clone(evs)); errCount(err) != 2 {
		t.Fatalf("Observe = %v; want alice's two failures", err)
	}
	s.idleMu.Lock()
	reload := s.reload[1]
	s.idleMu.Unlock()
	if !reload {
		t.Fatal("the workspace was not queued to be rebuilt")
	}
	keysDown, fc.down = false, nil
	if err := s.ResyncQueued(ctx); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(s.Encode(1), rebuilt(t, c, l)) {
		t.Error("after the rebuild the model differs from a rebuild from the log")
	}
}
