package ingest

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/trustloop/trustloop"
	"github.com/trustloop/trustloop/collect"
	"github.com/trustloop/trustloop/keyring"
	"github.com/trustloop/trustloop/sqlite"
	"github.com/trustloop/trustloop/storetest"
)

// wait bounds every wait of these tests, so a bug hangs one test, not the run.
const wait = 10 * time.Second

var received = time.Date(2024, 5, 1, 12, 0, 0, 0, time.UTC)

// fakeStore is an EventStore in memory. It records every AppendEvents call; block
// holds calls until closed, and hook can fail a call (by its index) before anything
// is written.
type fakeStore struct {
	mu      sync.Mutex
	calls   []trustloop.CommitBatch
	keys    map[string]trustloop.SubjectKey // by keyID(ws, blind)
	events  []trustloop.StoredEvent
	seen    map[string]bool
	block   chan struct{}
	entered chan int
	hook    func(call int, b *trustloop.CommitBatch) error
}

func newFakeStore() *fakeStore {
	return &fakeStore{keys: map[string]trustloop.SubjectKey{}, seen: map[string]bool{}, entered: make(chan int, 1000)}
}

func keyID(ws int64, blind []byte) string { return fmt.Sprint(ws, "/", string(blind)) }

func (f *fakeStore) AppendEvents(ctx context.Context, b *trustloop.CommitBatch) (int, error) {
	f.mu.Lock()
	call := len(f.calls)
	cp := trustloop.CommitBatch{NewKeys: append([]trustloop.SubjectKey(nil), b.NewKeys...),
		Events: append([]trustloop.StoredEvent(nil), b.Events...)}
	f.calls = append(f.calls, cp)
	block, hook := f.block, f.hook
	f.mu.Unlock()
	f.entered <- call
	if block != nil {
		<-block
	}
	if hook != nil {
		if err := hook(call, b); err != nil {
			return 0, err
		}
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, k := range b.NewKeys {
		if _, ok := f.keys[keyID(k.WorkspaceID, k.Blind)]; ok {
			return 0, trustloop.Errorf(trustloop.ECONFLICT, "a subject key was created concurrently")
		}
	}
	for _, k := range b.NewKeys {
		f.keys[keyID(k.WorkspaceID, k.Blind)] = k
	}
	stored := 0
	for _, e := range b.Events {
		id := fmt.Sprint(e.SourceID, "/", string(e.MessageHash))
		if f.seen[id] {
			continue
		}
		f.seen[id] = true
		f.events = append(f.events, e)
		stored++
	}
	return stored, nil
}

func (f *fakeStore) ListEvents(ctx context.Context, ws, after int64, limit int) ([]trustloop.StoredEvent, error) {
	return nil, errors.New("not implemented")
}

func (f *fakeStore) FindSubjectKeys(ctx context.Context, ws int64, blinds [][]byte) (map[string]trustloop.SubjectKey, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := map[string]trustloop.SubjectKey{}
	for _, b := range blinds {
		if k, ok := f.keys[keyID(ws, b)]; ok {
			out[string(b)] = k
		}
	}
	return out, nil
}

func (f *fakeStore) addKeys(ks ...trustloop.SubjectKey) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, k := range ks {
		f.keys[keyID(k.WorkspaceID, k.Blind)] = k
	}
}

func (f *fakeStore) keyByID(id int64) (trustloop.SubjectKey, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, k := range f.keys {
		if k.ID == id {
			return k, true
		}
	}
	return trustloop.SubjectKey{}, false
}

func (f *fakeStore) snapshot() (calls []trustloop.CommitBatch, events []trustloop.StoredEvent) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append(calls, f.calls...), append(events, f.events...)
}

// awaitCall waits until AppendEvents call number n has started.
func (f *fakeStore) awaitCall(t *testing.T, n int) {
	t.Helper()
	timeout := time.After(wait)
	for {
		select {
		case c := <-f.entered:
			if c == n {
				return
			}
		case <-timeout:
			t.Fatalf("AppendEvents call %d did not happen", n)
		}
	}
}

type commitObs struct{ requests, events, stored int }

type fakeObserver struct {
	mu      sync.Mutex
	commits []commitObs
	dropped map[string]int
}

func (o *fakeObserver) Committed(requests, events, stored int, d time.Duration) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.commits = append(o.commits, commitObs{requests, events, stored})
}

func (o *fakeObserver) Dropped(reason string, n int) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.dropped == nil {
		o.dropped = map[string]int{}
	}
	o.dropped[reason] += n
}

