package ingest

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/trustloop/trustloop"
	"github.com/trustloop/trustloop/collect"
	"github.com/trustloop/trustloop/keyring"
	"github.com/trustloop/trustloop/profile"
	"github.com/trustloop/trustloop/projection"
	"github.com/trustloop/trustloop/recommend"
)

// Observer is told what the writer did; the metrics package implements it.
type Observer interface {
	// Committed reports one group commit: how many requests and events it held,
	// how many events were new (the rest were repeats), and how long it took.
	Committed(requests, events, stored int, d time.Duration)
	// Dropped reports events not stored, with a reason (no personal data).
	Dropped(reason string, n int)
}

type nopObserver struct{}

func (nopObserver) Committed(int, int, int, time.Duration) {}
func (nopObserver) Dropped(string, int)                    {}

// Admitter decides at collection which purposes were allowed for a message. It is the
// consent stage of the pipeline (T2: minimize at the door): no purposes drops
// the message (counted as "no_consent"). It gets the keyed hash of the messageId
// and the blind indexes of the message's user id and anonymous id (nil when
// absent). An error fails the request: consent that cannot be read is not
// assumed (T1).
type Admitter func(ctx context.Context, src *trustloop.Source, m *trustloop.Message, msgHash, userBlind, anonBlind []byte) (purposes []string, err error)

// Projection keeps profiles up to date in the group commits (the projection
// package implements it).
type Projection interface {
	// Prepare does the per-message work that needs no store (identifiers, their
	// blind indexes, the profile input); it runs in the request's goroutine.
	// user and anon are the blind indexes of the message's user and anonymous
	// ids when the pipeline already made them (nil otherwise).
	Prepare(workspaceID int64, m *trustloop.Message, sourceID int64, user, anon []byte) ([]trustloop.Identifier, [][]byte, *profile.Input)
	// Group prepares the projection of one group commit attempt; items are
	// aligned with the commit's events.
	Group(items []projection.Item) *projection.Group
}

// Config tunes the pipeline.
type Config struct {
	// MaxGroupEvents caps the events of one group commit, bounding how long one
	// transaction holds the writer. Default 8192.
	MaxGroupEvents int
	// QueueRequests is how many requests may wait for the writer. Default 1024.
	QueueRequests int
	// Projection, when set, updates profiles in the same commits as the events.
	Projection Projection
	// Placeholders, when set, reports whether a message's user id and
	// anonymous id are blocked placeholders ("null", "anonymous"; an empty id
	// is none): consent is then neither read nor stored under it, since
	// everyone whose integration sends that value would share one customer's
	// choices. The event is still decided by its own consent context and the
	// regime.
	Placeholders func(ws int64, userID, anonymousID string) (user, anon bool)
	// Recommender, when set, learns from every committed event, on the
	// writer after each commit and before the requests are answered.
	Recommender Recommender
	// CountsEvery is how often the dashboard's daily counts are flushed to
	// the store, when the store keeps them (trustloop.CountStore; see
	// counts.go). Default 10 s: a crash loses at most that much of them.
	CountsEvery time.Duration
}

// Recommender is a model fed from the group commits (recommend.Service).
type Recommender interface {
	// Prepare reads what the model needs of a message (nil: nothing), in the
	// request's goroutine.
	Prepare(m *trustloop.Message) *recommend.Prepared
	// Observe applies committed events in log order.
	Observe(ctx context.Context, evs []recommend.Event) error
}

// Pipeline takes validated messages to the durable log.
type Pipeline struct {
	store   trustloop.EventStore
	keys    *keyring.Keyring
	obs     Observer
	log     *slog.Logger
	cfg     Config
	admit   Admitter
	proj    Projection
	queue   chan *request
	mu      sync.RWMutex
	closed  bool
	stopped chan struct{}
	// counts, when the store keeps daily counts, tallies collected and
	// refused events for the dashboard (nil otherwise).
	counts *counter

	// epoch counts erasures; an event remembers the epoch its request began
	// in, and erased lists the blind indexes each erasure removed, so that an
	// event of an erased subject prepared before the erasure finished (and
	// perhaps sealed under the destroyed key) is dropped, not committed after
	// it: nothing erased comes back.
	epoch    atomic.Int64
	erasedMu sync.Mutex
	erased   []erasure
	// suppressed holds, per workspace, the suppression hashes erasures left:
	// events naming one of those identifiers are not collected.
	suppressed atomic.Pointer[map[int64]map[string]bool]
}

