package postgres

import (
	"context"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"sort"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/trustloop/trustloop"
)

//go:embed migration/*.sql
var migrationFS embed.FS

var _ trustloop.Store = (*DB)(nil)

// DB is the PostgreSQL store.
type DB struct {
	pool *pgxpool.Pool
	// Now is the clock (injected for tests).
	Now func() time.Time
	// auditTips: the audit logs' frontiers as this node's last append left them.
	auditTips trustloop.AuditTips
}

// Open connects to the database at url and applies migrations.
func Open(ctx context.Context, url string) (*DB, error) {
	cfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		return nil, &trustloop.Error{Code: trustloop.EINVALID, Message: "The database URL is not valid.",
			Hint: "Use postgres://user:password@host:5432/database?sslmode=disable"}
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("postgres: connect: %w", err)
	}
	db := &DB{pool: pool, Now: time.Now}
	if err := db.migrate(ctx); err != nil {
		pool.Close()
		return nil, err
	}
	return db, nil
}

// migrate applies the embedded migrations. Several nodes may start at once: the
// schema_migrations row lock (SELECT … FOR UPDATE on a lock row) serializes them
// without advisory locks, which distributed PostgreSQL-compatible databases lack.
func (db *DB) migrate(ctx context.Context) error {
	if _, err := db.pool.Exec(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (name TEXT PRIMARY KEY, applied_at BIGINT NOT NULL)`); err != nil {
		if !isUniqueViolation(err) { // a concurrent node won the CREATE race
			return fmt.Errorf("postgres: migrations table: %w", err)
		}
	}
	if _, err := db.pool.Exec(ctx, `INSERT INTO schema_migrations (name, applied_at) VALUES ('lock', 0) ON CONFLICT DO NOTHING`); err != nil {
		return fmt.Errorf("postgres: migrations lock row: %w", err)
	}
	names, err := fs.Glob(migrationFS, "migration/*.sql")
	if err != nil {
		return err
	}
	sort.Strings(names)
	return retry(ctx, func() error {
		tx, err := db.pool.Begin(ctx)
		if err != nil {
			return err
		}
		defer tx.Rollback(ctx)
		if _, err := tx.Exec(ctx, `SELECT name FROM schema_migrations WHERE name = 'lock' FOR UPDATE`); err != nil {
			return fmt.Errorf("postgres: migrations lock: %w", err)
		}
		for _, name := range names {
			var n int
			if err := tx.QueryRow(ctx, `SELECT COUNT(*) FROM schema_migrations WHERE name = $1`, name).Scan(&n); err != nil {
				return err
			} else if n > 0 {
				continue
			}
			b, err := migrationFS.ReadFile(name)
			if err != nil {
				return err
			}
			if _, err := tx.Exec(ctx, string(b)); err != nil {
				return fmt.Errorf("postgres: migration %s: %w", name, err)
			}
			if _, err := tx.Exec(ctx, `INSERT INTO schema_migrations (name, applied_at) VALUES ($1, $2)`, name, db.Now().UnixMilli()); err != nil {
				return err
			}
		}
		return tx.Commit(ctx)
	})
}

// retry runs fn again on serialization failures (40001) and deadlocks (40P01),
// which distributed databases return under contention, a few times with backoff.
func retry(ctx context.Context, fn func() error) error {
	var err error
	for attempt := 0; attempt < 5; attempt++ {
		if err = fn(); err == nil || !isRetryable(err) {
			return err
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(time.Duration(attempt+1) * 10 * time.Millisecond):
		}
	}
	return err
}

func isRetryable(err error) bool {
	var pe *pgconn.PgError
	return errors.As(err, &pe) && (pe.Code == "40001" || pe.Code == "40P01")
}

func isUniqueViolation(err error) bool {
	var pe *pgconn.PgError
	return errors.As(err, &pe) && pe.Code == "23505"
}

// Ping checks the pool.
func (db *DB) Ping(ctx context.Context) error { return db.pool.Ping(ctx) }

// Close closes the pool.
func (db *DB) Close() error {
	db.pool.Close()
	return nil
}

func ms(t time.Time) int64 { return t.UnixMilli() }

func fromMS(v int64) time.Time { return time.UnixMilli(v).UTC() }

// AppendEvents writes keys, events and the batch's projection in one transaction,
// with one array-bound statement per table whatever the batch size.
func (db *DB) AppendEvents(ctx context.Context, b *trustloop.CommitBatch) (int, error) {
	// Repeats inside the batch are dropped here, the first copy kept, so that each
	// (source, hash) the insert returns names exactly one index of b.Events.
	type eventKey struct {
		source int64
		hash   string
	}
	at := make(map[eventKey]int, len(b.Events))
	unique := make([]int, 0, len(b.Events))
	for i := range b.Events {
		k := eventKey{b.Events[i].SourceID, string(b.Events[i].MessageHash)}
		if _, dup := at[k]; dup {
			continue
		}
		at[k] = i
		unique = append(unique, i)
	}
	var stored int
	err := retry(ctx, func() error {
		stored = 0
		tx, err := db.pool.Begin(ctx)
		if err != nil {
			return err
		}
		defer tx.Rollback(ctx)
		if n := len(b.NewKeys); n > 0 {
			ids, wss, created := make([]int64, n), make([]int64, n), make([]int64, n)
			blinds, wrapped := make([][]byte, n), make([][]byte, n)
			for i, k := range b.NewKeys {
				ids[i], wss[i], blinds[i], wrapped[i], created[i] = k.ID, k.WorkspaceID, k.Blind, k.Wrapped, ms(k.CreatedAt)
			}
			tag, err := tx.Exec(ctx, `INSERT INTO subject_keys (id, workspace_id, blind, wrapped, created_at)
				SELECT * FROM unnest($1::bigint[], $2::bigint[], $3::bytea[], $4::bytea[], $5::bigint[])
				ON CONFLICT DO NOTHING`, ids, wss, blinds, wrapped, created)
			if err != nil {
				return err
			}
			if tag.RowsAffected() != int64(n) {
				return trustloop.Errorf(trustloop.ECONFLICT, "a subject key was created concurrently").
					WithHint("Retry the request; another one created the key at the same moment.")
			}
		}
		if len(unique) == 0 {
			return tx.Commit(ctx)
		}
		n := len(unique)
		wss, srcs, keys, types, recs, tss := make([]int64, n), make([]int64, n), make([]int64, n), make([]int16, n), make([]int64, n), make([]int64, n)
		hashes, payloads := make([][]byte, n), make([][]byte, n)
		for j, i := range unique {
			e := &b.Events[i]
			wss[j], srcs[j], hashes[j], keys[j], types[j] = e.WorkspaceID, e.SourceID, e.MessageHash, e.KeyID, int16(e.Type)
			recs[j], tss[j], payloads[j] = ms(e.ReceivedAt), ms(e.Timestamp), e.Payload
		}
		const insert = `INSERT INTO events (workspace_id, source_id, message_hash, key_id, type, received_at, ts, payload)
			SELECT * FROM unnest($1::bigint[], $2::bigint[], $3::bytea[], $4::bigint[], $5::smallint[], $6::bigint[], $7::bigint[], $8::bytea[])
			ON CONFLICT (source_id, message_hash) DO NOTHING`
		if b.Project == nil {
			tag, err := tx.Exec(ctx, insert, wss, srcs, hashes, keys, types, recs, tss, payloads)
			if err != nil {
				return err
			}
			stored = int(tag.RowsAffected())
			return tx.Commit(ctx)
		}
		// The projector needs to know which events are new, and where they went:
		// the rows the insert returns are exactly those not stored before (a
		// repeat from an earlier commit, or one a concurrent writer just stored,
		// returns nothing).
		rows, err := tx.Query(ctx, insert+` RETURNING seq, source_id, message_hash`, wss, srcs, hashes, keys, types, recs, tss, payloads)
		if err != nil {
			return err
		}
		type newEvent struct {
			index int
			seq   int64
		}
		var got []newEvent
		var seq, src int64
		var hash []byte
		_, err = pgx.ForEachRow(rows, []any{&seq, &src, &hash}, func() error {
			i, ok := at[eventKey{src, string(hash)}]
			if !ok {
				return errors.New("postgres: append: the insert returned an event not in the batch")
			}
			got = append(got, newEvent{i, seq})
			return nil
		})
		if err != nil {
			return err
		}
		stored = len(got)
		if len(got) > 0 {
			// RETURNING promises no order; the projector gets the batch's.
			sort.Slice(got, func(a, b int) bool { return got[a].index < got[b].index })
			fresh, seqs := make([]int, len(got)), make([]int64, len(got))
			for j, g := range got {
				fresh[j], seqs[j] = g.index, g.seq
			}
			changes, err := b.Project(ctx, fresh, seqs)
			if err != nil {
				return err
			}
			if changes != nil {
				if err := writeProjection(ctx, tx, changes); err != nil {
					return err
				}
			}
		}
		return tx.Commit(ctx)
	})
	if err != nil {
		stored = 0
		if trustloop.ErrorCode(err) == trustloop.EINTERNAL {
			return 0, fmt.Errorf("postgres: append: %w", err)
		}
	}
	return stored, err
}

// ListEvents returns events of a workspace after a log position, in order.
func (db *DB) ListEvents(ctx context.Context, workspaceID, after int64, limit int) ([]trustloop.StoredEvent, error) {
	return db.queryEvents(ctx, "list events", `SELECT seq, workspace_id, source_id, message_hash, key_id, type, received_at, ts, payload
		FROM events WHERE workspace_id = $1 AND seq > $2 ORDER BY seq LIMIT $3`, workspaceID, after, limit)
}

// queryEvents runs a query selecting the event columns.
func (db *DB) queryEvents(ctx context.Context, op, q string, args ...any) ([]trustloop.StoredEvent, error) {
	rows, err := db.pool.Query(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("postgres: %s: %w", op, err)
	}
	defer rows.Close()
	var out []trustloop.StoredEvent
	for rows.Next() {
		var e trustloop.StoredEvent
		var typ int16
		var rec, ts int64
		if err := rows.Scan(&e.Seq, &e.WorkspaceID, &e.SourceID, &e.MessageHash, &e.KeyID, &typ, &rec, &ts, &e.Payload); err != nil {
			return nil, fmt.Errorf("postgres: %s: %w", op, err)
		}
		e.Type, e.ReceivedAt, e.Timestamp = trustloop.EventType(typ), fromMS(rec), fromMS(ts)
		out = append(out, e)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("postgres: %s: %w", op, err)
	}
	return out, nil
}

// FindSubjectKeys looks keys up by blind index.
func (db *DB) FindSubjectKeys(ctx context.Context, workspaceID int64, blinds [][]byte) (map[string]trustloop.SubjectKey, error) {
	out := make(map[string]trustloop.SubjectKey, len(blinds))
	err := db.subjectKeys(ctx, workspaceID, `blind = ANY($2::bytea[])`, blinds, func(k trustloop.SubjectKey) { out[string(k.Blind)] = k })
	return out, err
}

// subjectKeys runs a subject_keys query of the workspace filtered by where (with
// arg as $2), calling each for every key.
func (db *DB) subjectKeys(ctx context.Context, workspaceID int64, where string, arg any, each func(trustloop.SubjectKey)) error {
	rows, err := db.pool.Query(ctx, `SELECT id, blind, wrapped, created_at FROM subject_keys
		WHERE workspace_id = $1 AND `+where, workspaceID, arg)
	if err != nil {
		return fmt.Errorf("postgres: find subject keys: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		k := trustloop.SubjectKey{WorkspaceID: workspaceID}
		var created int64
		if err := rows.Scan(&k.ID, &k.Blind, &k.Wrapped, &created); err != nil {
			return fmt.Errorf("postgres: find subject keys: %w", err)
		}
		k.CreatedAt = fromMS(created)
		each(k)
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("postgres: find subject keys: %w", err)
	}
	return nil
}

// Bootstrap creates the first workspace, source and admin key on an empty store.
// Two nodes starting on one empty database race on the workspace name's unique
// constraint; the loser sees created=false.
func (db *DB) Bootstrap(ctx context.Context, b *trustloop.Bootstrap) (bool, error) {
	return db.createWorkspace(ctx, b, true)
}

// CreateWorkspace creates another workspace with its source and admin key.
func (db *DB) CreateWorkspace(ctx context.Context, b *trustloop.Bootstrap) error {
	created, err := db.createWorkspace(ctx, b, false)
	if err == nil && !created {
		return trustloop.Errorf(trustloop.ECONFLICT, "A workspace with this name exists.").WithHint("Choose another name.")
	}
	return err
}

// createWorkspace creates b's workspace, source and admin key in one
// transaction; with first, only on a store that holds no workspace yet.
func (db *DB) createWorkspace(ctx context.Context, b *trustloop.Bootstrap, first bool) (bool, error) {
	tx, err := db.pool.Begin(ctx)
	if err != nil {
		return false, fmt.Errorf("postgres: bootstrap: %w", err)
	}
	defer tx.Rollback(ctx)
	var n int
	if err := tx.QueryRow(ctx, `SELECT COUNT(*) FROM workspaces`).Scan(&n); err != nil {
		return false, fmt.Errorf("postgres: bootstrap: %w", err)
	} else if n > 0 && first {
		return false, nil
	}
	now := db.Now().UTC()
	w, s, k := &b.Workspace, &b.Source, &b.AdminKey
	w.CreatedAt, s.CreatedAt, k.CreatedAt = now, now, now
	if err := tx.QueryRow(ctx, `INSERT INTO workspaces (name, index_key, created_at) VALUES ($1, $2, $3) RETURNING id`,
		w.Name, w.IndexKey, ms(now)).Scan(&w.ID); err != nil {
		if isUniqueViolation(err) {
			return false, nil
		}
		return false, fmt.Errorf("postgres: bootstrap: workspace: %w", err)
	}
	s.WorkspaceID, k.WorkspaceID = w.ID, w.ID
	if err := tx.QueryRow(ctx, `INSERT INTO sources (workspace_id, name, write_key_hash, allowed_origins, created_at) VALUES ($1, $2, $3, $4, $5) RETURNING id`,
		w.ID, s.Name, s.WriteKeyHash, strings.Join(s.AllowedOrigins, " "), ms(now)).Scan(&s.ID); err != nil {
		return false, fmt.Errorf("postgres: bootstrap: source: %w", err)
	}
	if err := tx.QueryRow(ctx, `INSERT INTO api_keys (workspace_id, name, secret_hash, roles, purposes, created_at) VALUES ($1, $2, $3, $4, $5, $6) RETURNING id`,
		w.ID, k.Name, k.SecretHash, strings.Join(k.Roles, " "), strings.Join(k.Purposes, " "), ms(now)).Scan(&k.ID); err != nil {
		return false, fmt.Errorf("postgres: bootstrap: api key: %w", err)
	}
	if err := tx.Commit(ctx); err != nil {
		if isUniqueViolation(err) {
			return false, nil
		}
		return false, fmt.Errorf("postgres: bootstrap: %w", err)
	}
	return true, nil
}

// ListWorkspaces returns every workspace.
func (db *DB) ListWorkspaces(ctx context.Context) ([]*trustloop.Workspace, error) {
	rows, err := db.pool.Query(ctx, `SELECT id, name, index_key, created_at FROM workspaces ORDER BY id`)
	if err != nil {
		return nil, fmt.Errorf("postgres: list workspaces: %w", err)
	}
	defer rows.Close()
	var out []*trustloop.Workspace
	for rows.Next() {
		w := &trustloop.Workspace{}
		var created int64
		if err := rows.Scan(&w.ID, &w.Name, &w.IndexKey, &created); err != nil {
			return nil, fmt.Errorf("postgres: list workspaces: %w", err)
		}
		w.CreatedAt = fromMS(created)
		out = append(out, w)
	}
	return out, rows.Err()
}

// FindWorkspace returns a workspace by id.
func (db *DB) FindWorkspace(ctx context.Context, id int64) (*trustloop.Workspace, error) {
	w := &trustloop.Workspace{}
	var created int64
	err := db.pool.QueryRow(ctx, `SELECT id, name, index_key, created_at FROM workspaces WHERE id = $1`, id).
		Scan(&w.ID, &w.Name, &w.IndexKey, &created)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, trustloop.Errorf(trustloop.ENOTFOUND, "Workspace not found.").
			WithHint("The id is wrong or the workspace was deleted; an API key works on its own workspace.")
	} else if err != nil {
		return nil, fmt.Errorf("postgres: find workspace: %w", err)
	}
	w.CreatedAt = fromMS(created)
	return w, nil
}

// FindSourceByWriteKeyHash returns the source of a write key.
func (db *DB) FindSourceByWriteKeyHash(ctx context.Context, hash []byte) (*trustloop.Source, error) {
	s := &trustloop.Source{}
	var origins string
	var created int64
	err := db.pool.QueryRow(ctx, `SELECT id, workspace_id, name, write_key_hash, allowed_origins, created_at
		FROM sources WHERE write_key_hash = $1`, hash).Scan(&s.ID, &s.WorkspaceID, &s.Name, &s.WriteKeyHash, &origins, &created)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, trustloop.Errorf(trustloop.ENOTFOUND, "Source not found.").
			WithHint("Check the source id: the console lists the sources of the workspace.")
	} else if err != nil {
		return nil, fmt.Errorf("postgres: find source: %w", err)
	}
	s.AllowedOrigins = strings.Fields(origins)
	s.CreatedAt = fromMS(created)
	return s, nil
}

// Stats counts rows, live profiles only.
func (db *DB) Stats(ctx context.Context) (trustloop.Stats, error) {
	var st trustloop.Stats
	err := db.pool.QueryRow(ctx, `SELECT (SELECT COUNT(*) FROM workspaces), (SELECT COUNT(*) FROM sources),
		(SELECT COUNT(*) FROM events), (SELECT COUNT(*) FROM subject_keys),
		(SELECT COUNT(*) FROM profiles WHERE merged_into = 0), (SELECT COUNT(*) FROM identities),
		(SELECT COUNT(*) FROM consent_records), (SELECT COALESCE(SUM(size), 0) FROM audit_heads)`).
		Scan(&st.Workspaces, &st.Sources, &st.Events, &st.SubjectKeys, &st.Profiles, &st.Identities, &st.ConsentRecords, &st.AuditEntries)
	if err != nil {
		return st, fmt.Errorf("postgres: stats: %w", err)
	}
	return st, nil
}
