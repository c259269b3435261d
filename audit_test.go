package trustloop_test

import (
	"bytes"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/trustloop/trustloop"
	"golang.org/x/mod/sumdb/tlog"
)

func validAuditEntry() trustloop.AuditEntry {
	return trustloop.AuditEntry{WorkspaceID: 3, Index: 12, Time: time.Date(2026, 11, 25, 3, 0, 0, 123_456_789, time.UTC),
		Kind: trustloop.AuditConsentChange, Actor: trustloop.AuditActor{Kind: trustloop.ActorSubject, ID: "portal"},
		Purpose: "marketing", Subject: strings.Repeat("ab", 16), Categories: []string{"preferences"},
		Action: "PUT /v1/profiles/{id}/consent", Detail: "consent marketing withdrawn", ReceiptID: "rcpt_01"}
}

func TestAuditEntryCanonical(t *testing.T) {
	e := validAuditEntry()
	b, err := e.Encode()
	if err != nil {
		t.Fatal(err)
	}
	want := `{"version":1,"workspace_id":3,"index":12,"time":"2026-11-25T03:00:00.123Z","kind":"consent_change",` +
		`"actor":{"kind":"subject","id":"portal"},"purpose":"marketing","subject":"abababababababababababababababab",` +
		`"categories":["preferences"],"action":"PUT /v1/profiles/{id}/consent","detail":"consent marketing withdrawn","receipt_id":"rcpt_01"}`
	if string(b) != want {
		t.Fatalf("encoding changed — it is hashed into every log, so it must not:\n got %s\nwant %s", b, want)
	}
	got, err := trustloop.DecodeAuditEntry(b)
	if err != nil {
		t.Fatal(err)
	}
	e.Time = e.Time.Truncate(time.Millisecond)
	if again, _ := got.Encode(); !bytes.Equal(again, b) || !got.Time.Equal(e.Time) {
		t.Fatalf("round trip: %+v", got)
	}
	// The same entry in other bytes is refused: one entry, one encoding.
	for name, other := range map[string]string{
		"spaces":        strings.Replace(want, `"index":12`, `"index": 12`, 1),
		"field order":   strings.Replace(want, `"version":1,"workspace_id":3`, `"workspace_id":3,"version":1`, 1),
		"unknown field": strings.Replace(want, `"version":1`, `"version":1,"email":"x"`, 1),
		"version":       strings.Replace(want, `"version":1`, `"version":2`, 1),
		"time zone":     strings.Replace(want, `03:00:00.123Z`, `04:00:00.123+01:00`, 1),
		"trailing":      want + " {}",
		"not json":      "hello",
	} {
		if _, err := trustloop.DecodeAuditEntry([]byte(other)); trustloop.ErrorCode(err) != trustloop.EINVALID {
			t.Errorf("%s: err = %v, want invalid", name, err)
		}
	}
}

func TestAuditEntryHoldsNoIdentifiers(t *testing.T) {
	for name, mutate := range map[string]func(*trustloop.AuditEntry){
		"email subject":     func(e *trustloop.AuditEntry) { e.Subject = "jane@example.com" },
		"phone subject":     func(e *trustloop.AuditEntry) { e.Subject = "+4915112345678" },
		"name subject":      func(e *trustloop.AuditEntry) { e.Subject = "jane" },
		"email in action":   func(e *trustloop.AuditEntry) { e.Action = "GET /v1/profiles/lookup?identifier=email:jane@example.com" },
		"phone in detail":   func(e *trustloop.AuditEntry) { e.Detail = "sms to +4915112345678" },
		"non-ascii":         func(e *trustloop.AuditEntry) { e.Detail = "Jürgen" },
		"upper-case kind":   func(e *trustloop.AuditEntry) { e.Kind = "DataUse" },
		"category phrase":   func(e *trustloop.AuditEntry) { e.Categories = []string{"home address"} },
		"actor with spaces": func(e *trustloop.AuditEntry) { e.Actor.ID = "Jane Doe" },
	} {
		e := validAuditEntry()
		mutate(&e)
		_, err := e.Encode()
		if trustloop.ErrorCode(err) != trustloop.EINVALID {
			t.Errorf("%s: err = %v, want invalid", name, err)
			continue
		}
		if msg := trustloop.ErrorMessage(err); strings.Contains(msg, "jane") || strings.Contains(msg, "4915") || strings.Contains(msg, "Jürgen") {
			t.Errorf("%s: the error shows the value: %s", name, msg)
		}
	}
	for _, subject := range []string{"", "123456789012345678", strings.Repeat("0f", 32)} {
		e := validAuditEntry()
		e.Subject = subject
		if err := e.Validate(); err != nil {
			t.Errorf("subject %q refused: %v", subject, err)
		}
	}
}

// memHashes is a log's stored hashes in memory, computed by tlog itself.
type memHashes []tlog.Hash

func (m *memHashes) ReadHashes(idx []int64) ([]tlog.Hash, error) {
	out := make([]tlog.Hash, len(idx))
	for i, x := range idx {
		out[i] = (*m)[x]
	}
	return out, nil
}

