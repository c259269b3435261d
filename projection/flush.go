package projection

import (
	"cmp"
	"context"
	"fmt"
	"log/slog"
	"slices"
	"time"

	"github.com/trustloop/trustloop"
	"github.com/trustloop/trustloop/keyring"
	"github.com/trustloop/trustloop/profile"
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

// flushBatch bounds the rows one flush transaction writes (Service.FlushBatch
// when 0).
const flushBatch = 5000

func (s *Service) flushBatch() int {
	if s.FlushBatch > 0 {
		return s.FlushBatch
	}
	return flushBatch
}

// A flush writes in sweeps. Once the profile dirty longest is due (dirty for
// FlushAfter), a sweep takes every profile dirty at that moment, due or not,
// and writes them in id order, flushBatch rows a transaction. Why not only the
// due ones: profile rows are keyed by id, so a page holds a few dozen
// neighbouring profiles, and SQLite writes a changed page whole (to the WAL,
// then again at the checkpoint). Under evenly spread customers the due
// profiles of a moment are scattered over the whole table: writing only them
// cost about one page write per row (measured with BenchmarkFlushProfiles: 27 µs
// a row spread over the table, 7 µs with half the rows of each page written
// together). A sweep writes each page of the table once with all of its dirty
// rows. A profile still stays in memory at most about FlushAfter plus a sweep.
//
// The watermark stays right mid-sweep: the sweep's profiles not yet written are
// still dirty, with their entries in the queue, so the queue's front (clean
// entries dropped) is at or below the lowest of their positions — as long as
// the queue is in log order (see sortQueuesLocked).

// startSweepLocked makes every profile dirty now the next sweep, in id order.
func (s *Service) startSweepLocked() {
	s.sweep, s.sweepPos = s.sweep[:0], 0
	for _, e := range s.dirtyQ[s.dirtyHead:] {
		if s.liveLocked(e) {
			s.sweep = append(s.sweep, e.id)
		}
	}
	slices.Sort(s.sweep)
}

// liveLocked tells whether a queue entry is its profile's current one: the
// profile is dirty from the entry's position. Others are left from before the
// profile was last written (it may be dirty again, with a newer entry).
func (s *Service) liveLocked(e dirtyEntry) bool {
	st := s.cache[e.id]
	return st != nil && st.dirty && st.since == e.since
}

// dropCleanLocked moves the queue's front past entries no longer live (so the
// front is the position the watermark must stay below, and its time when the
// next sweep is due).
func (s *Service) dropCleanLocked() {
	for s.dirtyHead < len(s.dirtyQ) && !s.liveLocked(s.dirtyQ[s.dirtyHead]) {
		s.dirtyHead++
	}
}

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
	st *state
	// rec and enc: the state as picked, what is written. st itself may
	// change meanwhile (a group's Done appends held events to it in place).
	rec     trustloop.ProfileRecord
	enc     []byte
	since   int64
	at      time.Time
	members bool // its memberships are written too
	// held: the state as picked, when it holds events (see "Held events"):
	// the flush applies them and writes the result, folded, which it then
	// installs in place of enc and those events (foldBackLocked), counting
	// what the rules skipped of them if it does.
	held   *state
	folded []byte
}

