package sqlite

import (
	"context"
	"fmt"
	"time"

	"github.com/trustloop/trustloop"
)

// AddDailyCounts adds counts to the stored ones in one transaction.
func (db *DB) AddDailyCounts(ctx context.Context, counts []trustloop.DailyCount) error {
	if err := trustloop.ValidateDailyCounts(counts); err != nil {
		return err
	}
	if len(counts) == 0 {
		return nil
	}
	db.mu.Lock()
	defer db.mu.Unlock()
	tx, err := db.write.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("sqlite: add daily counts: %w", err)
	}
	defer tx.Rollback()
	st, err := tx.PrepareContext(ctx, `INSERT INTO daily_counts (workspace_id, day, name, n) VALUES (?, ?, ?, ?)
		ON CONFLICT (workspace_id, day, name) DO UPDATE SET n = n + excluded.n`)
	if err != nil {
		return fmt.Errorf("sqlite: add daily counts: %w", err)
	}
	defer st.Close()
	for _, c := range counts {
		if _, err := st.ExecContext(ctx, c.WorkspaceID, ms(trustloop.UTCDay(c.Day)), c.Name, c.N); err != nil {
			return fmt.Errorf("sqlite: add daily counts: %w", err)
		}
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("sqlite: add daily counts: %w", err)
	}
	return nil
}

// DailyCounts returns a workspace's counts from since's day on.
func (db *DB) DailyCounts(ctx context.Context, workspaceID int64, since time.Time) ([]trustloop.DailyCount, error) {
	rows, err := db.read.QueryContext(ctx, `SELECT day, name, n FROM daily_counts WHERE workspace_id = ? AND day >= ?
		ORDER BY day, name`, workspaceID, ms(trustloop.UTCDay(since)))
	if err != nil {
		return nil, fmt.Errorf("sqlite: daily counts: %w", err)
	}
	defer rows.Close()
	var out []trustloop.DailyCount
	for rows.Next() {
		c := trustloop.DailyCount{WorkspaceID: workspaceID}
		var day int64
		if err := rows.Scan(&day, &c.Name, &c.N); err != nil {
			return nil, fmt.Errorf("sqlite: daily counts: %w", err)
		}
		c.Day = fromMS(day)
		out = append(out, c)
	}
	return out, rows.Err()
}

// ConsentDaily counts a workspace's consent records per day, purpose and state.
// Days are the UTC midnight starting them, in milliseconds like every time of
// the schema (86,400,000 a day). The day is computed from the stored milliseconds: at minus its remainder in
// the day, the remainder taken non-negative so times before 1970 fall on
// their day too (% truncates toward zero in SQLite and PostgreSQL alike).
func (db *DB) ConsentDaily(ctx context.Context, workspaceID int64, since time.Time) ([]trustloop.ConsentDay, error) {
	rows, err := db.read.QueryContext(ctx, `SELECT at - ((at % 86400000) + 86400000) % 86400000 AS day, purpose, state, COUNT(*)
		FROM consent_records WHERE workspace_id = ? AND at >= ?
		GROUP BY day, purpose, state ORDER BY day, purpose, state`, workspaceID, ms(trustloop.UTCDay(since)))
	if err != nil {
		return nil, fmt.Errorf("sqlite: consent daily: %w", err)
	}
	defer rows.Close()
	var out []trustloop.ConsentDay
	for rows.Next() {
		var c trustloop.ConsentDay
		var day int64
		if err := rows.Scan(&day, &c.Purpose, &c.State, &c.N); err != nil {
			return nil, fmt.Errorf("sqlite: consent daily: %w", err)
		}
		c.Day = fromMS(day)
		out = append(out, c)
	}
	return out, rows.Err()
}
