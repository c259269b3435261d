package sqlite

import (
	"context"
	"database/sql"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/trustloop/trustloop"
	_ "modernc.org/sqlite" // registers the "sqlite" driver
)

//go:embed migration/*.sql
var migrationFS embed.FS

// FileName is the database file inside the data directory.
const FileName = "trustloop.db"

var _ trustloop.Store = (*DB)(nil)

// DB is the SQLite store.
type DB struct {
	path  string
	write *sql.DB // exactly one connection: SQLite has one writer anyway
	read  *sql.DB
	lock  *os.File

	// Now is the clock (injected for tests).
	Now func() time.Time

	eventStmts  map[int]*sql.Stmt // multi-row event inserts by row count
	inlineStmts map[int]*sql.Stmt // the same with the payload in the row
	keyStmts    map[int]*sql.Stmt // multi-row subject_keys inserts by row count
	// stmts caches prepared statements by (pool, query text): SQLite parses a
	// statement in tens of microseconds, as long as a hot read takes to run.
	stmts sync.Map // stmtKey → *sql.Stmt

	opt       Options
	mu        sync.Mutex // one AppendEvents at a time (the pipeline has one writer anyway)
	dd        *dedupe
	lastPrune time.Time
	walBig    atomic.Bool // set by the checkpointer: the WAL needs a full checkpoint

	// The persisted levels of the dedupe index (dedupe_runs.go), under mu.
	runs          []*run
	frz           *frozen
	frzNext       int // blocks of frz written once the current transaction commits
	frzReady      chan sorted
	nextRunID     int64   // id of the next run
	coveredUpto   int64   // dedupe_log rows up to this id are in runs
	dropRuns      []int64 // runs the current transaction deletes
	shortenedRuns int     // runs dropped early for DedupeMaxEntries
	dropEarly     int     // of dropRuns, those dropped early

	// auditTips: the audit logs' frontiers as the last append left them.
	auditTips trustloop.AuditTips
	audit     *auditJournal // nil on a read-only store (auditjournal.go)
	// auditRecent counts the rows of audit_subjects_recent (a trigger for
	// the merge, not a promise).
	auditRecent atomic.Int64

	seg    *segments // the sealed payloads (segment.go)
	segBuf []byte    // the writer's reused append buffer

	ckpt     *sql.DB // the checkpointer's own connection
	pageSize int64
	ckptStop chan struct{}
	ckptDone chan struct{}
}

// Options tune the embedded store.
type Options struct {
	// DedupeWindow is how long a messageId is remembered (API.md: at least 7
	// days). Default 8 days.
	DedupeWindow time.Duration
	// DedupeMemEntries is how many messageIds the dedupe index keeps in memory
	// (~30 bytes each) before it writes them out as a sorted run (~1.3 bytes each
	// in memory after). Default 1 million.
	DedupeMemEntries int
	// DedupeMaxEntries caps the whole dedupe index; past it the oldest keys are
	// forgotten early (DedupeShortened counts it). Default 1 billion; 0 keeps the
	// default.
	DedupeMaxEntries int
	// WALCheckpointBytes is the WAL size above which the writer folds the WAL
	// back into the database between commits. Default 64 MiB.
	WALCheckpointBytes int64
	// SegmentMaxBytes is the size at which the writer starts a new payload
	// segment (segment.go). Default 1 GiB.
	SegmentMaxBytes int64
	// AuditJournalBytes is the audit journal's size past which writing starts
	// over at its start once everything in it is applied (auditjournal.go).
	// Default 4 MiB; tests make it small.
	AuditJournalBytes int64
	// AuditApplyDelay is how long the audit journal's applier gathers records
	// before it moves them into the tables. Default 100 ms; tests that need
	// records left in the journal make it long.
	AuditApplyDelay time.Duration
	// AuditLazySyncDelay is how soon after a lazy audit append
	// (AppendAuditLazy) the journal is fdatasynced. Default 5 ms.
	AuditLazySyncDelay time.Duration
	// AuditSubjectsMergeAt is how many recent rows of the audit subjects'
	// index the applier gathers before it merges them into the index
	// (migration 013). Default 8,192; tests make it small.
	AuditSubjectsMergeAt int
	// mergeChunk is auditMergeChunk; tests make it small.
	mergeChunk int
}

