package sqlite

import (
	"context"
	"database/sql"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
)

// The in-memory dedupe set (dedupe.go) costs ~30 bytes per event in the window, so
// on its own it ties memory to traffic: 8 days at 100 events/s would be 1.8 GB.
// It is therefore only the newest level of a small log-structured index. When it
// holds DedupeMemEntries keys it is frozen into a sorted run: the keys are written
// in 4 KiB blocks to dedupe_blocks, a few hundred blocks per group commit so no
// commit carries the whole run, and when the last block is in, a header row
// (dedupe_runs) with the run's Bloom filter and the first key of every block. From
// then on memory holds only the filter (~1.25 bytes a key) and the block index
// (~0.06 bytes a key); a lookup costs one cache line of filter per run, and a block
// read only when the filter says maybe (~1 % of new keys, and every true repeat).
//
// The header's upto is the last dedupe_log row the run covers: at open the memory
// set is rebuilt from later rows only, and covered rows are pruned. A crash before
// the header leaves blocks without a run, which the next open deletes; the
// dedupe_log rows are still there to rebuild from. So the index is always exactly
// the committed log's, as before.

const (
	blockKeys  = 256 // keys per dedupe_blocks row (4 KiB)
	bloomBits  = 10  // filter bits per key: ~1 % false "maybe"
	bloomProbe = 6   // bits set per key, all in one 512-bit line
	// blocksPerCommit bounds the run-writing work one group commit carries.
	blocksPerCommit = 128
)

// run is a persisted sorted run, as memory keeps it.
type run struct {
	id           int64
	minDay       int64 // day of receipt of its oldest and newest key
	maxDay       int64
	n            int
	bloom        []uint64
	firsts       []dedupeKey
	upto         int64 // last dedupe_log id covered
	blocksLoaded map[int][]dedupeKey
}

// frozen is a memory set on its way to becoming a run. Sorting a million keys and
// building the filter takes ~0.2 s, so it is done off the writer: until then the
// frozen set itself answers lookups.
type frozen struct {
	id      int64
	upto    int64
	set     *dedupe     // the memory level as frozen; nil once sorted
	keys    []dedupeKey // sorted; nil until the background sort is done
	run     *run        // the run the keys make, built with them
	written int         // blocks written so far
}

type sorted struct {
	keys []dedupeKey
	run  *run
}

func keyLess(a, b dedupeKey) int {
	switch {
	case a[0] < b[0]:
		return -1
	case a[0] > b[0]:
		return 1
	case a[1] < b[1]:
		return -1
	case a[1] > b[1]:
		return 1
	}
	return 0
}

func (f *frozen) has(k dedupeKey) bool {
	if f.keys == nil {
		return f.set.has(k)
	}
	_, ok := slices.BinarySearchFunc(f.keys, k, keyLess)
	return ok
}

func (f *frozen) blocks() int { return (len(f.keys) + blockKeys - 1) / blockKeys }

// Blocked Bloom filter: the key picks one 512-bit line and sets bloomProbe bits in
// it, so a lookup is one cache miss. The keys are keyed hashes already, so their
// bits serve as the hash functions.
func bloomWords(n int) int {
	lines := max(1, (n*bloomBits+511)/512)
	return lines * 8
}

func bloomAdd(b []uint64, k dedupeKey) {
	line := (k[0] % uint64(len(b)/8)) * 8
	h := k[1]
	for i := 0; i < bloomProbe; i++ {
		bit := h & 511
		b[line+bit/64] |= 1 << (bit % 64)
		h >>= 9
	}
}

func bloomHas(b []uint64, k dedupeKey) bool {
	line := (k[0] % uint64(len(b)/8)) * 8
	h := k[1]
	for i := 0; i < bloomProbe; i++ {
		bit := h & 511
		if b[line+bit/64]&(1<<(bit%64)) == 0 {
			return false
		}
		h >>= 9
	}
	return true
}

// sortRun takes every key of a frozen memory set into sorted order and builds the
// run's filter and block index. It only reads d, which nobody writes any more.
func sortRun(d *dedupe, id, upto int64) sorted {
	keys := make([]dedupeKey, 0, d.total)
	r := &run{id: id, upto: upto, minDay: 1 << 62, maxDay: -1 << 62}
	for day, s := range d.days {
		r.minDay, r.maxDay = min(r.minDay, day), max(r.maxDay, day)
		for i := range s {
			for _, k := range s[i].slots {
				if k != (dedupeKey{}) {
					keys = append(keys, k)
				}
			}
		}
	}
	slices.SortFunc(keys, keyLess)
	r.n = len(keys)
	r.bloom = make([]uint64, bloomWords(len(keys)))
	for i, k := range keys {
		bloomAdd(r.bloom, k)
		if i%blockKeys == 0 {
			r.firsts = append(r.firsts, k)
		}
	}
	return sorted{keys: keys, run: r}
}

