package sqlite

import (
	"encoding/binary"
	"errors"
	"sort"
	"syscall"
	"time"
	"unsafe"
)

// The embedded store deduplicates messageIds in memory.
//
// A unique B-tree index over random message hashes costs one index page written
// per event once the index outgrows a commit group (each insert lands on another
// leaf), and SQLite writes every dirty page to the WAL and again to the database
// at checkpoint: measured here, that capped group commits at ~13k events/s against
// ~45k without it. So the dedupe index is kept the way a log-structured store keeps
// its newest level: a compact in-memory set of the keyed message hashes received
// within the window, rebuilt at open from dedupe_log, to which each commit appends
// one packed row (never a random update) in the same transaction as its events. It is derived
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

// hashSet is an open-addressing set of keys with linear probing. Its slots are
// mapped outside the Go heap (see allocSlots): a set that is dropped must be
// released.
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
	s.slots, s.n = allocSlots(size), 0
	for _, k := range old {
		if k != (dedupeKey{}) {
			s.add(k)
		}
	}
	freeSlots(old)
}

// release returns the set's memory; the set is empty afterwards.
func (s *hashSet) release() {
	freeSlots(s.slots)
	s.slots, s.n = nil, 0
}

// allocSlots maps zeroed memory outside the Go heap for n slots. The set holds
// no pointers, and kept off the heap it neither counts toward the garbage
// collector's heap goal (which would double its footprint under GOGC=100) nor
// gets scanned: resident memory is what the set holds, no more.
func allocSlots(n int) []dedupeKey {
	b, err := syscall.Mmap(-1, 0, n*int(unsafe.Sizeof(dedupeKey{})), syscall.PROT_READ|syscall.PROT_WRITE, syscall.MAP_ANON|syscall.MAP_PRIVATE)
	if err != nil {
		return make([]dedupeKey, n) // no mapping to be had: the heap will do
	}
	return unsafe.Slice((*dedupeKey)(unsafe.Pointer(unsafe.SliceData(b))), n)
}

func freeSlots(s []dedupeKey) {
	if len(s) == 0 {
		return
	}
	b := unsafe.Slice((*byte)(unsafe.Pointer(unsafe.SliceData(s))), len(s)*int(unsafe.Sizeof(dedupeKey{})))
	syscall.Munmap(b) // fails harmlessly for heap memory from the fallback
}

// shards splits each day's set so that growing one (a rehash of every key in it)
// stalls a commit for 1/256 of the time; the total work is the same.
const shards = 256

type daySet [shards]hashSet

func shardOf(k dedupeKey) int { return int(k[1] >> 56) }

// dedupe is the windowed set: one daySet per UTC day of receipt.
type dedupe struct {
	window     time.Duration
	maxEntries int
	days       map[int64]*daySet
	total      int
	// shortened counts days dropped early because of maxEntries.
	shortened int
}

func newDedupe(window time.Duration, maxEntries int) *dedupe {
	return &dedupe{window: window, maxEntries: maxEntries, days: map[int64]*daySet{}}
}

func dayOf(ms int64) int64 { return ms / (24 * 3600 * 1000) }

func (d *dedupe) has(k dedupeKey) bool {
	sh := shardOf(k)
	for _, s := range d.days {
		if s[sh].has(k) {
			return true
		}
	}
	return false
}

func (d *dedupe) add(k dedupeKey, receivedMS int64) {
	day := dayOf(receivedMS)
	s := d.days[day]
	if s == nil {
		s = &daySet{}
		d.days[day] = s
	}
	h := &s[shardOf(k)]
	before := h.n
	h.add(k)
	d.total += h.n - before
}

func (s *daySet) release() {
	for i := range s {
		s[i].release()
	}
}

// release frees every day's memory.
func (d *dedupe) release() {
	for day, s := range d.days {
		s.release()
		delete(d.days, day)
	}
	d.total = 0
}

func (s *daySet) len() int {
	n := 0
	for i := range s {
		n += s[i].n
	}
	return n
}

// expire drops days wholly outside the window as of now, then the oldest days
// while the set is over its cap (keeping at least the current day).
func (d *dedupe) expire(now time.Time) {
	oldest := dayOf(now.Add(-d.window).UnixMilli())
	for day, s := range d.days {
		if day < oldest {
			d.total -= s.len()
			s.release()
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
		d.total -= d.days[day].len()
		d.days[day].release()
		delete(d.days, day)
		d.shortened++
	}
}

// dedupe_log rows hold one commit group's entries each, packed as 32 bytes an
// event: source id (8, big endian), message hash (16), received ms (8). One row per
// group keeps the log's cost per event to the bytes, not a row insert.
const logEntrySize = 32

func appendLogEntry(dst []byte, sourceID int64, hash []byte, receivedMS int64) []byte {
	dst = binary.BigEndian.AppendUint64(dst, uint64(sourceID))
	var h [16]byte
	copy(h[:], hash)
	dst = append(dst, h[:]...)
	return binary.BigEndian.AppendUint64(dst, uint64(receivedMS))
}

// readLogEntries calls fn for each entry of a packed row.
func readLogEntries(b []byte, fn func(sourceID int64, hash []byte, receivedMS int64)) error {
	if len(b)%logEntrySize != 0 {
		return errors.New("sqlite: dedupe_log row is not a whole number of entries")
	}
	for i := 0; i < len(b); i += logEntrySize {
		e := b[i : i+logEntrySize]
		fn(int64(binary.BigEndian.Uint64(e[:8])), e[8:24], int64(binary.BigEndian.Uint64(e[24:])))
	}
	return nil
}
