package http_test

import (
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/trustloop/trustloop"
	"github.com/trustloop/trustloop/auditlog"
	"github.com/trustloop/trustloop/collect"
	"github.com/trustloop/trustloop/consent"
	tlhttp "github.com/trustloop/trustloop/http"
	"github.com/trustloop/trustloop/http/html"
	"github.com/trustloop/trustloop/identity"
	"github.com/trustloop/trustloop/ingest"
	"github.com/trustloop/trustloop/keyring"
	"github.com/trustloop/trustloop/metrics"
	"github.com/trustloop/trustloop/privacy"
	"github.com/trustloop/trustloop/profile"
	"github.com/trustloop/trustloop/projection"
	"github.com/trustloop/trustloop/sqlite"
)

// testWriteKey is the write key of every test server's source.
const testWriteKey = "wk_test_0123456789abcdefghijklmnop"

// clock is a settable time source for Server.Now.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock(t time.Time) *clock { return &clock{t: t} }

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// options tune one test server.
type options struct {
	config         tlhttp.Config
	allowedOrigins []string
	// wrap, when set, wraps the real pipeline as the server's Ingester.
	wrap  func(tlhttp.Ingester) tlhttp.Ingester
	ready func(context.Context) error
	// regime, when set, enforces consent (the consent service, the collector's
	// admission and purpose-bound reads) with the workspace in this regime.
	regime string
}

// testServer is a whole collector in process: SQLite store, keyring, pipeline,
// metrics and the HTTP server, reached over real HTTP.
type testServer struct {
	URL      string
	Store    *sqlite.DB
	Keyring  *keyring.Keyring
	Pipeline *ingest.Pipeline
	Metrics  *metrics.Metrics
	Server   *tlhttp.Server
	Clock    *clock
	WS       *trustloop.Workspace
	Source   *trustloop.Source
	Profiles *projection.Service
	Consent  *consent.Service
	Audit    *auditlog.Log
	// Privacy runs privacy requests (with consent on); tests drive its worker
	// with RunOnce.
	Privacy *privacy.Service
	// ids counts the messageIds the server generated.
	ids atomic.Int64
}

// fixedNow is the test servers' starting time: millisecond precision, as stored,
// and near the real time, because the store expires its dedupe window by its own
// clock.
var fixedNow = time.Now().UTC().Truncate(time.Millisecond)

func newServer(t testing.TB, opt options) *testServer {
	t.Helper()
	ctx := context.Background()
	db, err := sqlite.Open(ctx, t.TempDir())
	if err != nil {
		t.Fatalf("open store: %v", err)
	}
	master := bytes.Repeat([]byte{7}, keyring.KeySize)
	kr := keyring.New(master, 1000)
	kr.Load = db.FindWorkspace
	wh := sha256.Sum256([]byte(testWriteKey))
	ah := sha256.Sum256([]byte("tl_admin_test"))
	b := &trustloop.Bootstrap{
		Workspace: trustloop.Workspace{Name: "default", IndexKey: kr.NewIndexKey()},
		Source:    trustloop.Source{Name: "default", WriteKeyHash: wh[:], AllowedOrigins: opt.allowedOrigins},
		// Every purpose but sharing, so a read for sharing is refused (403).
		AdminKey: trustloop.APIKey{Name: "admin", SecretHash: ah[:], Roles: []string{trustloop.RoleAdmin},
			Purposes: []string{"essential", "analytics", "personalization", "marketing"}},
	}
	if created, err := db.Bootstrap(ctx, b); err != nil || !created {
		t.Fatalf("bootstrap: created=%v err=%v", created, err)
	}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	m := metrics.New()
	rules, err := identity.Compile(identity.DefaultConfig())
	if err != nil {
		t.Fatal(err)
	}
	profiles := projection.New(db, kr, rules, profile.Config{})
	profiles.OnSkip = m.Skip
	var (
		cs    *consent.Service
		admit ingest.Admitter
		al    *auditlog.Log
	)
	if opt.regime != "" {
		if err := kr.AddWorkspace(&b.Workspace); err != nil {
			t.Fatal(err)
		}
		cs = consent.New(db, kr, log, 100_000)
		c := consent.DefaultCatalog()
		c.Regime = opt.regime
		if _, err := cs.PutCatalog(ctx, b.Workspace.ID, c, 0); err != nil {
			t.Fatal(err)
		}
		al = auditlog.New(db, kr, auditlog.Config{})
		cs.OnChange = func(ctx context.Context, recs []trustloop.ConsentRecord) {
			if err := al.Append(ctx, consent.AuditEntries(recs)...); err != nil {
				t.Errorf("audit: %v", err)
			}
		}
		admit = func(ctx context.Context, src *trustloop.Source, m *trustloop.Message, hash, user, anon []byte) ([]string, error) {
			a, err := cs.Admit(ctx, src, m, hash, user, anon)
			return a.Purposes, err
		}
	}
	p := ingest.New(db, kr, m, log, admit, ingest.Config{Projection: profiles})
	ts := &testServer{Store: db, Keyring: kr, Pipeline: p, Metrics: m, Clock: newClock(fixedNow),
		WS: &b.Workspace, Source: &b.Source, Profiles: profiles, Consent: cs, Audit: al}
	var ing tlhttp.Ingester = p
	if opt.wrap != nil {
		ing = opt.wrap(p)
	}
	ready := db.Ping
	if opt.ready != nil {
		ready = opt.ready
	}
	if cs != nil {
		ts.Privacy = &privacy.Service{Store: db, Keys: kr, Consent: cs, Profiles: profiles, Audit: al, Ingest: p,
			Log: log, Now: ts.Clock.Now, Worker: "test"}
	}
	pages, err := html.New(html.English(), html.German())
	if err != nil {
		t.Fatal(err)
	}
	ts.Server = &tlhttp.Server{Store: db, Ingester: ing, Profiles: profiles, Consent: cs, Audit: al, Privacy: ts.Privacy, Metrics: m, Log: log, Config: opt.config,
		Pages: pages, WebKeys: kr, Operators: db, Counts: db,
		Ready: ready, Now: ts.Clock.Now,
		NewID: func() string { return fmt.Sprintf("generated-%d", ts.ids.Add(1)) }}
	hs := httptest.NewServer(ts.Server.Handler())
	ts.URL = hs.URL
	t.Cleanup(func() {
		hs.Close()
		p.Close()
		if al != nil {
			al.Close()
		}
		if err := db.Close(); err != nil {
			t.Errorf("close store: %v", err)
		}
	})
	return ts
}

