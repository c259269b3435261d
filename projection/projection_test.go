package projection_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/trustloop/trustloop"
	"github.com/trustloop/trustloop/collect"
	"github.com/trustloop/trustloop/identity"
	"github.com/trustloop/trustloop/keyring"
	"github.com/trustloop/trustloop/profile"
	"github.com/trustloop/trustloop/projection"
	"github.com/trustloop/trustloop/sqlite"
)

// The write-behind projection against the real SQLite store: group commits
// driven the way ingest's writer drives them (ingest.commitOnce: resolve keys,
// seal, AppendEvents with the group's Project, then Done with the outcome),
// without the HTTP layer and the pipeline around it.

// testMaster is the master key of every store these tests and benchmarks make
// (the benchmark's cached store must be opened with the key it was built with).
var testMaster = bytes.Repeat([]byte{7}, keyring.KeySize)

// fakeClock is a settable clock for Service.Now.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// env is a store in a directory, its keyring and workspace. reopen closes and
// opens the store again with a new keyring: what a process restart keeps.
type env struct {
	t     testing.TB
	dir   string
	db    *sqlite.DB
	kr    *keyring.Keyring
	rules *identity.Rules
	ws    int64
	src   int64
	clock *fakeClock
}

func newEnv(t testing.TB) *env {
	t.Helper()
	rules, err := identity.Compile(identity.DefaultConfig())
	if err != nil {
		t.Fatal(err)
	}
	// Milliseconds, as the log keeps times: a replay reads them from the
	// envelope, so a profile rebuilt from the log equals the live one only if
	// the live one saw millisecond times too (see TestRecoverNanosecondTimes).
	start := time.Now().UTC().Truncate(time.Millisecond)
	e := &env{t: t, dir: t.TempDir(), rules: rules, clock: &fakeClock{t: start}}
	e.open()
	ws, src, err := bootstrap(context.Background(), e.db, e.kr)
	if err != nil {
		t.Fatal(err)
	}
	e.ws, e.src = ws, src
	t.Cleanup(func() {
		if e.db != nil {
			if err := e.db.Close(); err != nil {
				t.Errorf("close store: %v", err)
			}
		}
	})
	return e
}

// bootstrap creates the workspace and source of a new store, with an index key
// wrapped under testMaster.
func bootstrap(ctx context.Context, db *sqlite.DB, kr *keyring.Keyring) (ws, src int64, err error) {
	wh := sha256.Sum256([]byte("tl_write_test"))
	ah := sha256.Sum256([]byte("tl_admin_test"))
	b := &trustloop.Bootstrap{
		Workspace: trustloop.Workspace{Name: "default", IndexKey: kr.NewIndexKey()},
		Source:    trustloop.Source{Name: "web", WriteKeyHash: wh[:]},
		AdminKey: trustloop.APIKey{Name: "admin", SecretHash: ah[:], Roles: []string{trustloop.RoleAdmin},
			Purposes: []string{"essential", "analytics"}},
	}
	created, err := db.Bootstrap(ctx, b)
	if err != nil || !created {
		return 0, 0, fmt.Errorf("bootstrap: created=%v err=%v", created, err)
	}
	return b.Workspace.ID, b.Source.ID, nil
}

func (e *env) open() {
	e.t.Helper()
	db, err := sqlite.Open(context.Background(), e.dir)
	if err != nil {
		e.t.Fatalf("open store: %v", err)
	}
	e.db = db
	e.kr = keyring.New(testMaster, 1000)
	e.kr.Load = db.FindWorkspace
}

// reopen is a restart: the store is closed and opened again, and nothing of the
// services, the keyring or the store's caches survives. (What a crash loses on
// top of that is SQLite's business: commits are synced before AppendEvents
// returns.)
func (e *env) reopen() {
	e.t.Helper()
	if err := e.db.Close(); err != nil {
		e.t.Fatalf("close store: %v", err)
	}
	e.db = nil
	e.open()
}

// service is a new projection service over the store, with empty memory.
func (e *env) service() *projection.Service {
	svc := projection.New(e.db, e.kr, e.rules, profile.Config{})
	svc.Now = e.clock.Now
	return svc
}

// errInjected makes a commit fail inside its transaction, after the projection
// computed its changes.
var errInjected = errors.New("injected commit failure")

// group is one group commit prepared as ingest's writer prepares it: events
// sealed under resolved subject keys, and the projection items aligned with them.
type group struct {
	batch *trustloop.CommitBatch
	items []projection.Item
	res   *keyring.Resolved
}

// prepareGroup blinds, hashes, envelopes and seals msgs (ingest.Pipeline.prepare
// and commitOnce). Keys come from kr's cache, else the store, else are made (and
// go in batch.NewKeys).
func prepareGroup(ctx context.Context, db *sqlite.DB, kr *keyring.Keyring, svc *projection.Service, ws, src int64, msgs []trustloop.Message) (*group, error) {
	blinds := make([][]byte, len(msgs))
	for i := range msgs {
		typ, id := msgs[i].Subject()
		b, err := kr.Blind(ws, typ, id)
		if err != nil {
			return nil, err
		}
		blinds[i] = b
	}
	res, err := kr.Resolve(ctx, db, ws, blinds)
	if err != nil {
		return nil, err
	}
	g := &group{res: res, batch: &trustloop.CommitBatch{NewKeys: res.NewKeys, Events: make([]trustloop.StoredEvent, len(msgs))},
		items: make([]projection.Item, len(msgs))}
	for i := range msgs {
		m := &msgs[i]
		hash, err := kr.MessageHash(ws, m.MessageID)
		if err != nil {
			return nil, err
		}
		key := res.Keys[string(blinds[i])]
		plain := collect.AppendEnvelope(make([]byte, 0, len(m.Raw)+256), m)
		g.batch.Events[i] = trustloop.StoredEvent{WorkspaceID: ws, SourceID: src, MessageHash: hash, KeyID: key.ID,
			Type: m.Type, ReceivedAt: m.ReceivedAt, Timestamp: m.Timestamp,
			Payload: keyring.SealEvent(nil, key, plain, keyring.EventAAD(nil, ws, src, hash))}
		g.items[i] = projection.Item{WorkspaceID: ws, SourceID: src, Message: m, MessageHash: hash,
			KeyID: key.ID, Key: key, IDs: svc.Identify(ws, m)}
	}
	return g, nil
}