type erasure struct {
	epoch  int64
	at     time.Time
	blinds map[string]bool
	// rekeyed: the subject's keys were replaced, not destroyed: its events
	// prepared before are sealed again under the new key instead of dropped.
	rekeyed bool
}

// Outcome is what an exclusive operation did to subjects (blind indexes):
// erased them, or replaced their keys (a rectification).
type Outcome struct {
	Erased  [][]byte
	Rekeyed [][]byte
}

// erasedHold is how long an erasure's blind indexes are checked: longer than
// any event can wait between its preparation and its commit (a group commit
// gives up after a minute).
const erasedHold = 10 * time.Minute

type request struct {
	events []pending
	done   chan error
	// op, when set, is run by the writer alone, between two group commits.
	op func(ctx context.Context) (Outcome, error)
	// drops are the request's events refused for lack of consent, counted
	// for the dashboard with the request's commit (a failed request is sent
	// again, and counted then).
	drops drops
}

// pending is an event prepared in the caller's goroutine. When the subject's key
// is in memory it is sealed there too (in parallel across requests); otherwise
// (sealed false) the writer resolves or makes the key and seals it, because new
// keys must be created in the same commit as their first events.
type pending struct {
	ws        int64
	blind     []byte
	plaintext []byte
	aad       []byte
	sealed    bool
	// byWriter: sealed by the writer under a key resolved for this group; sealed
	// again on a retry, since that key may have lost a race and not been stored.
	byWriter bool
	event    trustloop.StoredEvent
	key      keyring.Key
	msg      *trustloop.Message
	ids      []trustloop.Identifier
	blinds   [][]byte
	input    *profile.Input
	// rec is what the recommender reads of the message; user and anon are the
	// blind indexes of its ids the consent stage made (nil: not made).
	rec        *recommend.Prepared
	user, anon []byte
	// dropped: the consent stage refused it (noConsent) or its subject is
	// suppressed; it is counted, not stored.
	dropped, noConsent bool
	// epoch is the erasure epoch the event's preparation began in.
	epoch int64
}

// New starts a pipeline and its writer goroutine. admit may be nil (admit all).
func New(store trustloop.EventStore, keys *keyring.Keyring, obs Observer, log *slog.Logger, admit Admitter, cfg Config) *Pipeline {
	if cfg.MaxGroupEvents <= 0 {
		cfg.MaxGroupEvents = 8192
	}
	if cfg.QueueRequests <= 0 {
		cfg.QueueRequests = 1024
	}
	if obs == nil {
		obs = nopObserver{}
	}
	if cfg.CountsEvery <= 0 {
		cfg.CountsEvery = 10 * time.Second
	}
	p := &Pipeline{store: store, keys: keys, obs: obs, log: log, cfg: cfg, admit: admit, proj: cfg.Projection,
		queue: make(chan *request, cfg.QueueRequests), stopped: make(chan struct{})}
	// The store the pipeline already writes keeps the dashboard's counts too
	// when it can (both backends do; a test's event store may not).
	if cs, ok := store.(trustloop.CountStore); ok {
		p.counts = newCounter(cs, log, cfg.CountsEvery)
	}
	go p.writer()
	return p
}

var errClosed = &trustloop.Error{Code: trustloop.EUNAVAILABLE, Message: "The collector is shutting down.",
	Hint: "Retry against another node or after the restart.", RetryAfterSeconds: 1}

// Ingest stores the messages of one request and returns once they are committed,
// or with an error and nothing stored for the request. Messages the consent stage
// refuses are dropped (and counted), not an error.
func (p *Pipeline) Ingest(ctx context.Context, src *trustloop.Source, msgs []trustloop.Message) error {
	req := &request{events: make([]pending, 0, len(msgs)), done: make(chan error, 1)}
	for i := range msgs {
		m := &msgs[i]
		ev, err := p.prepare(ctx, src, m)
		if err != nil {
			return err
		}
		if ev.dropped {
			if ev.noConsent && p.counts != nil {
				if k := (dayKey{src.WorkspaceID, dayOf(m.Timestamp, m.ReceivedAt)}); !req.drops.add(k) {
					p.counts.dropOne(k)
				}
			}
			continue
		}
		req.events = append(req.events, ev)
	}
	if len(req.events) == 0 {
		if p.counts != nil {
			p.counts.addDrops(&req.drops)
		}
		return nil
	}
	return p.send(ctx, req)
}

