package main_test

import (
	"context"
	"net/url"
	"testing"

	"github.com/jackc/pgx/v5"
)

// freshSchema makes a schema for one test and returns base with search_path set
// to it; the schema is dropped when the test ends.
func freshSchema(t *testing.T, base string) string {
	t.Helper()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, base)
	if err != nil {
		t.Fatalf("TRUSTLOOP_TEST_DATABASE_URL is set but PostgreSQL is unreachable: %v", err)
	}
	defer conn.Close(ctx)
	schema := "tle2e_" + randomHex(6)
	if _, err := conn.Exec(ctx, "CREATE SCHEMA "+schema); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if c, err := pgx.Connect(context.Background(), base); err == nil {
			c.Exec(context.Background(), "DROP SCHEMA "+schema+" CASCADE")
			c.Close(context.Background())
		}
	})
	u, err := url.Parse(base)
	if err != nil {
		t.Fatal(err)
	}
	q := u.Query()
	q.Set("search_path", schema)
	u.RawQuery = q.Encode()
	return u.String()
}