// response is what a request got back.
type response struct {
	Status int
	Header http.Header
	Body   []byte
}

// apiError is the JSON error body.
type apiError struct {
	Error struct {
		Code    string                  `json:"code"`
		Message string                  `json:"message"`
		Hint    string                  `json:"hint"`
		Details []trustloop.ErrorDetail `json:"details"`
	} `json:"error"`
}

func (r *response) apiError(t *testing.T) apiError {
	t.Helper()
	var e apiError
	if err := json.Unmarshal(r.Body, &e); err != nil {
		t.Fatalf("error body is not JSON: %v: %s", err, r.Body)
	}
	if ct := r.Header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("error Content-Type = %q, want application/json", ct)
	}
	return e
}

// req describes one request.
type req struct {
	method string // default POST
	path   string
	body   []byte
	// bodyReader, when set, is sent instead of body with an unknown length
	// (chunked).
	bodyReader io.Reader
	// auth is the Basic auth user name (the write key), sent with an empty password.
	auth    string
	headers map[string]string
}

func (s *testServer) do(t testing.TB, r req) *response {
	t.Helper()
	res, err := s.send(r)
	if err != nil {
		t.Fatal(err)
	}
	return res
}

// send is do for goroutines other than the test's: it returns its error.
func (s *testServer) send(r req) (*response, error) {
	if r.method == "" {
		r.method = http.MethodPost
	}
	var body io.Reader
	if r.bodyReader != nil {
		body = io.MultiReader(r.bodyReader) // hides the length: sent chunked
	} else if r.body != nil {
		body = bytes.NewReader(r.body)
	}
	hr, err := http.NewRequest(r.method, s.URL+r.path, body)
	if err != nil {
		return nil, err
	}
	if r.auth != "" {
		hr.SetBasicAuth(r.auth, "")
	}
	if r.body != nil || r.bodyReader != nil {
		hr.Header.Set("Content-Type", "application/json")
	}
	for k, v := range r.headers {
		if v == "" {
			hr.Header.Del(k)
		} else {
			hr.Header.Set(k, v)
		}
	}
	res, err := http.DefaultClient.Do(hr)
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w", r.method, r.path, err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		return nil, fmt.Errorf("%s %s: read body: %w", r.method, r.path, err)
	}
	return &response{Status: res.StatusCode, Header: res.Header, Body: b}, nil
}

