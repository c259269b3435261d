package sqlite

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"github.com/trustloop/trustloop"
	"golang.org/x/mod/sumdb/tlog"
)

// The audit journal. A strict append (every data use with
// --data-use-fsync=each) returns once its records are durable, so the cost of
// that commit is in every such answer's latency; a lazy one (data uses by
// default) returns once they are written, see below. Committed straight into
// the tables, one record changes four B-trees (entries, hashes, subjects,
// head): five WAL frames, eleven writes and an fsync, ~0.4 ms alone and ~1 ms under load. The journal makes the record
// durable with one write and one fdatasync instead; a background applier then
// moves many records at a time into the tables, which stay the log readers
// see.
//
// What keeps it exact:
//   - Only this process appends: the store holds the data directory's lock, so
//     the journal's idea of each log's size is the truth.
//   - Every read of the log (size, records, hashes, a subject's records, the
//     stats) and every erasure first moves what is pending into the tables, so
//     nobody sees the tables behind the journal. A read-only store (another
//     process) sees the tables only: a prefix of the log, never a fork.
//   - Records are framed with their length and a CRC-32C: opening replays the
//     journal from its start up to the first frame that does not check (a
//     write a crash cut short, whose append never returned), applying each
//     record whose index is the next of its log and skipping those already in
//     the tables.
//   - The file starts with a header naming the store (store_meta's id): a
//     journal beside a database made anew is refused, not replayed into it.
//   - Writing starts over at the file's start (so the file stops growing and
//     fdatasync need not record a new size) only when every record in it is in
//     the tables: whatever the replay reads past the new records is then older
//     than the tables' heads and skipped.
//   - A lazy append (AppendAuditLazy: data uses) is written but not
//     fdatasynced before it returns: it survives a crash of the process (the
//     file's pages are the kernel's), and a background fdatasync follows
//     within Options.AuditLazySyncDelay. A crash of the machine can lose
//     those last records, and then any of their pages, not only a suffix: so
//     every frame's CRC is seeded with the journal's round, a number in the
//     header raised at every open and every wrap, and the replay stops at the
//     first frame of another round. A stale frame that happens to sit exactly
//     where a lost one began is then never taken for this round's. Every
//     fdatasync (a strict append's too) covers the lazy frames before it, and
//     the applier's commits into the tables are durable on their own, so a
//     signed checkpoint (made from the tables) never covers a record that a
//     crash could take back.
const (
	auditJournalName = "audit.journal"
	// auditJournalWrap: past this size, writing starts over once everything is
	// applied (~12,000 records).
	auditJournalWrap = 4 << 20
	// auditApplyDelay gathers records for one apply commit (the default of
	// Options.AuditApplyDelay).
	auditApplyDelay = 100 * time.Millisecond
	// auditApplyChunk and auditApplyPause: the applier's commits take at most
	// this many records, this far apart.
	auditApplyChunk = 128
	auditApplyPause = 2 * time.Millisecond
	// auditApplyMax: with this many pending, the applier does not wait.
	auditApplyMax = 2048
	// auditWrapHeld: writing starts over (holding appends for the apply)
	// only with at most this many pending, or auditJournalWrap past the
	// wrap size.
	auditWrapHeld = 64
	// auditSubjectsMergeAt: the default of Options.AuditSubjectsMergeAt.
	auditSubjectsMergeAt = 8192
	// auditMergeChunk: about this many rows move per transaction of a merge.
	auditMergeChunk = 1024
	// auditLazySyncDelay: the default of Options.AuditLazySyncDelay.
	auditLazySyncDelay = 5 * time.Millisecond
)

var crc32c = crc32.MakeTable(crc32.Castagnoli)

// journalMagic starts the journal's header; the store's id (store_meta)
// follows it, then the round (8 bytes, little-endian), and the frames follow
// that. journalMagicV1 started the header of the format before rounds: no
// round, frames with an unseeded CRC.
var (
	journalMagic   = []byte("TLAUDJ\x00\x02")
	journalMagicV1 = []byte("TLAUDJ\x00\x01")
)

// roundSeed is the CRC-32C a round's frames start from (0, unseeded, for the
// formats before rounds).
func roundSeed(round uint64) uint32 {
	return crc32.Checksum(binary.LittleEndian.AppendUint64(nil, round), crc32c)
}