// commitGroup writes a prepared group with the projection in the commit, then
// tells the projection the outcome (ingest.commitOnce). inside, when set, runs in
// the transaction after Project; its error fails the commit. It returns the log
// positions of the stored events.
func commitGroup(ctx context.Context, db *sqlite.DB, kr *keyring.Keyring, svc *projection.Service, g *group,
	inside func() error) ([]int64, error) {
	return commitGroupThen(ctx, db, kr, svc, g, inside, nil)
}

// commitGroupThen is commitGroup; committed, when set, runs after the
// transaction and before the projection is told the outcome.
func commitGroupThen(ctx context.Context, db *sqlite.DB, kr *keyring.Keyring, svc *projection.Service, g *group,
	inside func() error, committed func()) ([]int64, error) {
	pg := svc.Group(g.items)
	var seqs []int64
	g.batch.Project = func(ctx context.Context, fresh []int, s []int64) (*trustloop.ProjectionChanges, error) {
		c, err := pg.Project(ctx, fresh, s)
		if err != nil {
			return nil, err
		}
		if inside != nil {
			if err := inside(); err != nil {
				return nil, err
			}
		}
		seqs = append([]int64(nil), s...)
		return c, nil
	}
	_, err := db.AppendEvents(ctx, g.batch)
	if committed != nil {
		committed()
	}
	pg.Done(err == nil)
	if err != nil {
		return nil, err
	}
	kr.Remember(g.res)
	return seqs, nil
}

// commit stores msgs as one group commit and returns their log positions.
func (e *env) commit(svc *projection.Service, msgs ...trustloop.Message) []int64 {
	e.t.Helper()
	seqs, err := e.commitWith(svc, nil, msgs...)
	if err != nil {
		e.t.Fatalf("commit: %v", err)
	}
	if len(seqs) != len(msgs) {
		e.t.Fatalf("commit stored %d of %d events", len(seqs), len(msgs))
	}
	return seqs
}

func (e *env) commitWith(svc *projection.Service, inside func() error, msgs ...trustloop.Message) ([]int64, error) {
	ctx := context.Background()
	g, err := prepareGroup(ctx, e.db, e.kr, svc, e.ws, e.src, msgs)
	if err != nil {
		return nil, err
	}
	return commitGroup(ctx, e.db, e.kr, svc, g, inside)
}

// message builds a decoded message as collect.Decode would: the raw object
// carries the ids, the event name, traits and properties, since a replay reads
// them from the stored envelope.
func message(typ trustloop.EventType, id, user, anon string, at time.Time, members map[string]any) trustloop.Message {
	obj := map[string]any{"type": typ.String(), "messageId": id, "timestamp": at.UTC().Format(time.RFC3339Nano)}
	if user != "" {
		obj["userId"] = user
	}
	if anon != "" {
		obj["anonymousId"] = anon
	}
	for k, v := range members {
		obj[k] = v
	}
	raw, err := json.Marshal(obj)
	if err != nil {
		panic(err)
	}
	m := trustloop.Message{Type: typ, MessageID: id, UserID: user, AnonymousID: anon, Timestamp: at, ReceivedAt: at, Raw: raw}
	if ev, ok := members["event"].(string); ok {
		m.Event = ev
	}
	return m
}

func identify(id, user, anon string, at time.Time, traits map[string]any) trustloop.Message {
	return message(trustloop.EventIdentify, id, user, anon, at, map[string]any{"traits": traits})
}

func track(id, user, anon string, at time.Time, event string, props map[string]any) trustloop.Message {
	return message(trustloop.EventTrack, id, user, anon, at, map[string]any{"event": event, "properties": props})
}

type obj = map[string]any

func (e *env) lookup(svc *projection.Service, typ, value string) *projection.Profile {
	e.t.Helper()
	p, err := svc.Lookup(context.Background(), e.ws, trustloop.Identifier{Type: typ, Value: value})
	if err != nil {
		e.t.Fatalf("lookup %s: %v", typ, err)
	}
	return p
}

// events returns a profile's whole timeline, paging by cursor.
func (e *env) events(svc *projection.Service, p *projection.Profile) []trustloop.TimelineEvent {
	e.t.Helper()
	id, err := projection.ParseID(p.ProfileID)
	if err != nil {
		e.t.Fatal(err)
	}
	var all []trustloop.TimelineEvent
	cursor := ""
	for range 1000 {
		page, next, err := svc.Events(context.Background(), e.ws, id, cursor, 2, nil)
		if err != nil {
			e.t.Fatalf("events: %v", err)
		}
		all = append(all, page...)
		if next == "" {
			return all
		}
		cursor = next
	}
	e.t.Fatal("timeline does not end")
	return nil
}

// messageIDs names a timeline's events, newest first.
func messageIDs(t testing.TB, evs []trustloop.TimelineEvent) []string {
	t.Helper()
	out := make([]string, len(evs))
	for i, ev := range evs {
		var m struct {
			MessageID string `json:"messageId"`
		}
		if err := json.Unmarshal(ev.Message, &m); err != nil {
			t.Fatal(err)
		}
		out[i] = m.MessageID
	}
	return out
}