// post sends body to path with Basic auth and application/json.
func (s *testServer) post(t testing.TB, path string, body any) *response {
	t.Helper()
	return s.do(t, req{path: path, body: mustJSON(t, body), auth: testWriteKey})
}

// mustOK fails the test unless the response is 200 {"success":true}.
func mustOK(t testing.TB, r *response) {
	t.Helper()
	if r.Status != http.StatusOK {
		t.Fatalf("status = %d, want 200; body %s", r.Status, r.Body)
	}
	if got := strings.TrimSpace(string(r.Body)); got != `{"success":true}` {
		t.Fatalf("body = %s, want {\"success\":true}", got)
	}
	if ct := r.Header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("Content-Type = %q, want application/json", ct)
	}
}

// events counts the stored events.
func (s *testServer) events(t *testing.T) int64 {
	t.Helper()
	st, err := s.Store.Stats(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return st.Events
}

// list returns every stored event.
func (s *testServer) list(t *testing.T) []trustloop.StoredEvent {
	t.Helper()
	evs, err := s.Store.ListEvents(context.Background(), s.WS.ID, 0, 100_000)
	if err != nil {
		t.Fatal(err)
	}
	return evs
}

// open decrypts a stored event sealed under the key of the subject (idType, value)
// and returns its envelope and plaintext.
func (s *testServer) open(t *testing.T, ev trustloop.StoredEvent, idType, value string) (*collect.Envelope, []byte) {
	t.Helper()
	ctx := context.Background()
	blind, err := s.Keyring.Blind(s.WS.ID, idType, value)
	if err != nil {
		t.Fatal(err)
	}
	keys, err := s.Store.FindSubjectKeys(ctx, s.WS.ID, [][]byte{blind})
	if err != nil {
		t.Fatal(err)
	}
	sk, ok := keys[string(blind)]
	if !ok {
		t.Fatalf("no subject key for %s", idType)
	}
	if sk.ID != ev.KeyID {
		t.Fatalf("event sealed under key %d, subject key is %d", ev.KeyID, sk.ID)
	}
	key, err := s.Keyring.OpenSubjectKey(sk)
	if err != nil {
		t.Fatal(err)
	}
	plain, err := keyring.Open(key.DEK, ev.Payload, keyring.EventAAD(nil, s.WS.ID, s.Source.ID, ev.MessageHash))
	if err != nil {
		t.Fatalf("open payload: %v", err)
	}
	env, err := collect.OpenEnvelope(plain)
	if err != nil {
		t.Fatal(err)
	}
	return env, plain
}

// openAll decrypts every stored event, all of one subject.
func (s *testServer) openAll(t *testing.T, idType, value string) []*collect.Envelope {
	t.Helper()
	var out []*collect.Envelope
	for _, ev := range s.list(t) {
		env, _ := s.open(t, ev, idType, value)
		out = append(out, env)
	}
	return out
}

// metricsText returns the /metrics page.
func (s *testServer) metricsText(t *testing.T) string {
	t.Helper()
	r := s.do(t, req{method: http.MethodGet, path: "/metrics"})
	if r.Status != http.StatusOK {
		t.Fatalf("/metrics: %d", r.Status)
	}
	return string(r.Body)
}

func mustJSON(t testing.TB, v any) []byte {
	t.Helper()
	if b, ok := v.([]byte); ok {
		return b
	}
	if s, ok := v.(string); ok {
		return []byte(s)
	}
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func gzipBytes(t *testing.T, b []byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw, _ := gzip.NewWriterLevel(&buf, gzip.BestCompression)
	if _, err := zw.Write(b); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// obj is a JSON object under construction.
type obj = map[string]any

// msg returns a valid message of the given type (with "type" set), for user u.
func msg(typ, u, messageID string) obj {
	m := obj{"type": typ, "userId": u}
	if messageID != "" {
		m["messageId"] = messageID
	}
	switch typ {
	case "track":
		m["event"] = "Product Viewed"
		m["properties"] = obj{"product_id": "p-1", "price": 9.99}
	case "identify":
		m["traits"] = obj{"plan": "pro"}
	case "page", "screen":
		m["name"] = "Home"
		m["properties"] = obj{"path": "/"}
	case "group":
		m["groupId"] = "acme"
	case "alias":
		m["previousId"] = "anon-" + u
	}
	return m
}

func batchOf(msgs ...obj) obj {
	items := make([]any, len(msgs))
	for i, m := range msgs {
		items[i] = m
	}
	return obj{"batch": items}
}