// send queues a request for the writer and waits for its outcome. Once queued
// the request is committed (or run) or failed as a whole; waiting on ctx too
// would only lose the answer, not the work.
func (p *Pipeline) send(ctx context.Context, req *request) error {
	p.mu.RLock()
	if p.closed {
		p.mu.RUnlock()
		return errClosed
	}
	select {
	case p.queue <- req:
		p.mu.RUnlock()
	case <-ctx.Done():
		p.mu.RUnlock()
		return ctx.Err()
	}
	return <-req.done
}

func (p *Pipeline) prepare(ctx context.Context, src *trustloop.Source, m *trustloop.Message) (pending, error) {
	epoch := p.epoch.Load()
	if sup := p.suppressedIn(src.WorkspaceID); sup != nil {
		hit, err := p.isSuppressed(src.WorkspaceID, sup, []trustloop.Identifier{
			{Type: trustloop.IDUserID, Value: m.UserID}, {Type: trustloop.IDAnonymousID, Value: m.AnonymousID}})
		if err != nil {
			return pending{}, err
		}
		if hit {
			p.obs.Dropped("suppressed", 1)
			return pending{dropped: true}, nil
		}
	}
	idType, id := m.Subject()
	blind, err := p.keys.Blind(src.WorkspaceID, idType, id)
	if err != nil {
		return pending{}, err
	}
	hash, err := p.keys.MessageHash(src.WorkspaceID, m.MessageID)
	if err != nil {
		return pending{}, err
	}
	// The blind indexes of the user and anonymous ids, made once for the
	// consent stage and the projection: the subject's is one of them, the
	// other (a message with both ids) only when the consent stage needs it.
	userBlind, anonBlind := blind, []byte(nil)
	if m.UserID == "" {
		userBlind, anonBlind = nil, blind
	} else if m.AnonymousID != "" && p.admit != nil {
		if anonBlind, err = p.keys.Blind(src.WorkspaceID, trustloop.IDAnonymousID, m.AnonymousID); err != nil {
			return pending{}, err
		}
	}
	if p.admit != nil {
		cu, ca := userBlind, anonBlind
		if p.cfg.Placeholders != nil {
			u, a := p.cfg.Placeholders(src.WorkspaceID, m.UserID, m.AnonymousID)
			if u {
				cu = nil
			}
			if a {
				ca = nil
			}
		}
		purposes, err := p.admit(ctx, src, m, hash, cu, ca)
		if err != nil {
			return pending{}, err
		}
		if len(purposes) == 0 {
			p.obs.Dropped("no_consent", 1)
			return pending{dropped: true, noConsent: true}, nil
		}
		m.Purposes = purposes
	}
	ev := pending{
		epoch:     epoch,
		ws:        src.WorkspaceID,
		blind:     blind,
		plaintext: collect.AppendEnvelope(make([]byte, 0, len(m.Raw)+len(m.BatchContext)+256), m),
		aad:       keyring.EventAAD(nil, src.WorkspaceID, src.ID, hash),
		event: trustloop.StoredEvent{WorkspaceID: src.WorkspaceID, SourceID: src.ID, MessageHash: hash,
			Type: m.Type, ReceivedAt: m.ReceivedAt, Timestamp: m.Timestamp},
	}
	if p.proj != nil {
		ev.ids, ev.blinds, ev.input = p.proj.Prepare(src.WorkspaceID, m, src.ID, userBlind, anonBlind)
		ev.msg = m
		// The profile's other identifiers (email, phone, device, …) may be
		// suppressed too.
		if sup := p.suppressedIn(src.WorkspaceID); sup != nil {
			hit, err := p.isSuppressed(src.WorkspaceID, sup, ev.ids)
			if err != nil {
				return pending{}, err
			}
			if hit {
				p.obs.Dropped("suppressed", 1)
				return pending{dropped: true}, nil
			}
		}
	}
	if r := p.cfg.Recommender; r != nil {
		if ev.rec = r.Prepare(m); ev.rec != nil {
			ev.msg, ev.user, ev.anon = m, userBlind, anonBlind
		}
	}
	if key, ok := p.keys.Cached(src.WorkspaceID, blind); ok {
		ev.seal(key)
	}
	return ev, nil
}

