package http_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/trustloop/trustloop"
	tlhttp "github.com/trustloop/trustloop/http"
)

// gatedIngester holds each Ingest until the test opens the gate, then delegates to
// the real pipeline, and records when Ingest returned.
type gatedIngester struct {
	next     tlhttp.Ingester
	gate     chan struct{}
	entered  chan struct{}
	returned atomic.Bool
	err      error
}

func (g *gatedIngester) Ingest(ctx context.Context, src *trustloop.Source, msgs []trustloop.Message) error {
	g.entered <- struct{}{}
	<-g.gate
	err := g.next.Ingest(ctx, src, msgs)
	if err == nil {
		err = g.err
	}
	g.returned.Store(true)
	return err
}

// TestCollectAnswersAfterCommit: the 200 comes only once Ingest returned, that is
// once the events are committed.
func TestCollectAnswersAfterCommit(t *testing.T) {
	var g *gatedIngester
	s := newServer(t, options{wrap: func(next tlhttp.Ingester) tlhttp.Ingester {
		g = &gatedIngester{next: next, gate: make(chan struct{}), entered: make(chan struct{}, 1)}
		return g
	}})
	done := make(chan *response, 1)
	body := mustJSON(t, batchOf(msg("track", "u1", "c-1"), msg("identify", "u1", "c-2")))
	go func() {
		r, err := s.send(req{path: "/v1/batch", auth: testWriteKey, body: body})
		if err != nil {
			r = &response{Body: []byte(err.Error())}
		}
		done <- r
	}()
	select {
	case <-g.entered:
	case <-time.After(10 * time.Second):
		t.Fatal("Ingest was not called")
	}
	select {
	case r := <-done:
		t.Fatalf("answered %d before Ingest returned", r.Status)
	case <-time.After(200 * time.Millisecond):
	}
	if s.events(t) != 0 {
		t.Fatal("events stored before Ingest")
	}
	close(g.gate)
	var r *response
	select {
	case r = <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("no answer after Ingest returned")
	}
	if !g.returned.Load() {
		t.Fatal("answered before Ingest returned")
	}
	mustOK(t, r)
	// The answer implies the commit: the events are readable at once.
	if got := s.events(t); got != 2 {
		t.Errorf("events = %d right after 200, want 2", got)
	}
}

// errIngester fails every Ingest with err, storing nothing.
type errIngester struct{ err error }

func (e errIngester) Ingest(context.Context, *trustloop.Source, []trustloop.Message) error {
	return e.err
}

func TestCollectIngestErrors(t *testing.T) {
	const secret = "pq: connection to 10.0.0.7 failed for user alice@example.com"
	for _, tc := range []struct {
		name       string
		err        error
		wantStatus int
		wantCode   string
		wantMsg    string
		wantRetry  string
	}{
		{"unavailable", &trustloop.Error{Code: trustloop.EUNAVAILABLE, Message: "The collector is shutting down.",
			Hint: "Retry later.", RetryAfterSeconds: 1}, 503, "unavailable", "The collector is shutting down.", "1"},
		{"unavailable wrapped", fmt.Errorf("ingest: %w", &trustloop.Error{Code: trustloop.EUNAVAILABLE,
			Message: "Busy.", Hint: "Retry later.", RetryAfterSeconds: 7}), 503, "unavailable", "Busy.", "7"},
		{"plain error", errors.New(secret), 500, "internal", "Internal error.", ""},
		{"context canceled", context.Canceled, 500, "internal", "Internal error.", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := newServer(t, options{wrap: func(tlhttp.Ingester) tlhttp.Ingester { return errIngester{tc.err} }})
			r := s.post(t, "/v1/track", msg("track", "alice@example.com", "i-1"))
			checkRejection(t, r, rejection{wantStatus: tc.wantStatus, wantCode: tc.wantCode, wantMsg: tc.wantMsg})
			if got := r.Header.Get("Retry-After"); got != tc.wantRetry {
				t.Errorf("Retry-After = %q, want %q", got, tc.wantRetry)
			}
			if tc.wantCode == "internal" {
				e := r.apiError(t)
				if e.Error.Message != "Internal error." {
					t.Errorf("message = %q", e.Error.Message)
				}
				for _, leak := range []string{"10.0.0.7", "alice", "pq:", "canceled"} {
					if strings.Contains(string(r.Body), leak) {
						t.Errorf("the answer leaks %q: %s", leak, r.Body)
					}
				}
			}
			if s.events(t) != 0 {
				t.Error("stored events")
			}
			if got := rejectedCount(t, s, tc.wantCode); got != 1 {
				t.Errorf("rejected{%s} = %v", tc.wantCode, got)
			}
		})
	}
}