// Open opens the database in dir with default options.
func Open(ctx context.Context, dir string) (*DB, error) {
	return OpenWith(ctx, dir, Options{})
}

// OpenWith opens (creating if needed) the database in dir, applies migrations and
// rebuilds the dedupe set. It takes an exclusive lock on the directory so two
// processes never write one log.
func OpenWith(ctx context.Context, dir string, opt Options) (*DB, error) {
	if opt.DedupeWindow <= 0 {
		opt.DedupeWindow = 8 * 24 * time.Hour
	}
	if opt.DedupeMaxEntries <= 0 {
		opt.DedupeMaxEntries = 1_000_000_000
	}
	if opt.DedupeMemEntries <= 0 {
		opt.DedupeMemEntries = 1_000_000
	}
	if opt.WALCheckpointBytes <= 0 {
		opt.WALCheckpointBytes = 64 << 20
	}
	if opt.SegmentMaxBytes <= 0 {
		opt.SegmentMaxBytes = defaultSegmentMaxBytes
	}
	if opt.AuditJournalBytes <= 0 {
		opt.AuditJournalBytes = auditJournalWrap
	}
	if opt.mergeChunk <= 0 {
		opt.mergeChunk = auditMergeChunk
	}
	if opt.AuditSubjectsMergeAt <= 0 {
		opt.AuditSubjectsMergeAt = auditSubjectsMergeAt
	}
	if opt.AuditApplyDelay <= 0 {
		opt.AuditApplyDelay = auditApplyDelay
	}
	if opt.AuditLazySyncDelay <= 0 {
		opt.AuditLazySyncDelay = auditLazySyncDelay
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("sqlite: data dir: %w", err)
	}
	lock, err := os.OpenFile(filepath.Join(dir, "trustloop.lock"), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("sqlite: lock: %w", err)
	}
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		lock.Close()
		return nil, &trustloop.Error{Code: trustloop.ECONFLICT,
			Message: fmt.Sprintf("The data directory %s is in use by another trustloop process.", dir),
			Hint:    "Stop the other process or pass another --data-dir."}
	}
	db := &DB{path: filepath.Join(dir, FileName), lock: lock, Now: time.Now, opt: opt,
		eventStmts: map[int]*sql.Stmt{}, inlineStmts: map[int]*sql.Stmt{}, keyStmts: map[int]*sql.Stmt{}}
	if err := db.open(ctx); err != nil {
		db.Close()
		return nil, err
	}
	return db, nil
}

// OpenReadOnly opens an existing database for reading only, without the directory
// lock, so `trustloop stats` can look at a store a running server holds. Only the
// read methods (Stats, ListEvents, Find*) may be called on it.
func OpenReadOnly(ctx context.Context, dir string) (*DB, error) {
	path := filepath.Join(dir, FileName)
	if _, err := os.Stat(path); err != nil {
		return nil, &trustloop.Error{Code: trustloop.ENOTFOUND, Message: fmt.Sprintf("No Trustloop database in %s.", dir),
			Hint: "Pass the --data-dir the server runs with."}
	}
	db := &DB{path: path, Now: time.Now}
	var err error
	db.read, err = sql.Open("sqlite", dsn(path, []string{"busy_timeout(10000)", "query_only(1)"}, ""))
	if err != nil {
		return nil, fmt.Errorf("sqlite: open: %w", err)
	}
	if err := db.read.PingContext(ctx); err != nil {
		db.read.Close()
		return nil, fmt.Errorf("sqlite: open: %w", err)
	}
	if err := db.openSegments(ctx, true); err != nil {
		db.read.Close()
		return nil, err
	}
	return db, nil
}

func dsn(path string, pragmas []string, extra string) string {
	q := url.Values{}
	for _, p := range pragmas {
		q.Add("_pragma", p)
	}
	s := "file:" + path + "?" + q.Encode()
	if extra != "" {
		s += "&" + extra
	}
	return s
}