func (o *fakeObserver) snapshot() ([]commitObs, map[string]int) {
	o.mu.Lock()
	defer o.mu.Unlock()
	d := map[string]int{}
	for k, v := range o.dropped {
		d[k] = v
	}
	return append([]commitObs(nil), o.commits...), d
}

type env struct {
	master []byte
	keys   *keyring.Keyring
	ws     *trustloop.Workspace
	src    *trustloop.Source
	store  *fakeStore
	obs    *fakeObserver
	p      *Pipeline
}

func newEnv(t *testing.T, admit Admitter, cfg Config) *env {
	t.Helper()
	e := &env{master: keyring.NewKey(), store: newFakeStore(), obs: &fakeObserver{}}
	e.keys = keyring.New(e.master, 1000)
	e.ws = &trustloop.Workspace{ID: 1, Name: "default", IndexKey: e.keys.NewIndexKey()}
	if err := e.keys.AddWorkspace(e.ws); err != nil {
		t.Fatal(err)
	}
	e.src = &trustloop.Source{ID: 10, WorkspaceID: 1, Name: "web"}
	e.p = New(e.store, e.keys, e.obs, slog.New(slog.DiscardHandler), admit, cfg)
	t.Cleanup(func() {
		e.store.mu.Lock()
		if e.store.block != nil {
			select {
			case <-e.store.block:
			default:
				close(e.store.block)
			}
		}
		e.store.mu.Unlock()
		e.p.Close()
	})
	return e
}

// msg makes a track message of user with a ~500-byte raw body.
func msg(id, user string) trustloop.Message {
	raw := fmt.Sprintf(`{"type":"track","event":"Product Viewed","messageId":%q,"userId":%q,`+
		`"properties":{"product_id":"507f1f77bcf86cd799439011","sku":"G-32","name":"Monopoly: 3rd Edition","price":18.99},`+
		`"context":{"page":{"path":"/products/monopoly","url":"https://www.example.com/products/monopoly"}}}`, id, user)
	return trustloop.Message{Type: trustloop.EventTrack, MessageID: id, UserID: user, Event: "Product Viewed",
		ReceivedAt: received, Timestamp: received.Add(-time.Second), Raw: []byte(raw)}
}