// TestAuditAppendMatchesTlog: batches appended with AuditAppend store exactly
// the hashes tlog computes record by record, reading only the frontier; and
// AuditNextFrontier, carried from batch to batch as the SQLite store keeps it,
// is always the frontier tlog's hashes give.
func TestAuditAppendMatchesTlog(t *testing.T) {
	ref := &memHashes{}
	var stored []byte // AuditAppend's hashes, concatenated in order
	n := int64(0)
	var frontier []tlog.Hash // carried with AuditNextFrontier
	for _, size := range []int{1, 4, 3, 1, 2500, 7, 1024, 1, 1, 2, 5} {
		before := n
		entries := make([]trustloop.AuditEntry, size)
		for i := range entries {
			entries[i] = validAuditEntry()
			entries[i].Detail = strings.Repeat("x", int(n)%50+i%7)
		}
		reads := 0
		data, hashes, err := trustloop.AuditAppend(n, entries, func(idx []int64) ([]tlog.Hash, error) {
			reads++
			if want := trustloop.AuditFrontier(n); !slices.Equal(idx, want) {
				t.Fatalf("read %v, want the frontier %v", idx, want)
			}
			got, err := ref.ReadHashes(idx)
			if err == nil && !slices.Equal(got, frontier) {
				t.Fatalf("size %d: the carried frontier differs from the stored hashes", n)
			}
			return got, err
		})
		if err != nil {
			t.Fatal(err)
		}
		if frontier, err = trustloop.AuditNextFrontier(before, frontier, hashes); err != nil {
			t.Fatal(err)
		}
		if n > 0 && reads != 1 {
			t.Fatalf("%d reads, want 1", reads)
		}
		for i := range entries {
			if entries[i].Index != n {
				t.Fatalf("entry got index %d, want %d", entries[i].Index, n)
			}
			hs, err := tlog.StoredHashes(n, data[i], ref)
			if err != nil {
				t.Fatal(err)
			}
			if len(hs) != trustloop.AuditRecordHashCount(n) {
				t.Fatalf("record %d adds %d hashes, AuditRecordHashCount says %d", n, len(hs), trustloop.AuditRecordHashCount(n))
			}
			*ref = append(*ref, hs...)
			stored = append(stored, hashes[i]...)
			n++
		}
	}
	if last, err := ref.ReadHashes(trustloop.AuditFrontier(n)); err != nil || !slices.Equal(last, frontier) {
		t.Fatalf("the carried frontier of size %d differs from the stored hashes (%v)", n, err)
	}
	if _, err := trustloop.AuditNextFrontier(n, frontier[1:], nil); err == nil {
		t.Fatal("a frontier of the wrong length was taken")
	}
	var want []byte
	for _, h := range *ref {
		want = append(want, h[:]...)
	}
	if !bytes.Equal(stored, want) {
		t.Fatal("AuditAppend's hashes differ from tlog's")
	}
	// Every stored hash is found where AuditHashLocation says.
	byRecord := map[int64][]byte{}
	off := 0
	for r := int64(0); r < n; r++ {
		k := trustloop.AuditRecordHashCount(r) * tlog.HashSize
		byRecord[r] = stored[off : off+k]
		off += k
	}
	idx := make([]int64, len(*ref))
	for i := range idx {
		idx[i] = int64(i)
	}
	got, err := trustloop.PickAuditHashes(idx, byRecord)
	if err != nil || !slices.Equal(got, *ref) {
		t.Fatalf("PickAuditHashes: %v", err)
	}
	if _, err := trustloop.PickAuditHashes([]int64{tlog.StoredHashIndex(0, n)}, byRecord); trustloop.ErrorCode(err) != trustloop.ENOTFOUND {
		t.Fatalf("a hash past the end: err = %v, want not_found", err)
	}
}

// TestAuditTips: a kept tip stands in for reading the frontier only at the size
// it was kept for and only for its workspace; Forget drops it; a kept frontier
// gives the same hashes as the stored one.
func TestAuditTips(t *testing.T) {
	ref := &memHashes{}
	var tips trustloop.AuditTips
	reads := 0
	read := func(idx []int64) ([]tlog.Hash, error) { reads++; return ref.ReadHashes(idx) }
	entries := func(n int) []trustloop.AuditEntry {
		out := make([]trustloop.AuditEntry, n)
		for i := range out {
			out[i] = validAuditEntry()
		}
		return out
	}
	n := int64(0)
	appendAt := func(ws int64, k int) trustloop.AuditTip {
		t.Helper()
		batch := entries(k)
		data, hashes, tip, err := tips.Append(ws, n, batch, read)
		if err != nil {
			t.Fatal(err)
		}
		for i := range batch {
			hs, err := tlog.StoredHashes(n+int64(i), data[i], ref)
			if err != nil {
				t.Fatal(err)
			}
			var want []byte
			for _, h := range hs {
				want = append(want, h[:]...)
			}
			if !bytes.Equal(hashes[i], want) {
				t.Fatalf("record %d: hashes differ from tlog's", n+int64(i))
			}
			*ref = append(*ref, hs...)
		}
		n += int64(k)
		return tip
	}
	appendAt(1, 3)        // size 0: nothing to read
	tip := appendAt(1, 2) // size 3: read, nothing kept yet
	if reads != 1 {
		t.Fatalf("%d reads, want 1 (nothing was kept)", reads)
	}
	tips.Keep(1, tip)
	tip = appendAt(1, 4) // size 5: kept
	if reads != 1 {
		t.Fatalf("%d reads, want 1: the tip kept for size 5 was not used", reads)
	}
	tips.Keep(1, tip)
	appendAt(2, 1) // another workspace (same reference log): read
	if reads != 2 {
		t.Fatalf("%d reads, want 2: workspace 2 used workspace 1's tip", reads)
	}
	appendAt(1, 1) // workspace 1's tip is for size 9, the log is at 10 now
	if reads != 3 {
		t.Fatalf("%d reads, want 3: a tip for another size was used", reads)
	}
	tips.Forget(1)
	n = 9 // as if the log were back at the tip's size: only Forget stops its use
	*ref = (*ref)[:tlog.StoredHashCount(9)]
	appendAt(1, 1)
	if reads != 4 {
		t.Fatalf("%d reads, want 4: a forgotten tip was used", reads)
	}
}