func (s *Service) flushOnce(ctx context.Context, all bool) (int, bool, error) {
	now := s.Now()
	s.mu.Lock()
	s.dropCleanLocked()
	due := func() bool {
		return s.dirtyHead < len(s.dirtyQ) && (all || now.Sub(s.dirtyQ[s.dirtyHead].at) >= s.FlushAfter)
	}
	if s.sweepPos >= len(s.sweep) && due() {
		s.startSweepLocked()
	}
	// The next batch of the sweep, in id order.
	var picked []snapshot
	members := map[int64][]int64{}
	for s.sweepPos < len(s.sweep) && len(picked) < s.flushBatch() {
		id := s.sweep[s.sweepPos]
		s.sweepPos++
		st := s.cache[id]
		if st == nil || !st.dirty {
			continue // written since (by a commit)
		}
		p := snapshot{st: st, rec: st.rec, enc: st.enc, since: st.since, at: st.dirtyAt}
		if st.npend > 0 {
			p.held = &state{rec: st.rec, enc: st.enc, pend: st.pend, npend: st.npend, pendCfg: st.pendCfg}
		}
		if st.membersDirty && st.rec.MergedInto == 0 {
			members[st.rec.ID] = slices.Clone(st.members)
			p.members, st.membersDirty = true, false
		}
		picked = append(picked, p)
		s.inflight[st.rec.ID] = true
		st.dirty, st.since = false, 0
	}
	s.dropCleanLocked()
	more := s.sweepPos < len(s.sweep) || due()
	if s.dirtyHead > 4096 && s.dirtyHead*2 > len(s.dirtyQ) {
		s.dirtyQ, s.dirtyHead = slices.Clone(s.dirtyQ[s.dirtyHead:]), 0
	}
	taken, tlUpto := s.takeRuns(now, all)
	// With all, runs still pending after the sweep (put back by a failed
	// flush, or started since the sweep began) make another: a full flush
	// leaves nothing only in memory.
	more = more || s.tlSweepPos < len(s.tlSweep) || (all && s.tlHead < len(s.tlQ))
	runs := make([]trustloop.TimelineRun, 0, len(taken))
	for k, r := range taken {
		runs = append(runs, trustloop.TimelineRun{KeyID: k, Seqs: r.seqs})
	}
	// The watermark: nothing up to it is held only in memory once this is
	// written. The queue is in log order, so its front (clean entries dropped
	// above) is the oldest position still only in memory.
	upto := s.lastSeq
	if s.dirtyHead < len(s.dirtyQ) {
		upto = min(upto, s.dirtyQ[s.dirtyHead].since-1)
	}
	s.mu.Unlock()
	if len(picked) == 0 && len(runs) == 0 && upto <= s.wroteUpto && tlUpto <= s.wroteTimeline {
		return 0, false, nil // nothing new: no transaction, no fsync
	}
	slices.SortFunc(runs, func(a, b trustloop.TimelineRun) int { return cmp.Compare(a.KeyID, b.KeyID) })

	defer func() {
		s.mu.Lock()
		for _, p := range picked {
			delete(s.inflight, p.st.rec.ID)
		}
		s.mu.Unlock()
	}()
	// Keys and sealing outside the lock, from the snapshots' copies.
	recs := make([]trustloop.ProfileRecord, 0, len(picked))
	err := func() error {
		need := map[int64][]int64{}
		for _, p := range picked {
			need[p.rec.WorkspaceID] = append(need[p.rec.WorkspaceID], p.rec.KeyID)
		}
		keyOf := map[int64]keyring.Key{}
		for ws, ids := range need {
			ks, err := s.keysFor(ctx, ws, ids)
			if err != nil {
				return err
			}
			for id, k := range ks {
				keyOf[id] = k
			}
		}
		for i := range picked {
			p := &picked[i]
			st := &state{rec: p.rec, enc: p.enc}
			if p.held != nil {
				if err := p.fold(); err != nil {
					return err
				}
				st = &state{rec: p.held.rec, enc: p.folded}
			}
			rec, err := s.sealState(ctx, st.rec.WorkspaceID, st, keyOf)
			if err != nil {
				return err
			}
			recs = append(recs, rec)
		}
		c := &trustloop.ProjectionChanges{Profiles: recs, Timeline: runs, UptoSeq: upto, TimelineUpto: tlUpto, Behind: true}
		if len(members) > 0 {
			c.Members = members
		}
		return s.store.WriteProjection(ctx, c)
	}()
	if err != nil {
		s.putBack(picked, taken)
		return 0, false, err
	}
	s.wroteUpto, s.wroteTimeline = max(s.wroteUpto, upto), max(s.wroteTimeline, tlUpto)
	var skips []profile.Reason
	s.mu.Lock()
	for i := range picked {
		p := &picked[i]
		if s.foldBackLocked(p) {
			skips = append(skips, p.held.uncounted(nil)...)
		}
		p.st.stored = true
		// Written: no longer in flight, so the eviction below may drop it
		// (the deferred cleanup, for the failed path, finds it gone).
		delete(s.inflight, p.st.rec.ID)
	}
	s.evictLocked()
	s.mu.Unlock()
	s.skippedInput(skips)
	return len(recs), more, nil
}

// fold applies the events a picked state holds to a copy of it and encodes the
// result.
func (p *snapshot) fold() error {
	w := p.held
	if err := w.decode(); err != nil {
		return err
	}
	var err error
	if p.folded, err = w.st.AppendBinary(make([]byte, 0, len(w.base.enc)+64)); err != nil {
		return fmt.Errorf("projection: profile %d: %w", w.rec.ID, err)
	}
	w.st = profile.State{}
	return nil
}

