package ingest

import (
	"cmp"
	"context"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/trustloop/trustloop"
)

// The trust dashboard's daily counts (trustloop.CountStore): events collected
// and events dropped for lack of consent, per workspace and UTC day of the
// event's timestamp.
//
// They are counted in memory and flushed to the store every CountsEvery (10 s)
// and when the pipeline closes. They are not part of the group commit: one
// more row written in every commit would cost the hot path a random write,
// while the dashboard only needs a daily curve. So a crash loses at most the
// last flush period's counts (10 s by default); the events themselves are
// durable as ever. A flush that fails keeps its counts for the next one.
//
// Cost on the hot path: no allocation and no lock per event. The writer
// tallies a group's events in a map it alone uses, with a fast path for runs of
// one (workspace, day), and takes the accumulator's lock once per group. A
// request counts its refused events in a few fixed slots of its own; they
// travel with it to the writer and are added with its group once committed,
// or, for a request all of whose events were refused, with one lock for the
// request.

// dayKey is one workspace's UTC day: its midnight in Unix milliseconds, as
// the stores keep it.
type dayKey struct{ ws, day int64 }

type dayCounts struct{ collected, dropped int64 }

// dayOf is the UTC day an event counts on: its timestamp's, but never later
// than its receipt (a client clock ahead does not count into tomorrow).
func dayOf(ts, received time.Time) int64 {
	if ts.IsZero() || ts.After(received) {
		ts = received
	}
	return trustloop.UTCDay(ts).UnixMilli()
}

// appendDaily appends k's counts as the stores take them.
func appendDaily(out []trustloop.DailyCount, k dayKey, v dayCounts) []trustloop.DailyCount {
	day := time.UnixMilli(k.day).UTC()
	if v.collected > 0 {
		out = append(out, trustloop.DailyCount{WorkspaceID: k.ws, Day: day, Name: trustloop.CountEventsCollected, N: v.collected})
	}
	if v.dropped > 0 {
		out = append(out, trustloop.DailyCount{WorkspaceID: k.ws, Day: day, Name: trustloop.CountEventsDropped, N: v.dropped})
	}
	return out
}

// addLocked adds v to k's accumulated counts (under c.mu).
func (c *counter) addLocked(k dayKey, v dayCounts) {
	cur := c.m[k]
	cur.collected += v.collected
	cur.dropped += v.dropped
	c.m[k] = cur
}

// drops are a request's refused events by day: a request has one workspace
// and nearly always one day, so a few slots (no allocation) hold them. A
// request refusing events of more days than that (a backfill) adds the rest
// to the accumulator at once, whatever becomes of the request.
type drops struct {
	n     int
	slots [4]struct {
		key dayKey
		n   int64
	}
}

// add counts one refused event; false when the slots are full (the caller
// adds to the accumulator directly).
func (d *drops) add(k dayKey) bool {
	for i := 0; i < d.n; i++ {
		if d.slots[i].key == k {
			d.slots[i].n++
			return true
		}
	}
	if d.n == len(d.slots) {
		return false
	}
	d.slots[d.n].key, d.slots[d.n].n = k, 1
	d.n++
	return true
}

// counter accumulates counts between flushes.
type counter struct {
	store trustloop.CountStore
	log   *slog.Logger
	every time.Duration

	mu sync.Mutex
	m  map[dayKey]dayCounts

	// Used by the writer goroutine alone: a group's collected events by day,
	// and its days in order when repeats must be taken off.
	group map[dayKey]int64
	days  []dayKey

	stop chan struct{}
	done chan struct{}
}

func newCounter(store trustloop.CountStore, log *slog.Logger, every time.Duration) *counter {
	c := &counter{store: store, log: log, every: every, m: map[dayKey]dayCounts{}, group: map[dayKey]int64{},
		stop: make(chan struct{}), done: make(chan struct{})}
	go c.run()
	return c
}

func (c *counter) run() {
	defer close(c.done)
	t := time.NewTicker(c.every)
	defer t.Stop()
	for {
		select {
		case <-c.stop:
			c.flush()
			return
		case <-t.C:
			c.flush()
		}
	}
}

// close stops the flusher after a last flush.
func (c *counter) close() {
	close(c.stop)
	<-c.done
}

