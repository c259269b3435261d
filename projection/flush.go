package projection

import (
	"cmp"
	"context"
	"log/slog"
	"slices"
	"time"

	"github.com/trustloop/trustloop"
	"github.com/trustloop/trustloop/keyring"
)

// Profiles and timelines are written behind the group commits. A group commit
// writes only what other rows point at (new profiles, identities, merges); the
// state of an existing profile that an event changed stays in memory, marked
// dirty, and a flush writes it at most every FlushAfter. Why: with a customer's
// events spread over time, a commit of a thousand events touches a thousand
// profiles, and writing each in the commit cost a random page per profile and
// per timeline entry — measured here, ingest fell from ~70,000 to under 2,000
// events/s. Written behind, a profile busy with many events costs one write per
// flush.
//
// Durability: the log is the truth. A flush writes the profiles with the log
// position of the newest event each reflects (applied_seq), and a watermark: the
// position up to which nothing is held only in memory. After a crash, Recover
// replays the log after the watermark, skipping for each profile the events its
// stored state has already.

// flushBatch bounds the rows one flush transaction writes.
const flushBatch = 5000

// Flush writes profiles dirty for at least FlushAfter (all dirty ones when all is
// true) and pending timeline positions, with the watermark. It returns how many
// profiles it wrote.
func (s *Service) Flush(ctx context.Context, all bool) (int, error) {
	s.flushMu.Lock()
	defer s.flushMu.Unlock()
	written := 0
	for {
		n, more, err := s.flushOnce(ctx, all)
		written += n
		if err != nil || !more {
			return written, err
		}
	}
}

type snapshot struct {
	st    *state
	since int64
	at    time.Time
}

func (s *Service) flushOnce(ctx context.Context, all bool) (int, bool, error) {
	now := s.Now()
	// The keys first, outside the lock (keysFor takes it).
	need := map[int64][]int64{}
	s.mu.Lock()
	for _, st := range s.cache {
		if st.dirty {
			need[st.rec.WorkspaceID] = append(need[st.rec.WorkspaceID], st.rec.KeyID)
		}
	}
	s.mu.Unlock()
	keyOf := map[int64]keyring.Key{}
	for ws, ids := range need {
		ks, err := s.keysFor(ctx, ws, ids)
		if err != nil {
			return 0, false, err
		}
		for id, k := range ks {
			keyOf[id] = k
		}
	}
	s.mu.Lock()
	var eligible []*state
	for _, st := range s.cache {
		if !st.dirty || (!all && now.Sub(st.dirtyAt) < s.FlushAfter) {
			continue
		}
		if _, ok := keyOf[st.rec.KeyID]; !ok {
			continue // dirtied since the keys were read: the next round takes it
		}
		eligible = append(eligible, st)
	}
	// In id order, a batch at a time from the lowest: profile rows are keyed by
	// id, so a batch of neighbours rewrites each page once instead of once per
	// profile on it (ids grow with creation time; a flush of every active
	// profile then writes the table about once).
	slices.SortFunc(eligible, func(a, b *state) int { return cmp.Compare(a.rec.ID, b.rec.ID) })
	more := len(eligible) > flushBatch
	if more {
		eligible = eligible[:flushBatch]
	}
	picked := make([]snapshot, 0, len(eligible))
	members := map[int64][]int64{}
	for _, st := range eligible {
		picked = append(picked, snapshot{st: st, since: st.since, at: st.dirtyAt})
		s.inflight[st.rec.ID] = true
		if st.rec.MergedInto == 0 {
			members[st.rec.ID] = slices.Clone(st.members)
		}
		st.dirty, st.since = false, 0
	}
	var runs []trustloop.TimelineRun
	taken := s.pending
	s.pending = map[int64]*pendingRun{}
	for k, r := range taken {
		runs = append(runs, trustloop.TimelineRun{KeyID: k, Seqs: r.seqs})
	}
	slices.SortFunc(runs, func(a, b trustloop.TimelineRun) int { return cmp.Compare(a.KeyID, b.KeyID) })
	// The watermark: nothing up to it is held only in memory once this is written.
	upto := s.lastSeq
	for _, st := range s.cache {
		if st.dirty {
			upto = min(upto, st.since-1)
		}
	}
	s.mu.Unlock()

	// Sealed outside the lock: the writer never changes an installed state (it
	// works on clones and installs new ones), so these are stable.
	recs := make([]trustloop.ProfileRecord, 0, len(picked))
	var sealErr error
	for _, p := range picked {
		rec, err := s.sealState(ctx, p.st.rec.WorkspaceID, p.st, keyOf)
		if err != nil {
			sealErr = err
			break
		}
		recs = append(recs, rec)
	}
	c := &trustloop.ProjectionChanges{Profiles: recs, Timeline: runs, UptoSeq: upto, Behind: true}
	if len(members) > 0 {
		c.Members = members
	}
	defer func() {
		s.mu.Lock()
		for _, p := range picked {
			delete(s.inflight, p.st.rec.ID)
		}
		s.mu.Unlock()
	}()
	err := sealErr
	if err == nil {
		err = s.store.WriteProjection(ctx, c)
	}
	if err != nil {
		// Put it all back: the next flush tries again.
		s.mu.Lock()
		for _, p := range picked {
			// The cache may hold a newer state of the profile by now (a group
			// installed one); it includes what was not written.
			cur := s.cache[p.st.rec.ID]
			if cur == nil {
				cur = p.st
				s.cache[cur.rec.ID] = cur
			}
			if cur.dirty {
				cur.since = min(cur.since, p.since)
			} else {
				cur.dirty, cur.since = true, p.since
			}
			cur.dirtyAt = p.at
		}
		for k, r := range taken {
			if cur := s.pending[k]; cur != nil {
				r.seqs = append(r.seqs, cur.seqs...)
			}
			s.pending[k] = r
		}
		s.mu.Unlock()
		return 0, false, err
	}
	s.mu.Lock()
	for _, p := range picked {
		p.st.stored = true
	}
	s.evictLocked()
	s.mu.Unlock()
	return len(recs), more, nil
}

