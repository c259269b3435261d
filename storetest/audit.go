package storetest

import (
	"bytes"
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/trustloop/trustloop"
	"golang.org/x/mod/sumdb/tlog"
)

// auditEntry makes a valid data-use entry; i varies its content.
func auditEntry(ws int64, i int) trustloop.AuditEntry {
	return trustloop.AuditEntry{
		WorkspaceID: ws, Time: time.UnixMilli(1_790_000_000_000 + int64(i)).UTC(), Kind: trustloop.AuditDataUse,
		Actor:   trustloop.AuditActor{Kind: trustloop.ActorAPIKey, ID: fmt.Sprintf("key:%d", i%7+1)},
		Purpose: "marketing", Subject: fmt.Sprint(1_000_000 + i), Categories: []string{"contact", "behavior"},
		Action: "GET /v1/profiles/{id}",
	}
}

// memLog is the reference: a log's stored hashes computed in memory by tlog.
type memLog struct {
	data   [][]byte
	hashes []tlog.Hash
}

func (m *memLog) ReadHashes(indexes []int64) ([]tlog.Hash, error) {
	out := make([]tlog.Hash, len(indexes))
	for i, x := range indexes {
		out[i] = m.hashes[x]
	}
	return out, nil
}

func (m *memLog) add(t *testing.T, data []byte) {
	t.Helper()
	hs, err := tlog.StoredHashes(int64(len(m.data)), data, m)
	if err != nil {
		t.Fatal(err)
	}
	m.data = append(m.data, data)
	m.hashes = append(m.hashes, hs...)
}

// storeHashes reads a workspace's stored hashes as a tlog.HashReader.
func storeHashes(ctx context.Context, s trustloop.Store, ws int64) tlog.HashReader {
	return tlog.HashReaderFunc(func(idx []int64) ([]tlog.Hash, error) { return s.ReadAuditHashes(ctx, ws, idx) })
}

// checkAuditLog checks the workspace's stored log against the reference: size,
// every record's data and hashes, and the tree hash read through the store.
func checkAuditLog(t *testing.T, s trustloop.Store, ws int64, ref *memLog) {
	t.Helper()
	ctx := context.Background()
	n := int64(len(ref.data))
	size, err := s.AuditSize(ctx, ws)
	if err != nil || size != n {
		t.Fatalf("AuditSize = %d, %v; want %d", size, err, n)
	}
	recs, err := s.AuditRecords(ctx, ws, 0, n+10)
	if err != nil {
		t.Fatal(err)
	}
	if int64(len(recs)) != n {
		t.Fatalf("AuditRecords returned %d records, want %d", len(recs), n)
	}
	for i, r := range recs {
		base := tlog.StoredHashIndex(0, int64(i))
		var want []byte
		for _, h := range ref.hashes[base : base+int64(trustloop.AuditRecordHashCount(int64(i)))] {
			want = append(want, h[:]...)
		}
		if r.Index != int64(i) || r.WorkspaceID != ws || !bytes.Equal(r.Data, ref.data[i]) || !bytes.Equal(r.Hashes, want) {
			t.Fatalf("record %d = {index %d ws %d}, data or hashes differ from the reference", i, r.Index, r.WorkspaceID)
		}
	}
	if n == 0 {
		return
	}
	got, err := tlog.TreeHash(n, storeHashes(ctx, s, ws))
	if err != nil {
		t.Fatal(err)
	}
	want, _ := tlog.TreeHash(n, ref)
	if got != want {
		t.Fatalf("tree hash through the store = %v, want %v", got, want)
	}
}