// journalRec is one audit record as the tables take it.
type journalRec struct {
	ws, idx      int64
	data, hashes []byte
	subject      string
}

// appendJournalFrame appends one append's records as one frame: the body's
// length and CRC-32C from seed (4 bytes each, little-endian), then the body:
// the record count, then per record ws, idx, and data, hashes and subject
// each with their length, as uvarints. One frame per append makes an append
// whole or absent after a crash.
func appendJournalFrame(b []byte, seed uint32, recs []journalRec) []byte {
	start := len(b)
	b = append(b, make([]byte, 8)...)
	b = binary.AppendUvarint(b, uint64(len(recs)))
	for _, r := range recs {
		b = binary.AppendUvarint(b, uint64(r.ws))
		b = binary.AppendUvarint(b, uint64(r.idx))
		for _, f := range [][]byte{r.data, r.hashes, []byte(r.subject)} {
			b = binary.AppendUvarint(b, uint64(len(f)))
			b = append(b, f...)
		}
	}
	body := b[start+8:]
	binary.LittleEndian.PutUint32(b[start:], uint32(len(body)))
	binary.LittleEndian.PutUint32(b[start+4:], crc32.Update(seed, crc32c, body))
	return b
}

// parseJournal returns the records of the frames at the start of b, up to the
// first frame that does not check against seed, and where those frames end.
func parseJournal(b []byte, seed uint32) ([]journalRec, int) {
	var out []journalRec
	off := 0
	for len(b)-off >= 8 {
		n64 := uint64(binary.LittleEndian.Uint32(b[off:]))
		sum := binary.LittleEndian.Uint32(b[off+4:])
		if n64 == 0 || n64 > uint64(len(b)-off-8) {
			break
		}
		n := int(n64) // fits: at most len(b)
		body := b[off+8 : off+8+n]
		if crc32.Update(seed, crc32c, body) != sum {
			break
		}
		recs, ok := decodeJournalBody(body)
		if !ok {
			break
		}
		out = append(out, recs...)
		off += 8 + n
	}
	return out, off
}

func decodeJournalBody(b []byte) ([]journalRec, bool) {
	count, n := binary.Uvarint(b)
	if n <= 0 || count == 0 || count > uint64(len(b)) {
		return nil, false
	}
	b = b[n:]
	out := make([]journalRec, 0, count)
	for range count {
		var ints [2]uint64
		for i := range ints {
			v, n := binary.Uvarint(b)
			if n <= 0 || v > 1<<62 {
				return nil, false
			}
			ints[i], b = v, b[n:]
		}
		var fields [3][]byte
		for i := range fields {
			l, n := binary.Uvarint(b)
			if n <= 0 || l > uint64(len(b)-n) {
				return nil, false
			}
			fields[i], b = b[n:n+int(l)], b[n+int(l):]
		}
		if len(fields[0]) == 0 {
			return nil, false
		}
		out = append(out, journalRec{ws: int64(ints[0]), idx: int64(ints[1]),
			data: fields[0], hashes: fields[1], subject: string(fields[2])})
	}
	if len(b) != 0 {
		return nil, false
	}
	return out, true
}

// auditJournal is the journal of a writable store. Lock order: db.mu before
// j.mu; appends take j.mu only.
type auditJournal struct {
	mu      sync.Mutex
	f       *os.File
	off     int64        // where the next frame goes
	start   int64        // where the first frame goes (after the header)
	wrapAt  int64        // see auditJournalWrap
	pending []journalRec // written here (durable, or lazy), not yet in the tables, in order
	failed  error        // a write that could not be undone: appends refused until a restart
	buf     []byte
	round   uint64 // this run's round (see the header); frames seeded with roundSeed(round)
	// roundAt is where the header holds the round.
	roundAt int64
	// unsynced: lazy frames were written since the last fdatasync.
	unsynced  bool
	lazyDelay time.Duration
	sync      func(*os.File) error // datasync; tests replace it
	// syncMu runs one fdatasync at a time, so that a failure, which Linux
	// reports to one caller only, is seen by every later one: syncErr sticks.
	syncMu  sync.Mutex
	syncErr error

	wake       chan struct{}
	stop, done chan struct{}
	syncWake   chan struct{}
	syncDone   chan struct{}

	// testApplying is called by an apply once it took its records; an error
	// it returns fails the apply as a failed write of the tables would (tests).
	testApplying func() error
}

