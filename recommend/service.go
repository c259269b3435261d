package recommend

import (
	"container/heap"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/trustloop/trustloop"
)

// The purposes the model serves: personalization for affinity and
// co-occurrence, analytics for the popular items it falls back to.
const (
	Personalization = "personalization"
	Analytics       = "analytics"
)

// Consent answers the model's consent questions (consent.Service does).
type Consent interface {
	// AllowedEach: for each purpose, whether the subjects' stored choices (or
	// the regime's default) allow it now, and when the consent allowing it
	// expires (zero: not by itself).
	AllowedEach(ctx context.Context, ws int64, purposes []string, subjects ...[]byte) (oks []bool, untils []time.Time, err error)
	// Serves: purpose was allowed when the message was collected and may use
	// its category.
	Serves(ctx context.Context, ws int64, purpose string, m *trustloop.Message) (bool, error)
}

// LogEvent is one event read back from the log.
type LogEvent struct {
	Message *trustloop.Message
	// Subject is the blind index of the identifier the event is keyed to.
	Subject []byte
}

// Log reads the committed event log (projection.Service does).
type Log interface {
	// Each calls fn with every event of the workspace, in log order.
	Each(ctx context.Context, ws int64, fn func(LogEvent) error) error
	// Subject calls fn with the events keyed to one subject, in log order.
	Subject(ctx context.Context, ws int64, subject []byte, fn func(LogEvent) error) error
}

// Event is a committed event as the collector hands it over.
type Event struct {
	WorkspaceID int64
	Message     *trustloop.Message
	// Subject is the blind index of the identifier the event is keyed to;
	// User and Anon those of its user and anonymous ids (nil when absent;
	// computed when not given).
	Subject, User, Anon []byte
	// Prepared is what Prepare read from the message (nil: read it now).
	Prepared *Prepared
}

// Prepared is the part of an event the model reads, made off the writer.
type Prepared struct {
	in     *Interaction
	reason string
}

// Service keeps one model per workspace current with the log, consent and
// erasures, and answers from it. Build it with NewService.
type Service struct {
	cfg Config
	// Consent, Log and Blind are required; Placeholder reports blocked
	// identifier values (they name no one); Exclusive runs fn with the
	// collector's writer stopped between two group commits; OnIgnore counts
	// events the model could not use (reason is a fixed word).
	Consent     Consent
	Log         Log
	Blind       func(ws int64, idType, value string) ([]byte, error)
	Placeholder func(ws int64, value string) bool
	Exclusive   func(ctx context.Context, fn func(ctx context.Context) error) error
	OnIgnore    func(reason string)
	Logger      *slog.Logger
	// Now is the clock (tests set it).
	Now func() time.Time

	mu     sync.Mutex
	models map[int64]*wsModel
	// resync queues subjects whose consent changed, for the worker; reload
	// the workspaces to rebuild whole (their catalog changed, or retention
	// deleted events).
	queue  map[int64]map[string]bool
	reload map[int64]bool
	// expiries schedules read-backs when a consent that allowed a subject's
	// events lapses; expiring is each subject's scheduled time.
	expiries expiryHeap
	expiring map[expiry]time.Time
	wake     chan struct{}
	idleMu   sync.Mutex
	idle     *sync.Cond
	busy     bool
}

type wsModel struct {
	mu sync.RWMutex
	m  *Model
	// links: a consent subject (an anonymous id seen on a logged-in
	// subject's events) → the model subjects whose events it vouched for.
	links map[string][]string
	// gen counts, per subject, the consent changes and erasures that took it
	// out: an event whose consent was read before one of them is not added
	// (the subject is read back from the log instead).
	gen map[string]uint64
}

// bump marks subjects taken out; w.mu is held.
func (w *wsModel) bump(subjects ...string) {
	for _, s := range subjects {
		w.gen[s]++
	}
}

// NewService returns a service whose models use cfg.
func NewService(cfg Config) (*Service, error) {
	c, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	s := &Service{cfg: c, models: map[int64]*wsModel{}, queue: map[int64]map[string]bool{}, reload: map[int64]bool{}, expiring: map[expiry]time.Time{}, wake: make(chan struct{}, 1),
		Now: time.Now}
	s.idle = sync.NewCond(&s.idleMu)
	return s, nil
}

// Config returns the effective configuration.
func (s *Service) Config() Config { return s.cfg }

func (s *Service) model(ws int64) *wsModel {
	s.mu.Lock()
	defer s.mu.Unlock()
	w, ok := s.models[ws]
	if !ok {
		m, _ := NewModel(s.cfg) // cfg was checked by NewService
		w = &wsModel{m: m, links: map[string][]string{}, gen: map[string]uint64{}}
		s.models[ws] = w
	}
	return w
}