// foldBackLocked installs a written fold: the profile's state in memory is
// still the one picked, or that one with more events held since (a group added
// them without decoding it), so its encoding becomes the fold's and the events
// the fold applied are dropped from it. Otherwise (a group decoded the profile
// since) it has them applied already and is left as it is. s.mu is
// held; states are changed in place only under it (readers and groups copy
// them under it).
func (s *Service) foldBackLocked(p *snapshot) bool {
	if p.held == nil {
		return false
	}
	m := p.held.base
	cur := s.cache[p.held.rec.ID]
	if cur == nil || cur.npend < m.n || !m.covers(cur.enc, cur.pend) {
		return false
	}
	cur.folded = m
	s.marked = append(s.marked, cur.rec.ID)
	cur.enc = p.folded
	cur.pend = cur.pend[len(m.pend):]
	cur.npend -= m.n
	if cur.npend == 0 {
		cur.pend, cur.pendCfg = nil, nil
	}
	return true
}

// putBack undoes a failed flush: the profiles are dirty again from where they
// were, back in the queue in log order, and the timeline positions pending
// again.
func (s *Service) putBack(picked []snapshot, taken map[int64]*pendingRun) {
	s.mu.Lock()
	defer s.mu.Unlock()
	back := make([]dirtyEntry, 0, len(picked)+len(s.dirtyQ)-s.dirtyHead)
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
		if p.members {
			cur.membersDirty = true
		}
		back = append(back, dirtyEntry{id: cur.rec.ID, since: p.since, at: p.at})
	}
	s.dirtyQ, s.dirtyHead = append(back, s.dirtyQ[s.dirtyHead:]...), 0
	s.putBackRuns(taken)
	s.sortQueuesLocked()
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

// cached returns a working copy of a profile's in-memory state, if it is in
// memory.
func (s *Service) cached(id int64) (*state, error) {
	s.mu.Lock()
	var st *state
	if c := s.cache[id]; c != nil {
		st = c.copyLocked()
	}
	s.mu.Unlock()
	if st == nil {
		return nil, nil
	}
	return st, st.decode()
}