// openAuditJournal opens (creating) the journal beside the database, replays
// into the tables what the tables lack, and starts the applier.
func (db *DB) openAuditJournal(ctx context.Context, wrapAt int64) error {
	dir := filepath.Dir(db.path)
	path := filepath.Join(dir, auditJournalName)
	_, statErr := os.Stat(path)
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return fmt.Errorf("sqlite: audit journal: %w", err)
	}
	if errors.Is(statErr, os.ErrNotExist) {
		// A new file's name must be durable before anything in it counts.
		if err := syncDir(dir); err != nil {
			f.Close()
			return err
		}
	}
	j := &auditJournal{f: f, wrapAt: wrapAt, lazyDelay: db.opt.AuditLazySyncDelay, sync: datasync,
		wake: make(chan struct{}, 1), stop: make(chan struct{}), done: make(chan struct{}),
		syncWake: make(chan struct{}, 1), syncDone: make(chan struct{})}
	b, err := io.ReadAll(f)
	if err != nil {
		f.Close()
		return fmt.Errorf("sqlite: audit journal: %w", err)
	}
	var id []byte
	if err := db.write.QueryRowContext(ctx, `SELECT value FROM store_meta WHERE name = 'id'`).Scan(&id); err != nil {
		f.Close()
		return fmt.Errorf("sqlite: store id: %w", err)
	}
	header := append(append([]byte{}, journalMagic...), id...)
	roundAt := len(header)
	var round uint64
	start, seed, current := 0, uint32(0), false
	switch {
	case len(b) >= len(header) && (bytes.HasPrefix(b, journalMagic) || bytes.HasPrefix(b, journalMagicV1)):
		if !bytes.Equal(b[len(journalMagic):len(header)], id) {
			f.Close()
			return &trustloop.Error{Code: trustloop.EINTERNAL,
				Message: "the audit journal beside the database belongs to another database",
				Hint: "The database file was made anew beside an old " + auditJournalName + ". If that was meant, move " +
					auditJournalName + " away; if not, restore the database that goes with it."}
		}
		start = len(header)
		if bytes.HasPrefix(b, journalMagic) {
			if len(b) < roundAt+8 {
				b = nil // its round never became durable: nothing in it counts
				break
			}
			round = binary.LittleEndian.Uint64(b[roundAt:])
			start, seed, current = roundAt+8, roundSeed(round), true
		}
	case len(b) < len(header):
		// New, or its header never became durable: nothing in it counts.
		b = nil
	}
	var recent int64
	if err := db.write.QueryRowContext(ctx, `SELECT COUNT(*) FROM audit_subjects_recent`).Scan(&recent); err != nil {
		f.Close()
		return fmt.Errorf("sqlite: audit subjects: %w", err)
	}
	db.auditRecent.Store(recent)
	// Without the header: a journal of the first format, frames from the
	// start of the file.
	var recs []journalRec
	if len(b) > start {
		recs, _ = parseJournal(b[start:], seed)
	}
	var apply []journalRec
	heads := map[int64]int64{}
	for _, r := range recs {
		h, ok := heads[r.ws]
		if !ok {
			if h, err = db.auditHead(ctx, db.write, r.ws); err != nil {
				f.Close()
				return err
			}
		}
		switch {
		case r.idx < h: // in the tables already (or older than them)
		case r.idx == h:
			apply = append(apply, r)
			h++
		default:
			f.Close()
			return &trustloop.Error{Code: trustloop.EINTERNAL,
				Message: fmt.Sprintf("the audit journal holds entry %d of workspace %d's log, whose tables end at %d", r.idx, r.ws, h),
				Hint:    "The database file is older than " + auditJournalName + " beside it (restored from a backup?). Restore the two together."}
		}
		heads[r.ws] = h
	}
	if len(apply) > 0 {
		if err := db.writeAuditRecs(ctx, apply); err != nil {
			f.Close()
			return err
		}
	}
	// Everything in the file is in the tables now: writing starts over, after
	// the header, in a new round (durable before any frame of it). A file of
	// an earlier format is emptied first: its frames, unseeded, must not be
	// read as this format's.
	var herr error
	if !current {
		herr = f.Truncate(0)
	}
	if herr == nil {
		_, herr = f.WriteAt(binary.LittleEndian.AppendUint64(header, round+1), 0)
	}
	if herr == nil {
		herr = datasync(f)
	}
	if herr != nil {
		f.Close()
		return fmt.Errorf("sqlite: audit journal: header: %w", herr)
	}
	j.round, j.roundAt = round+1, int64(roundAt)
	j.off, j.start = int64(roundAt+8), int64(roundAt+8)
	db.audit = j
	go db.auditApplier()
	go db.auditSyncer()
	return nil
}