// freeze turns the full memory level into a frozen run and starts a new level.
func (db *DB) freeze(upto int64) {
	f := &frozen{id: db.nextRunID, upto: upto, set: db.dd}
	db.nextRunID++
	db.frz, db.frzNext = f, 0
	db.dd = newDedupe(db.opt.DedupeWindow, db.opt.DedupeMaxEntries)
	ready := make(chan sorted, 1)
	db.frzReady = ready
	go func() { ready <- sortRun(f.set, f.id, f.upto) }()
}

// takeSorted installs the background sort's result, if it is done (wait: block
// until it is).
func (db *DB) takeSorted(wait bool) {
	f := db.frz
	if f == nil || f.keys != nil {
		return
	}
	var res sorted
	if wait {
		res = <-db.frzReady
	} else {
		select {
		case res = <-db.frzReady:
		default:
			return
		}
	}
	f.keys, f.run = res.keys, res.run
	f.set.release()
	f.set = nil
}

func packKeys(keys []dedupeKey) []byte {
	b := make([]byte, 0, len(keys)*16)
	for _, k := range keys {
		b = binary.BigEndian.AppendUint64(b, k[0])
		b = binary.BigEndian.AppendUint64(b, k[1])
	}
	return b
}

func unpackKeys(b []byte) ([]dedupeKey, error) {
	if len(b)%16 != 0 {
		return nil, errors.New("sqlite: dedupe block is not a whole number of keys")
	}
	out := make([]dedupeKey, len(b)/16)
	for i := range out {
		out[i] = dedupeKey{binary.BigEndian.Uint64(b[i*16:]), binary.BigEndian.Uint64(b[i*16+8:])}
	}
	return out, nil
}

func packWords(w []uint64) []byte {
	b := make([]byte, 0, len(w)*8)
	for _, x := range w {
		b = binary.LittleEndian.AppendUint64(b, x)
	}
	return b
}

func unpackWords(b []byte) ([]uint64, error) {
	if len(b)%64 != 0 || len(b) == 0 {
		return nil, errors.New("sqlite: dedupe bloom filter is not whole lines")
	}
	out := make([]uint64, len(b)/8)
	for i := range out {
		out[i] = binary.LittleEndian.Uint64(b[i*8:])
	}
	return out, nil
}

// runHas reports whether a persisted run holds k: the filter first, then the one
// block that would hold it. Recently read blocks are kept (a client's retry of a
// batch asks for the same blocks again), a few per run.
func (db *DB) runHas(ctx context.Context, r *run, k dedupeKey) (bool, error) {
	if !bloomHas(r.bloom, k) {
		return false, nil
	}
	i, found := slices.BinarySearchFunc(r.firsts, k, keyLess)
	if found {
		return true, nil
	}
	if i == 0 {
		return false, nil
	}
	block := i - 1
	keys, ok := r.blocksLoaded[block]
	if !ok {
		var b []byte
		if err := db.write.QueryRowContext(ctx, `SELECT keys FROM dedupe_blocks WHERE run_id = ? AND block = ?`, r.id, block).Scan(&b); err != nil {
			return false, fmt.Errorf("sqlite: dedupe block: %w", err)
		}
		var err error
		if keys, err = unpackKeys(b); err != nil {
			return false, err
		}
		if r.blocksLoaded == nil || len(r.blocksLoaded) >= 64 {
			r.blocksLoaded = map[int][]dedupeKey{}
		}
		r.blocksLoaded[block] = keys
	}
	_, found = slices.BinarySearchFunc(keys, k, keyLess)
	return found, nil
}

// seen reports whether k was received within the window: the memory set, the run
// being written, then the persisted runs, newest first.
func (db *DB) seen(ctx context.Context, k dedupeKey) (bool, error) {
	if db.dd.has(k) || (db.frz != nil && db.frz.has(k)) {
		return true, nil
	}
	for i := len(db.runs) - 1; i >= 0; i-- {
		if ok, err := db.runHas(ctx, db.runs[i], k); ok || err != nil {
			return ok, err
		}
	}
	return false, nil
}

