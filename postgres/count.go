package postgres

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/trustloop/trustloop"
)

// AddDailyCounts adds counts to the stored ones in one statement. Several
// nodes flush into the same rows: the counts are summed per key first (one
// statement may not update a row twice) and sorted, so two nodes' upserts
// take the row locks in one order and cannot deadlock each other.
func (db *DB) AddDailyCounts(ctx context.Context, counts []trustloop.DailyCount) error {
	if err := trustloop.ValidateDailyCounts(counts); err != nil {
		return err
	}
	if len(counts) == 0 {
		return nil
	}
	type key struct {
		ws, day int64
		name    string
	}
	sum := make(map[key]int64, len(counts))
	for _, c := range counts {
		sum[key{c.WorkspaceID, ms(trustloop.UTCDay(c.Day)), c.Name}] += c.N
	}
	keys := make([]key, 0, len(sum))
	for k := range sum {
		keys = append(keys, k)
	}
	slices.SortFunc(keys, func(a, b key) int {
		return cmp.Or(cmp.Compare(a.ws, b.ws), cmp.Compare(a.day, b.day), cmp.Compare(a.name, b.name))
	})
	wss, days, names, ns := make([]int64, len(keys)), make([]int64, len(keys)), make([]string, len(keys)), make([]int64, len(keys))
	for i, k := range keys {
		wss[i], days[i], names[i], ns[i] = k.ws, k.day, k.name, sum[k]
	}
	err := retry(ctx, func() error {
		_, err := db.pool.Exec(ctx, `INSERT INTO daily_counts (workspace_id, day, name, n)
			SELECT * FROM unnest($1::bigint[], $2::bigint[], $3::text[], $4::bigint[])
			ON CONFLICT (workspace_id, day, name) DO UPDATE SET n = daily_counts.n + EXCLUDED.n`, wss, days, names, ns)
		return err
	})
	if err != nil {
		return fmt.Errorf("postgres: add daily counts: %w", err)
	}
	return nil
}

// DailyCounts returns a workspace's counts from since's day on.
func (db *DB) DailyCounts(ctx context.Context, workspaceID int64, since time.Time) ([]trustloop.DailyCount, error) {
	rows, err := db.pool.Query(ctx, `SELECT day, name, n FROM daily_counts WHERE workspace_id = $1 AND day >= $2
		ORDER BY day, name`, workspaceID, ms(trustloop.UTCDay(since)))
	if err != nil {
		return nil, fmt.Errorf("postgres: daily counts: %w", err)
	}
	defer rows.Close()
	var out []trustloop.DailyCount
	for rows.Next() {
		c := trustloop.DailyCount{WorkspaceID: workspaceID}
		var day int64
		if err := rows.Scan(&day, &c.Name, &c.N); err != nil {
			return nil, fmt.Errorf("postgres: daily counts: %w", err)
		}
		c.Day = fromMS(day)
		out = append(out, c)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("postgres: daily counts: %w", err)
	}
	return out, nil
}

// ConsentDaily counts a workspace's consent records per day, purpose and state.
// The day is computed from the stored milliseconds as in the SQLite store
// (sqlite/count.go): the same integer arithmetic, portable to CockroachDB and
// YugabyteDB, with no time zone setting involved.
func (db *DB) ConsentDaily(ctx context.Context, workspaceID int64, since time.Time) ([]trustloop.ConsentDay, error) {
	rows, err := db.pool.Query(ctx, `SELECT at - ((at % 86400000) + 86400000) % 86400000 AS day, purpose, state, COUNT(*)
		FROM consent_records WHERE workspace_id = $1 AND at >= $2
		GROUP BY 1, 2, 3 ORDER BY 1, 2, 3`, workspaceID, ms(trustloop.UTCDay(since)))
	if err != nil {
		return nil, fmt.Errorf("postgres: consent daily: %w", err)
	}
	defer rows.Close()
	var out []trustloop.ConsentDay
	for rows.Next() {
		var c trustloop.ConsentDay
		var day int64
		if err := rows.Scan(&day, &c.Purpose, &c.State, &c.N); err != nil {
			return nil, fmt.Errorf("postgres: consent daily: %w", err)
		}
		c.Day = fromMS(day)
		out = append(out, c)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("postgres: consent daily: %w", err)
	}
	return out, nil
}
