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

	eventStmts map[int]*sql.Stmt // multi-row event inserts by row count
}

// Open opens (creating if needed) the database in dir and applies migrations. It
// takes an exclusive lock on the directory so two processes never write one log.
func Open(ctx context.Context, dir string) (*DB, error) {
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
			Message: fmt.Sprintf("the data directory %s is in use by another trustloop process", dir),
			Hint:    "Stop the other process or pass another --data-dir."}
	}
	db := &DB{path: filepath.Join(dir, FileName), lock: lock, Now: time.Now, eventStmts: map[int]*sql.Stmt{}}
	if err := db.open(ctx); err != nil {
		db.Close()
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
	db.write, err = sql.Open("sqlite", dsn(db.path, append(common,
		"journal_mode(WAL)", "synchronous(FULL)", "secure_delete(1)", "cache_size(-65536)"), "_txlock=immediate"))
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
	// File permissions: the database holds only ciphertext and blind indexes, but
	// there is no reason for anyone else to read it.
	for _, suffix := range []string{"", "-wal", "-shm"} {
		os.Chmod(db.path+suffix, 0o600)
	}
	db.read, err = sql.Open("sqlite", dsn(db.path, append(common, "query_only(1)", "cache_size(-16384)"), ""))
	if err != nil {
		return fmt.Errorf("sqlite: open: %w", err)
	}
	db.read.SetMaxOpenConns(4)
	db.read.SetMaxIdleConns(4)
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
	for _, s := range db.eventStmts {
		errs = append(errs, s.Close())
	}
	if db.read != nil {
		errs = append(errs, db.read.Close())
	}
	if db.write != nil {
		errs = append(errs, db.write.Close())
	}
	if db.lock != nil {
		errs = append(errs, db.lock.Close())
	}
	return errors.Join(errs...)
}

// Path is the database file.
func (db *DB) Path() string { return db.path }

// marks returns n comma-separated placeholders.
func marks(n int) string { return strings.TrimSuffix(strings.Repeat("?,", n), ",") }

// placeholders returns rows parenthesized groups of cols placeholders.
func placeholders(rows, cols int) string {
	var b strings.Builder
	row := "(" + marks(cols) + ")"
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