func (e *env) blind(t testing.TB, user string) []byte {
	t.Helper()
	b, err := e.keys.Blind(e.ws.ID, "user_id", user)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func (e *env) hash(t testing.TB, id string) []byte {
	t.Helper()
	h, err := e.keys.MessageHash(e.ws.ID, id)
	if err != nil {
		t.Fatal(err)
	}
	return h
}

// ingestAsync runs Ingest in a goroutine.
func (e *env) ingestAsync(msgs ...trustloop.Message) <-chan error {
	done := make(chan error, 1)
	go func() { done <- e.p.Ingest(context.Background(), e.src, msgs) }()
	return done
}

func await(t *testing.T, done <-chan error) error {
	t.Helper()
	select {
	case err := <-done:
		return err
	case <-time.After(wait):
		t.Fatal("Ingest did not return")
		return nil
	}
}

// awaitQueued waits until n requests wait for the writer.
func (e *env) awaitQueued(t *testing.T, n int) {
	t.Helper()
	deadline := time.Now().Add(wait)
	for len(e.p.queue) < n {
		if time.Now().After(deadline) {
			t.Fatalf("%d requests queued, want %d", len(e.p.queue), n)
		}
		time.Sleep(time.Millisecond)
	}
}

// openPayload opens a stored event with the key the fake store holds for it.
func (e *env) openPayload(t *testing.T, ev trustloop.StoredEvent) *collect.Envelope {
	t.Helper()
	sk, ok := e.store.keyByID(ev.KeyID)
	if !ok {
		t.Fatalf("event sealed under key %d, which the store does not hold", ev.KeyID)
	}
	key, err := e.keys.OpenSubjectKey(sk)
	if err != nil {
		t.Fatal(err)
	}
	pt, err := keyring.Open(key.DEK, ev.Payload, keyring.EventAAD(nil, ev.WorkspaceID, ev.SourceID, ev.MessageHash))
	if err != nil {
		t.Fatalf("payload of key %d does not open: %v", ev.KeyID, err)
	}
	en, err := collect.OpenEnvelope(pt)
	if err != nil {
		t.Fatal(err)
	}
	return en
}

func TestIngestReturnsAfterCommit(t *testing.T) {
	e := newEnv(t, nil, Config{})
	e.store.block = make(chan struct{})
	done := e.ingestAsync(msg("m1", "alice"), msg("m2", "bob"))
	e.store.awaitCall(t, 0)
	select {
	case err := <-done:
		t.Fatalf("Ingest returned (%v) while its commit was still running", err)
	case <-time.After(100 * time.Millisecond):
	}
	if _, events := e.store.snapshot(); len(events) != 0 {
		t.Fatal("events stored before release")
	}
	close(e.store.block)
	if err := await(t, done); err != nil {
		t.Fatal(err)
	}
	// Ingest returned, so the commit finished: the events are there.
	if _, events := e.store.snapshot(); len(events) != 2 {
		t.Fatalf("%d events stored when Ingest returned, want 2", len(events))
	}
	commits, _ := e.obs.snapshot()
	if len(commits) != 1 || commits[0] != (commitObs{1, 2, 2}) {
		t.Fatalf("commits = %+v, want one of 1 request, 2 events, 2 stored", commits)
	}
}

func TestIngestGroupsConcurrentRequests(t *testing.T) {
	e := newEnv(t, nil, Config{})
	e.store.block = make(chan struct{})
	first := e.ingestAsync(msg("first", "u0"))
	e.store.awaitCall(t, 0)

	const n = 50
	var dones []<-chan error
	for i := range n {
		dones = append(dones, e.ingestAsync(msg(fmt.Sprintf("m%d-a", i), fmt.Sprintf("u%d", i)),
			msg(fmt.Sprintf("m%d-b", i), "shared")))
	}
	e.awaitQueued(t, n)
	close(e.store.block)
	if err := await(t, first); err != nil {
		t.Fatal(err)
	}
	for _, d := range dones {
		if err := await(t, d); err != nil {
			t.Fatal(err)
		}
	}
	calls, events := e.store.snapshot()
	if len(calls) >= n+1 {
		t.Fatalf("%d requests took %d commits; want them grouped", n+1, len(calls))
	}
	if len(calls) != 2 {
		t.Fatalf("%d commits, want 2 (the blocked one and one group of the %d queued)", len(calls), n)
	}
	if len(events) != 2*n+1 {
		t.Fatalf("%d events stored, want %d", len(events), 2*n+1)
	}
	// One key per new subject (u1..u49 and shared; u0's is known), even for a
	// subject in every request of the group.
	if nk := len(calls[1].NewKeys); nk != n {
		t.Fatalf("group made %d keys, want %d", nk, n)
	}
	commits, _ := e.obs.snapshot()
	if len(commits) != 2 || commits[1] != (commitObs{n, 2 * n, 2 * n}) {
		t.Fatalf("commits = %+v", commits)
	}
}

func TestIngestMaxGroupEvents(t *testing.T) {
	e := newEnv(t, nil, Config{MaxGroupEvents: 10})
	e.store.block = make(chan struct{})
	first := e.ingestAsync(msg("first", "u0"))
	e.store.awaitCall(t, 0)
	const n = 40
	var dones []<-chan error
	for i := range n {
		dones = append(dones, e.ingestAsync(msg(fmt.Sprint("a", i), "x"), msg(fmt.Sprint("b", i), "y")))
	}
	e.awaitQueued(t, n)
	close(e.store.block)
	for _, d := range append(dones, first) {
		if err := await(t, d); err != nil {
			t.Fatal(err)
		}
	}
	calls, events := e.store.snapshot()
	if len(events) != 2*n+1 {
		t.Fatalf("%d events stored, want %d", len(events), 2*n+1)
	}
	for i, c := range calls[1:] {
		if len(c.Events) > 10 {
			t.Fatalf("commit %d holds %d events, over MaxGroupEvents 10", i+1, len(c.Events))
		}
	}
	if len(calls)-1 != 2*n/10 {
		t.Fatalf("%d group commits for %d events in groups of 10", len(calls)-1, 2*n)
	}
}

func TestIngestCommitFailure(t *testing.T) {
	e := newEnv(t, nil, Config{})
	e.store.block = make(chan struct{})
	e.store.hook = func(call int, b *trustloop.CommitBatch) error {
		if call == 1 {
			return errors.New("disk full at /var/lib/trustloop")
		}
		return nil
	}
	first := e.ingestAsync(msg("first", "u0"))
	e.store.awaitCall(t, 0)
	const n = 5
	var reqs [][]trustloop.Message
	var dones []<-chan error
	for i := range n {
		r := []trustloop.Message{msg(fmt.Sprint("m", i), fmt.Sprint("new", i)), msg(fmt.Sprint("k", i), "u0")}
		reqs = append(reqs, r)
		dones = append(dones, e.ingestAsync(r...))
	}
	e.awaitQueued(t, n)
	close(e.store.block)
	if err := await(t, first); err != nil {
		t.Fatal(err)
	}
	for i, d := range dones {
		err := await(t, d)
		if err == nil {
			t.Fatalf("request %d of the failed group succeeded", i)
		}
		if trustloop.ErrorCode(err) != trustloop.EINTERNAL || trustloop.ErrorMessage(err) != "Internal error." {
			t.Fatalf("request %d: err = %v (code %s, message %q)", i, err, trustloop.ErrorCode(err), trustloop.ErrorMessage(err))
		}
	}
	calls, events := e.store.snapshot()
	if len(calls) != 2 || len(events) != 1 {
		t.Fatalf("%d calls, %d events stored; want 2 calls and only the first request's event", len(calls), len(events))
	}
	commits, _ := e.obs.snapshot()
	if len(commits) != 1 || commits[0].stored != 1 {
		t.Fatalf("commits = %+v, want only the first one reported", commits)
	}
	// Keys made for the failed group are not remembered.
	for i := range n {
		if _, ok := e.keys.Cached(1, e.blind(t, fmt.Sprint("new", i))); ok {
			t.Fatalf("key of subject new%d cached although its commit failed", i)
		}
	}

	// Sent again, they are stored, under keys the store holds.
	for _, r := range reqs {
		if err := e.p.Ingest(context.Background(), e.src, r); err != nil {
			t.Fatal(err)
		}
	}
	_, events = e.store.snapshot()
	if len(events) != 1+2*n {
		t.Fatalf("%d events after the retry, want %d", len(events), 1+2*n)
	}
	for _, ev := range events {
		e.openPayload(t, ev)
	}
}

func TestIngestConflictGivesUp(t *testing.T) {
	e := newEnv(t, nil, Config{})
	e.store.hook = func(int, *trustloop.CommitBatch) error {
		return trustloop.Errorf(trustloop.ECONFLICT, "a subject key was created concurrently")
	}
	err := e.p.Ingest(context.Background(), e.src, []trustloop.Message{msg("m1", "alice")})
	if trustloop.ErrorCode(err) != trustloop.ECONFLICT {
		t.Fatalf("err = %v, want conflict after the retries", err)
	}
	calls, events := e.store.snapshot()
	if len(calls) != 3 || len(events) != 0 {
		t.Fatalf("%d attempts, %d events; want 3 attempts and nothing stored", len(calls), len(events))
	}
}

func TestIngestRetriesKeyConflict(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t, nil, Config{})
	// dave's key exists and is cached before: his event is sealed by the caller.
	if err := e.p.Ingest(ctx, e.src, []trustloop.Message{msg("d0", "dave")}); err != nil {
		t.Fatal(err)
	}
	dave, ok := e.keys.Cached(1, e.blind(t, "dave"))
	if !ok {
		t.Fatal("dave's key is not cached after the commit")
	}

	// Another node over the same master key makes alice's key at the same moment
	// and wins: the first attempt gets ECONFLICT.
	rival := keyring.New(e.master, 10)
	if err := rival.AddWorkspace(e.ws); err != nil {
		t.Fatal(err)
	}
	aliceBlind := e.blind(t, "alice")
	var rivalKey trustloop.SubjectKey
	e.store.hook = func(call int, b *trustloop.CommitBatch) error {
		if call != 1 {
			return nil
		}
		r, err := rival.Resolve(ctx, e.store, 1, [][]byte{aliceBlind})
		if err != nil || len(r.NewKeys) != 1 {
			t.Errorf("rival Resolve = %+v, %v", r, err)
			return err
		}
		rivalKey = r.NewKeys[0]
		e.store.addKeys(rivalKey)
		return trustloop.Errorf(trustloop.ECONFLICT, "a subject key was created concurrently")
	}
	msgs := []trustloop.Message{msg("a1", "alice"), msg("b1", "bob"), msg("a2", "alice"), msg("c1", "carol"), msg("d1", "dave")}
	if err := e.p.Ingest(ctx, e.src, msgs); err != nil {
		t.Fatal(err)
	}
	calls, events := e.store.snapshot()
	if len(calls) != 3 {
		t.Fatalf("%d AppendEvents calls, want 1 + a conflict + its retry", len(calls))
	}
	lost, retry := calls[1], calls[2]
	var lostAlice int64
	for _, k := range lost.NewKeys {
		if bytes.Equal(k.Blind, aliceBlind) {
			lostAlice = k.ID
		}
	}
	if lostAlice == 0 || lostAlice == rivalKey.ID {
		t.Fatalf("first attempt's key for alice = %d (rival %d)", lostAlice, rivalKey.ID)
	}
	newIDs := map[int64]bool{}
	for _, k := range retry.NewKeys {
		if bytes.Equal(k.Blind, aliceBlind) {
			t.Fatal("the retry made alice a key again instead of using the winner's")
		}
		newIDs[k.ID] = true
	}
	if len(retry.NewKeys) != 2 {
		t.Fatalf("retry made %d keys, want 2 (bob, carol)", len(retry.NewKeys))
	}
	if len(retry.Events) != len(msgs) {
		t.Fatalf("retry holds %d events, want %d", len(retry.Events), len(msgs))
	}
	for _, ev := range retry.Events {
		_, inStore := e.store.keyByID(ev.KeyID)
		if !newIDs[ev.KeyID] && !inStore {
			t.Fatalf("retry event sealed under key %d, neither new in the retry nor stored", ev.KeyID)
		}
		if ev.KeyID == lostAlice {
			t.Fatal("retry event still sealed under the losing key")
		}
	}
	// Every stored event opens under its stored key, alice's under the rival's, and
	// dave's under his old one.
	byID := map[string]string{}
	for _, m := range msgs {
		byID[string(e.hash(t, m.MessageID))] = m.MessageID
	}
	for _, ev := range events[1:] {
		en := e.openPayload(t, ev)
		if en.MessageID != byID[string(ev.MessageHash)] {
			t.Fatalf("event %x opened to messageId %q", ev.MessageHash, en.MessageID)
		}
		switch en.MessageID {
		case "a1", "a2":
			if ev.KeyID != rivalKey.ID {
				t.Fatalf("alice's event %s under key %d, want the winner's %d", en.MessageID, ev.KeyID, rivalKey.ID)
			}
		case "d1":
			if ev.KeyID != dave.ID {
				t.Fatalf("dave's event under key %d, want his %d", ev.KeyID, dave.ID)
			}
		}
	}
	if k, ok := e.keys.Cached(1, aliceBlind); !ok || k.ID != rivalKey.ID {
		t.Fatalf("alice's cached key = %+v, %v; want the winner's %d", k, ok, rivalKey.ID)
	}
	commits, _ := e.obs.snapshot()
	if len(commits) != 2 || commits[1] != (commitObs{1, len(msgs), len(msgs)}) {
		t.Fatalf("commits = %+v", commits)
	}
}