// auditHead reads a log's size from the tables.
func (db *DB) auditHead(ctx context.Context, q interface {
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}, ws int64) (int64, error) {
	var size int64
	err := q.QueryRowContext(ctx, auditHeadSelect, ws).Scan(&size)
	if err != nil && !errors.Is(err, sql.ErrNoRows) {
		return 0, fmt.Errorf("sqlite: audit head: %w", err)
	}
	return size, nil
}

// appendJournal is AppendAudit on a writable store: the records are durable
// once it returns (lazy: written, and durable within the lazy delay), and in
// the tables once the applier (or a read) moves them.
func (db *DB) appendJournal(ctx context.Context, entries []trustloop.AuditEntry, lazy bool) error {
	j := db.audit
	wss, groups := trustloop.AuditGroups(entries)

	j.mu.Lock()
	defer j.mu.Unlock()
	if j.failed != nil {
		return j.failed
	}
	var recs []journalRec
	indexes := make([]int64, len(entries))
	tips := make(map[int64]trustloop.AuditTip, len(wss))
	for _, ws := range wss {
		// The journal is the log's only appender, so the tip its last
		// append kept is the log's head and frontier. Without one (the first
		// append to this log since the store opened) nothing of the log is
		// pending: the tables hold all of it, head and hashes.
		n, ok := db.auditTips.Kept(ws)
		if !ok {
			var err error
			if n, err = db.auditHead(ctx, db.read, ws); err != nil {
				return err
			}
		}
		batch := make([]trustloop.AuditEntry, len(groups[ws]))
		for k, i := range groups[ws] {
			batch[k] = entries[i]
		}
		data, hashes, tip, err := db.auditTips.Append(ws, n, batch, func(idx []int64) ([]tlog.Hash, error) {
			return readAuditHashes(ctx, db.read, ws, idx)
		})
		if err != nil {
			return auditErr("audit append", err)
		}
		tips[ws] = tip
		for k, i := range groups[ws] {
			r := journalRec{ws: ws, idx: batch[k].Index, data: data[k], hashes: hashes[k], subject: batch[k].Subject}
			recs = append(recs, r)
			indexes[i] = r.idx
		}
	}
	buf := appendJournalFrame(j.buf[:0], roundSeed(j.round), recs)
	j.buf = buf
	if err := j.write(buf, !lazy); err != nil {
		return err
	}
	j.off += int64(len(buf))
	switch {
	case !lazy:
		j.unsynced = false // this fdatasync covered the lazy frames before it
	case !j.unsynced:
		j.unsynced = true
		select {
		case j.syncWake <- struct{}{}:
		default:
		}
	}
	j.pending = append(j.pending, recs...)
	for ws, t := range tips {
		db.auditTips.Keep(ws, t)
	}
	for i := range entries {
		entries[i].Index = indexes[i]
	}
	select {
	case j.wake <- struct{}{}:
	default:
	}
	return nil
}

// fsync fdatasyncs the journal, one caller at a time. A failure sticks: the
// pages it could not write may have been any earlier frame's (a lazy one's
// too), and the next fdatasync would report success over them.
func (j *auditJournal) fsync() error {
	j.syncMu.Lock()
	defer j.syncMu.Unlock()
	if j.syncErr == nil {
		if err := j.sync(j.f); err != nil {
			j.syncErr = fmt.Errorf("sqlite: audit journal: fdatasync: %w", err)
		}
	}
	return j.syncErr
}