func (e *pending) seal(key keyring.Key) {
	e.key = key
	e.event.KeyID = key.ID
	e.event.Payload = keyring.SealEvent(nil, key, e.plaintext, e.aad)
	e.sealed = true
}

// Close stops taking requests, commits everything already queued and returns when
// the writer has finished.
func (p *Pipeline) Close() error {
	p.mu.Lock()
	if !p.closed {
		p.closed = true
		close(p.queue)
	}
	p.mu.Unlock()
	<-p.stopped
	return nil
}

func (p *Pipeline) writer() {
	defer func() {
		// After the last group: its counts are in the final flush.
		if p.counts != nil {
			p.counts.close()
		}
		close(p.stopped)
	}()
	for first := range p.queue {
		var op *request
		group := []*request{first}
		if first.op != nil {
			op, group = first, nil
		}
		n := len(first.events)
	drain:
		for op == nil && n < p.cfg.MaxGroupEvents {
			select {
			case r, ok := <-p.queue:
				if !ok {
					break drain
				}
				if r.op != nil {
					op = r // after this group, before anything queued later
					break drain
				}
				group = append(group, r)
				n += len(r.events)
			default:
				break drain
			}
		}
		if len(group) > 0 {
			err := p.commit(group)
			for _, r := range group {
				r.done <- err
			}
		}
		if op != nil {
			op.done <- p.runOp(op)
		}
	}
}

// Exclusive runs fn on the writer between two group commits, so that no
// commit runs meanwhile, and returns its error. fn says which subjects it
// erased or re-keyed: an event naming an erased one whose preparation began
// before fn finished is dropped ("erased") instead of committed after it; one
// of a re-keyed subject is sealed again under the subject's new key. ctx
// bounds the wait for the writer, not fn's run.
func (p *Pipeline) Exclusive(ctx context.Context, fn func(ctx context.Context) (Outcome, error)) error {
	return p.send(ctx, &request{op: fn, done: make(chan error, 1)})
}

func (p *Pipeline) runOp(r *request) error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	out, err := r.op(ctx)
	if len(out.Erased)+len(out.Rekeyed) > 0 {
		now := time.Now()
		p.erasedMu.Lock()
		kept := p.erased[:0]
		for _, e := range p.erased {
			if now.Sub(e.at) < erasedHold {
				kept = append(kept, e)
			}
		}
		// The epoch moves on only now: events prepared until here are checked.
		epoch := p.epoch.Add(1)
		for _, set := range []struct {
			blinds  [][]byte
			rekeyed bool
		}{{out.Erased, false}, {out.Rekeyed, true}} {
			if len(set.blinds) == 0 {
				continue
			}
			m := make(map[string]bool, len(set.blinds))
			for _, b := range set.blinds {
				m[string(b)] = true
			}
			kept = append(kept, erasure{epoch: epoch, at: now, blinds: m, rekeyed: set.rekeyed})
		}
		p.erased = kept
		p.erasedMu.Unlock()
	}
	return err
}

// dropErased removes from the group the events of subjects erased after their
// preparation began, and returns how many events are left.
func (p *Pipeline) dropErased(group []*request) int {
	p.erasedMu.Lock()
	defer p.erasedMu.Unlock()
	n := 0
	for _, r := range group {
		if len(p.erased) > 0 {
			kept := r.events[:0]
			for _, e := range r.events {
				switch p.erasedLocked(&e) {
				case gone:
					p.obs.Dropped("erased", 1)
					continue
				case resealed:
					// Resolved and sealed again by the writer, under the
					// subject's key as it is now.
					e.sealed, e.byWriter = false, false
				}
				kept = append(kept, e)
			}
			r.events = kept
		}
		n += len(r.events)
	}
	return n
}