func TestCloseDrainsQueue(t *testing.T) {
	e := newEnv(t, nil, Config{})
	e.store.block = make(chan struct{})
	first := e.ingestAsync(msg("first", "u0"))
	e.store.awaitCall(t, 0)
	const n = 5
	var dones []<-chan error
	for i := range n {
		dones = append(dones, e.ingestAsync(msg(fmt.Sprint("m", i), fmt.Sprint("u", i))))
	}
	e.awaitQueued(t, n)
	closed := make(chan error, 1)
	go func() { closed <- e.p.Close() }()

	// Once closing, new requests are refused at once.
	deadline := time.Now().Add(wait)
	for {
		e.p.mu.RLock()
		closing := e.p.closed
		e.p.mu.RUnlock()
		if closing {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("Close did not start")
		}
		time.Sleep(time.Millisecond)
	}
	err := e.p.Ingest(context.Background(), e.src, []trustloop.Message{msg("late", "late")})
	if trustloop.ErrorCode(err) != trustloop.EUNAVAILABLE || !ErrClosed(err) {
		t.Fatalf("Ingest while closing = %v, want unavailable", err)
	}
	select {
	case <-closed:
		t.Fatal("Close returned with requests still queued")
	case <-time.After(50 * time.Millisecond):
	}
	close(e.store.block)
	for _, d := range append(dones, first) {
		if err := await(t, d); err != nil {
			t.Fatalf("queued request failed at Close: %v", err)
		}
	}
	select {
	case err := <-closed:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(wait):
		t.Fatal("Close did not return")
	}
	if _, events := e.store.snapshot(); len(events) != n+1 {
		t.Fatalf("%d events stored, want the %d queued", len(events), n+1)
	}
	err = e.p.Ingest(context.Background(), e.src, []trustloop.Message{msg("after", "u")})
	if trustloop.ErrorCode(err) != trustloop.EUNAVAILABLE || !ErrClosed(err) {
		t.Fatalf("Ingest after Close = %v, want unavailable", err)
	}
	var te *trustloop.Error
	if !errors.As(err, &te) || te.RetryAfterSeconds <= 0 {
		t.Fatalf("closed error %+v carries no Retry-After", te)
	}
	if err := e.p.Close(); err != nil {
		t.Fatalf("second Close = %v", err)
	}
}