// TestCollectPipelineClosed: a server whose pipeline has stopped answers 503 with
// Retry-After, not 200 and not 500.
func TestCollectPipelineClosed(t *testing.T) {
	s := newServer(t, options{})
	mustOK(t, s.post(t, "/v1/track", msg("track", "u1", "")))
	s.Pipeline.Close()
	r := s.post(t, "/v1/track", msg("track", "u1", ""))
	checkRejection(t, r, rejection{wantStatus: 503, wantCode: "unavailable", wantMsg: "shutting down"})
	if r.Header.Get("Retry-After") == "" {
		t.Error("no Retry-After")
	}
	if s.events(t) != 1 {
		t.Errorf("events = %d", s.events(t))
	}
}

// TestCollectErrorsHoldNoPersonalData: refusals never echo identifiers, traits or
// properties back (the answer may be logged by proxies and clients).
func TestCollectErrorsHoldNoPersonalData(t *testing.T) {
	s := newServer(t, options{})
	const email = "jane.doe+tl9f3@example.org"
	const userID = "user-7f3a9c2e-PII"
	const secret = "4111-1111-1111-1111"
	j := func(v any) []byte { return mustJSON(t, v) }
	big := strings.Repeat("z", trustloop.MaxEventBytes) + email
	for _, tc := range []struct {
		name string
		path string
		body []byte
		ct   string
		// noAuth: the write key is in the body.
		noAuth bool
	}{
		{"missing event", "/v1/track", j(obj{"userId": email, "properties": obj{"card": secret}}), "", false},
		{"missing ids", "/v1/identify", j(obj{"traits": obj{"email": email, "card": secret}}), "", false},
		{"userId too long", "/v1/track", j(obj{"event": "e", "userId": email + strings.Repeat("x", 1100)}), "", false},
		{"userId wrong type", "/v1/track", j(obj{"event": "e", "userId": obj{"email": email}}), "", false},
		{"bad type name", "/v1/batch", j(batchOf(obj{"type": email, "userId": userID})), "", false},
		{"bad timestamp", "/v1/track", j(obj{"event": "e", "userId": userID, "timestamp": email}), "", false},
		{"bad messageId", "/v1/track", j(obj{"event": "e", "userId": userID, "messageId": strings.Repeat(email, 10)}), "", false},
		{"bad consent", "/v1/track", j(obj{"event": "e", "userId": userID,
			"context": obj{"consent": obj{"categoryPreferences": obj{email: "yes"}}}}), "", false},
		{"malformed after identifiers", "/v1/track", []byte(`{"userId":"` + userID + `","traits":{"email":"` + email + `"},`), "", false},
		{"malformed inside identifier", "/v1/track", []byte(`{"userId":"` + userID + "\x01" + email + `"}`), "", false},
		{"too large", "/v1/track", j(obj{"event": "e", "userId": userID, "properties": obj{"blob": big}}), "", false},
		{"batch one bad", "/v1/batch", j(batchOf(msg("track", userID, "ok"), obj{"type": "track", "userId": email})), "", false},
		{"unknown key", "/v1/t", j(obj{"writeKey": email, "event": "e", "userId": userID}), "text/plain", true},
		{"form", "/v1/track", []byte("userId=" + userID + "&email=" + email), "application/x-www-form-urlencoded", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rq := req{path: tc.path, body: tc.body}
			if tc.ct != "" {
				rq.headers = map[string]string{"Content-Type": tc.ct}
			}
			if !tc.noAuth {
				rq.auth = testWriteKey
			}
			r := s.do(t, rq)
			if r.Status < 400 {
				t.Fatalf("status = %d, want a refusal", r.Status)
			}
			for _, pii := range []string{email, "jane.doe", userID, secret} {
				if bytes.Contains(r.Body, []byte(pii)) {
					t.Errorf("the %d answer holds %q: %s", r.Status, pii, r.Body)
				}
			}
			var e apiError
			if err := json.Unmarshal(r.Body, &e); err != nil || e.Error.Code == "" {
				t.Errorf("not an error body: %s", r.Body)
			}
		})
	}
	if s.events(t) != 0 {
		t.Errorf("events = %d", s.events(t))
	}
}

