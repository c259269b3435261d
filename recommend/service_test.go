package recommend

import (
	"bytes"
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"pgregory.net/rapid"

	"github.com/trustloop/trustloop"
)

// fakeConsent holds each subject's stored choice per purpose (none: not
// allowed, as under opt-in); Serves reads the purposes sealed with the event.
type fakeConsent struct {
	mu      sync.Mutex
	allowed map[string]map[string]bool
	// until is when every yes lapses (zero: never).
	until time.Time
	// during, when set, runs right after one consent read (a change racing it).
	during func()
}

func (f *fakeConsent) set(subject, purpose string, yes bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.allowed[subject] == nil {
		f.allowed[subject] = map[string]bool{}
	}
	f.allowed[subject][purpose] = yes
}

func (f *fakeConsent) AllowedEach(ctx context.Context, ws int64, purposes []string, subjects ...[]byte) ([]bool, []time.Time, error) {
	oks, untils := make([]bool, len(purposes)), make([]time.Time, len(purposes))
	for i, p := range purposes {
		oks[i], untils[i], _ = f.allowed1(p, subjects...)
	}
	return oks, untils, nil
}

func (f *fakeConsent) allowed1(purpose string, subjects ...[]byte) (bool, time.Time, error) {
	if f.during != nil {
		// The change lands just after this read.
		d := f.during
		f.during = nil
		defer d()
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	// Like consent.Stored: the latest choice across the subjects; here a no
	// anywhere wins, a yes anywhere allows.
	yes := false
	for _, s := range subjects {
		v, ok := f.allowed[string(s)][purpose]
		if ok && !v {
			return false, time.Time{}, nil
		}
		yes = yes || v
	}
	return yes, f.until, nil
}

func (f *fakeConsent) Serves(_ context.Context, _ int64, purpose string, m *trustloop.Message) (bool, error) {
	return slices.Contains(m.Purposes, purpose), nil
}

type fakeLog struct{ evs []LogEvent }

func (l *fakeLog) Each(_ context.Context, _ int64, fn func(LogEvent) error) error {
	for _, e := range l.evs {
		if err := fn(e); err != nil {
			return err
		}
	}
	return nil
}

func (l *fakeLog) Subject(_ context.Context, _ int64, subject []byte, fn func(LogEvent) error) error {
	for _, e := range l.evs {
		if bytes.Equal(e.Subject, subject) {
			if err := fn(e); err != nil {
				return err
			}
		}
	}
	return nil
}

func blind(_ int64, idType, value string) ([]byte, error) {
	return []byte(strings.TrimPrefix(idType, "_") + ":" + value), nil
}

func newTestService(t interface{ Fatalf(string, ...any) }, c *fakeConsent, l *fakeLog) *Service {
	cfg := Defaults()
	cfg.MaxItems, cfg.MinSupport = 3, 1
	s, err := NewService(cfg)
	if err != nil {
		t.Fatalf("NewService: %v", err)
	}
	s.Consent, s.Log, s.Blind = c, l, blind
	s.Placeholder = func(_ int64, v string) bool { return v == "null" }
	s.Now = func() time.Time { return time.Date(2026, 6, 1, 0, 0, 0, 0, time.UTC) }
	return s
}

func viewMsg(user, anon, item string, at time.Time, purposes ...string) *trustloop.Message {
	return &trustloop.Message{Type: trustloop.EventTrack, Event: "Product Viewed", UserID: user, AnonymousID: anon,
		Timestamp: at, ReceivedAt: at, Purposes: purposes,
		Raw: []byte(fmt.Sprintf(`{"properties":{"product_id":%q}}`, item))}
}

// The live model — events as they commit, consent changes, erasures and the
// read-backs they queue, in any interleaving — always ends equal to the model
// rebuilt from the log under the choices stored at the end.
func TestServiceEqualsRebuild(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		ctx := context.Background()
		c := &fakeConsent{allowed: map[string]map[string]bool{}}
		l := &fakeLog{}
		s := newTestService(t, c, l)
		users := []string{"", "u0", "u1", "u2"}
		anons := []string{"", "a0", "a1", "null"}
		at := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
		for range rapid.IntRange(0, 80).Draw(t, "steps") {
			switch rapid.IntRange(0, 9).Draw(t, "op") {
			case 0, 1: // a consent change of one id
				var sub string
				if rapid.Bool().Draw(t, "user id") {
					sub = "user_id:" + users[rapid.IntRange(1, 3).Draw(t, "u")]
				} else {
					sub = "anonymous_id:" + anons[rapid.IntRange(1, 2).Draw(t, "a")]
				}
				c.set(sub, rapid.SampledFrom([]string{Personalization, Analytics}).Draw(t, "purpose"), rapid.Bool().Draw(t, "yes"))
				s.ConsentChanged(1, [][]byte{[]byte(sub)})
			case 2: // an erasure of one user and the anonymous ids on their events
				u := users[rapid.IntRange(1, 3).Draw(t, "erased")]
				erased := [][]byte{[]byte("user_id:" + u)}
				l.evs = slices.DeleteFunc(l.evs, func(e LogEvent) bool { return string(e.Subject) == "user_id:"+u })
				s.Forget(1, erased, nil)
			case 3:
				if err := s.ResyncQueued(ctx); err != nil {
					t.Fatal(err)
				}
			default: // an event
				u, a := users[rapid.IntRange(0, 3).Draw(t, "user")], anons[rapid.IntRange(0, 3).Draw(t, "anon")]
				if u == "" && a == "" {
					a = "a0"
				}
				purposes := rapid.SliceOfDistinct(rapid.SampledFrom([]string{Personalization, Analytics, "marketing"}), rapid.ID[string]).Draw(t, "purposes")
				at = at.Add(time.Duration(rapid.IntRange(1, 100).Draw(t, "minutes")) * time.Minute)
				m := viewMsg(u, a, fmt.Sprintf("p%d", rapid.IntRange(0, 6).Draw(t, "item")), at, purposes...)
				idType, id := m.Subject()
				subject, _ := blind(1, idType, id)
				l.evs = append(l.evs, LogEvent{Message: m, Subject: subject})
				if err := s.Observe(ctx, []Event{{WorkspaceID: 1, Message: m, Subject: subject}}); err != nil {
					t.Fatal(err)
				}
			}
		}
		if err := s.ResyncQueued(ctx); err != nil {
			t.Fatal(err)
		}
		if s.Pending(1) != 0 {
			t.Fatalf("%d subjects still pending", s.Pending(1))
		}
		fresh := newTestService(t, c, l)
		if _, err := fresh.Rebuild(ctx, []int64{1}); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(s.Encode(1), fresh.Encode(1)) {
			t.Fatalf("live model %+v differs from the rebuild %+v", s.Stats(1), fresh.Stats(1))
		}
	})
}

