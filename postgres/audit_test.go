package postgres_test

import (
	"bytes"
	"context"
	"fmt"
	"sync"
	"testing"

	"github.com/trustloop/trustloop"
	"github.com/trustloop/trustloop/auditlog"
	"github.com/trustloop/trustloop/keyring"
	"github.com/trustloop/trustloop/postgres"
	"github.com/trustloop/trustloop/storetest"
)

// TestAuditAcrossNodes: three nodes, each with its own pool and its own group-
// committing audit log, append to one workspace's log at once and checkpoint it
// as they go. The log stays dense, every checkpoint extends the one before (no
// node refuses to sign), and the whole log verifies.
func TestAuditAcrossNodes(t *testing.T) {
	url := mustSchema(t)
	ctx := context.Background()
	const nodes, callers, each = 3, 8, 25
	var logs [nodes]*auditlog.Log
	dbs, krs, b := auditNodes(t, url, nodes)
	for i := range logs {
		logs[i] = auditlog.New(dbs[i], krs[i], auditlog.Config{})
	}
	ws := b.Workspace.ID
	var wg sync.WaitGroup
	errs := make(chan error, nodes*callers)
	for n := range logs {
		for c := 0; c < callers; c++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := 0; i < each; i++ {
					e := trustloop.AuditEntry{WorkspaceID: ws, Kind: trustloop.AuditDataUse,
						Actor:   trustloop.AuditActor{Kind: trustloop.ActorComponent, ID: fmt.Sprintf("component:node%d", n)},
						Purpose: "personalization", Subject: fmt.Sprint(n*100_000 + c*1000 + i)}
					if err := logs[n].Append(ctx, e); err != nil {
						errs <- err
						return
					}
					if i%10 == 9 {
						if _, err := logs[n].Checkpoint(ctx, ws); err != nil {
							errs <- err
							return
						}
					}
				}
			}()
		}
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	note, err := logs[1].Checkpoint(ctx, ws)
	if err != nil {
		t.Fatal(err)
	}
	vkey, _ := logs[2].VerifierKey(ws)
	tree, _, err := auditlog.OpenCheckpoint(note, vkey)
	if err != nil || tree.N != nodes*callers*each {
		t.Fatalf("checkpoint = %+v, %v; want %d entries", tree, err, nodes*callers*each)
	}
	v, err := auditlog.VerifyStore(ctx, dbs[0], vkey, nil)
	if err != nil || v.Tree.N != nodes*callers*each {
		t.Fatalf("VerifyStore = %+v, %v", v, err)
	}
	for _, l := range logs {
		l.Close()
	}
}

// auditNodes opens n nodes on one schema (closed when the test ends), each with
// its own keyring over the same master key, and bootstraps a workspace through
// the first.
func auditNodes(t *testing.T, url string, n int) ([]*postgres.DB, []*keyring.Keyring, *trustloop.Bootstrap) {
	t.Helper()
	ctx := context.Background()
	master := bytes.Repeat([]byte{5}, keyring.KeySize)
	dbs := make([]*postgres.DB, n)
	krs := make([]*keyring.Keyring, n)
	var b *trustloop.Bootstrap
	for i := range dbs {
		db, err := postgres.Open(ctx, url)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { db.Close() })
		dbs[i] = db
		krs[i] = keyring.New(master, 10)
		krs[i].Load = db.FindWorkspace
		if i == 0 {
			b = storetest.Bootstrap("default")
			b.Workspace.IndexKey = krs[i].NewIndexKey()
			if _, err := db.Bootstrap(ctx, b); err != nil {
				t.Fatal(err)
			}
		}
	}
	return dbs, krs, b
}