// write writes buf at j.off, and with sync makes it (and everything before
// it) durable. On failure it cuts the file back to j.off so that no part of a
// refused append can be replayed; if even that fails, or the fdatasync failed
// (what is durable before j.off is then unknown), the journal refuses every
// later append (a restart replays what is durable; the applier still moves
// what is pending into the tables).
func (j *auditJournal) write(buf []byte, sync bool) error {
	_, err := j.f.WriteAt(buf, j.off)
	if err == nil && sync {
		if err = j.fsync(); err != nil {
			j.f.Truncate(j.off)
			j.failed = err
			return err
		}
	}
	if err == nil {
		return nil
	}
	err = fmt.Errorf("sqlite: audit journal: %w", err)
	if terr := j.f.Truncate(j.off); terr != nil {
		j.failed = errors.Join(err, terr)
	} else if serr := j.f.Sync(); serr != nil {
		j.failed = errors.Join(err, serr)
	}
	return err
}

// hasPending reports whether records wait for the tables.
func (j *auditJournal) hasPending() bool {
	if j == nil {
		return false
	}
	j.mu.Lock()
	defer j.mu.Unlock()
	return len(j.pending) > 0
}

// wrapDue reports whether the journal is past its wrap size.
func (j *auditJournal) wrapDue() bool {
	j.mu.Lock()
	defer j.mu.Unlock()
	return j.off >= j.wrapAt
}

// flushAudit moves the pending records into the tables before a read of the
// log, so readers never see the tables behind the journal.
func (db *DB) flushAudit(ctx context.Context) error {
	if !db.audit.hasPending() {
		return nil
	}
	db.mu.Lock()
	defer db.mu.Unlock()
	return db.applyAuditLocked(ctx)
}

// applyAuditLocked moves the pending records into the tables in one
// transaction, under db.mu. Once the journal is past its wrap size, it holds
// j.mu throughout, so nothing is appended meanwhile and writing can start
// over at the file's start.
func (db *DB) applyAuditLocked(ctx context.Context) error {
	return db.applyAuditSome(ctx, 0)
}

// applyAuditSome is applyAuditLocked for at most limit records (0: all), so
// that the applier spreads its work instead of taking the CPU in bursts; the
// apply that starts writing over takes all, holding appends, and so waits
// until little is pending (auditWrapHeld).
func (db *DB) applyAuditSome(ctx context.Context, limit int) error {
	j := db.audit
	if j == nil {
		return nil
	}
	j.mu.Lock()
	wrap := j.off >= j.wrapAt
	recs := j.pending
	if wrap && len(recs) > auditWrapHeld && j.off < j.wrapAt+auditJournalWrap {
		// Appends wait while an apply holds j.mu, so writing starts over
		// only once little is left: the bulk goes in without holding them
		// (a wrap with 500 pending stalled every answer ~20 ms), unless
		// the file is a whole default size past its own.
		wrap = false
	}
	if !wrap && limit > 0 && len(recs) > limit {
		recs = recs[:limit]
	}
	if !wrap {
		j.mu.Unlock()
	}
	var err error
	if j.testApplying != nil {
		err = j.testApplying()
	}
	if len(recs) > 0 && err == nil {
		err = db.writeAuditRecs(ctx, recs)
	}
	if !wrap {
		j.mu.Lock()
	}
	defer j.mu.Unlock()
	if err != nil {
		return err
	}
	j.pending = slices.Clone(j.pending[len(recs):])
	if wrap {
		// A new round, durable before its first frame: the old round's
		// frames past the new ones never read as this round's.
		next := j.round + 1
		_, err := j.f.WriteAt(binary.LittleEndian.AppendUint64(nil, next), j.roundAt)
		if err == nil {
			err = j.fsync()
		}
		if err != nil {
			// Everything was in the tables; a restart starts a round anew.
			j.failed = fmt.Errorf("sqlite: audit journal: new round: %w", err)
			return j.failed
		}
		j.round, j.unsynced = next, false
		j.off = j.start
	}
	return nil
}

// auditSyncer makes lazy appends durable: a while after the first lazy frame
// since the last fdatasync, one fdatasync for all of them.
func (db *DB) auditSyncer() {
	j := db.audit
	defer close(j.syncDone)
	for {
		select {
		case <-j.stop:
			return
		case <-j.syncWake:
		}
		if !j.pause(j.lazyDelay) {
			return
		}
		j.syncLazy()
	}
}

