package projection

import (
	"context"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"

	"github.com/trustloop/trustloop"
	"github.com/trustloop/trustloop/keyring"
)

// Reading the log back for derived models (the recommender): every event of a
// workspace in log order, or one subject's, opened, each with the blind index
// of the identifier its key was made for.

// LogEvent is one opened event of the log.
type LogEvent struct {
	Seq     int64
	Message *trustloop.Message
	// Subject is the blind index of the identifier the event's key was made
	// for (its user id, else its anonymous id).
	Subject []byte
}

type subjectKey struct {
	key   keyring.Key
	blind []byte
}

// EachLogEvent calls fn with every event of the workspace after position
// after, in log order. Events of erased subjects (no key) are skipped.
func (s *Service) EachLogEvent(ctx context.Context, ws, after int64, fn func(LogEvent) error) error {
	keys := map[int64]subjectKey{}
	const page = 2000
	for {
		evs, err := s.store.ListEvents(ctx, ws, after, page)
		if err != nil {
			return err
		}
		if err := s.openEach(ctx, ws, evs, keys, fn); err != nil {
			return err
		}
		if len(evs) < page {
			return nil
		}
		after = evs[len(evs)-1].Seq
		if len(keys) > 2_000_000 { // ~100 bytes each
			clear(keys)
		}
	}
}

// EachSubjectEvent calls fn with the events sealed under the subject's key
// (the identifier's blind index), in log order.
func (s *Service) EachSubjectEvent(ctx context.Context, ws int64, subject []byte, fn func(LogEvent) error) error {
	found, err := s.store.FindSubjectKeys(ctx, ws, [][]byte{subject})
	if err != nil {
		return err
	}
	sk, ok := found[string(subject)]
	if !ok {
		return nil
	}
	var evs []trustloop.StoredEvent
	err = s.EachStoredEvent(ctx, ws, []int64{sk.ID}, func(e trustloop.StoredEvent) error {
		if e.KeyID == sk.ID { // a foreign timeline lists others' events too
			evs = append(evs, e)
		}
		return nil
	})
	if err != nil {
		return err
	}
	slices.SortFunc(evs, func(a, b trustloop.StoredEvent) int { return int(min(max(a.Seq-b.Seq, -1), 1)) })
	return s.openEach(ctx, ws, evs, map[int64]subjectKey{}, fn)
}

func (s *Service) openEach(ctx context.Context, ws int64, evs []trustloop.StoredEvent, keys map[int64]subjectKey, fn func(LogEvent) error) error {
	var missing []int64
	asked := map[int64]bool{}
	for _, e := range evs {
		if _, ok := keys[e.KeyID]; !ok && !asked[e.KeyID] {
			asked[e.KeyID] = true
			missing = append(missing, e.KeyID)
		}
	}
	if len(missing) > 0 {
		found, err := s.store.FindSubjectKeysByID(ctx, ws, missing)
		if err != nil {
			return err
		}
		for id, sk := range found {
			k, err := s.keys.OpenSubjectKey(sk)
			if err != nil {
				return err
			}
			keys[id] = subjectKey{key: k, blind: sk.Blind}
		}
	}
	// Opening (decrypting, parsing) is each event's own work: across the
	// CPUs; fn then sees them in order.
	out := make([]LogEvent, len(evs))
	err := eachParallel(len(evs), func(i int) error {
		e := evs[i]
		k, ok := keys[e.KeyID]
		if !ok {
			return nil // erased
		}
		env, err := openEvent(ws, e, k.key)
		if err != nil {
			return err
		}
		out[i] = LogEvent{Seq: e.Seq, Message: messageOf(env, e), Subject: k.blind}
		return nil
	})
	if err != nil {
		return err
	}
	for i := range out {
		if out[i].Message == nil {
			continue
		}
		if err := fn(out[i]); err != nil {
			return err
		}
	}
	return nil
}

// eachParallel calls fn(i) for every i below n across the CPUs (at most four
// goroutines, one per 64 items) and returns the error of the lowest i that
// failed.
func eachParallel(n int, fn func(i int) error) error {
	errs := make([]error, n)
	var wg sync.WaitGroup
	var next atomic.Int64
	for range min(runtime.GOMAXPROCS(0), 4, max(n/64, 1)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := int(next.Add(1) - 1); i < n; i = int(next.Add(1) - 1) {
				errs[i] = fn(i)
			}
		}()
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}