func (db *DB) open(ctx context.Context) error {
	common := []string{"busy_timeout(10000)", "foreign_keys(1)"}
	var err error
	// synchronous=FULL: a commit is on disk (WAL fsynced) before it returns, which
	// is what lets the collector acknowledge. secure_delete overwrites deleted
	// content so erased rows do not linger in free pages.
	if err := db.create(ctx); err != nil {
		return err
	}
	db.write, err = sql.Open("sqlite", dsn(db.path, append(common,
		"journal_mode(WAL)", "synchronous(FULL)", "secure_delete(1)", "cache_size(-16384)", "wal_autocheckpoint(0)"), "_txlock=immediate"))
	if err != nil {
		return fmt.Errorf("sqlite: open: %w", err)
	}
	db.write.SetMaxOpenConns(1)
	db.write.SetMaxIdleConns(1)
	db.write.SetConnMaxLifetime(0)
	if err := db.migrate(ctx); err != nil {
		return err
	}
	if err := db.prepareEventStmts(ctx); err != nil {
		return err
	}
	if err := db.loadDedupe(ctx); err != nil {
		return err
	}
	if err := db.openSegments(ctx, false); err != nil {
		return err
	}
	if err := db.openAuditJournal(ctx, db.opt.AuditJournalBytes); err != nil {
		return err
	}
	// File permissions: the database holds only ciphertext and blind indexes, but
	// there is no reason for anyone else to read it.
	for _, suffix := range []string{"", "-wal", "-shm"} {
		os.Chmod(db.path+suffix, 0o600)
	}
	db.read, err = sql.Open("sqlite", dsn(db.path, append(common, "query_only(1)", "cache_size(-4096)"), ""))
	if err != nil {
		return fmt.Errorf("sqlite: open: %w", err)
	}
	db.read.SetMaxOpenConns(4)
	db.read.SetMaxIdleConns(4)
	// Checkpoints copy the WAL back into the database file. Left to SQLite they run
	// inside whichever commit crosses the threshold, stalling the ingest writer for
	// the copy; a separate connection does them in the background instead
	// (PASSIVE: never blocks the writer or readers).
	db.ckpt, err = sql.Open("sqlite", dsn(db.path, append(common, "secure_delete(1)"), ""))
	if err != nil {
		return fmt.Errorf("sqlite: open: %w", err)
	}
	db.ckpt.SetMaxOpenConns(1)
	// The file's own page size (files made before 4 KiB keep 16 KiB): the
	// checkpointer turns WAL frames into bytes with it.
	if err := db.ckpt.QueryRow(`PRAGMA page_size`).Scan(&db.pageSize); err != nil {
		return fmt.Errorf("sqlite: open: page size: %w", err)
	}
	db.ckptStop, db.ckptDone = make(chan struct{}), make(chan struct{})
	go db.checkpointer()
	return nil
}

func (db *DB) checkpointer() {
	defer close(db.ckptDone)
	for {
		var busy, logFrames, done int64
		err := db.ckpt.QueryRow(`PRAGMA wal_checkpoint(PASSIVE)`).Scan(&busy, &logFrames, &done)
		pause := 200 * time.Millisecond
		if err == nil && logFrames > 0 {
			// Under sustained writes a passive checkpoint never quite catches up
			// (the writer appends while it copies), so the WAL would never start
			// over and would grow without end. Once it is big and the copy is
			// nearly caught up, the writer runs a RESTART checkpoint between two
			// commits: it then copies only the last few frames.
			size := logFrames * db.pageSize
			if size > db.opt.WALCheckpointBytes && (logFrames-done < 1024 || size > 4*db.opt.WALCheckpointBytes) {
				db.walBig.Store(true)
			}
			if done < logFrames || size > db.opt.WALCheckpointBytes {
				pause = 10 * time.Millisecond
			}
		}
		select {
		case <-db.ckptStop:
			return
		case <-time.After(pause):
		}
	}
}