type fate int

const (
	unchanged fate = iota
	gone
	resealed
)

// erasedLocked says what becomes of an event given the erasures and re-keyings
// since its preparation began: an erasure wins over a re-keying.
func (p *Pipeline) erasedLocked(e *pending) fate {
	f := unchanged
	for _, er := range p.erased {
		if e.epoch >= er.epoch {
			continue
		}
		hit := er.blinds[string(e.blind)]
		for _, b := range e.blinds {
			hit = hit || er.blinds[string(b)]
		}
		switch {
		case hit && !er.rekeyed:
			return gone
		case hit && e.sealed:
			f = resealed
		}
	}
	return f
}

// Suppress adds suppression hashes (keyring.Suppression) of a workspace:
// events naming one of those identifiers are dropped at the door from now on.
func (p *Pipeline) Suppress(ws int64, hashes [][]byte) {
	if len(hashes) == 0 {
		return
	}
	p.erasedMu.Lock() // serializes writers of the copy-on-write map
	defer p.erasedMu.Unlock()
	next := map[int64]map[string]bool{}
	if cur := p.suppressed.Load(); cur != nil {
		for w, set := range *cur {
			next[w] = set
		}
	}
	set := make(map[string]bool, len(next[ws])+len(hashes))
	for h := range next[ws] {
		set[h] = true
	}
	for _, h := range hashes {
		set[string(h)] = true
	}
	next[ws] = set
	p.suppressed.Store(&next)
}

// suppressedIn returns the workspace's suppression set, nil when empty (the
// common case costs one atomic load).
func (p *Pipeline) suppressedIn(ws int64) map[string]bool {
	cur := p.suppressed.Load()
	if cur == nil {
		return nil
	}
	return (*cur)[ws]
}

func (p *Pipeline) isSuppressed(ws int64, set map[string]bool, ids []trustloop.Identifier) (bool, error) {
	for _, id := range ids {
		if id.Value == "" {
			continue
		}
		h, err := p.keys.Suppression(ws, id.Type, id.Value)
		if err != nil {
			return false, err
		}
		if set[string(h)] {
			return true, nil
		}
	}
	return false, nil
}

// commit seals and writes one group. A key conflict (another node made a key for
// the same subject at the same moment) is retried with the winner's key.
func (p *Pipeline) commit(group []*request) error {
	start := time.Now()
	// Writes must finish even if the process is asked to stop: a request that got
	// into a group is committed or failed, never abandoned half-way.
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var (
		stored int
		err    error
	)
	n := p.dropErased(group)
	if n == 0 {
		if p.counts != nil {
			p.counts.committed(group, nil, 0, nil) // the drops, under one lock
		}
		return nil
	}
	for attempt := 0; attempt < 3; attempt++ {
		stored, err = p.commitOnce(ctx, group, n)
		if trustloop.ErrorCode(err) != trustloop.ECONFLICT {
			break
		}
	}
	if err != nil {
		p.log.Error("group commit failed", "requests", len(group), "events", n, "err", err)
		if trustloop.ErrorCode(err) == trustloop.EINTERNAL {
			return fmt.Errorf("ingest: commit: %w", err)
		}
		return err
	}
	p.obs.Committed(len(group), n, stored, time.Since(start))
	return nil
}

