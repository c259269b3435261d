package http_test

import (
	"bytes"
	"context"
	"database/sql"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"

	tlhttp "github.com/trustloop/trustloop/http"
	"github.com/trustloop/trustloop/http/html"
)

// The error paths of the trust dashboard's "Verify now"
// (POST /admin/audit/verify): a log that fails verification, a store that
// cannot be read, and a second verification while one is running.

// tamper runs SQL statements on the test server's SQLite file through a
// connection of its own, as someone with access to the database file would:
// the server's store and audit log know nothing of it.
func tamper(t *testing.T, s *testServer, stmts ...string) {
	t.Helper()
	c := rawStore(t, s)
	defer c.Close()
	for _, q := range stmts {
		if _, err := c.Exec(q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
}

// rawStore opens a connection of its own to the test server's SQLite file,
// once the audit records the store holds in its journal are in the tables
// (any read of the log moves them), so that the tables hold every entry
// appended so far.
func rawStore(t *testing.T, s *testServer) *sql.DB {
	t.Helper()
	if _, err := s.Store.AuditSize(context.Background(), s.WS.ID); err != nil {
		t.Fatal(err)
	}
	c, err := sql.Open("sqlite", "file:"+s.Store.Path()+"?_pragma=busy_timeout(10000)")
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// storedAuditEntry returns the stored bytes of entry idx of the test workspace's
// audit log.
func storedAuditEntry(t *testing.T, s *testServer, idx int) string {
	t.Helper()
	c := rawStore(t, s)
	defer c.Close()
	var data string
	if err := c.QueryRow(`SELECT CAST(data AS TEXT) FROM audit_entries WHERE workspace_id = ? AND idx = ?`, s.WS.ID, idx).Scan(&data); err != nil {
		t.Fatalf("audit entry %d: %v", idx, err)
	}
	return data
}

// jsonField returns the string value of "name":"…" in a JSON text ("" if
// none).
func jsonField(text, name string) string {
	_, after, ok := strings.Cut(text, `"`+name+`":"`)
	if !ok {
		return ""
	}
	v, _, _ := strings.Cut(after, `"`)
	return v
}

// lockedBuffer is a log destination the server's goroutines write to while
// the test reads it.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// A consent entry rewritten in the database (a "given" turned into
// "refused", to hide a consent) makes Verify now fail. The console answers
// with the dashboard (200: the verification ran, its result is the news),
// says FAILED and names the first bad entry by index only: nothing of the
// customer, nor the forged content, is put on the page. And the failure
// does not leave the workspace marked busy: Verify now runs again.
func TestDashboardVerifyTampered(t *testing.T) {
	s := newServer(t, options{regime: "opt_in"})
	ann := s.shopper(t, "shopper-ann", "ann@example.com")
	s.shopper(t, "shopper-bob", "bob@example.com")
	// Entries 0-2 are ann's consent to analytics, personalization and
	// marketing (the order the shopper's batch gives them).
	orig := storedAuditEntry(t, s, 2)
	if !strings.Contains(orig, `"purpose":"marketing"`) || !strings.Contains(orig, `"action":"consent given"`) {
		t.Fatalf("entry 2 is not a marketing consent: %s", orig)
	}
	pseudonym, receipt := jsonField(orig, "subject"), jsonField(orig, "receipt_id")
	if pseudonym == "" || receipt == "" {
		t.Fatalf("entry 2 names no subject or receipt: %s", orig)
	}
	// The stored hashes are left alone: only the entry's own hash, stored
	// when it was appended, gives the edit away.
	tamper(t, s, `UPDATE audit_entries SET data = CAST(replace(CAST(data AS TEXT), '"action":"consent given"', '"action":"consent refused"') AS BLOB) WHERE idx = 2`)

	b := consoleBrowser(t, s)
	for try := 1; try <= 2; try++ {
		v := b.post("/admin/audit/verify", url.Values{})
		if v.Status != http.StatusOK {
			t.Fatalf("verify #%d of a tampered log: %d (a second one refused as busy?) %.500s", try, v.Status, v.Body)
		}
		result := v.Body[max(strings.Index(v.Body, `id="verify-result"`), 0):]
		result = result[:max(strings.Index(result, "</section>"), 0)]
		for _, want := range []string{
			`role="status" class="error"`,
			"FAILED: the audit log does not match what its checkpoint signed.",
			`<p id="bad-entry">First bad entry: 2 (the 2 entries before it are proven good).</p>`,
			"Problem: changed: it does not match the hash stored when it was appended",
		} {
			if !strings.Contains(result, want) {
				t.Errorf("verify #%d: the result does not say %q: %s", try, want, result)
			}
		}
		if strings.Contains(v.Body, "OK: the audit log verifies.") {
			t.Errorf("verify #%d: a tampered log is said to verify", try)
		}
		// Whoever reads the page learns where the log is damaged, not whose
		// entry it is nor what it says now.
		for _, secret := range []string{"ann@example.com", "shopper-ann", ann, pseudonym, receipt, "consent refused", "consent given"} {
			if strings.Contains(v.Body, secret) {
				t.Errorf("verify #%d: the failure page shows %q", try, secret)
			}
		}
	}
	if s.Server.Verifying(s.WS.ID) {
		t.Error("the workspace is still marked as being verified after a failed verification")
	}
}

// When the log cannot be read at all (here its entries table is gone), Verify
// now answers with the console's error page: 500 and a generic message, the
// store's error text only in the server log, and again on a second try (the
// failure released the workspace).
func TestDashboardVerifyStoreError(t *testing.T) {
	s := newServer(t, options{regime: "opt_in"})
	s.shopper(t, "shopper-ann", "ann@example.com")
	// A server of its own over the same store and log, to read what it logs.
	logs := &lockedBuffer{}
	pages, err := html.New(html.English())
	if err != nil {
		t.Fatal(err)
	}
	srv := &tlhttp.Server{Store: s.Store, Profiles: s.Profiles, Consent: s.Consent, Audit: s.Audit, Privacy: s.Privacy,
		Metrics: s.Metrics, Log: slog.New(slog.NewTextHandler(logs, nil)), Pages: pages, WebKeys: s.Keyring,
		Operators: s.Store, Counts: s.Store, Now: s.Clock.Now}
	hs := httptest.NewServer(srv.Handler())
	defer hs.Close()
	b := consoleBrowser(t, &testServer{URL: hs.URL})
	// The checkpoint is made from the stored hashes; reading the entries
	// themselves is what fails.
	tamper(t, s, `ALTER TABLE audit_entries RENAME TO audit_entries_gone`)

	for try := 1; try <= 2; try++ {
		v := b.post("/admin/audit/verify", url.Values{})
		if v.Status != http.StatusInternalServerError {
			t.Fatalf("verify #%d with an unreadable log: %d, want 500 (a second one refused as busy?) %.500s", try, v.Status, v.Body)
		}
		if !strings.Contains(v.Body, `<p class="error" role="alert" data-code="internal">Internal error.</p>`) ||
			!strings.Contains(v.Body, "Try again later.") {
			t.Errorf("verify #%d: not the generic error: %s", try, v.Body)
		}
		for _, detail := range []string{"sqlite", "audit_entries", "no such table", "SQL"} {
			if strings.Contains(v.Body, detail) {
				t.Errorf("verify #%d: the error page shows the internal detail %q", try, detail)
			}
		}
		if strings.Contains(v.Body, `id="verify-result"`) {
			t.Errorf("verify #%d: a verification result is shown for a log that could not be read", try)
		}
	}
	if l := logs.String(); !strings.Contains(l, "no such table: audit_entries") {
		t.Errorf("the server log lacks the store's error:\n%s", l)
	}
	if srv.Verifying(s.WS.ID) {
		t.Error("the workspace is still marked as being verified after a failed verification")
	}
}

// Verify now reads and hashes the whole log: while one runs for a workspace,
// another for the same workspace is refused with 429 and a Retry-After, and
// runs once the first is done.
func TestDashboardVerifyBusy(t *testing.T) {
	s := newServer(t, options{regime: "opt_in"})
	s.shopper(t, "shopper-ann", "ann@example.com")
	b := consoleBrowser(t, s)
	// A verification of this workspace in progress (too quick to catch for
	// real, so marked through the test seam).
	release := s.Server.HoldVerification(s.WS.ID)
	v := b.post("/admin/audit/verify", url.Values{})
	if v.Status != http.StatusTooManyRequests {
		t.Fatalf("verify while one runs: %d, want 429 %.500s", v.Status, v.Body)
	}
	if ra := v.Header.Get("Retry-After"); ra != "10" {
		t.Errorf("Retry-After = %q, want 10", ra)
	}
	if !strings.Contains(v.Body, "The audit log is being verified already.") ||
		!strings.Contains(v.Body, "Wait for that verification to finish, then try again.") {
		t.Errorf("the busy page does not say why: %s", v.Body)
	}
	if strings.Contains(v.Body, `id="verify-result"`) {
		t.Error("the busy answer shows a verification result")
	}
	// The refused request must not take the mark over: when the running
	// verification ends, the workspace is free.
	release()
	if s.Server.Verifying(s.WS.ID) {
		t.Fatal("the refused verification left the workspace marked")
	}
	if v := b.post("/admin/audit/verify", url.Values{}); v.Status != http.StatusOK ||
		!strings.Contains(v.Body, "OK: the audit log verifies.") {
		t.Fatalf("verify after the other finished: %d %.500s", v.Status, v.Body)
	}
	// Another workspace's verification does not block this one.
	defer s.Server.HoldVerification(s.WS.ID + 1)()
	if v := b.post("/admin/audit/verify", url.Values{}); v.Status != http.StatusOK {
		t.Fatalf("verify while another workspace's runs: %d", v.Status)
	}
}