func TestAdmitterDrops(t *testing.T) {
	admit := func(_ context.Context, src *trustloop.Source, m *trustloop.Message, msgHash, userBlind, anonBlind []byte) ([]string, error) {
		if len(msgHash) == 0 || (userBlind == nil && anonBlind == nil) {
			t.Errorf("the admitter got no message hash or subject")
		}
		if m.Event == "Secret" {
			return nil, nil
		}
		return []string{"analytics"}, nil
	}
	e := newEnv(t, admit, Config{})
	secret := msg("s1", "alice")
	secret.Event = "Secret"
	if err := e.p.Ingest(context.Background(), e.src, []trustloop.Message{msg("m1", "alice"), secret, msg("m2", "bob")}); err != nil {
		t.Fatal(err)
	}
	_, events := e.store.snapshot()
	if len(events) != 2 {
		t.Fatalf("%d events stored, want 2", len(events))
	}
	dropped := e.hash(t, "s1")
	for _, ev := range events {
		if bytes.Equal(ev.MessageHash, dropped) {
			t.Fatal("the refused message was stored")
		}
	}
	_, d := e.obs.snapshot()
	if d["no_consent"] != 1 {
		t.Fatalf("dropped = %v, want no_consent: 1", d)
	}

	// A request of refused messages only is not an error and writes nothing.
	calls, _ := e.store.snapshot()
	s2 := msg("s2", "carol")
	s2.Event = "Secret"
	if err := e.p.Ingest(context.Background(), e.src, []trustloop.Message{secret, s2}); err != nil {
		t.Fatal(err)
	}
	calls2, _ := e.store.snapshot()
	if len(calls2) != len(calls) {
		t.Fatal("a request of dropped messages reached the store")
	}
	if _, d := e.obs.snapshot(); d["no_consent"] != 3 {
		t.Fatalf("dropped = %v, want no_consent: 3", d)
	}
	// No key was made for carol, who only sent a refused message.
	if r, _ := e.store.FindSubjectKeys(context.Background(), 1, [][]byte{e.blind(t, "carol")}); len(r) != 0 {
		t.Fatal("a key was stored for a subject whose only message was refused")
	}
}

