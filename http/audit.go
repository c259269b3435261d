package http

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"strconv"

	"github.com/trustloop/trustloop"
)

// The audit log API (T7): any API key reads its own workspace's log, its signed
// checkpoint and proofs, so anyone the business trusts with a key can check that
// nothing was edited (`trustloop audit verify`). The workspace is always the
// key's: no parameter names another (T9). Entries hold no personal data, so no
// purpose is asked for.

// auditPaths are the audit API's paths, as documented in openapi.json.
var auditPaths = []string{"/v1/audit/checkpoint", "/v1/audit/entries", "/v1/audit/proof/inclusion", "/v1/audit/proof/consistency"}

// maxAuditPage is the most entries one GET /v1/audit/entries returns.
const maxAuditPage = 1000

func (s *Server) auditRoutes(mux *http.ServeMux) {
	if s.Audit == nil {
		return
	}
	mux.Handle("GET /v1/audit/checkpoint", s.route("/v1/audit/checkpoint", s.authed(s.auditCheckpoint)))
	mux.Handle("GET /v1/audit/entries", s.route("/v1/audit/entries", s.authed(s.auditEntries)))
	mux.Handle("GET /v1/audit/proof/inclusion", s.route("/v1/audit/proof/inclusion", s.authed(s.auditInclusion)))
	mux.Handle("GET /v1/audit/proof/consistency", s.route("/v1/audit/proof/consistency", s.authed(s.auditConsistency)))
}

type checkpointJSON struct {
	WorkspaceID int64  `json:"workspace_id"`
	Size        int64  `json:"size"`
	Hash        string `json:"hash"`
	VerifierKey string `json:"verifier_key"`
	// Note is the signed checkpoint itself; size and hash are read from it.
	Note string `json:"note"`
}

// auditCheckpoint serves a checkpoint of the log as it now stands (signed now if
// the log grew since the last one).
func (s *Server) auditCheckpoint(w http.ResponseWriter, r *http.Request, k *trustloop.APIKey) error {
	msg, vkey, tree, err := s.Audit.CheckpointNow(r.Context(), k.WorkspaceID)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, checkpointJSON{WorkspaceID: k.WorkspaceID, Size: tree.N, Hash: tree.Hash.String(),
		VerifierKey: vkey, Note: string(msg)})
	return nil
}

// auditEntries serves entries [start, end), end cut to the log's size. Each
// entry is served as the exact bytes stored (its canonical JSON), not decoded
// and encoded again, so a verifier hashes what is stored; bytes that are not
// JSON any more are served as a base64 string, which no verifier accepts as an
// entry.
func (s *Server) auditEntries(w http.ResponseWriter, r *http.Request, k *trustloop.APIKey) error {
	size, err := s.Audit.Size(r.Context(), k.WorkspaceID)
	if err != nil {
		return err
	}
	start, err := int64Param(r, "start", 0)
	if err != nil {
		return err
	}
	end, err := int64Param(r, "end", min(start+maxAuditPage, size))
	if err != nil {
		return err
	}
	switch {
	case start > size:
		return trustloop.Errorf(trustloop.EINVALID, "start %d is past the end of the log (%d entries).", start, size).
			WithHint("Ask for start from 0 to the size GET /v1/audit/checkpoint reports.")
	case end < start:
		return trustloop.Errorf(trustloop.EINVALID, "end (%d) is before start (%d).", end, start).
			WithHint("Entries are served for [start, end).")
	case end-start > maxAuditPage:
		return trustloop.Errorf(trustloop.EINVALID, "At most %d entries are served at once; [%d, %d) asks for %d.", maxAuditPage, start, end, end-start).
			WithHint("Page through the log: end at most start+" + strconv.Itoa(maxAuditPage) + ".")
	}
	end = min(end, size)
	recs, err := s.Audit.Records(r.Context(), k.WorkspaceID, start, end)
	if err != nil {
		return err
	}
	var b bytes.Buffer
	b.WriteString(`{"start":` + strconv.FormatInt(start, 10) + `,"end":` + strconv.FormatInt(end, 10) +
		`,"size":` + strconv.FormatInt(size, 10) + `,"entries":[`)
	for i, rec := range recs {
		if i > 0 {
			b.WriteByte(',')
		}
		if json.Valid(rec.Data) {
			b.Write(rec.Data)
		} else {
			b.WriteString(strconv.Quote(base64.StdEncoding.EncodeToString(rec.Data)))
		}
	}
	b.WriteString("]}\n")
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", strconv.Itoa(b.Len()))
	w.WriteHeader(http.StatusOK)
	w.Write(b.Bytes())
	return nil
}

type inclusionJSON struct {
	Index int64    `json:"index"`
	Size  int64    `json:"size"`
	Proof []string `json:"proof"`
}

// auditInclusion proves that entry index is in the tree of size (default: the
// log's size).
func (s *Server) auditInclusion(w http.ResponseWriter, r *http.Request, k *trustloop.APIKey) error {
	if r.URL.Query().Get("index") == "" {
		return trustloop.Errorf(trustloop.EINVALID, "index is required.").WithHint("Add ?index=<entry index>&size=<tree size>.")
	}
	index, err := int64Param(r, "index", 0)
	if err != nil {
		return err
	}
	size, err := s.Audit.Size(r.Context(), k.WorkspaceID)
	if err != nil {
		return err
	}
	if size, err = int64Param(r, "size", size); err != nil {
		return err
	}
	p, err := s.Audit.InclusionProof(r.Context(), k.WorkspaceID, index, size)
	if err != nil {
		return err
	}
	out := inclusionJSON{Index: index, Size: size, Proof: make([]string, len(p))}
	for i, h := range p {
		out.Proof[i] = h.String()
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

type consistencyJSON struct {
	Old   int64    `json:"old"`
	New   int64    `json:"new"`
	Proof []string `json:"proof"`
}

// auditConsistency proves that the tree of size old is a prefix of the tree of
// size new (default: the log's size).
func (s *Server) auditConsistency(w http.ResponseWriter, r *http.Request, k *trustloop.APIKey) error {
	if r.URL.Query().Get("old") == "" {
		return trustloop.Errorf(trustloop.EINVALID, "old is required.").WithHint("Add ?old=<earlier tree size>&new=<later tree size>.")
	}
	old, err := int64Param(r, "old", 0)
	if err != nil {
		return err
	}
	size, err := s.Audit.Size(r.Context(), k.WorkspaceID)
	if err != nil {
		return err
	}
	newSize, err := int64Param(r, "new", size)
	if err != nil {
		return err
	}
	p, err := s.Audit.ConsistencyProof(r.Context(), k.WorkspaceID, old, newSize)
	if err != nil {
		return err
	}
	out := consistencyJSON{Old: old, New: newSize, Proof: make([]string, len(p))}
	for i, h := range p {
		out.Proof[i] = h.String()
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

// int64Param reads a whole number ≥ 0 from the query, def when absent.
func int64Param(r *http.Request, name string, def int64) (int64, error) {
	v := r.URL.Query().Get(name)
	if v == "" {
		return def, nil
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil || n < 0 {
		return 0, trustloop.Errorf(trustloop.EINVALID, "%s must be a whole number from 0 to 2^63-1.", name).
			WithHint("Entry indexes start at 0; tree sizes count entries.")
	}
	return n, nil
}
