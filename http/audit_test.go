package http_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/trustloop/trustloop"
	"github.com/trustloop/trustloop/auditlog"
	tlhttp "github.com/trustloop/trustloop/http"
	"github.com/trustloop/trustloop/keyring"
	"github.com/trustloop/trustloop/metrics"
	"github.com/trustloop/trustloop/sqlite"
	"golang.org/x/mod/sumdb/tlog"
)

// auditServer is a server with the audit API over a SQLite store, and a reader
// key (no admin role, no purposes): any key reads its own workspace's log.
type auditServer struct {
	url string
	log *auditlog.Log
	ws  int64
}

const auditReaderKey = "tl_reader_audit_test"

func newAuditServer(t *testing.T) *auditServer {
	t.Helper()
	ctx := context.Background()
	db, err := sqlite.Open(ctx, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	kr := keyring.New(bytes.Repeat([]byte{7}, keyring.KeySize), 100)
	kr.Load = db.FindWorkspace
	ah := sha256.Sum256([]byte("tl_admin_test"))
	b := &trustloop.Bootstrap{
		Workspace: trustloop.Workspace{Name: "default", IndexKey: kr.NewIndexKey()},
		Source:    trustloop.Source{Name: "default", WriteKeyHash: bytes.Repeat([]byte{3}, 32)},
		AdminKey:  trustloop.APIKey{Name: "admin", SecretHash: ah[:], Roles: []string{trustloop.RoleAdmin}},
	}
	if _, err := db.Bootstrap(ctx, b); err != nil {
		t.Fatal(err)
	}
	rh := sha256.Sum256([]byte(auditReaderKey))
	if err := db.CreateAPIKey(ctx, &trustloop.APIKey{WorkspaceID: b.Workspace.ID, Name: "reader", SecretHash: rh[:],
		Roles: []string{trustloop.RoleReader}}); err != nil {
		t.Fatal(err)
	}
	al := auditlog.New(db, kr, auditlog.Config{})
	srv := &tlhttp.Server{Store: db, Audit: al, Metrics: metrics.New(), Log: slog.New(slog.NewTextHandler(io.Discard, nil))}
	hs := httptest.NewServer(srv.Handler())
	t.Cleanup(func() {
		hs.Close()
		al.Close()
		db.Close()
	})
	return &auditServer{url: hs.URL, log: al, ws: b.Workspace.ID}
}

func (s *auditServer) get(t *testing.T, path, key string) (int, []byte) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, s.url+path, nil)
	if key != "" {
		req.Header.Set("Authorization", "Bearer "+key)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, body
}

func (s *auditServer) mustGet(t *testing.T, path string, v any) {
	t.Helper()
	status, body := s.get(t, path, auditReaderKey)
	if status != http.StatusOK {
		t.Fatalf("GET %s = %d: %s", path, status, body)
	}
	if err := json.Unmarshal(body, v); err != nil {
		t.Fatalf("GET %s: %v: %s", path, err, body)
	}
}

func auditEntry(ws int64, i int) trustloop.AuditEntry {
	return trustloop.AuditEntry{WorkspaceID: ws, Kind: trustloop.AuditConsentChange,
		Actor: trustloop.AuditActor{Kind: trustloop.ActorSubject, ID: "portal"}, Purpose: "marketing",
		Subject: fmt.Sprint(5_000_000 + i), Detail: "consent marketing given", ReceiptID: fmt.Sprintf("rcpt_%d", i)}
}

