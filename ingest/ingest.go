package ingest

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/trustloop/trustloop"
	"github.com/trustloop/trustloop/collect"
	"github.com/trustloop/trustloop/keyring"
	"github.com/trustloop/trustloop/profile"
	"github.com/trustloop/trustloop/projection"
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
}

type request struct {
	events []pending
	done   chan error
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
	// dropped: the consent stage refused it; it is counted, not stored.
	dropped bool
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
	p := &Pipeline{store: store, keys: keys, obs: obs, log: log, cfg: cfg, admit: admit, proj: cfg.Projection,
		queue: make(chan *request, cfg.QueueRequests), stopped: make(chan struct{})}
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
			p.obs.Dropped("no_consent", 1)
			continue
		}
		req.events = append(req.events, ev)
	}
	if len(req.events) == 0 {
		return nil
	}
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
	// Once queued the request will be committed or failed as a whole; waiting on
	// ctx too would only lose the answer, not the events.
	return <-req.done
}

func (p *Pipeline) prepare(ctx context.Context, src *trustloop.Source, m *trustloop.Message) (pending, error) {
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
		purposes, err := p.admit(ctx, src, m, hash, userBlind, anonBlind)
		if err != nil {
			return pending{}, err
		}
		if len(purposes) == 0 {
			return pending{dropped: true}, nil
		}
		m.Purposes = purposes
	}
	ev := pending{
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
	defer close(p.stopped)
	for first := range p.queue {
		group := []*request{first}
		n := len(first.events)
	drain:
		for n < p.cfg.MaxGroupEvents {
			select {
			case r, ok := <-p.queue:
				if !ok {
					break drain
				}
				group = append(group, r)
				n += len(r.events)
			default:
				break drain
			}
		}
		err := p.commit(group, n)
		for _, r := range group {
			r.done <- err
		}
	}
}

// commit seals and writes one group. A key conflict (another node made a key for
// the same subject at the same moment) is retried with the winner's key.
func (p *Pipeline) commit(group []*request, n int) error {
	start := time.Now()
	// Writes must finish even if the process is asked to stop: a request that got
	// into a group is committed or failed, never abandoned half-way.
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var (
		stored int
		err    error
	)
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
					MessageHash: e.event.MessageHash, KeyID: e.key.ID, Key: e.key, IDs: e.ids, Blinds: e.blinds, Input: e.input})
			}
		}
		g := p.proj.Group(items)
		batch.Project = g.Project
		// Installed in memory only once committed, and before the requests are
		// answered: read-your-writes.
		defer func() { g.Done(committed) }()
	}
	stored, err = p.store.AppendEvents(ctx, batch)
	if err != nil {
		return 0, err
	}
	committed = true
	for _, res := range resolved {
		p.keys.Remember(res)
	}
	return stored, nil
}

// ErrClosed reports whether err is the pipeline's shutting-down error.
func ErrClosed(err error) bool { return errors.Is(err, errClosed) }