func (p *Pipeline) commitOnce(ctx context.Context, group []*request, n int) (stored int, err error) {
	committed := false
	blinds := map[int64][][]byte{}
	for _, r := range group {
		for i := range r.events {
			// byWriter: a retry re-resolves the keys the last attempt made, as
			// the loop below seals those events again.
			if e := &r.events[i]; !e.sealed || e.byWriter {
				blinds[e.ws] = append(blinds[e.ws], e.blind)
			}
		}
	}
	batch := &trustloop.CommitBatch{Events: make([]trustloop.StoredEvent, 0, n)}
	resolved := make(map[int64]*keyring.Resolved, len(blinds))
	for ws, bl := range blinds {
		res, err := p.keys.Resolve(ctx, p.store, ws, bl)
		if err != nil {
			return 0, err
		}
		resolved[ws] = res
		batch.NewKeys = append(batch.NewKeys, res.NewKeys...)
	}
	for _, r := range group {
		for i := range r.events {
			e := &r.events[i]
			if !e.sealed || e.byWriter {
				e.seal(resolved[e.ws].Keys[string(e.blind)])
				e.byWriter = true
			}
			batch.Events = append(batch.Events, e.event)
		}
	}
	if p.proj != nil {
		items := make([]projection.Item, 0, n)
		for _, r := range group {
			for i := range r.events {
				e := &r.events[i]
				items = append(items, projection.Item{WorkspaceID: e.ws, SourceID: e.event.SourceID, Message: e.msg,
					MessageHash: e.event.MessageHash, KeyID: e.key.ID, Key: e.key, IDs: e.ids, Blinds: e.blinds, Input: e.input,
					Subject: e.blind})
			}
		}
		g := p.proj.Group(items)
		batch.Project = g.Project
		// Installed in memory only once committed, and before the requests are
		// answered: read-your-writes.
		defer func() { g.Done(committed) }()
	}
	// The recommender learns from the new events only (a repeat was learnt
	// from when it was first stored): the store says which they are, asked
	// only when the group holds an interaction.
	var fresh []int
	var freshSeqs []int64
	learns := p.cfg.Recommender != nil && slices.ContainsFunc(group, func(r *request) bool {
		return slices.ContainsFunc(r.events, func(e pending) bool { return e.rec != nil })
	})
	// The daily counts use the new events' indexes when the store is asked
	// for them anyway (a projection), never asking it only for them.
	asked := learns || batch.Project != nil
	if asked {
		project := batch.Project
		batch.Project = func(ctx context.Context, idx []int, seqs []int64) (*trustloop.ProjectionChanges, error) {
			// The last call is the one committed (a retried transaction calls again).
			fresh, freshSeqs = idx, seqs
			if project == nil {
				return nil, nil
			}
			return project(ctx, idx, seqs)
		}
	}
	stored, err = p.store.AppendEvents(ctx, batch)
	if err != nil {
		return 0, err
	}
	fresh, freshSeqs = current(fresh, freshSeqs, stored)
	committed = true
	for _, res := range resolved {
		p.keys.Remember(res)
	}
	if p.counts != nil {
		p.counts.committed(group, batch.Events, stored, fresh)
	}
	if learns {
		p.observe(ctx, group, fresh, freshSeqs)
	}
	return stored, nil
}

// current keeps the new events' list the projection hook last saw only if it
// is this commit's: a retried transaction that found nothing new does not
// call the hook again, and the list is then an earlier attempt's.
func current(fresh []int, seqs []int64, stored int) ([]int, []int64) {
	if len(fresh) != stored {
		return nil, nil
	}
	return fresh, seqs
}

// observe hands the group's new events to the recommender. A failure there
// (consent unreadable) does not fail the commit, which stands: the
// recommender reads the subject back from the log later, and it is logged.
func (p *Pipeline) observe(ctx context.Context, group []*request, fresh []int, seqs []int64) {
	all := make([]*pending, 0, len(fresh)+len(group))
	for _, r := range group {
		for k := range r.events {
			all = append(all, &r.events[k])
		}
	}
	type learnt struct {
		seq int64
		ev  recommend.Event
	}
	var ls []learnt
	for j, i := range fresh {
		if e := all[i]; e.rec != nil {
			ls = append(ls, learnt{seqs[j], recommend.Event{WorkspaceID: e.ws, Message: e.msg, Subject: e.blind, User: e.user, Anon: e.anon, Prepared: e.rec}})
		}
	}
	if len(ls) == 0 {
		return
	}
	// In log order, as a rebuild reads them (a store need not number a
	// multi-row insert in the order of its rows).
	slices.SortFunc(ls, func(a, b learnt) int { return cmp.Compare(a.seq, b.seq) })
	evs := make([]recommend.Event, len(ls))
	for j, l := range ls {
		evs[j] = l.ev
	}
	if err := p.cfg.Recommender.Observe(ctx, evs); err != nil {
		p.log.Error("the recommender could not learn from committed events", "events", len(evs), "err", err)
	}
}

// ErrClosed reports whether err is the pipeline's shutting-down error.
func ErrClosed(err error) bool { return errors.Is(err, errClosed) }
