package postgres_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"net/url"
	"os"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/trustloop/trustloop"
	"github.com/trustloop/trustloop/postgres"
	"github.com/trustloop/trustloop/storetest"
)

// MustOpen opens a store in a fresh schema of the database named by
// TRUSTLOOP_TEST_DATABASE_URL, dropped when the test ends. Without that variable
// the test is skipped with a line saying so.
func MustOpen(tb testing.TB) *postgres.DB {
	tb.Helper()
	base := os.Getenv("TRUSTLOOP_TEST_DATABASE_URL")
	if base == "" {
		tb.Skip("SKIPPING PostgreSQL suite: TRUSTLOOP_TEST_DATABASE_URL is not set (e.g. postgres://postgres@127.0.0.1:5432/test?sslmode=disable)")
	}
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, base)
	if err != nil {
		tb.Fatalf("TRUSTLOOP_TEST_DATABASE_URL is set but PostgreSQL is unreachable: %v", err)
	}
	defer conn.Close(ctx)
	b := make([]byte, 6)
	rand.Read(b)
	schema := "tltest_" + hex.EncodeToString(b)
	if _, err := conn.Exec(ctx, "CREATE SCHEMA "+schema); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		c, err := pgx.Connect(context.Background(), base)
		if err != nil {
			return
		}
		defer c.Close(context.Background())
		c.Exec(context.Background(), "DROP SCHEMA "+schema+" CASCADE")
	})
	u, err := url.Parse(base)
	if err != nil {
		tb.Fatal(err)
	}
	q := u.Query()
	q.Set("search_path", schema)
	u.RawQuery = q.Encode()
	db, err := postgres.Open(ctx, u.String())
	if err != nil {
		tb.Fatal(err)
	}
	return db
}

func TestConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) trustloop.Store { return MustOpen(t) })
}

func TestBadURL(t *testing.T) {
	_, err := postgres.Open(context.Background(), "postgres://%zz")
	if trustloop.ErrorCode(err) != trustloop.EINVALID {
		t.Fatalf("err = %v, want invalid", err)
	}
}
