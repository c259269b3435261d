package postgres_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/trustloop/trustloop"
	"github.com/trustloop/trustloop/auditlog"
)

// TestAuditLostLazyCommit: a lazy commit lost in a crash of the server (simulated
// by deleting its rows) must leave no node a kept tip of it: node B appends other
// entries at its index, node A appends after them, and the log still verifies.
// (A kept tip of size N+1 with the lost entry in its frontier would have given A
// stored hashes over the lost entry once B brought the log back to that size.)
func TestAuditLostLazyCommit(t *testing.T) {
	url := mustSchema(t)
	ctx := context.Background()
	nodes, krs, b := auditNodes(t, url, 2)
	kr := krs[0]
	ws := b.Workspace.ID
	entry := func(node, i int) []trustloop.AuditEntry {
		return []trustloop.AuditEntry{{WorkspaceID: ws, Time: time.UnixMilli(1_790_000_000_000 + int64(node*1000+i)).UTC(), Kind: trustloop.AuditDataUse,
			Actor:   trustloop.AuditActor{Kind: trustloop.ActorComponent, ID: fmt.Sprintf("component:node%d", node)},
			Purpose: "personalization", Subject: fmt.Sprint(node*1000 + i)}}
	}
	A, B := nodes[0], nodes[1]
	if err := A.AppendAudit(ctx, append(entry(0, 0), entry(0, 10)...)); err != nil {
		t.Fatal(err)
	}
	if err := A.AppendAuditLazy(ctx, entry(0, 1)); err != nil { // idx 2, tip kept at size 3
		t.Fatal(err)
	}
	// The server crashes before its WAL is flushed: the commit is lost.
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	for _, q := range []string{`DELETE FROM audit_entries WHERE idx = 2`, `DELETE FROM audit_hashes WHERE idx = 2`,
		`DELETE FROM audit_subjects WHERE idx = 2`, `UPDATE audit_heads SET size = 2`} {
		if _, err := conn.Exec(ctx, q); err != nil {
			t.Fatal(q, err)
		}
	}
	if err := B.AppendAudit(ctx, entry(1, 1)); err != nil { // idx 2 again, B's own
		t.Fatal(err)
	}
	if err := A.AppendAudit(ctx, entry(0, 2)); err != nil { // idx 3
		t.Fatal(err)
	}
	l := auditlog.New(A, kr, auditlog.Config{})
	defer l.Close()
	if _, err := l.Checkpoint(ctx, ws); err != nil {
		t.Fatal(err)
	}
	vkey, err := l.VerifierKey(ws)
	if err != nil {
		t.Fatal(err)
	}
	v, err := auditlog.VerifyStore(ctx, A, vkey, nil)
	if err != nil {
		t.Fatalf("VerifyStore after a lost lazy commit: %+v, %v", v, err)
	}
}