// Run flushes in the background until ctx ends, then flushes everything.
func (s *Service) Run(ctx context.Context, log *slog.Logger) {
	t := time.NewTicker(max(s.FlushAfter/4, 50*time.Millisecond))
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			if _, err := s.Flush(context.Background(), true); err != nil {
				log.Error("final profile flush failed; the next start replays the log", "err", err)
			}
			return
		case <-t.C:
			if _, err := s.Flush(ctx, false); err != nil && ctx.Err() == nil {
				log.Error("profile flush failed; will retry", "err", err)
			}
		}
	}
}

// pendingSeqs returns the timeline positions of the keys held only in memory.
func (s *Service) pendingSeqs(keyIDs []int64) []int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []int64
	for _, k := range keyIDs {
		if r := s.pending[k]; r != nil {
			out = append(out, r.seqs...)
		}
	}
	return out
}

// cached returns a copy of a profile's in-memory state, if it is in memory.
func (s *Service) cached(id int64) *state {
	s.mu.Lock()
	defer s.mu.Unlock()
	if st := s.cache[id]; st != nil {
		return st.clone()
	}
	return nil
}

// Recover replays the log after the watermark into the profiles, as a start after
// a crash must: what was only in memory is rebuilt from the events. It is run
// before the collector takes events. It returns how many events it replayed.
func (s *Service) Recover(ctx context.Context, workspaces []int64) (int, error) {
	upto, err := s.store.ProjectedUpto(ctx)
	if err != nil {
		return 0, err
	}
	replayed := 0
	for _, ws := range workspaces {
		for after := upto; ; {
			evs, err := s.store.ListEvents(ctx, ws, after, 1000)
			if err != nil {
				return replayed, err
			}
			if len(evs) == 0 {
				break
			}
			if err := s.replay(ctx, ws, evs); err != nil {
				return replayed, err
			}
			replayed += len(evs)
			after = evs[len(evs)-1].Seq
		}
	}
	if _, err := s.Flush(ctx, true); err != nil {
		return replayed, err
	}
	return replayed, nil
}

// replay projects stored events as a group commit would, writing what a commit
// writes in a transaction of its own.
func (s *Service) replay(ctx context.Context, ws int64, evs []trustloop.StoredEvent) error {
	keyIDs := make([]int64, len(evs))
	for i, e := range evs {
		keyIDs[i] = e.KeyID
	}
	keys, err := s.keysFor(ctx, ws, keyIDs)
	if err != nil {
		return err
	}
	items := make([]Item, 0, len(evs))
	fresh := make([]int, 0, len(evs))
	seqs := make([]int64, 0, len(evs))
	for _, e := range evs {
		k, ok := keys[e.KeyID]
		if !ok {
			continue // the subject was erased
		}
		env, err := openEvent(ws, e, k)
		if err != nil {
			return err
		}
		m := messageOf(env, e)
		fresh = append(fresh, len(items))
		seqs = append(seqs, e.Seq)
		items = append(items, Item{WorkspaceID: ws, SourceID: e.SourceID, Message: m, MessageHash: e.MessageHash,
			KeyID: e.KeyID, Key: k, IDs: s.Identify(ws, m)})
	}
	g := s.Group(items)
	committed := false
	defer func() { g.Done(committed) }()
	c, err := g.Project(ctx, fresh, seqs)
	if err != nil {
		return err
	}
	if err := s.store.WriteProjection(ctx, c); err != nil {
		return err
	}
	committed = true
	return nil
}