// Prepare reads an event's interaction; cheap for events that are none. The
// collector calls it in the request's goroutine.
func (s *Service) Prepare(m *trustloop.Message) *Prepared {
	in, reason := s.cfg.Extract(m)
	if in == nil && reason == "" {
		return nil
	}
	return &Prepared{in: in, reason: reason}
}

// Observe applies committed events, in log order. The collector calls it on
// its writer after each group commit, before answering (read-your-writes).
// An event it cannot apply (consent unreadable) queues its subject to be read
// back from the log, and the error is returned for the log.
func (s *Service) Observe(ctx context.Context, evs []Event) error {
	var errs []error
	for i := range evs {
		if err := s.observe(ctx, &evs[i]); err != nil {
			errs = append(errs, err)
			s.requeueEvent(&evs[i])
		}
	}
	return errors.Join(errs...)
}

// requeueEvent makes sure an event Observe could not apply is applied later:
// its subject is read back from the log, or, when not even the subject can be
// known (the collector gives it; a caller that does not, and whose key ring
// failed), the workspace is rebuilt.
func (s *Service) requeueEvent(ev *Event) {
	subject := ev.Subject
	if subject == nil {
		if idType, id := ev.Message.Subject(); id != "" && !s.placeholder(ev.WorkspaceID, id) {
			subject, _ = s.Blind(ev.WorkspaceID, idType, id)
		}
	}
	if subject == nil {
		s.Reload(ev.WorkspaceID)
		return
	}
	s.enqueue(ev.WorkspaceID, []string{string(subject)})
}

func (s *Service) observe(ctx context.Context, ev *Event) error {
	return s.observeInto(ctx, s.model(ev.WorkspaceID), ev)
}