// create makes a new database file with 4 KiB pages. The event payloads live in
// segment files, so what the file takes are small rows scattered over B-trees:
// a profile flush, an audit record, a key. A commit writes every page it
// changed whole to the WAL, so smaller pages write less. Measured against the
// 16 KiB pages files had before (alternating runs, docs/performance.md): the
// batch collector the same, ingest with --profiles +25–30 %, recorded
// recommendations +20 %. The page size can only be
// chosen before the first write, which the driver's sorted pragmas (journal_mode
// before page_size) would otherwise make.
func (db *DB) create(ctx context.Context) error {
	if _, err := os.Stat(db.path); err == nil {
		return nil
	}
	c, err := sql.Open("sqlite", dsn(db.path, nil, ""))
	if err != nil {
		return fmt.Errorf("sqlite: create: %w", err)
	}
	defer c.Close()
	for _, p := range []string{"PRAGMA page_size = 4096", "PRAGMA journal_mode = WAL"} {
		if _, err := c.ExecContext(ctx, p); err != nil {
			return fmt.Errorf("sqlite: create: %w", err)
		}
	}
	return nil
}

// migrate applies the embedded migrations not yet applied, each in its own
// transaction, in file-name order.
func (db *DB) migrate(ctx context.Context) error {
	if _, err := db.write.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (name TEXT PRIMARY KEY, applied_at INTEGER NOT NULL)`); err != nil {
		return fmt.Errorf("sqlite: migrations table: %w", err)
	}
	names, err := fs.Glob(migrationFS, "migration/*.sql")
	if err != nil {
		return err
	}
	sort.Strings(names)
	for _, name := range names {
		if err := db.migrateFile(ctx, name); err != nil {
			return fmt.Errorf("sqlite: migration %s: %w", name, err)
		}
	}
	return nil
}

func (db *DB) migrateFile(ctx context.Context, name string) error {
	tx, err := db.write.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	var n int
	if err := tx.QueryRowContext(ctx, `SELECT COUNT(*) FROM schema_migrations WHERE name = ?`, name).Scan(&n); err != nil {
		return err
	} else if n > 0 {
		return nil
	}
	b, err := migrationFS.ReadFile(name)
	if err != nil {
		return err
	}
	if _, err := tx.ExecContext(ctx, string(b)); err != nil {
		return err
	}
	if _, err := tx.ExecContext(ctx, `INSERT INTO schema_migrations (name, applied_at) VALUES (?, ?)`, name, db.Now().UnixMilli()); err != nil {
		return err
	}
	return tx.Commit()
}

// Ping checks both connections.
func (db *DB) Ping(ctx context.Context) error {
	if db.write == nil {
		return db.read.PingContext(ctx)
	}
	if err := db.write.PingContext(ctx); err != nil {
		return err
	}
	return db.read.PingContext(ctx)
}

// Checkpoint copies the WAL into the database and truncates it.
func (db *DB) Checkpoint(ctx context.Context) error {
	_, err := db.write.ExecContext(ctx, `PRAGMA wal_checkpoint(TRUNCATE)`)
	return err
}

// Close closes the database and releases the directory lock.
func (db *DB) Close() error {
	var errs []error
	if db.audit != nil {
		errs = append(errs, db.closeAuditJournal())
	}
	if db.ckptStop != nil {
		close(db.ckptStop)
		<-db.ckptDone
		errs = append(errs, db.ckpt.Close())
		// Leave a small WAL behind: fold it into the database on a clean stop.
		if _, err := db.write.Exec(`PRAGMA wal_checkpoint(TRUNCATE)`); err != nil {
			errs = append(errs, err)
		}
	}
	db.stmts.Range(func(_, v any) bool {
		errs = append(errs, v.(*sql.Stmt).Close())
		return true
	})
	for _, s := range db.eventStmts {
		errs = append(errs, s.Close())
	}
	for _, s := range db.inlineStmts {
		errs = append(errs, s.Close())
	}
	for _, s := range db.keyStmts {
		errs = append(errs, s.Close())
	}
	if db.read != nil {
		errs = append(errs, db.read.Close())
	}
	if db.seg != nil {
		errs = append(errs, db.seg.close())
	}
	if db.write != nil {
		errs = append(errs, db.write.Close())
	}
	db.mu.Lock()
	if db.dd != nil {
		db.dd.release()
	}
	db.takeSorted(true)
	db.mu.Unlock()
	if db.lock != nil {
		errs = append(errs, db.lock.Close())
	}
	return errors.Join(errs...)
}

// openSegments finds where the last committed payload ends and opens the segment
// files there, cutting off anything a crash left past it.
func (db *DB) openSegments(ctx context.Context, readOnly bool) error {
	var num, end int64
	if !readOnly {
		err := db.write.QueryRowContext(ctx, `SELECT seg, off + len FROM events WHERE seg IS NOT NULL ORDER BY seq DESC LIMIT 1`).Scan(&num, &end)
		if err != nil && !errors.Is(err, sql.ErrNoRows) {
			return fmt.Errorf("sqlite: segments: %w", err)
		}
	}
	s, err := openSegments(filepath.Dir(db.path), num, end, db.opt.SegmentMaxBytes, readOnly)
	if err != nil {
		return err
	}
	db.seg = s
	return nil
}

// Path is the database file.
func (db *DB) Path() string { return db.path }

// marks returns n comma-separated placeholders.
func marks(n int) string { return strings.TrimSuffix(strings.Repeat("?,", n), ",") }

// placeholders returns rows parenthesized groups of cols placeholders.
func placeholders(rows, cols int) string { return repeatRow(rows, "("+marks(cols)+")") }

// repeatRow returns rows copies of row, comma-separated.
func repeatRow(rows int, row string) string {
	var b strings.Builder
	for i := 0; i < rows; i++ {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(row)
	}
	return b.String()
}

func ms(t time.Time) int64 { return t.UnixMilli() }

func fromMS(v int64) time.Time { return time.UnixMilli(v).UTC() }

type stmtKey struct {
	write bool
	query string
}

// prepared returns the statement of query prepared on the read pool (or the
// writer connection), preparing it once.
func (db *DB) prepared(ctx context.Context, write bool, query string) (*sql.Stmt, error) {
	k := stmtKey{write, query}
	if v, ok := db.stmts.Load(k); ok {
		return v.(*sql.Stmt), nil
	}
	pool := db.read
	if write {
		pool = db.write
	}
	st, err := pool.PrepareContext(ctx, query)
	if err != nil {
		return nil, err
	}
	if v, loaded := db.stmts.LoadOrStore(k, st); loaded {
		st.Close()
		return v.(*sql.Stmt), nil
	}
	return st, nil
}

// query runs a hot read through a prepared statement.
func (db *DB) query(ctx context.Context, query string, args ...any) (*sql.Rows, error) {
	st, err := db.prepared(ctx, false, query)
	if err != nil {
		return nil, err
	}
	return st.QueryContext(ctx, args...)
}

// queryRow is query for one row.
func (db *DB) queryRow(ctx context.Context, query string, args ...any) *sql.Row {
	st, err := db.prepared(ctx, false, query)
	if err != nil {
		// A *sql.Row carrying the error: QueryRowContext on the pool reports it
		// at Scan the same way.
		return db.read.QueryRowContext(ctx, query, args...)
	}
	return st.QueryRowContext(ctx, args...)
}

// txStmt returns query, prepared on the writer connection, bound to tx. The
// statement must have been prepared (db.prepared) before tx began: the writer
// pool's one connection is the transaction's, so preparing now would wait on
// it forever. An unprepared query is prepared inside tx, uncached.
func (db *DB) txStmt(ctx context.Context, tx *sql.Tx, query string) (*sql.Stmt, error) {
	if v, ok := db.stmts.Load(stmtKey{true, query}); ok {
		return tx.StmtContext(ctx, v.(*sql.Stmt)), nil
	}
	return tx.PrepareContext(ctx, query)
}