// spillStep does, inside the group commit's transaction, the next part of the
// index upkeep: writing blocks of the frozen run (then its header), pruning
// dedupe_log rows a run covers, and deleting runs wholly outside the window.
// It returns the run completed by this transaction, if any.
func (db *DB) spillStep(ctx context.Context, tx *sql.Tx, oldestDay int64) (*run, error) {
	var done *run
	db.takeSorted(false)
	if f := db.frz; f != nil && f.keys != nil {
		end := min(f.blocks(), f.written+blocksPerCommit)
		for b := f.written; b < end; b++ {
			keys := f.keys[b*blockKeys : min(len(f.keys), (b+1)*blockKeys)]
			if _, err := tx.ExecContext(ctx, `INSERT INTO dedupe_blocks (run_id, block, keys) VALUES (?, ?, ?)`, f.id, b, packKeys(keys)); err != nil {
				return nil, fmt.Errorf("sqlite: dedupe spill: %w", err)
			}
		}
		if end == f.blocks() {
			r := f.run
			if _, err := tx.ExecContext(ctx, `INSERT INTO dedupe_runs (id, min_day, max_day, n, upto, bloom, firsts) VALUES (?, ?, ?, ?, ?, ?, ?)`,
				r.id, r.minDay, r.maxDay, r.n, r.upto, packWords(r.bloom), packKeys(r.firsts)); err != nil {
				return nil, fmt.Errorf("sqlite: dedupe spill: %w", err)
			}
			done = r
		}
		db.frzNext = end
	}
	// dedupe_log rows a run covers are not deleted early: at open they are
	// skipped by id, and the age-based prune removes them with the rest. Deleting
	// them as runs complete (with secure_delete zeroing every freed page) cost as
	// much I/O as writing them.
	// Runs are in id order, oldest first: the first is the one to expire, or to
	// drop early when the index is over its cap.
	if len(db.runs) > 0 {
		r := db.runs[0]
		over := db.runEntries()+db.dd.total > db.opt.DedupeMaxEntries && len(db.runs) > 1
		if r.maxDay < oldestDay || over {
			if err := deleteRun(ctx, tx, r.id); err != nil {
				return nil, err
			}
			db.dropRuns = append(db.dropRuns, r.id)
			if r.maxDay >= oldestDay {
				db.dropEarly++
			}
		}
	}
	return done, nil
}

func deleteRun(ctx context.Context, tx *sql.Tx, id int64) error {
	if _, err := tx.ExecContext(ctx, `DELETE FROM dedupe_runs WHERE id = ?`, id); err != nil {
		return fmt.Errorf("sqlite: dedupe expire: %w", err)
	}
	if _, err := tx.ExecContext(ctx, `DELETE FROM dedupe_blocks WHERE run_id = ?`, id); err != nil {
		return fmt.Errorf("sqlite: dedupe expire: %w", err)
	}
	return nil
}

// spillCommitted applies in memory what spillStep wrote, once its transaction
// has committed.
func (db *DB) spillCommitted(done *run) {
	if db.frz != nil {
		db.frz.written = db.frzNext
	}
	if done != nil {
		db.runs = append(db.runs, done)
		db.coveredUpto = max(db.coveredUpto, done.upto)
		db.frz = nil
	}
	for _, id := range db.dropRuns {
		db.runs = slices.DeleteFunc(db.runs, func(r *run) bool { return r.id == id })
	}
	db.dropRuns = db.dropRuns[:0]
	db.shortenedRuns += db.dropEarly
	db.dropEarly = 0
}

// spillAborted forgets what spillStep did in a transaction that rolled back.
func (db *DB) spillAborted() {
	db.frzNext = 0
	if db.frz != nil {
		db.frzNext = db.frz.written
	}
	db.dropRuns = db.dropRuns[:0]
	db.dropEarly = 0
}

// loadRuns reads the persisted runs' filters and block indexes, and deletes
// blocks a crash left without their run.
func (db *DB) loadRuns(ctx context.Context) error {
	if _, err := db.write.ExecContext(ctx, `DELETE FROM dedupe_blocks WHERE run_id NOT IN (SELECT id FROM dedupe_runs)`); err != nil {
		return fmt.Errorf("sqlite: load dedupe runs: %w", err)
	}
	rows, err := db.write.QueryContext(ctx, `SELECT id, min_day, max_day, n, upto, bloom, firsts FROM dedupe_runs ORDER BY id`)
	if err != nil {
		return fmt.Errorf("sqlite: load dedupe runs: %w", err)
	}
	defer rows.Close()
	db.runs = nil
	for rows.Next() {
		r := &run{}
		var bloom, firsts []byte
		if err := rows.Scan(&r.id, &r.minDay, &r.maxDay, &r.n, &r.upto, &bloom, &firsts); err != nil {
			return fmt.Errorf("sqlite: load dedupe runs: %w", err)
		}
		if r.bloom, err = unpackWords(bloom); err != nil {
			return err
		}
		if r.firsts, err = unpackKeys(firsts); err != nil {
			return err
		}
		db.runs = append(db.runs, r)
		db.coveredUpto = max(db.coveredUpto, r.upto)
		db.nextRunID = max(db.nextRunID, r.id+1)
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("sqlite: load dedupe runs: %w", err)
	}
	db.nextRunID = max(db.nextRunID, 1)
	return nil
}

// runEntries counts the keys the persisted runs hold.
func (db *DB) runEntries() int {
	n := 0
	for _, r := range db.runs {
		n += r.n
	}
	return n
}