func TestStoredPayloadDecrypts(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t, nil, Config{})
	body := `{"batch":[
		{"type":"track","event":"Order Completed","messageId":"ajs-1","userId":"user-1","properties":{"total":30}},
		{"type":"identify","messageId":"ajs-2","anonymousId":"anon-9","traits":{"email":"jane@example.com"},
		 "context":{"consent":{"categoryPreferences":{"Analytics":true}}}},
		{"type":"page","messageId":"ajs-3","userId":"user-1","name":"Home"}],
		"context":{"library":{"name":"analytics.js"}},"sentAt":"2024-05-01T12:00:00.000Z"}`
	req, err := collect.Decode([]byte(body), collect.Batch, collect.Options{ReceivedAt: received, GPC: true,
		NewID: func() string { return "generated" }})
	if err != nil {
		t.Fatal(err)
	}
	if err := e.p.Ingest(ctx, e.src, req.Messages); err != nil {
		t.Fatal(err)
	}
	// A second request for user-1 is sealed in the caller with the cached key.
	again := msg("ajs-4", "user-1")
	if err := e.p.Ingest(ctx, e.src, []trustloop.Message{again}); err != nil {
		t.Fatal(err)
	}
	msgs := append(req.Messages, again)

	calls, events := e.store.snapshot()
	if len(events) != len(msgs) {
		t.Fatalf("%d events stored, want %d", len(events), len(msgs))
	}
	if len(calls[1].NewKeys) != 0 {
		t.Fatal("a known subject got a new key")
	}
	for i, ev := range events {
		m := &msgs[i]
		if !bytes.Equal(ev.MessageHash, e.hash(t, m.MessageID)) || ev.SourceID != e.src.ID || ev.WorkspaceID != 1 ||
			ev.Type != m.Type || !ev.ReceivedAt.Equal(m.ReceivedAt) || !ev.Timestamp.Equal(m.Timestamp) {
			t.Fatalf("event %d = %+v for message %+v", i, ev, m)
		}
		// Only ciphertext leaves the pipeline.
		for _, plain := range []string{m.MessageID, "user-1", "anon-9", "jane@example.com", "Order Completed"} {
			if bytes.Contains(ev.Payload, []byte(plain)) {
				t.Fatalf("event %d payload contains %q in the clear", i, plain)
			}
		}
		en := e.openPayload(t, ev)
		if en.MessageID != m.MessageID || en.Type != m.Type.String() || !en.ReceivedAt.Equal(m.ReceivedAt) {
			t.Fatalf("envelope %d = %+v, want messageId %s", i, en, m.MessageID)
		}
		var a, b any
		if err := json.Unmarshal(en.Message, &a); err != nil {
			t.Fatal(err)
		}
		json.Unmarshal(m.Raw, &b)
		if fmt.Sprint(a) != fmt.Sprint(b) {
			t.Fatalf("envelope %d message = %s, want %s", i, en.Message, m.Raw)
		}
		if i < len(req.Messages) && (!en.GPC || len(en.BatchContext) == 0) {
			t.Fatalf("envelope %d lost the request's GPC or batch context: %+v", i, en)
		}
		// The payload is bound to its row: under another message hash it does not open.
		sk, _ := e.store.keyByID(ev.KeyID)
		key, _ := e.keys.OpenSubjectKey(sk)
		if _, err := keyring.Open(key.DEK, ev.Payload, keyring.EventAAD(nil, 1, e.src.ID, e.hash(t, "other"))); err == nil {
			t.Fatal("payload opened under another row's AAD")
		}
	}
	// Events of the same subject share its key; other subjects have others.
	if events[0].KeyID != events[2].KeyID || events[0].KeyID != events[3].KeyID || events[0].KeyID == events[1].KeyID {
		t.Fatalf("key ids %d %d %d %d", events[0].KeyID, events[1].KeyID, events[2].KeyID, events[3].KeyID)
	}
}