// syncLazy fdatasyncs the journal if lazy frames wait for it. Appends go on
// meanwhile (fdatasync covers whatever was written before it began; what is
// written during it waits for the next). A failed fdatasync may have dropped
// pages: the journal then refuses appends, as after a failed write, while
// the applier still moves what is pending into the tables.
func (j *auditJournal) syncLazy() {
	j.mu.Lock()
	if !j.unsynced || j.failed != nil {
		j.mu.Unlock()
		return
	}
	j.unsynced = false
	j.mu.Unlock()
	if err := j.fsync(); err != nil {
		j.mu.Lock()
		if j.failed == nil {
			j.failed = err
		}
		j.mu.Unlock()
	}
}

// writeAuditRecs writes records into the tables in one transaction: entries,
// their tree hashes, the subjects' index rows and each log's head, many rows
// per statement.
func (db *DB) writeAuditRecs(ctx context.Context, recs []journalRec) error {
	var ents, hs, subs []any
	heads := map[int64]int64{}
	for _, r := range recs {
		ents = append(ents, r.ws, r.idx, r.data)
		hs = append(hs, r.ws, r.idx, r.hashes)
		if r.subject != "" {
			subs = append(subs, r.ws, r.subject, r.idx)
		}
		heads[r.ws] = max(heads[r.ws], r.idx+1)
	}
	queries := []string{auditHeadUpsert}
	queries = append(queries, chunkQueries(auditEntryInsert, len(recs))...)
	queries = append(queries, chunkQueries(auditHashInsert, len(recs))...)
	queries = append(queries, chunkQueries(auditSubjectInsert, len(subs)/3)...)
	for _, q := range queries {
		if _, err := db.prepared(ctx, true, q); err != nil {
			return fmt.Errorf("sqlite: audit apply: prepare: %w", err)
		}
	}
	tx, err := db.write.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("sqlite: audit apply: begin: %w", err)
	}
	defer tx.Rollback()
	for _, ins := range []struct {
		query, what string
		args        []any
	}{{auditEntryInsert, "entries", ents}, {auditHashInsert, "hashes", hs}, {auditSubjectInsert, "subjects", subs}} {
		if err := db.insertRows(ctx, tx, ins.query, ins.args); err != nil {
			return fmt.Errorf("sqlite: audit apply: %s: %w", ins.what, err)
		}
	}
	headUpsert, err := db.txStmt(ctx, tx, auditHeadUpsert)
	if err != nil {
		return fmt.Errorf("sqlite: audit apply: head: %w", err)
	}
	for ws, size := range heads {
		if _, err := headUpsert.ExecContext(ctx, ws, size); err != nil {
			return fmt.Errorf("sqlite: audit apply: head: %w", err)
		}
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("sqlite: audit apply: commit: %w", err)
	}
	db.auditRecent.Add(int64(len(subs) / 3))
	return nil
}

// mergeAuditSubjects moves the recent rows of the subjects' index into the
// index, in its order: the rows are split by (workspace, subject) into
// ranges of about auditMergeChunk rows, and each range moves in a
// transaction of its own under db.mu, released in between (a merge of 8,192
// rows at once held the store's writer ~45 ms). Each range changes its own
// part of the index, so every page is still written about once per merge.
// A row is in one table or the other at every commit; rows that arrive
// meanwhile wait for the next merge.
func (db *DB) mergeAuditSubjects(ctx context.Context) error {
	type key struct {
		ws      int64
		subject string
	}
	var bounds []key // each range's first key; the next range's first ends it
	err := func() error {
		rows, err := db.write.QueryContext(ctx, `SELECT workspace_id, subject FROM audit_subjects_recent ORDER BY workspace_id, subject`)
		if err != nil {
			return err
		}
		defer rows.Close()
		n, all := 0, int64(0)
		var last key
		for rows.Next() {
			var k key
			if err := rows.Scan(&k.ws, &k.subject); err != nil {
				return err
			}
			if len(bounds) == 0 || (n >= db.opt.mergeChunk && k != last) {
				bounds, n = append(bounds, k), 0
			}
			last = k
			n++
			all++
		}
		if err := rows.Err(); err != nil {
			return err
		}
		// The count as it is (db.mu held: nothing writes the table now); the
		// running count also took rows that erasures deleted since.
		db.auditRecent.Store(all)
		return nil
	}()
	if err != nil {
		return fmt.Errorf("sqlite: audit subjects merge: %w", err)
	}
	for i, lo := range bounds {
		cond, args := `(workspace_id, subject) >= (?, ?)`, []any{lo.ws, lo.subject}
		if i+1 < len(bounds) {
			cond += ` AND (workspace_id, subject) < (?, ?)`
			args = append(args, bounds[i+1].ws, bounds[i+1].subject)
		}
		if i > 0 {
			db.mu.Unlock() // let the writers through between ranges
			db.mu.Lock()
		}
		if err := db.mergeAuditSubjectRange(ctx, cond, args); err != nil {
			return err
		}
	}
	return nil
}