// TestCollectWriteKeyRemoved: wherever and however often the body holds writeKey,
// the stored message does not.
func TestCollectWriteKeyRemoved(t *testing.T) {
	s := newServer(t, options{})
	wk := testWriteKey
	for i, body := range []string{
		`{"writeKey":"` + wk + `","event":"e","userId":"u1"}`,
		`{"event":"e","writeKey":"` + wk + `","userId":"u1"}`,
		`{"event":"e","userId":"u1","writeKey":"` + wk + `"}`,
		`{ "event" : "e" , "writeKey" : "` + wk + `" , "userId" : "u1" }`,
		"{\n  \"event\": \"e\",\n  \"userId\": \"u1\",\n  \"writeKey\": \"" + wk + "\"\n}",
		`{"writeKey":"` + wk + `","event":"e","writeKey":"` + wk + `","userId":"u1"}`,
		`{"write\u004bey":"` + wk + `","event":"e","userId":"u1"}`,
		`{"event":"e","userId":"u1","properties":{"writeKey":"nested is kept"},"writeKey":"` + wk + `"}`,
	} {
		t.Run(fmt.Sprint(i), func(t *testing.T) {
			before := len(s.list(t))
			mustOK(t, s.do(t, req{path: "/v1/t", body: []byte(body), headers: map[string]string{"Content-Type": "text/plain"}}))
			evs := s.list(t)
			if len(evs) != before+1 {
				t.Fatalf("events = %d", len(evs))
			}
			env, plain := s.open(t, evs[len(evs)-1], "user_id", "u1")
			if bytes.Contains(plain, []byte(wk)) {
				t.Errorf("the write key was stored: %s", plain)
			}
			var m map[string]any
			if err := json.Unmarshal(env.Message, &m); err != nil {
				t.Fatalf("stored message is not JSON: %v: %s", err, env.Message)
			}
			if _, ok := m["writeKey"]; ok {
				t.Errorf("writeKey member stored: %s", env.Message)
			}
			if m["event"] != "e" || m["userId"] != "u1" {
				t.Errorf("message damaged: %s", env.Message)
			}
		})
	}
}

// TestCollectConcurrent sends from many goroutines at once (run with -race).
func TestCollectConcurrent(t *testing.T) {
	s := newServer(t, options{})
	const workers, perWorker = 8, 15
	reqs := make([][]req, workers)
	for w := range workers {
		for i := range perWorker {
			user := fmt.Sprintf("user-%d", (w*perWorker+i)%5)
			id := fmt.Sprintf("w%d-%d", w, i)
			switch i % 3 {
			case 0:
				reqs[w] = append(reqs[w], req{path: "/v1/track", auth: testWriteKey, body: mustJSON(t, msg("track", user, id))})
			case 1:
				reqs[w] = append(reqs[w], req{path: "/v1/batch", auth: testWriteKey, body: mustJSON(t, batchOf(msg("identify", user, id)))})
			default:
				m := msg("page", user, id)
				m["writeKey"] = testWriteKey
				reqs[w] = append(reqs[w], req{path: "/v1/p", body: gzipBytes(t, mustJSON(t, m)),
					headers: map[string]string{"Content-Type": "text/plain", "Content-Encoding": "gzip"}})
			}
		}
	}
	var wg sync.WaitGroup
	errs := make(chan string, workers*perWorker)
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for _, rq := range reqs[w] {
				r, err := s.send(rq)
				if err != nil {
					errs <- err.Error()
				} else if r.Status != http.StatusOK {
					errs <- fmt.Sprintf("%s: %d %s", rq.path, r.Status, r.Body)
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Error(e)
	}
	if got := s.events(t); got != workers*perWorker {
		t.Errorf("events = %d, want %d", got, workers*perWorker)
	}
}

// TestServerShutdownFinishesInFlight: Shutdown stops taking connections but waits
// for a request in flight, whose events are committed and answered 200.
func TestServerShutdownFinishesInFlight(t *testing.T) {
	var g *gatedIngester
	s := newServer(t, options{wrap: func(next tlhttp.Ingester) tlhttp.Ingester {
		g = &gatedIngester{next: next, gate: make(chan struct{}), entered: make(chan struct{}, 1)}
		return g
	}})
	if err := s.Server.Open("127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	live := &testServer{URL: "http://" + s.Server.Addr()}
	done := make(chan *response, 1)
	body := mustJSON(t, msg("track", "u1", "inflight"))
	go func() {
		r, err := live.send(req{path: "/v1/track", auth: testWriteKey, body: body})
		if err != nil {
			r = &response{Body: []byte(err.Error())}
		}
		done <- r
	}()
	select {
	case <-g.entered:
	case <-time.After(10 * time.Second):
		t.Fatal("Ingest was not called")
	}
	shut := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		shut <- s.Server.Shutdown(ctx)
	}()
	select {
	case err := <-shut:
		t.Fatalf("Shutdown returned (%v) with a request in flight", err)
	case <-time.After(200 * time.Millisecond):
	}
	// Draining: not ready, and no new connections.
	if r := s.do(t, req{method: http.MethodGet, path: "/readyz"}); r.Status != http.StatusServiceUnavailable {
		t.Errorf("readyz while shutting down = %d, want 503", r.Status)
	}
	if _, err := (&http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}).
		Get(live.URL + "/healthz"); err == nil {
		t.Error("a new connection was accepted during shutdown")
	}
	close(g.gate)
	select {
	case r := <-done:
		mustOK(t, r)
	case <-time.After(10 * time.Second):
		t.Fatal("the in-flight request got no answer")
	}
	select {
	case err := <-shut:
		if err != nil {
			t.Errorf("Shutdown: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Shutdown did not return")
	}
	if s.events(t) != 1 {
		t.Errorf("events = %d, want the in-flight one", s.events(t))
	}
}