func TestIngestUnknownWorkspace(t *testing.T) {
	e := newEnv(t, nil, Config{})
	src := &trustloop.Source{ID: 20, WorkspaceID: 99}
	if err := e.p.Ingest(context.Background(), src, []trustloop.Message{msg("m", "u")}); err == nil {
		t.Fatal("Ingest for a workspace the keyring cannot load succeeded")
	}
	if calls, _ := e.store.snapshot(); len(calls) != 0 {
		t.Fatal("the store was called")
	}
}

func TestIngestCanceledBeforeQueue(t *testing.T) {
	e := newEnv(t, nil, Config{QueueRequests: 1})
	e.store.block = make(chan struct{})
	first := e.ingestAsync(msg("first", "u0"))
	e.store.awaitCall(t, 0)
	second := e.ingestAsync(msg("second", "u0")) // fills the queue
	e.awaitQueued(t, 1)
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if err := e.p.Ingest(ctx, e.src, []trustloop.Message{msg("third", "u0")}); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Ingest with a full queue = %v, want the context's error", err)
	}
	close(e.store.block)
	for _, d := range []<-chan error{first, second} {
		if err := await(t, d); err != nil {
			t.Fatal(err)
		}
	}
	_, events := e.store.snapshot()
	for _, ev := range events {
		if bytes.Equal(ev.MessageHash, e.hash(t, "third")) {
			t.Fatal("the canceled request was stored")
		}
	}
}