func testAuditAppend(t *testing.T, s trustloop.Store) {
	ctx := context.Background()
	b := MustBootstrap(t, s)
	ws := b.Workspace.ID
	if n, err := s.AuditSize(ctx, ws); err != nil || n != 0 {
		t.Fatalf("AuditSize of an empty log = %d, %v", n, err)
	}
	if recs, err := s.AuditRecords(ctx, ws, 0, 10); err != nil || len(recs) != 0 {
		t.Fatalf("AuditRecords of an empty log = %d, %v", len(recs), err)
	}
	ref := &memLog{}
	i := 0
	// Batch sizes crossing subtree boundaries (1, 2, 4, … and odd sizes);
	// lazy appends (every third) make the same log as strict ones.
	for n, size := range []int{1, 1, 2, 3, 1, 8, 17, 100, 300, 5} {
		batch := make([]trustloop.AuditEntry, size)
		for j := range batch {
			batch[j] = auditEntry(ws, i)
			i++
		}
		appendAudit := s.AppendAudit
		if n%3 == 1 {
			appendAudit = s.AppendAuditLazy
		}
		if err := appendAudit(ctx, batch); err != nil {
			t.Fatal(err)
		}
		for j := range batch {
			if want := int64(len(ref.data)); batch[j].Index != want {
				t.Fatalf("entry got index %d, want %d", batch[j].Index, want)
			}
			data, err := batch[j].Encode()
			if err != nil {
				t.Fatal(err)
			}
			ref.add(t, data)
		}
	}
	checkAuditLog(t, s, ws, ref)
	// Ranges: a middle page, one past the end, and an empty one.
	recs, err := s.AuditRecords(ctx, ws, 100, 110)
	if err != nil || len(recs) != 10 || recs[0].Index != 100 || recs[9].Index != 109 {
		t.Fatalf("AuditRecords(100, 110) = %d records, %v", len(recs), err)
	}
	if recs, err := s.AuditRecords(ctx, ws, int64(i), int64(i)+5); err != nil || len(recs) != 0 {
		t.Fatalf("AuditRecords past the end = %d, %v", len(recs), err)
	}
	// Records decode back to what was appended.
	e, err := trustloop.DecodeAuditEntry(recs0(t, s, ws, 7).Data)
	if err != nil {
		t.Fatal(err)
	}
	want := auditEntry(ws, 7)
	want.Index = 7
	if fmt.Sprint(e) != fmt.Sprint(want) {
		t.Fatalf("entry 7 = %+v, want %+v", e, want)
	}
	// A hash the log does not have yet.
	if _, err := s.ReadAuditHashes(ctx, ws, []int64{tlog.StoredHashIndex(0, int64(i)+3)}); trustloop.ErrorCode(err) != trustloop.ENOTFOUND {
		t.Fatalf("ReadAuditHashes past the end: err = %v, want not_found", err)
	}
}

func recs0(t *testing.T, s trustloop.Store, ws, i int64) trustloop.AuditRecord {
	t.Helper()
	recs, err := s.AuditRecords(context.Background(), ws, i, i+1)
	if err != nil || len(recs) != 1 {
		t.Fatalf("AuditRecords(%d) = %d records, %v", i, len(recs), err)
	}
	return recs[0]
}