// mergeAuditSubjectRange moves the recent rows matching cond into the index
// in one transaction.
func (db *DB) mergeAuditSubjectRange(ctx context.Context, cond string, args []any) error {
	tx, err := db.write.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("sqlite: audit subjects merge: begin: %w", err)
	}
	defer tx.Rollback()
	if _, err := tx.ExecContext(ctx, `INSERT INTO audit_subjects (workspace_id, subject, idx)
		SELECT workspace_id, subject, idx FROM audit_subjects_recent WHERE `+cond+` ORDER BY workspace_id, subject, idx`, args...); err != nil {
		return fmt.Errorf("sqlite: audit subjects merge: %w", err)
	}
	res, err := tx.ExecContext(ctx, `DELETE FROM audit_subjects_recent WHERE `+cond, args...)
	if err != nil {
		return fmt.Errorf("sqlite: audit subjects merge: %w", err)
	}
	moved, err := res.RowsAffected()
	if err != nil {
		return fmt.Errorf("sqlite: audit subjects merge: %w", err)
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("sqlite: audit subjects merge: commit: %w", err)
	}
	db.auditRecent.Add(-moved)
	return nil
}

// pause waits d; false if the journal stops first.
func (j *auditJournal) pause(d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-j.stop:
		return false
	case <-t.C:
		return true
	}
}

// auditApplier moves pending records into the tables a little after they
// arrive, many per commit.
func (db *DB) auditApplier() {
	j := db.audit
	defer close(j.done)
	for {
		select {
		case <-j.stop:
			return
		case <-j.wake:
		}
		// Gather for a moment, unless much is pending already.
		j.mu.Lock()
		many := len(j.pending) >= auditApplyMax
		j.mu.Unlock()
		if !many && !j.pause(db.opt.AuditApplyDelay) {
			return
		}
		// What is pending now goes in commits of a chunk each, a pause
		// apart. Past the wrap size, what arrives meanwhile is chased down
		// too (at most 64 chunks more), so that writing starts over with a
		// short held apply (see auditWrapHeld) instead of waiting for a
		// quiet moment that a steady load never gives.
		j.mu.Lock()
		left := len(j.pending)
		j.mu.Unlock()
		var err error
		for n, extra := 0, 64; err == nil; n++ {
			if left <= 0 {
				if extra == 0 || !j.wrapDue() {
					break
				}
				extra--
			}
			if n > 0 && !j.pause(auditApplyPause) {
				return
			}
			db.mu.Lock()
			err = db.applyAuditSome(context.Background(), auditApplyChunk)
			db.mu.Unlock()
			left -= auditApplyChunk
		}
		// A failed merge leaves the rows where they were (reads see both
		// tables) and is retried as a failed apply is.
		if err == nil && db.auditRecent.Load() >= int64(db.opt.AuditSubjectsMergeAt) {
			db.mu.Lock()
			err = db.mergeAuditSubjects(context.Background())
			db.mu.Unlock()
		}
		if err != nil || j.hasPending() {
			// Failed (the records stay pending and durable; reads retry
			// too) or more arrived meanwhile: go round again.
			if err != nil && !j.pause(time.Second) {
				return
			}
			select {
			case j.wake <- struct{}{}:
			default:
			}
		}
	}
}

// closeAuditJournal stops the applier, moves what is pending into the tables
// and closes the file.
func (db *DB) closeAuditJournal() error {
	j := db.audit
	if j == nil {
		return nil
	}
	close(j.stop)
	<-j.done
	<-j.syncDone
	j.syncLazy()
	db.mu.Lock()
	err := db.applyAuditLocked(context.Background())
	db.mu.Unlock()
	return errors.Join(err, j.f.Close())
}
