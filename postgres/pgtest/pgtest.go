// Package pgtest gives tests a fresh PostgreSQL schema in the database named by
// TRUSTLOOP_TEST_DATABASE_URL. It is for tests only; production code must never
// import it.
package pgtest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"net/url"
	"os"
	"testing"

	"github.com/jackc/pgx/v5"
)

// Env names the variable that selects the PostgreSQL runs.
const Env = "TRUSTLOOP_TEST_DATABASE_URL"

// Schema creates a fresh schema, dropped when the test ends, and returns a URL
// that opens it (search_path set), so a test can open it more than once (several
// nodes on one database). Without the variable the test is skipped with a line
// saying SKIPPING and what; with it set but PostgreSQL unreachable, it fails.
func Schema(tb testing.TB, what string) string {
	tb.Helper()
	base := os.Getenv(Env)
	if base == "" {
		tb.Skipf("SKIPPING %s: %s is not set (e.g. postgres://postgres@127.0.0.1:5432/test?sslmode=disable)", what, Env)
	}
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, base)
	if err != nil {
		tb.Fatalf("%s is set but PostgreSQL is unreachable: %v", Env, err)
	}
	defer conn.Close(ctx)
	b := make([]byte, 6)
	rand.Read(b)
	schema := "tltest_" + hex.EncodeToString(b)
	if _, err := conn.Exec(ctx, "CREATE SCHEMA "+schema); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		if c, err := pgx.Connect(context.Background(), base); err == nil {
			c.Exec(context.Background(), "DROP SCHEMA "+schema+" CASCADE")
			c.Close(context.Background())
		}
	})
	u, err := url.Parse(base)
	if err != nil {
		tb.Fatal(err)
	}
	q := u.Query()
	q.Set("search_path", schema)
	u.RawQuery = q.Encode()
	return u.String()
}