// A withdrawal committed while the writer reads the subject's consent for an
// event does not let that event into the model: it is read back instead, with
// the choice now stored.
func TestWithdrawalDuringObserve(t *testing.T) {
	ctx := context.Background()
	c := &fakeConsent{allowed: map[string]map[string]bool{}}
	l := &fakeLog{}
	s := newTestService(t, c, l)
	c.set("user_id:alice", Personalization, true)
	at := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	m := viewMsg("alice", "", "p1", at, Personalization)
	ev := LogEvent{Message: m, Subject: []byte("user_id:alice")}
	l.evs = append(l.evs, ev)
	c.during = func() {
		c.set("user_id:alice", Personalization, false)
		s.ConsentChanged(1, [][]byte{[]byte("user_id:alice")})
	}
	if err := s.Observe(ctx, []Event{{WorkspaceID: 1, Message: m, Subject: ev.Subject}}); err != nil {
		t.Fatal(err)
	}
	w := s.model(1)
	if w.m.Personal("user_id:alice") {
		t.Fatal("an event whose consent was withdrawn while it was read entered the model")
	}
	if s.Pending(1) != 1 {
		t.Fatalf("pending = %d, want alice queued", s.Pending(1))
	}
	if err := s.ResyncQueued(ctx); err != nil {
		t.Fatal(err)
	}
	if w.m.Has("user_id:alice") {
		t.Fatal("alice is in the model after withdrawing")
	}
}

// An erasure takes out the erased ids, and reads back (without what was
// erased) a customer whose events an erased anonymous id also named, and a
// shared key some erased events were under.
func TestForgetReadsOthersBack(t *testing.T) {
	ctx := context.Background()
	c := &fakeConsent{allowed: map[string]map[string]bool{}}
	l := &fakeLog{}
	s := newTestService(t, c, l)
	for _, sub := range []string{"user_id:alice", "anonymous_id:shared", "user_id:bob", "anonymous_id:kiosk"} {
		c.set(sub, Personalization, true)
	}
	at := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	add := func(user, anon, item string) {
		at = at.Add(time.Minute)
		m := viewMsg(user, anon, item, at, Personalization)
		idType, id := m.Subject()
		sub, _ := blind(1, idType, id)
		l.evs = append(l.evs, LogEvent{Message: m, Subject: sub})
		if err := s.Observe(ctx, []Event{{WorkspaceID: 1, Message: m, Subject: sub}}); err != nil {
			t.Fatal(err)
		}
	}
	add("alice", "shared", "p1")
	add("bob", "shared", "p2") // bob on alice's device
	add("bob", "", "p3")
	add("", "kiosk", "p1") // a shared key: alice's event and another's
	add("", "kiosk", "p4")
	// Alice is erased: her events, and hers under the kiosk key, are deleted.
	l.evs = slices.DeleteFunc(l.evs, func(e LogEvent) bool {
		return string(e.Subject) == "user_id:alice" || (string(e.Subject) == "anonymous_id:kiosk" && strings.Contains(string(e.Message.Raw), `"p1"`))
	})
	s.Forget(1, [][]byte{[]byte("user_id:alice"), []byte("anonymous_id:shared")}, [][]byte{[]byte("anonymous_id:kiosk")})
	if err := s.ResyncQueued(ctx); err != nil {
		t.Fatal(err)
	}
	fresh := newTestService(t, c, l)
	fresh.Rebuild(ctx, []int64{1})
	if !bytes.Equal(s.Encode(1), fresh.Encode(1)) {
		t.Fatalf("after the erasure the model %+v differs from the rebuild %+v", s.Stats(1), fresh.Stats(1))
	}
	if !s.model(1).m.Personal("user_id:bob") {
		t.Fatal("bob lost his history because an erased id was on one of his events")
	}
	if _, err := s.Similar(1, "p1", 10); err == nil {
		t.Fatal("p1, met only by alice (and her event under the kiosk key), is still known")
	}
}