// flush writes what accumulated since the last flush.
func (c *counter) flush() {
	c.mu.Lock()
	m := c.m
	if len(m) == 0 {
		c.mu.Unlock()
		return
	}
	c.m = make(map[dayKey]dayCounts, len(m))
	c.mu.Unlock()
	counts := make([]trustloop.DailyCount, 0, 2*len(m))
	for k, v := range m {
		counts = appendDaily(counts, k, v)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := c.store.AddDailyCounts(ctx, counts); err != nil {
		// Kept for the next flush: the dashboard lags, it does not lose them
		// (unless the process stops first).
		c.log.Error("the dashboard's daily counts could not be stored; kept for the next try", "counts", len(counts), "err", err)
		c.mu.Lock()
		for k, v := range m {
			c.addLocked(k, v)
		}
		c.mu.Unlock()
	}
}

// addDrops adds a request's refused events (one lock).
func (c *counter) addDrops(d *drops) {
	if d.n == 0 {
		return
	}
	c.mu.Lock()
	c.addDropsLocked(d)
	c.mu.Unlock()
}

func (c *counter) addDropsLocked(d *drops) {
	for i := 0; i < d.n; i++ {
		c.addLocked(d.slots[i].key, dayCounts{dropped: d.slots[i].n})
	}
}

// dropOne adds one refused event that did not fit its request's slots.
func (c *counter) dropOne(k dayKey) {
	c.mu.Lock()
	c.addLocked(k, dayCounts{dropped: 1})
	c.mu.Unlock()
}

// committed counts a committed group, on the writer: stored of the batch's
// events were new. fresh, when the store said which they were (the group had
// a projection hook) and agrees with stored, makes the count exact. Otherwise
// every event is counted and, if some were repeats, the repeats are taken off
// the group's earliest days first: exact when the group is one day of one
// workspace (the common case), and when the repeats are a client's retry of
// an earlier day's events beside newer ones; asking the store which events
// were new would cost every commit, for the rare group that is neither.
func (c *counter) committed(group []*request, events []trustloop.StoredEvent, stored int, fresh []int) {
	t := c.group
	clear(t)
	var last dayKey
	var run int64
	tally := func(e *trustloop.StoredEvent) {
		k := dayKey{e.WorkspaceID, dayOf(e.Timestamp, e.ReceivedAt)}
		if run > 0 && k == last {
			run++
			return
		}
		if run > 0 {
			t[last] += run
		}
		last, run = k, 1
	}
	exact := fresh != nil
	if exact {
		for _, i := range fresh {
			tally(&events[i])
		}
	} else if stored > 0 {
		for i := range events {
			tally(&events[i])
		}
	}
	if run > 0 {
		t[last] += run
	}
	if !exact && stored < len(events) && len(t) > 0 {
		c.days = takeRepeats(t, c.days, int64(len(events)-stored))
	}
	c.mu.Lock()
	for k, n := range t {
		c.addLocked(k, dayCounts{collected: n})
	}
	for _, r := range group {
		c.addDropsLocked(&r.drops)
	}
	c.mu.Unlock()
}

// takeRepeats takes n repeats off t's counts, earliest day first (then lowest
// workspace), and returns days (reused) for the next call.
func takeRepeats(t map[dayKey]int64, days []dayKey, n int64) []dayKey {
	days = days[:0]
	for k := range t {
		days = append(days, k)
	}
	slices.SortFunc(days, func(a, b dayKey) int { return cmp.Or(cmp.Compare(a.day, b.day), cmp.Compare(a.ws, b.ws)) })
	for _, k := range days {
		if n == 0 {
			break
		}
		take := min(n, t[k])
		t[k] -= take
		n -= take
		if t[k] == 0 {
			delete(t, k)
		}
	}
	return days
}

// pending returns what accumulated for workspace ws since the last flush.
func (c *counter) pending(ws int64) []trustloop.DailyCount {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []trustloop.DailyCount
	for k, v := range c.m {
		if k.ws == ws {
			out = appendDaily(out, k, v)
		}
	}
	return out
}

// PendingCounts returns this node's daily counts of workspace ws not yet
// flushed to the store: the dashboard adds them, so its numbers are current
// on the node that took the events rather than up to 10 s behind.
func (p *Pipeline) PendingCounts(ws int64) []trustloop.DailyCount {
	if p.counts == nil {
		return nil
	}
	return p.counts.pending(ws)
}