func (s *Service) observeInto(ctx context.Context, w *wsModel, ev *Event) error {
	p := ev.Prepared
	if p == nil {
		if p = s.Prepare(ev.Message); p == nil {
			return nil
		}
	}
	if p.in == nil {
		s.ignore(p.reason)
		return nil
	}
	ws, m := ev.WorkspaceID, ev.Message
	idType, id := m.Subject()
	if s.placeholder(ws, id) {
		s.ignore("placeholder_subject")
		return nil
	}
	subject := ev.Subject
	if subject == nil {
		var err error
		if subject, err = s.Blind(ws, idType, id); err != nil {
			return err
		}
	}
	// Consent is asked of the ids the event names (its user and anonymous
	// ids), as the collector asked when it took the event.
	var subjects [][]byte
	for _, c := range []struct {
		blind  []byte
		typ, v string
	}{{ev.User, trustloop.IDUserID, m.UserID}, {ev.Anon, trustloop.IDAnonymousID, m.AnonymousID}} {
		if c.v == "" || s.placeholder(ws, c.v) {
			continue
		}
		b := c.blind
		if b == nil {
			var err error
			if b, err = s.Blind(ws, c.typ, c.v); err != nil {
				return err
			}
		}
		subjects = append(subjects, b)
	}
	key := string(subject)
	gens := func() uint64 {
		g := w.gen[key]
		for _, c := range subjects {
			g += w.gen[string(c)]
		}
		return g
	}
	w.mu.RLock()
	before := gens()
	w.mu.RUnlock()
	personal, popular, err := s.uses(ctx, ws, m, subjects)
	if err != nil {
		return err
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	// Linked whether or not consent allows anything now: a later yes under
	// the other id must bring these events back.
	for _, c := range subjects {
		if string(c) != key && !slices.Contains(w.links[string(c)], key) {
			w.links[string(c)] = append(w.links[string(c)], key)
		}
	}
	if gens() != before {
		// Consent changed (or an erasure ran) while it was read: the
		// subject is queued to be read back with what is stored now.
		s.enqueue(ws, []string{key})
		return nil
	}
	w.m.Add(key, p.in, personal, popular)
	return nil
}

// uses decides whether the event may teach personalization and popularity:
// collected for the purpose, of a category it may use, and allowed now.
func (s *Service) uses(ctx context.Context, ws int64, m *trustloop.Message, subjects [][]byte) (personal, popular bool, err error) {
	var want []string
	for _, p := range [...]string{Personalization, Analytics} {
		ok, err := s.Consent.Serves(ctx, ws, p, m)
		if err != nil {
			return false, false, err
		}
		if ok {
			want = append(want, p)
		}
	}
	if len(want) == 0 {
		return false, false, nil
	}
	oks, untils, err := s.Consent.AllowedEach(ctx, ws, want, subjects...)
	if err != nil {
		return false, false, err
	}
	for n, p := range want {
		if !oks[n] {
			continue
		}
		if !untils[n].IsZero() {
			// When that consent lapses the subjects are read back (T1: an
			// expired yes is no yes).
			for _, sub := range subjects {
				s.expireAt(ws, string(sub), untils[n])
			}
		}
		if p == Personalization {
			personal = true
		} else {
			popular = true
		}
	}
	return personal, popular, nil
}

// expiry is a consent lapsing for a subject.
type expiry struct {
	at      time.Time
	ws      int64
	subject string
}

type expiryHeap []expiry

func (h expiryHeap) Len() int           { return len(h) }
func (h expiryHeap) Less(i, j int) bool { return h[i].at.Before(h[j].at) }
func (h expiryHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *expiryHeap) Push(x any)        { *h = append(*h, x.(expiry)) }
func (h *expiryHeap) Pop() any {
	old := *h
	x := old[len(old)-1]
	*h = old[:len(old)-1]
	return x
}

// expireAt schedules a read-back of the subject when its consent lapses (once
// per subject and time).
func (s *Service) expireAt(ws int64, subject string, at time.Time) {
	s.idleMu.Lock()
	defer s.idleMu.Unlock()
	key := expiry{ws: ws, subject: subject}
	if have, ok := s.expiring[key]; ok && !at.Before(have) {
		return
	}
	s.expiring[key] = at
	heap.Push(&s.expiries, expiry{at: at, ws: ws, subject: subject})
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// due takes the lapsed consents off the schedule; it returns when the next
// one lapses (zero: none).
func (s *Service) due(now time.Time) (lapsed []expiry, next time.Time) {
	s.idleMu.Lock()
	defer s.idleMu.Unlock()
	for len(s.expiries) > 0 {
		e := s.expiries[0]
		if e.at.After(now) {
			return lapsed, e.at
		}
		heap.Pop(&s.expiries)
		key := expiry{ws: e.ws, subject: e.subject}
		if s.expiring[key].Equal(e.at) {
			delete(s.expiring, key)
			lapsed = append(lapsed, e)
		}
	}
	return lapsed, time.Time{}
}

// Expire reads back the subjects whose consent lapsed by now.
func (s *Service) Expire(now time.Time) {
	lapsed, _ := s.due(now)
	for _, e := range lapsed {
		s.ConsentChanged(e.ws, [][]byte{[]byte(e.subject)})
	}
}

func (s *Service) placeholder(ws int64, v string) bool {
	return s.Placeholder != nil && s.Placeholder(ws, v)
}

func (s *Service) ignore(reason string) {
	if s.OnIgnore != nil {
		s.OnIgnore(reason)
	}
}

// Rebuild builds the workspaces' models from the log (at start, before the
// collector takes events). Erasures that happened while the process was down
// deleted their events and keys, so they are simply not there.
func (s *Service) Rebuild(ctx context.Context, workspaces []int64) (events int, err error) {
	for _, ws := range workspaces {
		n, err := s.rebuild(ctx, ws)
		events += n
		if err != nil {
			return events, err
		}
	}
	return events, nil
}

// rebuild builds a workspace's model from the log on the side and swaps it in.
func (s *Service) rebuild(ctx context.Context, ws int64) (int, error) {
	m, _ := NewModel(s.cfg)
	w := &wsModel{m: m, links: map[string][]string{}, gen: map[string]uint64{}}
	events := 0
	err := s.Log.Each(ctx, ws, func(e LogEvent) error {
		events++
		return s.observeInto(ctx, w, &Event{WorkspaceID: ws, Message: e.Message, Subject: e.Subject})
	})
	if err != nil {
		return events, err
	}
	s.mu.Lock()
	if old, ok := s.models[ws]; ok {
		// Changes counted on the old model still hold for events read
		// meanwhile (an observe that read consent before one re-checks).
		old.mu.Lock()
		w.gen = old.gen
		old.mu.Unlock()
	}
	s.models[ws] = w
	s.mu.Unlock()
	return events, nil
}

// Forget removes erased subjects (blind indexes) at once. The erasure calls it
// before its transaction, on the collector's writer. Others whose events the
// erased ids vouched for, and shared keys some of the erased events were
// under, are taken out too and read back from the log once the erasure is
// done (what is left of them returns).
func (s *Service) Forget(ws int64, erased, shared [][]byte) {
	w := s.model(ws)
	w.mu.Lock()
	gone := map[string]bool{}
	for _, b := range erased {
		gone[string(b)] = true
	}
	var again []string
	for _, b := range erased {
		w.m.Remove(string(b))
		w.bump(string(b))
		for _, u := range w.links[string(b)] {
			if !gone[u] {
				again = append(again, u)
			}
		}
		delete(w.links, string(b))
	}
	for _, b := range shared {
		if !gone[string(b)] {
			again = append(again, string(b))
		}
	}
	for _, u := range again {
		w.m.Remove(u)
		w.bump(u)
	}
	// No list keeps an erased subject.
	for c, us := range w.links {
		if us = slices.DeleteFunc(us, func(u string) bool { return gone[u] }); len(us) == 0 {
			delete(w.links, c)
		} else {
			w.links[c] = us
		}
	}
	w.mu.Unlock()
	s.enqueue(ws, again)
}

// ConsentChanged takes the subjects whose consent changed out of the model at
// once (a withdrawal holds from this moment), and queues them to be read back
// from the log with the choices now stored: the events their consent still
// allows return, in log order, so the model equals one rebuilt from the log.
func (s *Service) ConsentChanged(ws int64, subjects [][]byte) {
	w := s.model(ws)
	w.mu.Lock()
	var affected []string
	for _, b := range subjects {
		affected = append(affected, string(b))
		affected = append(affected, w.links[string(b)]...)
	}
	for _, u := range affected {
		w.m.Remove(u)
	}
	w.bump(affected...)
	w.mu.Unlock()
	s.enqueue(ws, affected)
}

// enqueue queues subjects to be read back from the log.
func (s *Service) enqueue(ws int64, affected []string) {
	s.idleMu.Lock()
	q := s.queue[ws]
	if q == nil {
		q = map[string]bool{}
		s.queue[ws] = q
	}
	for _, u := range affected {
		q[u] = true
	}
	s.idleMu.Unlock()
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// Reload queues a workspace's model to be rebuilt from the log: its purpose
// catalog changed (regime, categories, retention), or retention deleted
// events. Until then the model stays as it was.
func (s *Service) Reload(ws int64) {
	s.idleMu.Lock()
	s.reload[ws] = true
	s.idleMu.Unlock()
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// Run reads subjects back after consent changes until ctx ends.
func (s *Service) Run(ctx context.Context) {
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		lapsed, next := s.due(s.Now())
		for _, e := range lapsed {
			s.ConsentChanged(e.ws, [][]byte{[]byte(e.subject)})
		}
		wait := time.Hour
		if !next.IsZero() {
			// A little after, so the consent reads as expired.
			wait = min(wait, time.Until(next)+time.Second)
		}
		timer.Reset(max(wait, 10*time.Millisecond))
		select {
		case <-ctx.Done():
			return
		case <-s.wake:
		case <-timer.C:
		}
		// Failures are retried from 1 s, twice as long each time up to a
		// minute, so a subject that keeps failing is not a log line a second.
		for backoff := time.Second; ; backoff = min(2*backoff, time.Minute) {
			if err := s.ResyncQueued(ctx); err == nil || ctx.Err() != nil {
				break
			} else if s.Logger != nil {
				s.Logger.Error("recommender: reading subjects back after a consent change failed; retrying", "err", err, "retry_in", backoff.String())
			}
			select {
			case <-ctx.Done():
				return
			case <-time.After(backoff):
			}
		}
	}
}

// resyncChunk is how many subjects one turn on the writer reads back.
const resyncChunk = 64

// ResyncQueued reads back every queued subject, on the collector's writer (no
// event is committed meanwhile, so none is applied twice or out of order).
func (s *Service) ResyncQueued(ctx context.Context) error {
	s.idleMu.Lock()
	for s.busy {
		s.idle.Wait()
	}
	queue, reload := s.queue, s.reload
	s.queue, s.reload = map[int64]map[string]bool{}, map[int64]bool{}
	s.busy = true
	s.idleMu.Unlock()
	defer func() {
		s.idleMu.Lock()
		s.busy = false
		s.idle.Broadcast()
		s.idleMu.Unlock()
	}()
	for ws := range reload {
		// A workspace rebuilt whole needs none of its subjects read back.
		delete(queue, ws)
		rebuild := func(ctx context.Context) error { _, err := s.rebuild(ctx, ws); return err }
		var err error
		if s.Exclusive != nil {
			err = s.Exclusive(ctx, rebuild)
		} else {
			err = rebuild(ctx)
		}
		if err != nil {
			// Everything not done yet is tried again: this workspace's and
			// the other workspaces' rebuilds (a rebuild drops events that must
			// leave the model: a purpose's rules changed, retention deleted
			// them), and every subject queued.
			s.requeue(queue)
			for other := range reload {
				s.Reload(other)
				delete(reload, other)
			}
			return err
		}
		delete(reload, ws)
	}
	if len(queue) == 0 {
		return nil
	}
	// A bounded number per turn on the writer: the collector commits between.
	// A subject whose read-back fails stays queued for the next call and the
	// others go on: one subject that cannot be read (its log damaged, say)
	// must not hold everyone else's changes back.
	failed := map[int64]map[string]bool{}
	var first error
	run := func(ctx context.Context) error {
		n := 0
		for ws, subjects := range queue {
			for u := range subjects {
				if n == resyncChunk {
					return nil
				}
				n++
				if err := s.resync(ctx, ws, u); err != nil {
					if ctx.Err() != nil {
						return err
					}
					if failed[ws] == nil {
						failed[ws] = map[string]bool{}
					}
					failed[ws][u] = true
					if first == nil {
						first = err
					}
				}
				delete(subjects, u)
			}
			delete(queue, ws)
		}
		return nil
	}
	var err error
	for len(queue) > 0 && err == nil {
		if s.Exclusive != nil {
			err = s.Exclusive(ctx, run)
		} else {
			err = run(ctx)
		}
	}
	if err != nil {
		s.requeue(queue) // what is left is tried again
	}
	s.requeue(failed)
	if err == nil && first != nil {
		n := 0
		for _, subjects := range failed {
			n += len(subjects)
		}
		err = fmt.Errorf("%d subjects could not be read back (the first: %w)", n, first)
	}
	return err
}

// requeue puts subjects back in the queue.
func (s *Service) requeue(queue map[int64]map[string]bool) {
	s.idleMu.Lock()
	defer s.idleMu.Unlock()
	for ws, subjects := range queue {
		for u := range subjects {
			if s.queue[ws] == nil {
				s.queue[ws] = map[string]bool{}
			}
			s.queue[ws][u] = true
		}
	}
}

func (s *Service) resync(ctx context.Context, ws int64, subject string) error {
	w := s.model(ws)
	w.mu.Lock()
	w.m.Remove(subject)
	w.mu.Unlock()
	return s.Log.Subject(ctx, ws, []byte(subject), func(e LogEvent) error {
		return s.observe(ctx, &Event{WorkspaceID: ws, Message: e.Message, Subject: e.Subject})
	})
}

// Recommend answers for a profile's subjects (blind indexes): personalized
// items, or history false when the model has no personalization history of
// theirs.
func (s *Service) Recommend(ws int64, subjects [][]byte, k int) (recs []Rec, history bool) {
	w := s.model(ws)
	names := make([]string, len(subjects))
	for i, b := range subjects {
		names[i] = string(b)
	}
	slices.Sort(names)
	w.mu.RLock()
	defer w.mu.RUnlock()
	return w.m.Recommend(names, s.Now().UnixMilli(), k)
}

// Popular returns the k items most subjects interacted with under analytics.
func (s *Service) Popular(ws int64, k int) []Scored {
	w := s.model(ws)
	w.mu.RLock()
	defer w.mu.RUnlock()
	return w.m.Popular(k)
}

// Similar returns the k items most similar to item; ENOTFOUND when the model
// does not know it.
func (s *Service) Similar(ws int64, itemID string, k int) ([]Scored, error) {
	w := s.model(ws)
	w.mu.RLock()
	out, ok := w.m.Similar(itemID, k)
	w.mu.RUnlock()
	if !ok {
		return nil, trustloop.Errorf(trustloop.ENOTFOUND, "No consented interactions with this item are known.").
			WithHint("Similar items exist once customers who allow personalization interacted with it.")
	}
	return out, nil
}

// Pending counts the workspace's subjects waiting to be read back after a
// consent change, one more for a rebuild of it waiting, and one more while a
// read-back runs.
func (s *Service) Pending(ws int64) int {
	s.idleMu.Lock()
	defer s.idleMu.Unlock()
	n := len(s.queue[ws])
	if s.reload[ws] {
		n++
	}
	if s.busy {
		n++
	}
	return n
}

// Encode returns the canonical form of the workspace's model (tests compare
// it with a rebuild).
func (s *Service) Encode(ws int64) []byte {
	w := s.model(ws)
	w.mu.RLock()
	defer w.mu.RUnlock()
	return w.m.Encode()
}

// Stats returns the size of the workspace's model.
func (s *Service) Stats(ws int64) Stats {
	w := s.model(ws)
	w.mu.RLock()
	defer w.mu.RUnlock()
	return w.m.Stats()
}