// Recover replays the log after the watermark into the profiles, as a start after
// a crash must: what was only in memory is rebuilt from the events. It is run
// before the collector takes events. It returns how many events it replayed.
func (s *Service) Recover(ctx context.Context, workspaces []int64) (int, error) {
	upto, err := s.store.ProjectedUpto(ctx)
	if err != nil {
		return 0, err
	}
	// Timeline positions first, from the key ids alone; the replay below then
	// adds none.
	tlUpto, err := s.store.TimelineUpto(ctx)
	if err != nil {
		return 0, err
	}
	for _, ws := range workspaces {
		for after := tlUpto; ; {
			keys, err := s.store.EventKeys(ctx, ws, after, 10_000)
			if err != nil {
				return 0, err
			}
			if len(keys) == 0 {
				break
			}
			runs := map[int64]*pendingRun{}
			for _, k := range keys {
				if r := runs[k.KeyID]; r != nil {
					r.seqs = append(r.seqs, k.Seq)
				} else {
					runs[k.KeyID] = &pendingRun{seqs: []int64{k.Seq}}
				}
			}
			after = keys[len(keys)-1].Seq
			s.mu.Lock()
			s.addPending(runs, s.Now())
			s.lastSeq = max(s.lastSeq, after)
			s.mu.Unlock()
		}
	}
	replayed := 0
	for _, ws := range workspaces {
		for after := upto; ; {
			evs, err := s.store.ListEvents(ctx, ws, after, 5000)
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
	s.mu.Lock()
	s.sortQueuesLocked()
	s.mu.Unlock()
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
	// Opening and reading each event is its own work: across the CPUs, as the
	// request goroutines do it at ingest.
	all := make([]Item, len(evs))
	err = eachParallel(len(evs), func(i int) error {
		e := evs[i]
		k, ok := keys[e.KeyID]
		if !ok {
			return nil // the subject was erased
		}
		env, err := openEvent(ws, e, k)
		if err != nil {
			return err
		}
		m := messageOf(env, e)
		it := Item{WorkspaceID: ws, SourceID: e.SourceID, Message: m, MessageHash: e.MessageHash, KeyID: e.KeyID, Key: k}
		// The subject's blind index, for the foreign timeline.
		idType, id := m.Subject()
		if b, err := s.keys.Blind(ws, idType, id); err == nil {
			it.Subject = b
		}
		it.IDs, it.Blinds, it.Input = s.Prepare(ws, m, e.SourceID, nil, nil)
		all[i] = it
		return nil
	})
	if err != nil {
		return err
	}
	items := make([]Item, 0, len(evs))
	fresh := make([]int, 0, len(evs))
	seqs := make([]int64, 0, len(evs))
	for i, e := range evs {
		if all[i].Message == nil {
			continue // the subject was erased
		}
		fresh = append(fresh, len(items))
		seqs = append(seqs, e.Seq)
		items = append(items, all[i])
	}
	g := s.Group(items)
	g.noTimeline = true
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

// addPending appends timeline positions (ascending, after every pending one) to
// the keys' runs; s.mu is held.
func (s *Service) addPending(runs map[int64]*pendingRun, now time.Time) {
	var started []tlEntry
	for k, r := range runs {
		if len(r.seqs) == 0 {
			continue
		}
		p := s.pending[k]
		before := 0
		if p != nil {
			before = len(p.seqs)
			p.seqs = append(p.seqs, r.seqs...)
		} else {
			p = &pendingRun{seqs: r.seqs, at: now}
			s.pending[k] = p
			started = append(started, tlEntry{key: k, first: r.seqs[0], at: now})
		}
		if before < timelineRunMax && len(p.seqs) >= timelineRunMax {
			s.full = append(s.full, k)
		}
	}
	slices.SortFunc(started, func(a, b tlEntry) int { return cmp.Compare(a.first, b.first) })
	s.tlQ = append(s.tlQ, started...)
}

// takeRuns removes from memory the timeline runs a flush writes: full ones, and
// the next flushBatch of the sweep, which starts once a run is TimelineAfter old
// (at once when all is set). It returns them and the timeline watermark; s.mu
// is held.
func (s *Service) takeRuns(now time.Time, all bool) (map[int64]*pendingRun, int64) {
	taken := map[int64]*pendingRun{}
	take := func(k int64) {
		if r := s.pending[k]; r != nil {
			taken[k] = r
			delete(s.pending, k)
		}
	}
	for _, k := range s.full {
		if r := s.pending[k]; r != nil && len(r.seqs) >= timelineRunMax {
			take(k)
		}
	}
	s.full = s.full[:0]
	// Runs are swept as profiles are (see flushBatch): once the oldest is due,
	// every pending run, in key order — the timeline table is keyed by key,
	// and the due runs of a moment lie one per page.
	s.dropStaleRunsLocked()
	if s.tlSweepPos >= len(s.tlSweep) && s.tlHead < len(s.tlQ) && (all || now.Sub(s.tlQ[s.tlHead].at) >= s.TimelineAfter) {
		s.tlSweep, s.tlSweepPos = s.tlSweep[:0], 0
		for k := range s.pending {
			s.tlSweep = append(s.tlSweep, k)
		}
		slices.Sort(s.tlSweep)
	}
	for s.tlSweepPos < len(s.tlSweep) && len(taken) < s.flushBatch() {
		take(s.tlSweep[s.tlSweepPos])
		s.tlSweepPos++
	}
	s.dropStaleRunsLocked()
	if s.tlHead > 4096 && s.tlHead*2 > len(s.tlQ) {
		s.tlQ, s.tlHead = slices.Clone(s.tlQ[s.tlHead:]), 0
	}
	upto := s.lastSeq
	if s.tlHead < len(s.tlQ) {
		upto = min(upto, s.tlQ[s.tlHead].first-1)
	}
	return taken, upto
}

// dropStaleRunsLocked moves the timeline queue's front past entries of runs
// written since (the front is then the lowest position held only in memory).
func (s *Service) dropStaleRunsLocked() {
	for s.tlHead < len(s.tlQ) {
		e := s.tlQ[s.tlHead]
		if r := s.pending[e.key]; r != nil && r.seqs[0] == e.first {
			return
		}
		s.tlHead++
	}
}

// putBackRuns returns runs a failed flush took to memory, with their queue
// entries (putBack then sorts the queues); s.mu is held.
func (s *Service) putBackRuns(taken map[int64]*pendingRun) {
	back := make([]tlEntry, 0, len(taken))
	for k, r := range taken {
		if cur := s.pending[k]; cur != nil {
			r.seqs = append(r.seqs, cur.seqs...)
		}
		s.pending[k] = r
		back = append(back, tlEntry{key: k, first: r.seqs[0], at: r.at})
		if len(r.seqs) >= timelineRunMax {
			s.full = append(s.full, k)
		}
	}
	s.tlQ, s.tlHead = append(back, s.tlQ[s.tlHead:]...), 0
}

// sortQueuesLocked puts both queues in log order again, from their fronts,
// which the watermarks rely on. Groups append in order; what breaks it is
// rare: a failed flush's put-back (a sweep's batch is in id order, so other
// entries of lower positions may be behind it) and Recover, which adds runs
// and replays one workspace after another.
func (s *Service) sortQueuesLocked() {
	slices.SortStableFunc(s.dirtyQ[s.dirtyHead:], func(a, b dirtyEntry) int { return cmp.Compare(a.since, b.since) })
	slices.SortStableFunc(s.tlQ[s.tlHead:], func(a, b tlEntry) int { return cmp.Compare(a.first, b.first) })
}