// testAuditInvalid: one bad entry refuses the whole batch (all or nothing), and
// an entry that could carry an identifier value is refused.
func testAuditInvalid(t *testing.T, s trustloop.Store) {
	ctx := context.Background()
	b := MustBootstrap(t, s)
	ws := b.Workspace.ID
	good := auditEntry(ws, 1)
	for name, mutate := range map[string]func(e *trustloop.AuditEntry){
		"email as subject": func(e *trustloop.AuditEntry) { e.Subject = "jane@example.com" },
		"phone as subject": func(e *trustloop.AuditEntry) { e.Subject = "+14155550100" },
		"email in detail":  func(e *trustloop.AuditEntry) { e.Detail = "sent to jane@example.com" },
		"no kind":          func(e *trustloop.AuditEntry) { e.Kind = "" },
		"unknown actor":    func(e *trustloop.AuditEntry) { e.Actor.Kind = "robot" },
		"no time":          func(e *trustloop.AuditEntry) { e.Time = time.Time{} },
		"control char":     func(e *trustloop.AuditEntry) { e.Action = "GET\n/" },
		"no workspace":     func(e *trustloop.AuditEntry) { e.WorkspaceID = 0 },
	} {
		bad := auditEntry(ws, 2)
		mutate(&bad)
		err := s.AppendAudit(ctx, []trustloop.AuditEntry{good, bad})
		if trustloop.ErrorCode(err) != trustloop.EINVALID {
			t.Errorf("%s: err = %v, want invalid", name, err)
		}
		if msg := fmt.Sprint(err, trustloop.ErrorMessage(err)); strings.Contains(msg, "jane") || strings.Contains(msg, "4155550100") {
			t.Errorf("%s: the error shows the value: %v", name, err)
		}
	}
	if n, err := s.AuditSize(ctx, ws); err != nil || n != 0 {
		t.Fatalf("after refused batches AuditSize = %d, %v; want 0", n, err)
	}
	if err := s.AppendAudit(ctx, nil); err != nil {
		t.Fatalf("AppendAudit(nil) = %v", err)
	}
}

// testAuditWorkspaces: one batch spanning two workspaces gives each its own
// dense log and its own tree, equal to the tree of its entries alone (T9).
func testAuditWorkspaces(t *testing.T, s trustloop.Store) {
	ctx := context.Background()
	b := MustBootstrap(t, s)
	a, o := b.Workspace.ID, other(b)
	refs := map[int64]*memLog{a: {}, o: {}}
	for round := 0; round < 5; round++ {
		var batch []trustloop.AuditEntry
		for i := 0; i < 7; i++ {
			ws := a
			if (i+round)%3 == 0 {
				ws = o
			}
			batch = append(batch, auditEntry(ws, round*10+i))
		}
		if err := s.AppendAudit(ctx, batch); err != nil {
			t.Fatal(err)
		}
		for _, e := range batch {
			if want := int64(len(refs[e.WorkspaceID].data)); e.Index != want {
				t.Fatalf("workspace %d entry got index %d, want %d", e.WorkspaceID, e.Index, want)
			}
			data, err := e.Encode()
			if err != nil {
				t.Fatal(err)
			}
			refs[e.WorkspaceID].add(t, data)
		}
	}
	checkAuditLog(t, s, a, refs[a])
	checkAuditLog(t, s, o, refs[o])
	if _, err := s.LatestAuditCheckpoint(ctx, o); trustloop.ErrorCode(err) != trustloop.ENOTFOUND {
		t.Fatalf("LatestAuditCheckpoint without any: err = %v, want not_found", err)
	}
}