// newSQLiteEnv runs the pipeline over a real store.
func newSQLiteEnv(t testing.TB) (*Pipeline, *sqlite.DB, *keyring.Keyring, *trustloop.Bootstrap, *fakeObserver) {
	t.Helper()
	ctx := context.Background()
	db, err := sqlite.Open(ctx, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	kr := keyring.New(keyring.NewKey(), 100_000)
	b := storetest.Bootstrap("default")
	b.Workspace.IndexKey = kr.NewIndexKey()
	if created, err := db.Bootstrap(ctx, b); err != nil || !created {
		t.Fatalf("Bootstrap = %v, %v", created, err)
	}
	if err := kr.AddWorkspace(&b.Workspace); err != nil {
		t.Fatal(err)
	}
	obs := &fakeObserver{}
	p := New(db, kr, obs, slog.New(slog.DiscardHandler), nil, Config{})
	t.Cleanup(func() {
		p.Close()
		db.Close()
	})
	return p, db, kr, b, obs
}

func TestIngestSQLiteDedupe(t *testing.T) {
	ctx := context.Background()
	p, db, kr, b, obs := newSQLiteEnv(t)
	src := &b.Source

	// Received now: the store forgets messageIds received before its window.
	now := time.Now().UTC().Truncate(time.Millisecond)
	at := func(m trustloop.Message, t time.Time) trustloop.Message {
		m.ReceivedAt, m.Timestamp = t, t
		return m
	}
	first := []trustloop.Message{at(msg("dup", "alice"), now), at(msg("m1", "bob"), now)}
	resent := at(msg("dup", "alice"), now.Add(time.Second)) // a client retry, received later
	second := []trustloop.Message{resent, at(msg("m2", "alice"), now), at(msg("m2", "alice"), now)}
	if err := p.Ingest(ctx, src, first); err != nil {
		t.Fatal(err)
	}
	if err := p.Ingest(ctx, src, second); err != nil {
		t.Fatal(err)
	}
	events, err := db.ListEvents(ctx, b.Workspace.ID, 0, 100)
	if err != nil {
		t.Fatal(err)
	}
	if len(events) != 3 {
		t.Fatalf("%d events stored, want 3 (dup once, m1, m2 once)", len(events))
	}
	count := map[string]int{}
	for _, ev := range events {
		count[string(ev.MessageHash)]++
	}
	dup, _ := kr.MessageHash(b.Workspace.ID, "dup")
	if count[string(dup)] != 1 {
		t.Fatalf("dup stored %d times", count[string(dup)])
	}
	if !events[0].ReceivedAt.Equal(now) {
		t.Fatal("the first copy of dup is not the one kept")
	}
	commits, _ := obs.snapshot()
	if len(commits) != 2 || commits[0].stored != 2 || commits[1].events != 3 || commits[1].stored != 1 {
		t.Fatalf("commits = %+v, want stored 2 then 1 of 3", commits)
	}

	// The stored payloads open with the stored keys.
	ids := map[string]string{}
	for _, id := range []string{"dup", "m1", "m2"} {
		h, _ := kr.MessageHash(b.Workspace.ID, id)
		ids[string(h)] = id
	}
	var blinds [][]byte
	for _, u := range []string{"alice", "bob"} {
		bl, _ := kr.Blind(b.Workspace.ID, "user_id", u)
		blinds = append(blinds, bl)
	}
	found, err := db.FindSubjectKeys(ctx, b.Workspace.ID, blinds)
	if err != nil || len(found) != 2 {
		t.Fatalf("FindSubjectKeys = %d keys, %v; want 2", len(found), err)
	}
	keys := map[int64]keyring.Key{}
	for _, sk := range found {
		k, err := kr.OpenSubjectKey(sk)
		if err != nil {
			t.Fatal(err)
		}
		keys[k.ID] = k
	}
	for _, ev := range events {
		key, ok := keys[ev.KeyID]
		if !ok {
			t.Fatalf("event %d sealed under key %d, which the store does not hold", ev.Seq, ev.KeyID)
		}
		pt, err := keyring.Open(key.DEK, ev.Payload, keyring.EventAAD(nil, ev.WorkspaceID, ev.SourceID, ev.MessageHash))
		if err != nil {
			t.Fatal(err)
		}
		en, err := collect.OpenEnvelope(pt)
		if err != nil || en.MessageID != ids[string(ev.MessageHash)] {
			t.Fatalf("event %d opened to %+v, %v", ev.Seq, en, err)
		}
	}
}

// Consent that cannot be read is not assumed (T1): an admitter's error fails
// the whole request and nothing of it reaches the store.
func TestAdmitterErrorFailsTheRequest(t *testing.T) {
	boom := trustloop.Errorf(trustloop.EUNAVAILABLE, "consent store down")
	admit := func(_ context.Context, _ *trustloop.Source, m *trustloop.Message, _, _, _ []byte) ([]string, error) {
		if m.MessageID == "m2" {
			return nil, boom
		}
		return []string{"analytics"}, nil
	}
	e := newEnv(t, admit, Config{})
	err := e.p.Ingest(context.Background(), e.src, []trustloop.Message{msg("m1", "alice"), msg("m2", "bob")})
	if !errors.Is(err, boom) {
		t.Fatalf("Ingest = %v, want the admitter's error", err)
	}
	if calls, events := e.store.snapshot(); len(calls) != 0 || len(events) != 0 {
		t.Fatalf("a failed admission reached the store: %d calls, %d events", len(calls), len(events))
	}
}
