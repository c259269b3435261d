package sqlite

import (
	"encoding/binary"
	"sort"
	"time"
)

// The embedded store deduplicates messageIds in memory.
//
// A unique B-tree index over random message hashes costs one index page written
// per event once the index outgrows a commit group (each insert lands on another
// leaf), and SQLite writes every dirty page to the WAL and again to the database
// at checkpoint: measured here, that capped group commits at ~13k events/s against
// ~45k without it. So the dedupe index is kept the way a log-structured store keeps
// its newest level: a compact in-memory set of the keyed message hashes received
// within the window, rebuilt at open from dedupe_log, a narrow table appended to
// (never randomly updated) in the same transaction as the events. It is derived
// state: the set is exactly the committed log's, so a crash loses nothing of it.
//
// Memory is 16 bytes a slot at most 3/4 full: about 25–45 bytes per event in the
// window. The set is split into one generation per day of receipt, so the window
// slides by dropping whole days, and MaxEntries caps it by dropping the oldest day
// early (counted, and logged by the caller) rather than growing without bound.

// dedupeKey folds the source into the message hash: (source, hash) is what is
// unique, and 128 bits keep accidental collisions beyond any realistic log.
type dedupeKey [2]uint64

func makeKey(sourceID int64, hash []byte) dedupeKey {
	var h [16]byte
	copy(h[:], hash)
	k := dedupeKey{binary.LittleEndian.Uint64(h[:8]), binary.LittleEndian.Uint64(h[8:])}
	k[0] ^= uint64(sourceID) * 0x9e3779b97f4a7c15
	if k == (dedupeKey{}) { // the all-zero key marks an empty slot
		k[1] = 1
	}
	return k
}

// hashSet is an open-addressing set of keys with linear probing.
type hashSet struct {
	slots []dedupeKey
	n     int
}

// slot is where probing for k starts. The keys are keyed hashes already, but
// mixing costs a nanosecond and keeps a non-random key (a test's, a future
// caller's) from piling into one run of slots.
func slot(k dedupeKey, mask uint64) uint64 {
	h := k[0] ^ k[1]
	h ^= h >> 33
	h *= 0xff51afd7ed558ccd
	h ^= h >> 33
	return h & mask
}

func (s *hashSet) has(k dedupeKey) bool {
	if s.n == 0 {
		return false
	}
	mask := uint64(len(s.slots) - 1)
	for i := slot(k, mask); ; i = (i + 1) & mask {
		switch s.slots[i] {
		case k:
			return true
		case dedupeKey{}:
			return false
		}
	}
}

func (s *hashSet) add(k dedupeKey) {
	if (s.n+1)*4 > len(s.slots)*3 {
		s.grow()
	}
	mask := uint64(len(s.slots) - 1)
	for i := slot(k, mask); ; i = (i + 1) & mask {
		switch s.slots[i] {
		case k:
			return
		case dedupeKey{}:
			s.slots[i] = k
			s.n++
			return
		}
	}
}

func (s *hashSet) grow() {
	old := s.slots
	size := max(1024, len(old)*2)
	s.slots, s.n = make([]dedupeKey, size), 0
	for _, k := range old {
		if k != (dedupeKey{}) {
			s.add(k)
		}
	}
}

// dedupe is the windowed set: one hashSet per UTC day of receipt.
type dedupe struct {
	window     time.Duration
	maxEntries int
	days       map[int64]*hashSet
	total      int
	// shortened counts days dropped early because of maxEntries.
	shortened int
}

func newDedupe(window time.Duration, maxEntries int) *dedupe {
	return &dedupe{window: window, maxEntries: maxEntries, days: map[int64]*hashSet{}}
}

func dayOf(ms int64) int64 { return ms / (24 * 3600 * 1000) }

func (d *dedupe) has(k dedupeKey) bool {
	for _, s := range d.days {
		if s.has(k) {
			return true
		}
	}
	return false
}

func (d *dedupe) add(k dedupeKey, receivedMS int64) {
	day := dayOf(receivedMS)
	s := d.days[day]
	if s == nil {
		s = &hashSet{}
		d.days[day] = s
	}
	before := s.n
	s.add(k)
	d.total += s.n - before
}

// expire drops days wholly outside the window as of now, then the oldest days
// while the set is over its cap (keeping at least the current day).
func (d *dedupe) expire(now time.Time) {
	oldest := dayOf(now.Add(-d.window).UnixMilli())
	for day, s := range d.days {
		if day < oldest {
			d.total -= s.n
			delete(d.days, day)
		}
	}
	if d.maxEntries <= 0 || d.total <= d.maxEntries || len(d.days) < 2 {
		return
	}
	days := make([]int64, 0, len(d.days))
	for day := range d.days {
		days = append(days, day)
	}
	sort.Slice(days, func(i, j int) bool { return days[i] < days[j] })
	for _, day := range days[:len(days)-1] {
		if d.total <= d.maxEntries {
			break
		}
		d.total -= d.days[day].n
		delete(d.days, day)
		d.shortened++
	}
}