// testAuditConcurrent: appenders at once (on PostgreSQL, separate connections,
// as separate nodes would be) still make one dense log whose stored hashes are
// the tree of its records.
func testAuditConcurrent(t *testing.T, s trustloop.Store) {
	ctx := context.Background()
	b := MustBootstrap(t, s)
	ws := b.Workspace.ID
	const writers, rounds = 8, 15
	var wg sync.WaitGroup
	errs := make(chan error, writers)
	for w := 0; w < writers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for r := 0; r < rounds; r++ {
				batch := make([]trustloop.AuditEntry, 1+(w+r)%4)
				for j := range batch {
					batch[j] = auditEntry(ws, w*1000+r*10+j)
				}
				// Every other batch also writes another workspace's log, so
				// batches lock more than one head.
				if r%2 == 0 {
					batch = append(batch, auditEntry(other(b), w*1000+r*10+9))
				}
				appendAudit := s.AppendAudit
				if (w+r)%3 == 0 {
					appendAudit = s.AppendAuditLazy
				}
				if err := appendAudit(ctx, batch); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	for _, id := range []int64{ws, other(b)} {
		n, err := s.AuditSize(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		recs, err := s.AuditRecords(ctx, id, 0, n)
		if err != nil {
			t.Fatal(err)
		}
		ref := &memLog{}
		for i, r := range recs {
			e, err := trustloop.DecodeAuditEntry(r.Data)
			if err != nil || e.Index != int64(i) {
				t.Fatalf("workspace %d record %d: index %d, err %v", id, i, e.Index, err)
			}
			ref.add(t, r.Data)
		}
		checkAuditLog(t, s, id, ref)
	}
}

func testAuditCheckpoints(t *testing.T, s trustloop.Store) {
	ctx := context.Background()
	b := MustBootstrap(t, s)
	ws := b.Workspace.ID
	if _, err := s.LatestAuditCheckpoint(ctx, ws); trustloop.ErrorCode(err) != trustloop.ENOTFOUND {
		t.Fatalf("LatestAuditCheckpoint of none: err = %v, want not_found", err)
	}
	now := time.Now().UTC().Truncate(time.Millisecond)
	mk := func(size int64, note string) *trustloop.AuditCheckpoint {
		c := &trustloop.AuditCheckpoint{WorkspaceID: ws, Size: size, Note: []byte(note), CreatedAt: now}
		copy(c.Hash[:], random(32))
		return c
	}
	five, ten := mk(5, "note five\n"), mk(10, "note ten\n")
	for _, c := range []*trustloop.AuditCheckpoint{five, ten, mk(5, "another five\n"), mk(3, "three\n")} {
		if err := s.SaveAuditCheckpoint(ctx, c); err != nil {
			t.Fatal(err)
		}
	}
	got, err := s.LatestAuditCheckpoint(ctx, ws)
	if err != nil {
		t.Fatal(err)
	}
	if got.Size != 10 || got.Hash != ten.Hash || string(got.Note) != "note ten\n" || !got.CreatedAt.Equal(now) || got.WorkspaceID != ws {
		t.Fatalf("latest checkpoint = %+v, want %+v", got, ten)
	}
	// Another workspace's checkpoints are its own.
	if _, err := s.LatestAuditCheckpoint(ctx, other(b)); trustloop.ErrorCode(err) != trustloop.ENOTFOUND {
		t.Fatalf("other workspace's latest checkpoint: err = %v, want not_found", err)
	}
}

// testAuditBySubject checks the subject index behind data-uses: a subject's
// entries newest first, paged by index, per workspace.
func testAuditBySubject(t *testing.T, s trustloop.Store) {
	ctx := context.Background()
	b := MustBootstrap(t, s)
	ws := b.Workspace.ID
	var batch []trustloop.AuditEntry
	for i := range 10 {
		e := auditEntry(ws, i)
		e.Subject = []string{"42", "43"}[i%2]
		if i == 9 {
			e.Subject = ""
		}
		batch = append(batch, e)
	}
	if err := s.AppendAudit(ctx, batch); err != nil {
		t.Fatal(err)
	}
	got, err := s.AuditRecordsOf(ctx, ws, "42", 0, 3)
	if err != nil || len(got) != 3 || got[0].Index != 8 || got[1].Index != 6 || got[2].Index != 4 {
		t.Fatalf("first page of subject 42 = %v, %v", got, err)
	}
	e, err := trustloop.DecodeAuditEntry(got[0].Data)
	if err != nil || e.Subject != "42" || e.Index != 8 {
		t.Fatalf("decoded %+v, %v", e, err)
	}
	got, _ = s.AuditRecordsOf(ctx, ws, "42", 4, 10)
	if len(got) != 2 || got[0].Index != 2 || got[1].Index != 0 {
		t.Fatalf("second page of subject 42 = %v", got)
	}
	if got, _ := s.AuditRecordsOf(ctx, other(b), "42", 0, 10); len(got) != 0 {
		t.Fatalf("another workspace sees %d entries", len(got))
	}
	if st, err := s.Stats(ctx); err != nil || st.AuditEntries != 10 {
		t.Fatalf("Stats audit_entries = %d, %v", st.AuditEntries, err)
	}
}