// A timestamp far in the future (a client's clock, a sentinel date) counts as
// received, and answers stay finite.
func TestFutureTimestamp(t *testing.T) {
	m, _ := NewModel(Defaults())
	now := time.Date(2026, 6, 1, 0, 0, 0, 0, time.UTC)
	cfg := m.Config()
	for i, ts := range []time.Time{time.Date(9999, 12, 31, 0, 0, 0, 0, time.UTC), now.Add(-time.Hour)} {
		msg := viewMsg("u", "", fmt.Sprintf("p%d", i), ts)
		msg.ReceivedAt = now.Add(-time.Minute)
		in, _ := cfg.Extract(msg)
		m.Add("u", in, true, true)
	}
	m.Add("v", &Interaction{Items: []string{"p0"}, Weight: 1, Time: now.UnixMilli()}, true, true)
	m.Add("v", &Interaction{Items: []string{"p2"}, Weight: 1, Time: now.UnixMilli()}, true, true)
	recs, _ := m.Recommend([]string{"u"}, now.UnixMilli(), 10)
	if len(recs) == 0 {
		t.Fatal("no recommendations")
	}
	for _, r := range recs {
		if r.Score != r.Score || r.Score > 1e12 {
			t.Fatalf("score %v for %s", r.Score, r.ItemID)
		}
	}
}

// A consent that lapses reads its subject back at that moment.
func TestConsentExpiry(t *testing.T) {
	ctx := context.Background()
	now := time.Date(2026, 6, 1, 0, 0, 0, 0, time.UTC)
	c := &fakeConsent{allowed: map[string]map[string]bool{}, until: now.Add(time.Hour)}
	l := &fakeLog{}
	s := newTestService(t, c, l)
	c.set("user_id:alice", Personalization, true)
	m := viewMsg("alice", "", "p1", now.Add(-time.Minute), Personalization)
	l.evs = append(l.evs, LogEvent{Message: m, Subject: []byte("user_id:alice")})
	if err := s.Observe(ctx, []Event{{WorkspaceID: 1, Message: m, Subject: []byte("user_id:alice")}}); err != nil {
		t.Fatal(err)
	}
	s.Expire(now.Add(59 * time.Minute))
	if s.Pending(1) != 0 || !s.model(1).m.Personal("user_id:alice") {
		t.Fatal("alice was taken out before her consent lapsed")
	}
	c.set("user_id:alice", Personalization, false) // what the store now says
	s.Expire(now.Add(61 * time.Minute))
	if s.model(1).m.Has("user_id:alice") || s.Pending(1) != 1 {
		t.Fatalf("alice is still in the model after her consent lapsed (pending %d)", s.Pending(1))
	}
	if err := s.ResyncQueued(ctx); err != nil || s.model(1).m.Has("user_id:alice") {
		t.Fatalf("after the read-back alice is in the model (%v)", err)
	}
}

// A catalog change rebuilds the workspace's model from the log under what
// the choices now mean.
func TestReload(t *testing.T) {
	ctx := context.Background()
	c := &fakeConsent{allowed: map[string]map[string]bool{}}
	l := &fakeLog{}
	s := newTestService(t, c, l)
	c.set("user_id:alice", Personalization, true)
	m := viewMsg("alice", "", "p1", time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC), Personalization)
	l.evs = append(l.evs, LogEvent{Message: m, Subject: []byte("user_id:alice")})
	s.Observe(ctx, []Event{{WorkspaceID: 1, Message: m, Subject: []byte("user_id:alice")}})
	c.set("user_id:alice", Personalization, false) // e.g. the regime became opt-in
	s.Reload(1)
	if s.Pending(1) != 1 {
		t.Fatalf("pending = %d", s.Pending(1))
	}
	if err := s.ResyncQueued(ctx); err != nil {
		t.Fatal(err)
	}
	if s.model(1).m.Has("user_id:alice") {
		t.Fatal("the reloaded model still holds alice")
	}
}