// asJSON is a profile as the API shows it; withUpdated false leaves updated_at
// out (a replay stamps the profiles it changes with its own time).
func asJSON(t testing.TB, p *projection.Profile, withUpdated bool) string {
	t.Helper()
	c := *p
	if !withUpdated {
		c.UpdatedAt = ""
	}
	b, err := json.Marshal(&c)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func timelineJSON(t testing.TB, evs []trustloop.TimelineEvent) string {
	t.Helper()
	b, err := json.Marshal(evs)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func computed(p *projection.Profile, name string) any { return p.Computed[name] }

func (e *env) projectedUpto() int64 {
	e.t.Helper()
	n, err := e.db.ProjectedUpto(context.Background())
	if err != nil {
		e.t.Fatal(err)
	}
	return n
}

func (e *env) checkCounts(p *projection.Profile, events, orders int64) {
	e.t.Helper()
	if got := computed(p, profile.ComputedEvents); got != events {
		e.t.Errorf("profile %s: computed events = %v, want %d", p.ProfileID, got, events)
	}
	if got := computed(p, profile.ComputedOrderCount); got != orders {
		e.t.Errorf("profile %s: computed order_count = %v, want %d", p.ProfileID, got, orders)
	}
}

// (a) A group's changes are readable as soon as Done(true) returns, before any
// flush: Profile, Lookup and the timeline come from memory, while the stored row
// is still behind.
func TestReadYourWritesBeforeFlush(t *testing.T) {
	e := newEnv(t)
	svc := e.service()
	at := e.clock.Now()
	e.commit(svc, identify("m1", "u-1", "anon-1", at, obj{"email": " Jane@Example.COM ", "plan": "free"}))
	e.commit(svc,
		track("m2", "u-1", "", at, "Order Completed", obj{"revenue": 42.5}),
		identify("m3", "u-1", "", at, obj{"plan": "pro"}))
	e.commit(svc, track("m4", "", "anon-1", at, "Product Viewed", obj{"product_id": "p-1", "category": "shoes"}))

	p := e.lookup(svc, trustloop.IDEmail, "jane@example.com")
	if p.Traits["plan"] != "pro" {
		t.Errorf("traits = %v, want plan pro", p.Traits)
	}
	e.checkCounts(p, 4, 1)
	if v := computed(p, profile.ComputedLifetimeValue); v != 42.5 {
		t.Errorf("lifetime_value = %v", v)
	}
	id, _ := projection.ParseID(p.ProfileID)
	byID, err := svc.Profile(context.Background(), e.ws, id)
	if err != nil || asJSON(t, byID, true) != asJSON(t, p, true) {
		t.Errorf("Profile(%s) = %v, %v; Lookup gave %s", p.ProfileID, byID, err, asJSON(t, p, true))
	}
	for _, q := range [][2]string{{trustloop.IDUserID, "u-1"}, {trustloop.IDAnonymousID, "anon-1"}} {
		if got := e.lookup(svc, q[0], q[1]); got.ProfileID != p.ProfileID {
			t.Errorf("lookup %s = profile %s, want %s", q[0], got.ProfileID, p.ProfileID)
		}
	}
	// The timeline of both subjects (user and anonymous id), newest first, from
	// positions held only in memory.
	if got := fmt.Sprint(messageIDs(t, e.events(svc, p))); got != "[m4 m3 m2 m1]" {
		t.Errorf("timeline = %s, want [m4 m3 m2 m1]", got)
	}

	// Nothing was written behind: a service with empty memory sees the row the
	// first commit inserted, and no timeline, and the watermark has not moved.
	cold := e.lookup(e.service(), trustloop.IDEmail, "jane@example.com")
	if cold.Traits["plan"] != "free" || computed(cold, profile.ComputedEvents) != int64(1) {
		t.Errorf("stored profile before a flush: traits %v computed %v; want the first event only", cold.Traits, cold.Computed)
	}
	if n := len(e.events(e.service(), cold)); n != 0 {
		t.Errorf("stored timeline before a flush has %d events, want 0", n)
	}
	if up := e.projectedUpto(); up != 0 {
		t.Errorf("ProjectedUpto = %d before any flush", up)
	}
}

// (b) A group whose commit failed (Done(false)) leaves nothing in memory: not its
// profile changes, not its new profiles, not its timeline positions (which a
// retry reuses: SQLite hands the rolled-back positions out again).
func TestFailedCommitLeavesNothing(t *testing.T) {
	e := newEnv(t)
	svc := e.service()
	at := e.clock.Now()
	e.commit(svc, identify("m1", "u-1", "", at, obj{"plan": "free", "email": "one@example.com"}))
	e.commit(svc, track("m2", "u-1", "", at, "Product Viewed", obj{"product_id": "p-1"})) // u-1 dirty in memory

	failing := []trustloop.Message{
		track("m3", "u-1", "", at, "Order Completed", obj{"revenue": 10}),
		identify("m4", "u-1", "", at, obj{"plan": "pro"}),
		identify("m5", "u-2", "anon-2", at, obj{"email": "two@example.com"}),
	}
	if _, err := e.commitWith(svc, func() error { return errInjected }, failing...); !errors.Is(err, errInjected) {
		t.Fatalf("failing commit: %v", err)
	}

	p := e.lookup(svc, trustloop.IDUserID, "u-1")
	if p.Traits["plan"] != "free" {
		t.Errorf("traits after a failed commit = %v, want plan free", p.Traits)
	}
	e.checkCounts(p, 2, 0)
	if got := fmt.Sprint(messageIDs(t, e.events(svc, p))); got != "[m2 m1]" {
		t.Errorf("timeline after a failed commit = %s, want [m2 m1]", got)
	}
	for _, q := range [][2]string{{trustloop.IDUserID, "u-2"}, {trustloop.IDEmail, "two@example.com"}, {trustloop.IDAnonymousID, "anon-2"}} {
		if _, err := svc.Lookup(context.Background(), e.ws, trustloop.Identifier{Type: q[0], Value: q[1]}); trustloop.ErrorCode(err) != trustloop.ENOTFOUND {
			t.Errorf("lookup %s after a failed commit: err %v, want ENOTFOUND", q[0], err)
		}
	}
	// Only what the committed groups changed is written behind.
	n, err := svc.Flush(context.Background(), true)
	if err != nil || n != 1 {
		t.Errorf("Flush = %d, %v; want 1 profile (u-1's second event)", n, err)
	}

	// The retry commits the same messages (the failed attempt left no dedupe
	// entry either) and takes the same log positions; each counts once.
	e.commit(svc, failing...)
	p = e.lookup(svc, trustloop.IDUserID, "u-1")
	if p.Traits["plan"] != "pro" {
		t.Errorf("traits after the retry = %v", p.Traits)
	}
	e.checkCounts(p, 4, 1)
	if got := fmt.Sprint(messageIDs(t, e.events(svc, p))); got != "[m4 m3 m2 m1]" {
		t.Errorf("timeline after the retry = %s, want [m4 m3 m2 m1]", got)
	}
	p2 := e.lookup(svc, trustloop.IDEmail, "two@example.com")
	e.checkCounts(p2, 1, 0)
	if got := fmt.Sprint(messageIDs(t, e.events(svc, p2))); got != "[m5]" {
		t.Errorf("u-2 timeline = %s, want [m5]", got)
	}

	// And what is written behind is exactly that, too.
	if _, err := svc.Flush(context.Background(), true); err != nil {
		t.Fatal(err)
	}
	e.reopen()
	fresh := e.service()
	q := e.lookup(fresh, trustloop.IDUserID, "u-1")
	e.checkCounts(q, 4, 1)
	if got := fmt.Sprint(messageIDs(t, e.events(fresh, q))); got != "[m4 m3 m2 m1]" {
		t.Errorf("stored timeline = %s, want [m4 m3 m2 m1]", got)
	}
}

// someHistory commits a few groups for two people: an anonymous visitor who
// logs in, and a second user; it returns the positions of the last group.
func (e *env) someHistory(svc *projection.Service) []int64 {
	e.t.Helper()
	at := e.clock.Now()
	e.commit(svc,
		track("h1", "", "anon-1", at, "Product Viewed", obj{"product_id": "p-1", "category": "shoes"}),
		identify("h2", "u-2", "", at, obj{"email": "two@example.com", "plan": "free"}))
	e.clock.Advance(time.Second)
	at = e.clock.Now()
	e.commit(svc,
		identify("h3", "u-1", "anon-1", at, obj{"email": "One@Example.com", "name": "One"}),
		track("h4", "u-1", "", at, "Order Completed", obj{"revenue": 30}),
		track("h5", "u-2", "", at, "Product Viewed", obj{"product_id": "p-2", "category": "hats"}))
	e.clock.Advance(time.Second)
	at = e.clock.Now()
	return e.commit(svc,
		track("h6", "", "anon-1", at, "Order Completed", obj{"revenue": 12.5}),
		identify("h7", "u-2", "", at, obj{"plan": "pro"}),
		track("h8", "u-1", "", at, "Product Viewed", obj{"product_id": "p-3", "category": "shoes"}))
}

type snapshotOf struct {
	profiles map[string]*projection.Profile
	timeline map[string][]trustloop.TimelineEvent
}

func (e *env) snapshot(svc *projection.Service) snapshotOf {
	e.t.Helper()
	s := snapshotOf{profiles: map[string]*projection.Profile{}, timeline: map[string][]trustloop.TimelineEvent{}}
	for _, email := range []string{"one@example.com", "two@example.com"} {
		p := e.lookup(svc, trustloop.IDEmail, email)
		s.profiles[email] = p
		s.timeline[email] = e.events(svc, p)
	}
	return s
}

func (e *env) sameAs(want, got snapshotOf, withUpdated bool) {
	e.t.Helper()
	for email, p := range want.profiles {
		if a, b := asJSON(e.t, p, withUpdated), asJSON(e.t, got.profiles[email], withUpdated); a != b {
			e.t.Errorf("profile of %s:\n got %s\nwant %s", email, b, a)
		}
		if a, b := timelineJSON(e.t, want.timeline[email]), timelineJSON(e.t, got.timeline[email]); a != b {
			e.t.Errorf("timeline of %s:\n got %s\nwant %s", email, b, a)
		}
	}
}

// (c) After Flush(all), a service with empty memory over the same store (here
// after a restart) reads the same profiles — traits, computed traits,
// identities, times — and the same timelines.
func TestFlushThenFreshService(t *testing.T) {
	e := newEnv(t)
	svc := e.service()
	last := e.someHistory(svc)
	want := e.snapshot(svc)
	e.checkCounts(want.profiles["one@example.com"], 5, 2)
	e.checkCounts(want.profiles["two@example.com"], 3, 0)
	if got := fmt.Sprint(messageIDs(t, want.timeline["one@example.com"])); got != "[h8 h6 h4 h3 h1]" {
		t.Errorf("timeline of u-1 = %s", got)
	}

	if _, err := svc.Flush(context.Background(), true); err != nil {
		t.Fatal(err)
	}
	if up := e.projectedUpto(); up != last[len(last)-1] {
		t.Errorf("ProjectedUpto after Flush(all) = %d, want the last position %d", up, last[len(last)-1])
	}
	e.reopen()
	e.sameAs(want, e.snapshot(e.service()), true)
}

// (d) A crash before any flush: a new service's Recover replays the log into
// profiles equal to those the first service had in memory — each event counted
// once, whether the stored row has it already (the profiles the commits
// inserted) or not — and a second Recover changes nothing.
func TestRecoverAfterCrash(t *testing.T) {
	e := newEnv(t)
	svc := e.service()
	last := e.someHistory(svc)
	want := e.snapshot(svc)

	e.reopen() // the crash: svc's memory is gone, unflushed
	if up := e.projectedUpto(); up != 0 {
		t.Fatalf("ProjectedUpto = %d without a flush", up)
	}
	svc2 := e.service()
	n, err := svc2.Recover(context.Background(), []int64{e.ws})
	if err != nil {
		t.Fatal(err)
	}
	if n != 8 {
		t.Errorf("Recover replayed %d events, want all 8", n)
	}
	got := e.snapshot(svc2)
	e.sameAs(want, got, false)
	e.checkCounts(got.profiles["one@example.com"], 5, 2)
	e.checkCounts(got.profiles["two@example.com"], 3, 0)
	if up := e.projectedUpto(); up != last[len(last)-1] {
		t.Errorf("ProjectedUpto after Recover = %d, want %d", up, last[len(last)-1])
	}

	// Again, on the same service and on yet another one: nothing to replay.
	if n, err := svc2.Recover(context.Background(), []int64{e.ws}); err != nil || n != 0 {
		t.Errorf("second Recover = %d, %v; want 0", n, err)
	}
	e.sameAs(got, e.snapshot(svc2), true)
	e.reopen()
	svc3 := e.service()
	if n, err := svc3.Recover(context.Background(), []int64{e.ws}); err != nil || n != 0 {
		t.Errorf("Recover after a clean restart = %d, %v; want 0", n, err)
	}
	e.sameAs(want, e.snapshot(svc3), false)
}

// newSweepEnv returns a service that flushes one profile a transaction
// (FlushBatch 1) after a second, with two profiles, A (u-a, a@example.com)
// and B (u-b, b@example.com), made by one commit: A's id is the lower, so a
// sweep writes A first.
func newSweepEnv(t *testing.T) (*env, *projection.Service) {
	e := newEnv(t)
	svc := e.service()
	svc.FlushAfter, svc.FlushBatch = time.Second, 1
	at := e.clock.Now()
	e.commit(svc, identify("a1", "u-a", "", at, obj{"email": "a@example.com"}), identify("b1", "u-b", "", at, obj{"email": "b@example.com"}))
	if a, b := e.lookup(svc, trustloop.IDEmail, "a@example.com"), e.lookup(svc, trustloop.IDEmail, "b@example.com"); a.ID() >= b.ID() {
		t.Fatalf("A's id %d not below B's %d: a sweep would write B first", a.ID(), b.ID())
	}
	return e, svc
}

// (e) The watermark never passes the lowest position held only in memory. Two
// profiles are dirty; once A is due, a sweep writes both in id order, one a
// transaction (FlushBatch 1): after the first, A's, the watermark stays below
// B's unflushed event although A's newest is later. After a crash there,
// Recover replays from the watermark: the written profile skips what it has,
// the other gets what it lacked.
func TestWatermarkBelowUnflushed(t *testing.T) {
	e, svc := newSweepEnv(t)
	ctx := context.Background()
	at := e.clock.Now()
	e.commit(svc, track("a2", "u-a", "", at, "Order Completed", obj{"revenue": 5})) // A dirty from now
	e.clock.Advance(2 * time.Second)
	at = e.clock.Now()
	s := e.commit(svc,
		track("b2", "u-b", "", at, "Order Completed", obj{"revenue": 7}), // B dirty from now, at s[0]
		track("a3", "u-a", "", at, "Product Viewed", obj{"product_id": "p"}))
	lowestUnflushed, newest := s[0], s[1]

	n, more, err := svc.FlushStep(ctx, false)
	if err != nil || n != 1 || !more {
		t.Fatalf("first step of the sweep = %d, %v, %v; want 1 profile (A), more to come", n, more, err)
	}
	if up := e.projectedUpto(); up != lowestUnflushed-1 {
		t.Errorf("ProjectedUpto = %d; want %d, just below B's unflushed event at %d (A was written up to %d)",
			up, lowestUnflushed-1, lowestUnflushed, newest)
	}
	// What is stored now: A whole, B without its second event.
	cold := e.service()
	e.checkCounts(e.lookup(cold, trustloop.IDEmail, "a@example.com"), 3, 1)
	e.checkCounts(e.lookup(cold, trustloop.IDEmail, "b@example.com"), 1, 0)
	want := map[string]string{}
	for _, email := range []string{"a@example.com", "b@example.com"} {
		want[email] = asJSON(t, e.lookup(svc, trustloop.IDEmail, email), false)
	}

	e.reopen() // crash with B unflushed
	svc2 := e.service()
	replayed, err := svc2.Recover(ctx, []int64{e.ws})
	if err != nil {
		t.Fatal(err)
	}
	if replayed != 2 {
		t.Errorf("Recover replayed %d events, want 2 (B's and A's newest)", replayed)
	}
	a, b := e.lookup(svc2, trustloop.IDEmail, "a@example.com"), e.lookup(svc2, trustloop.IDEmail, "b@example.com")
	e.checkCounts(a, 3, 1)
	e.checkCounts(b, 2, 1)
	for email, p := range map[string]*projection.Profile{"a@example.com": a, "b@example.com": b} {
		if got := asJSON(t, p, false); got != want[email] {
			t.Errorf("%s after Recover:\n got %s\nwant %s", email, got, want[email])
		}
	}
	if got := fmt.Sprint(messageIDs(t, e.events(svc2, a))); got != "[a3 a2 a1]" {
		t.Errorf("A's timeline after Recover = %s, want [a3 a2 a1]", got)
	}
	if got := fmt.Sprint(messageIDs(t, e.events(svc2, b))); got != "[b2 b1]" {
		t.Errorf("B's timeline after Recover = %s, want [b2 b1]", got)
	}
	if up := e.projectedUpto(); up != newest {
		t.Errorf("ProjectedUpto after Recover = %d, want %d", up, newest)
	}

	// On a running service the other profile follows once it is due, and the
	// watermark with it.
	e.clock.Advance(2 * time.Second)
	svc3 := e.service()
	svc3.FlushAfter = time.Second
	at = e.clock.Now()
	s = e.commit(svc3, track("a4", "u-a", "", at, "Product Viewed", obj{"product_id": "q"}))
	e.clock.Advance(500 * time.Millisecond)
	s2 := e.commit(svc3, track("b3", "u-b", "", e.clock.Now(), "Product Viewed", obj{"product_id": "q"}))
	if n, err := svc3.Flush(ctx, false); err != nil || n != 0 {
		t.Fatalf("Flush before anything is due = %d, %v", n, err)
	}
	if up := e.projectedUpto(); up != s[0]-1 {
		t.Errorf("ProjectedUpto with A dirty from %d = %d, want %d", s[0], up, s[0]-1)
	}
	e.clock.Advance(600 * time.Millisecond) // A due, B not: the sweep takes both
	if n, err := svc3.Flush(ctx, false); err != nil || n != 2 {
		t.Fatalf("Flush(due) = %d, %v; want 2", n, err)
	}
	if up := e.projectedUpto(); up != s2[0] {
		t.Errorf("ProjectedUpto with nothing dirty = %d, want %d", up, s2[0])
	}
	e.clock.Advance(time.Second)
	if n, err := svc3.Flush(ctx, false); err != nil || n != 0 {
		t.Fatalf("Flush with nothing dirty = %d, %v; want 0", n, err)
	}
}

// A sweep writes every dirty profile, due or not, in id order; a profile written
// by a sweep and dirty again is due FlushAfter after its new change, not after
// the queue entry left from before (which would start sweeps back to back and
// write it once per event). FlushBatch 1 makes each step one profile.
func TestSweepDueFromTheLatestChange(t *testing.T) {
	e, svc := newSweepEnv(t)
	ctx := context.Background()
	at := e.clock.Now()
	if _, err := svc.Flush(ctx, true); err != nil {
		t.Fatal(err)
	}
	// B dirty first, then A: the queue holds B's entry, then A's.
	e.commit(svc, track("b2", "u-b", "", at, "Product Viewed", obj{"product_id": "p"}))
	e.commit(svc, track("a2", "u-a", "", at, "Product Viewed", obj{"product_id": "p"}))
	if n, _, err := svc.FlushStep(ctx, false); err != nil || n != 0 {
		t.Fatalf("step before anything is due = %d, %v; want 0", n, err)
	}
	e.clock.Advance(2 * time.Second)
	if n, more, err := svc.FlushStep(ctx, false); err != nil || n != 1 || !more {
		t.Fatalf("first step of the sweep = %d, %v, %v; want A, more to come", n, more, err)
	}
	// A changes again while B, ahead of A's old entry, is still unwritten.
	s := e.commit(svc, track("a3", "u-a", "", e.clock.Now(), "Product Viewed", obj{"product_id": "q"}))
	if n, more, err := svc.FlushStep(ctx, false); err != nil || n != 1 || more {
		t.Fatalf("second step = %d, %v, %v; want B, and nothing due after it", n, more, err)
	}
	if up := e.projectedUpto(); up != s[0]-1 {
		t.Errorf("ProjectedUpto = %d; want %d, below A's new change", up, s[0]-1)
	}
	if n, _, err := svc.FlushStep(ctx, false); err != nil || n != 0 {
		t.Errorf("step right after the sweep = %d, %v; want 0: A changed just now, FlushAfter is %v",
			n, err, svc.FlushAfter)
	}
	e.clock.Advance(1500 * time.Millisecond)
	if n, err := svc.Flush(ctx, false); err != nil || n != 1 {
		t.Errorf("Flush once A's change is due = %d, %v; want 1", n, err)
	}
	if up := e.projectedUpto(); up != s[0] {
		t.Errorf("ProjectedUpto with nothing dirty = %d, want %d", up, s[0])
	}
}

// A crash after a merge commit and before the flush must not lose the merged
// profile's history: the commit empties the merged-away row and a replay cannot
// merge again (the identities moved in the commit), so the survivor's merged
// state must be written in that commit too (fixed in 9c01d9b).
func TestRecoverAfterMerge(t *testing.T) {
	e := newEnv(t)
	svc := e.service()
	ctx := context.Background()
	at := e.clock.Now()
	e.commit(svc, identify("p1", "", "phone", at, obj{"email": "sam@example.com"}), identify("l1", "", "laptop", at, obj{"phone": "+49 170 1234567"}))
	e.commit(svc, track("l2", "", "laptop", at, "Order Completed", obj{"revenue": 20}))
	if _, err := svc.Flush(ctx, true); err != nil {
		t.Fatal(err)
	}
	e.commit(svc, identify("l3", "", "laptop", at, obj{"email": "sam@example.com"})) // merges laptop into phone
	want := e.lookup(svc, trustloop.IDAnonymousID, "laptop")
	e.checkCounts(want, 4, 1)

	e.reopen()
	svc2 := e.service()
	if _, err := svc2.Recover(ctx, []int64{e.ws}); err != nil {
		t.Fatal(err)
	}
	got := e.lookup(svc2, trustloop.IDAnonymousID, "laptop")
	e.checkCounts(got, 4, 1)
	if a, b := asJSON(t, want, false), asJSON(t, got, false); a != b {
		t.Errorf("merged profile after Recover:\n got %s\nwant %s", b, a)
	}
}

// A flush that snapshots dirty profiles while a group commit merges them writes
// its stale snapshots after the commit, over the rows the commit wrote: the
// merged-away profile's row says it is live again, and the survivor's row loses
// the merge — while memory holds both as clean (the commit wrote them), so no
// later flush repairs the rows, and the watermark moves past the merge.
func TestFlushDuringMergeCommit(t *testing.T) {
	e := newEnv(t)
	svc := e.service()
	ctx := context.Background()
	at := e.clock.Now()
	e.commit(svc, identify("p1", "", "phone", at, obj{"email": "sam@example.com"}), identify("l1", "", "laptop", at, obj{"phone": "+49 170 1234567"}))
	// Both profiles dirty in memory.
	e.commit(svc, track("p2", "", "phone", at, "Product Viewed", obj{"product_id": "p"}), track("l2", "", "laptop", at, "Product Viewed", obj{"product_id": "q"}))
	phone := e.lookup(svc, trustloop.IDAnonymousID, "phone").ProfileID
	laptop := e.lookup(svc, trustloop.IDAnonymousID, "laptop").ProfileID

	// The background flush (Service.Run) ticks while the writer is inside the
	// merging commit: it takes its snapshots, then waits for the store.
	flushed := make(chan error, 1)
	_, err := e.commitWith(svc, func() error {
		go func() { _, err := svc.Flush(ctx, true); flushed <- err }()
		time.Sleep(200 * time.Millisecond)
		return nil
	}, identify("l3", "", "laptop", at, obj{"email": "sam@example.com"}))
	if err != nil {
		t.Fatal(err)
	}
	if err := <-flushed; err != nil {
		t.Fatal(err)
	}
	live := e.lookup(svc, trustloop.IDAnonymousID, "laptop")
	if live.ProfileID != phone {
		t.Fatalf("laptop is in profile %s after the merge, want the phone's %s", live.ProfileID, phone)
	}
	e.checkCounts(live, 5, 0)
	if _, err := svc.Flush(ctx, true); err != nil {
		t.Fatal(err)
	}

	e.reopen()
	fresh := e.service()
	// The watermark passed the merge, so a start's Recover cannot repair it.
	if n, err := fresh.Recover(ctx, []int64{e.ws}); err != nil || n != 0 {
		t.Errorf("Recover = %d, %v; want nothing to replay", n, err)
	}
	id, _ := projection.ParseID(laptop)
	p, err := fresh.Profile(ctx, e.ws, id)
	if err != nil {
		t.Fatal(err)
	}
	if p.ProfileID != phone || p.MergedFrom != laptop {
		t.Errorf("merged-away profile %s after a restart answers profile %s (merged_from %q), want %s",
			laptop, p.ProfileID, p.MergedFrom, phone)
	}
	e.checkCounts(e.lookup(fresh, trustloop.IDAnonymousID, "laptop"), 5, 0)
}

// A live profile keeps the collector's receive time to the nanosecond; the log
// keeps milliseconds, so a profile rebuilt by Recover differs from the live one
// (first_seen, last_seen, trait times) unless the times were whole
// milliseconds.
func TestRecoverNanosecondTimes(t *testing.T) {
	e := newEnv(t)
	svc := e.service()
	at := e.clock.Now().Add(123456 * time.Nanosecond)
	e.commit(svc, identify("n1", "u-1", "", at, obj{"email": "n@example.com"}))
	e.commit(svc, track("n2", "u-1", "", at, "Product Viewed", obj{"product_id": "p"}))
	want := asJSON(t, e.lookup(svc, trustloop.IDUserID, "u-1"), false)
	e.reopen()
	svc2 := e.service()
	if _, err := svc2.Recover(context.Background(), []int64{e.ws}); err != nil {
		t.Fatal(err)
	}
	if got := asJSON(t, e.lookup(svc2, trustloop.IDUserID, "u-1"), false); got != want {
		t.Errorf("after Recover:\n got %s\nwant %s", got, want)
	}
}

// A cursor pages only the listing that returned it: another profile's
// timeline, or a listing of profiles, refuses it with EINVALID; the
// listing's own takes it.
func TestCursorBoundToItsListing(t *testing.T) {
	e := newEnv(t)
	svc := e.service()
	at := e.clock.Now()
	e.commit(svc,
		track("a1", "u-a", "", at, "Product Viewed", nil), track("a2", "u-a", "", at, "Product Viewed", nil),
		track("b1", "u-b", "", at, "Product Viewed", nil), track("b2", "u-b", "", at, "Product Viewed", nil))
	ctx := context.Background()
	a, _ := projection.ParseID(e.lookup(svc, trustloop.IDUserID, "u-a").ProfileID)
	b, _ := projection.ParseID(e.lookup(svc, trustloop.IDUserID, "u-b").ProfileID)
	_, aNext, err := svc.Events(ctx, e.ws, a, "", 1, nil)
	if err != nil || aNext == "" {
		t.Fatalf("a's first page: next %q, %v", aNext, err)
	}
	_, pNext, err := svc.List(ctx, e.ws, 0, "", 1)
	if err != nil || pNext == "" {
		t.Fatalf("the profiles' first page: next %q, %v", pNext, err)
	}
	if page, _, err := svc.Events(ctx, e.ws, a, aNext, 1, nil); err != nil || len(page) != 1 {
		t.Fatalf("a's own cursor: %d events, %v", len(page), err)
	}
	for name, try := range map[string]func() error{
		"a's timeline cursor on b's timeline":  func() error { _, _, err := svc.Events(ctx, e.ws, b, aNext, 1, nil); return err },
		"a's timeline cursor on the profiles":  func() error { _, _, err := svc.List(ctx, e.ws, 0, aNext, 1); return err },
		"the profiles' cursor on a's timeline": func() error { _, _, err := svc.Events(ctx, e.ws, a, pNext, 1, nil); return err },
		"the profiles' cursor on an audience":  func() error { _, _, err := svc.List(ctx, e.ws, 7, pNext, 1); return err },
	} {
		if err := try(); trustloop.ErrorCode(err) != trustloop.EINVALID || !strings.Contains(err.Error(), "another listing") {
			t.Errorf("%s: %v, want EINVALID naming another listing", name, err)
		}
	}
	// A profile merged into another: its id and the surviving one's page the
	// same timeline with either's cursor, and so do cursors made before the
	// merge, whichever of the two profiles they named.
	e.commit(svc, track("c1", "", "an-1", at, "Product Viewed", nil), track("c2", "", "an-1", at, "Product Viewed", nil))
	c, _ := projection.ParseID(e.lookup(svc, trustloop.IDAnonymousID, "an-1").ProfileID)
	_, cNext, err := svc.Events(ctx, e.ws, c, "", 1, nil)
	if err != nil || cNext == "" {
		t.Fatalf("c's first page: next %q, %v", cNext, err)
	}
	e.commit(svc, identify("c3", "u-a", "an-1", at, nil))
	if e.lookup(svc, trustloop.IDAnonymousID, "an-1").ProfileID != e.lookup(svc, trustloop.IDUserID, "u-a").ProfileID {
		t.Fatal("the anonymous profile and u-a's did not merge")
	}
	for _, first := range []int64{a, c} {
		_, next, err := svc.Events(ctx, e.ws, first, "", 1, nil)
		if err != nil || next == "" {
			t.Fatalf("first page by %d: next %q, %v", first, next, err)
		}
		for _, then := range []int64{a, c} {
			if page, _, err := svc.Events(ctx, e.ws, then, next, 1, nil); err != nil || len(page) != 1 {
				t.Errorf("a cursor of the timeline asked for by %d, used by %d: %d events, %v", first, then, len(page), err)
			}
		}
	}
	for name, cur := range map[string]string{"a's": aNext, "c's": cNext} {
		for _, then := range []int64{a, c} {
			page, _, err := svc.Events(ctx, e.ws, then, cur, 10, nil)
			if err != nil || len(page) == 0 {
				t.Errorf("%s cursor from before the merge, used by %d: %d events, %v", name, then, len(page), err)
			}
		}
	}
	_, bNext, err := svc.Events(ctx, e.ws, b, "", 1, nil)
	if err != nil || bNext == "" {
		t.Fatalf("b's first page: next %q, %v", bNext, err)
	}
	if _, _, err := svc.Events(ctx, e.ws, a, bNext, 1, nil); trustloop.ErrorCode(err) != trustloop.EINVALID {
		t.Errorf("b's cursor on the merged timeline: %v, want EINVALID", err)
	}
}

// Profiles A < B < C by id, made dirty in the order C, B, A (so their
// positions run the other way). A sweep step writing A fails and A is put back
// in the queue; the next step writes B with a watermark that must stay below
// C's unwritten change (found by review: A had been put back at the queue's
// front, above C's lower position), and a crash there loses nothing.
func TestFailedSweepStepKeepsWatermark(t *testing.T) {
	e := newEnv(t)
	fs := &failingStore{Store: e.db}
	svc := e.serviceOver(fs)
	svc.FlushAfter, svc.FlushBatch = time.Second, 1
	ctx := context.Background()
	at := e.clock.Now()
	e.commit(svc, identify("a1", "u-a", "", at, obj{"email": "a@example.com"}), identify("b1", "u-b", "", at, obj{"email": "b@example.com"}))
	e.clock.Advance(10 * time.Millisecond)
	e.commit(svc, identify("c1", "u-c", "", e.clock.Now(), obj{"email": "c@example.com"}))
	if _, err := svc.Flush(ctx, true); err != nil {
		t.Fatal(err)
	}
	at = e.clock.Now()
	c := e.commit(svc, track("c2", "u-c", "", at, "Order Completed", obj{"revenue": 1}))[0]
	b := e.commit(svc, track("b2", "u-b", "", at, "Order Completed", obj{"revenue": 1}))[0]
	a := e.commit(svc, track("a2", "u-a", "", at, "Order Completed", obj{"revenue": 1}))[0]
	if !(c < b && b < a) {
		t.Fatalf("positions C %d, B %d, A %d: want C < B < A", c, b, a)
	}
	e.clock.Advance(2 * time.Second)
	fs.fail = true
	if _, _, err := svc.FlushStep(ctx, false); !errors.Is(err, errWrite) {
		t.Fatalf("step 1 = %v", err)
	}
	fs.fail = false
	if n, _, err := svc.FlushStep(ctx, false); err != nil || n != 1 {
		t.Fatalf("step 2 = %d, %v; want one profile", n, err)
	}
	up := e.projectedUpto()
	if up >= c {
		t.Errorf("ProjectedUpto = %d after step 2, but C is dirty from %d and unwritten", up, c)
	}
	e.reopen() // crash between the steps
	svc2 := e.service()
	if _, err := svc2.Recover(ctx, []int64{e.ws}); err != nil {
		t.Fatal(err)
	}
	e.checkCounts(e.lookup(svc2, trustloop.IDEmail, "c@example.com"), 2, 1)
}

// gateStore holds the first WriteProjection until released, then lets it
// through.
type gateStore struct {
	*failingStore
	entered, release chan struct{}
	done             bool
}

func (g *gateStore) WriteProjection(ctx context.Context, c *trustloop.ProjectionChanges) error {
	if !g.done {
		g.done = true
		close(g.entered)
		<-g.release
	}
	return g.failingStore.WriteProjection(ctx, c)
}

// A group copies dirty A; a sweep writes A's installed state meanwhile; Done
// installs the group's copy. A is dirty from the group's events only: with
// the copy's older position, A's old queue entry had been live again, with
// its old time, and the next sweep started at once (found by review).
func TestSweepNotRevivedByGroup(t *testing.T) {
	e := newEnv(t)
	gs := &gateStore{failingStore: &failingStore{Store: e.db}, entered: make(chan struct{}), release: make(chan struct{})}
	svc := e.serviceOver(gs)
	svc.FlushAfter, svc.FlushBatch = time.Second, 1
	ctx := context.Background()
	at := e.clock.Now()
	e.commit(svc, identify("a1", "u-a", "", at, obj{"email": "a@example.com"}), identify("b1", "u-b", "", at, obj{"email": "b@example.com"}))
	gs.done = true
	if _, err := svc.Flush(ctx, true); err != nil {
		t.Fatal(err)
	}
	gs.done = false
	e.commit(svc, track("b2", "u-b", "", at, "Clicked", obj{}))
	e.commit(svc, track("a2", "u-a", "", at, "Clicked", obj{}))
	e.clock.Advance(2 * time.Second)
	type res struct {
		n    int
		more bool
		err  error
	}
	done := make(chan res, 1)
	if _, err := e.commitWith(svc, func() error {
		go func() { n, more, err := svc.FlushStep(ctx, false); done <- res{n, more, err} }()
		<-gs.entered // the step took A (installed) while the group holds its copy
		return nil
	}, track("a3", "u-a", "", e.clock.Now(), "Clicked", obj{})); err != nil {
		t.Fatal(err)
	}
	close(gs.release)
	if r := <-done; r.err != nil || r.n != 1 {
		t.Fatalf("step 1 = %+v; want A written", r)
	}
	n, more, err := svc.FlushStep(ctx, false) // B
	if err != nil || n != 1 {
		t.Fatalf("step 2 = %d, %v; want B written", n, err)
	}
	if more {
		t.Errorf("after the sweep, more = true: a new sweep is due at once although A changed just now")
	}
}