func TestAuditAPI(t *testing.T) {
	s := newAuditServer(t)
	ctx := context.Background()
	for i := 0; i < 25; i++ {
		// Another workspace's entries interleaved: never served to this key.
		if err := s.log.Append(ctx, auditEntry(s.ws, i), auditEntry(s.ws+1000, i)); err != nil {
			t.Fatal(err)
		}
	}

	var cp struct {
		WorkspaceID int64  `json:"workspace_id"`
		Size        int64  `json:"size"`
		Hash        string `json:"hash"`
		VerifierKey string `json:"verifier_key"`
		Note        string `json:"note"`
	}
	s.mustGet(t, "/v1/audit/checkpoint", &cp)
	tree, ws, err := auditlog.OpenCheckpoint([]byte(cp.Note), cp.VerifierKey)
	if err != nil {
		t.Fatal(err)
	}
	if cp.WorkspaceID != s.ws || ws != s.ws || cp.Size != 25 || tree.N != 25 || cp.Hash != tree.Hash.String() {
		t.Fatalf("checkpoint = %+v, tree %+v", cp, tree)
	}

	type page struct {
		Start, End, Size int64
		Entries          []json.RawMessage
	}
	var all page
	s.mustGet(t, "/v1/audit/entries", &all)
	if all.Start != 0 || all.End != 25 || all.Size != 25 || len(all.Entries) != 25 {
		t.Fatalf("entries: start %d end %d size %d, %d entries", all.Start, all.End, all.Size, len(all.Entries))
	}
	leaves := make([]tlog.Hash, len(all.Entries))
	for i, raw := range all.Entries {
		e, err := trustloop.DecodeAuditEntry(raw)
		if err != nil || e.Index != int64(i) || e.WorkspaceID != s.ws {
			t.Fatalf("entry %d: %+v, %v", i, e, err)
		}
		leaves[i] = tlog.RecordHash(raw)
	}
	var mid page
	s.mustGet(t, "/v1/audit/entries?start=10&end=20", &mid)
	if len(mid.Entries) != 10 || !bytes.Equal(mid.Entries[0], all.Entries[10]) {
		t.Fatalf("entries 10–20: %d entries", len(mid.Entries))
	}
	var tail page
	s.mustGet(t, "/v1/audit/entries?start=20&end=900", &tail)
	if tail.End != 25 || len(tail.Entries) != 5 {
		t.Fatalf("entries 20–900: end %d, %d entries", tail.End, len(tail.Entries))
	}

	var inc struct {
		Index, Size int64
		Proof       []tlog.Hash
	}
	s.mustGet(t, "/v1/audit/proof/inclusion?index=7&size=25", &inc)
	if err := tlog.CheckRecord(inc.Proof, 25, tree.Hash, 7, leaves[7]); err != nil {
		t.Fatalf("inclusion proof of 7: %v", err)
	}
	s.mustGet(t, "/v1/audit/proof/inclusion?index=24", &inc)
	if inc.Size != 25 || tlog.CheckRecord(inc.Proof, 25, tree.Hash, 24, leaves[24]) != nil {
		t.Fatalf("inclusion proof of 24 in the current tree failed: %+v", inc)
	}

	var con struct {
		Old, New int64
		Proof    []tlog.Hash
	}
	s.mustGet(t, "/v1/audit/proof/consistency?old=10&new=25", &con)
	mem := memHashes{}
	for _, l := range leaves[:10] {
		hs, err := tlog.StoredHashesForRecordHash(int64(len(mem.leaves)), l, mem)
		if err != nil {
			t.Fatal(err)
		}
		mem.hashes = append(mem.hashes, hs...)
		mem.leaves = append(mem.leaves, l)
	}
	h10, _ := tlog.TreeHash(10, mem)
	if err := tlog.CheckTree(con.Proof, 25, tree.Hash, 10, h10); err != nil {
		t.Fatalf("consistency 10→25: %v", err)
	}
}

type memHashes struct {
	leaves, hashes []tlog.Hash
}

func (m memHashes) ReadHashes(idx []int64) ([]tlog.Hash, error) {
	out := make([]tlog.Hash, len(idx))
	for i, x := range idx {
		out[i] = m.hashes[x]
	}
	return out, nil
}

func TestAuditAPIErrors(t *testing.T) {
	s := newAuditServer(t)
	for i := 0; i < 5; i++ {
		if err := s.log.Append(context.Background(), auditEntry(s.ws, i)); err != nil {
			t.Fatal(err)
		}
	}
	if status, _ := s.get(t, "/v1/audit/checkpoint", ""); status != http.StatusUnauthorized {
		t.Errorf("without a key: %d, want 401", status)
	}
	if status, _ := s.get(t, "/v1/audit/entries", "not-a-key"); status != http.StatusUnauthorized {
		t.Errorf("unknown key: %d, want 401", status)
	}
	for _, path := range []string{
		"/v1/audit/entries?start=-1", "/v1/audit/entries?start=abc", "/v1/audit/entries?start=3&end=2",
		"/v1/audit/entries?start=0&end=1001", "/v1/audit/entries?start=6",
		"/v1/audit/proof/inclusion", "/v1/audit/proof/inclusion?index=5", "/v1/audit/proof/inclusion?index=1&size=6",
		"/v1/audit/proof/inclusion?index=x",
		"/v1/audit/proof/consistency", "/v1/audit/proof/consistency?old=0&new=5", "/v1/audit/proof/consistency?old=3&new=2",
		"/v1/audit/proof/consistency?old=1&new=6",
	} {
		status, body := s.get(t, path, auditReaderKey)
		var e struct {
			Error struct{ Code, Message, Hint string }
		}
		json.Unmarshal(body, &e)
		if status != http.StatusBadRequest || e.Error.Code != "invalid" || e.Error.Hint == "" {
			t.Errorf("GET %s = %d %s; want 400 invalid with a hint", path, status, body)
		}
	}
}
