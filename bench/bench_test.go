package bench

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/trustloop/trustloop/collect"
	"github.com/trustloop/trustloop/recommend"
)

// The generated load must be what the collector accepts, or the benchmark would
// measure error paths.
func TestGeneratorMakesValidUniqueEvents(t *testing.T) {
	g := newGenerator(42, 1000)
	seen := map[string]bool{}
	opt := collect.Options{ReceivedAt: time.Now(), NewID: func() string { t.Fatal("generator left out a messageId"); return "" }}
	for i := 0; i < 20; i++ {
		req, err := collect.Decode(g.batch(nil, 100, time.Now()), collect.Batch, opt)
		if err != nil {
			t.Fatalf("batch %d does not decode: %v", i, err)
		}
		if len(req.Messages) != 100 {
			t.Fatalf("batch of %d messages, want 100", len(req.Messages))
		}
		for _, m := range req.Messages {
			if seen[m.MessageID] {
				t.Fatalf("messageId %s repeated", m.MessageID)
			}
			seen[m.MessageID] = true
		}
		one, err := collect.Decode(g.track(nil, time.Now()), collect.Route{Type: 1}, opt)
		if err != nil || len(one.Messages) != 1 || one.Messages[0].Event == "" {
			t.Fatalf("track body: %v", err)
		}
	}
}

func TestRunRefusesBadConfig(t *testing.T) {
	for _, cfg := range []Config{
		{Shape: "stream", Concurrency: 1, BatchSize: 1, Duration: time.Second, Users: 1, WriteKey: "k"},
		{Shape: "batch", Concurrency: 0, BatchSize: 1, Duration: time.Second, Users: 1, WriteKey: "k"},
		{Shape: "batch", Concurrency: 1, BatchSize: 2501, Duration: time.Second, Users: 1, WriteKey: "k"},
		{Shape: "batch", Concurrency: 1, BatchSize: 1, Duration: time.Second, Users: 1},
	} {
		if _, err := Run(context.Background(), cfg); err == nil {
			t.Errorf("Run(%+v) accepted", cfg)
		}
	}
	_, err := Run(context.Background(), Config{URL: "http://127.0.0.1:1", Shape: "track", Concurrency: 1, BatchSize: 1,
		Duration: time.Second, Users: 1, WriteKey: "k"})
	if err == nil || !strings.Contains(err.Error(), "cannot reach") {
		t.Errorf("unreachable server: %v", err)
	}
}

// The shopping history is what its flags say, the same for a seed, and each
// user's consent update comes before their first interaction.
func TestShopHistory(t *testing.T) {
	_, evs, st := shopHistory(7, 500, 300, 5_000)
	_, again, st2 := shopHistory(7, 500, 300, 5_000)
	if st != st2 || len(evs) != len(again) {
		t.Fatalf("not deterministic: %+v vs %+v", st, st2)
	}
	for i := range evs {
		if evs[i].user != again[i].user || evs[i].kind != again[i].kind || !slices.Equal(evs[i].items, again[i].items) {
			t.Fatalf("event %d differs", i)
		}
	}
	if st.Interactions != 5_000 || st.Consents != 500 || len(evs) != 5_500 || st.Viewed+st.Added+st.Ordered != 5_000 {
		t.Fatalf("stats %+v, %d events", st, len(evs))
	}
	if st.Added == 0 || st.Ordered == 0 || st.Viewed < st.Added {
		t.Fatalf("no funnel: %+v", st)
	}
	consented := map[int32]bool{}
	perUser := map[int32]int{}
	var last time.Duration
	for _, ev := range evs {
		if ev.at < last {
			t.Fatalf("time goes back")
		}
		last = ev.at
		if ev.kind == evConsent {
			if consented[ev.user] {
				t.Fatalf("user %d consents twice", ev.user)
			}
			consented[ev.user] = true
			continue
		}
		if !consented[ev.user] {
			t.Fatalf("user %d interacts before consenting", ev.user)
		}
		perUser[ev.user]++
	}
	if len(perUser) != 500 {
		t.Fatalf("%d users interacted, want all 500", len(perUser))
	}
	// Popularity is skewed: the most popular tenth of the items gets far more
	// than a tenth of the interactions.
	top := 0
	for _, ev := range evs {
		for _, it := range ev.items {
			if it < 30 {
				top++
			}
		}
	}
	if top < len(evs)/4 {
		t.Errorf("the top 10 %% of items got %d of %d events", top, len(evs))
	}
}

// The history's messages decode, and each interaction names its products as
// the recommender reads them.
func TestShopEventsDecode(t *testing.T) {
	c, evs, _ := shopHistory(3, 50, 100, 500)
	body := []byte(`{"batch":[`)
	for i := range evs {
		if i > 0 {
			body = append(body, ',')
		}
		body = c.appendShopEvent(body, &evs[i], 3, i, time.Now().Add(-historySpan))
	}
	body = append(body, `]}`...)
	req, err := collect.Decode(body, collect.Batch, collect.Options{ReceivedAt: time.Now(), NewID: func() string { return "x" }})
	if err != nil {
		t.Fatal(err)
	}
	if len(req.Messages) != len(evs) {
		t.Fatalf("%d messages, want %d", len(req.Messages), len(evs))
	}
	cfg := recommend.Defaults()
	for i, m := range req.Messages {
		ev := evs[i]
		if m.UserID != ShopperPrefix+strconv.Itoa(int(ev.user)) || m.GeneratedID {
			t.Fatalf("message %d: user %q, generated id %v", i, m.UserID, m.GeneratedID)
		}
		in, reason := cfg.Extract(&m)
		if ev.kind == evConsent {
			if in != nil || m.Consent.CategoryPreferences["Personalization"] != true {
				t.Fatalf("consent message %d: %+v %+v", i, in, m.Consent)
			}
			continue
		}
		if in == nil || len(in.Items) != len(ev.items) || in.Items[0] != "p-"+strconv.Itoa(int(ev.items[0])) {
			t.Fatalf("message %d (%s): interaction %+v (%s), want items %v", i, m.Event, in, reason, ev.items)
		}
	}
}

// load-interactions posts every event once, each user's in order; recommend
// resolves the profiles, counts personalized answers and every non-200.
func TestLoadAndRecommendAgainstFakeServer(t *testing.T) {
	var mu sync.Mutex
	seen := map[string][]string{} // userId → events in arrival order
	total := 0
	var calls atomic.Int64
	mux := http.NewServeMux()
	mux.HandleFunc("POST /v1/batch", func(w http.ResponseWriter, r *http.Request) {
		if u, _, _ := r.BasicAuth(); u != "wk" {
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		b, _ := io.ReadAll(r.Body)
		req, err := collect.Decode(b, collect.Batch, collect.Options{ReceivedAt: time.Now(), NewID: func() string { return "x" }})
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		mu.Lock()
		for _, m := range req.Messages {
			seen[m.UserID] = append(seen[m.UserID], m.Event)
			total++
		}
		mu.Unlock()
		w.Write([]byte(`{"success":true}`))
	})
	auth := func(r *http.Request) bool { return r.Header.Get("Authorization") == "Bearer ak" }
	mux.HandleFunc("GET /v1/recommender/model", func(w http.ResponseWriter, r *http.Request) {
		if !auth(r) {
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		w.Write([]byte(`{"subjects":40,"items":90,"pairs":1234,"pending":0,"digest":"x"}`))
	})
	mux.HandleFunc("GET /v1/profiles/lookup", func(w http.ResponseWriter, r *http.Request) {
		id, _ := strings.CutPrefix(r.URL.Query().Get("identifier"), "user_id:"+ShopperPrefix)
		if !auth(r) || r.URL.Query().Get("purpose") != "essential" || id == "7" {
			w.WriteHeader(http.StatusNotFound)
			return
		}
		w.Write([]byte(`{"profile_id":"prof_` + id + `","identities":[]}`))
	})
	mux.HandleFunc("GET /v1/profiles/{id}/recommendations", func(w http.ResponseWriter, r *http.Request) {
		n := calls.Add(1)
		switch {
		case !auth(r) || r.URL.Query().Get("limit") != "10":
			w.WriteHeader(http.StatusBadRequest)
		case n%10 == 0:
			w.WriteHeader(http.StatusInternalServerError)
		case r.PathValue("id") == "prof_1":
			w.Write([]byte(`{"profile_id":"prof_1","personalized":false,"reason":"no_history","items":[]}`))
		default:
			w.Write([]byte(`{"profile_id":"` + r.PathValue("id") + `","personalized":true,"items":[{"item_id":"p-1"}]}`))
		}
	})
	srv := httptest.NewServer(mux)
	defer srv.Close()

	res, err := Run(context.Background(), Config{URL: srv.URL, WriteKey: "wk", Shape: ShapeLoad, Concurrency: 3, BatchSize: 64,
		Users: 40, Items: 90, Interactions: 600, Seed: 5})
	if err != nil {
		t.Fatal(err)
	}
	if res.Load == nil || res.Load.Interactions != 600 || res.Events != 640 || total != 640 || len(seen) != 40 {
		t.Fatalf("load: %+v %+v; server saw %d events of %d users", res, res.Load, total, len(seen))
	}
	for u, evs := range seen {
		if evs[0] != "Segment Consent Preference Updated" || slices.Index(evs[1:], evs[0]) >= 0 {
			t.Fatalf("user %s: events %v", u, evs)
		}
	}
	var out strings.Builder
	if err := res.Print(&out, false); err != nil || !strings.Contains(out.String(), "600 interactions") {
		t.Fatalf("print: %v\n%s", err, out.String())
	}

	res, err = Run(context.Background(), Config{URL: srv.URL, APIKey: "ak", Shape: ShapeRecommend, Concurrency: 2,
		Users: 40, Duration: 300 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if res.Profiles != 39 || res.Errors["lookup HTTP 404"] != 1 || res.Model == nil || res.Model.Pairs != 1234 {
		t.Fatalf("resolve: %d profiles, errors %v, model %+v", res.Profiles, res.Errors, res.Model)
	}
	if res.Requests == 0 || *res.Non200 == 0 || int64(res.Errors["HTTP 500"]) != *res.Non200 ||
		*res.Personalized == 0 || *res.Personalized >= res.Requests {
		t.Fatalf("recommend: %d requests, %d non-200, %d personalized, errors %v", res.Requests, *res.Non200, *res.Personalized, res.Errors)
	}
	out.Reset()
	if err := res.Print(&out, false); err != nil || !strings.Contains(out.String(), "personalized") || !strings.Contains(out.String(), "p90") {
		t.Fatalf("print: %v\n%s", err, out.String())
	}
	if _, err := Run(context.Background(), Config{URL: srv.URL, APIKey: "wrong", Shape: ShapeRecommend, Concurrency: 1,
		Duration: time.Second}); err == nil || !strings.Contains(err.Error(), "HTTP 401") {
		t.Errorf("wrong key: %v", err)
	}
	if _, err := Run(context.Background(), Config{URL: srv.URL, Shape: ShapeRecommend, Concurrency: 1, Duration: time.Second}); err == nil {
		t.Errorf("recommend without an API key accepted")
	}
}

// An open-loop run offers its rate whatever the server does, and times each
// request from when it was due: a server slower than the offered rate shows as
// latencies that grow past its service time, where a closed-loop run would
// report the service time alone (coordinated omission).
func TestOpenLoopCountsFromWhenDue(t *testing.T) {
	const service = 20 * time.Millisecond // one request at a time: 50 a second
	var mu sync.Mutex
	var served atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/v1/track" {
			return // the RSS sampler's /metrics
		}
		mu.Lock()
		time.Sleep(service)
		mu.Unlock()
		served.Add(1)
	}))
	defer srv.Close()
	base := Config{URL: srv.URL, Shape: "track", Concurrency: 4, BatchSize: 1, Users: 10, WriteKey: "k",
		Duration: time.Second, Warmup: 0}

	closed, err := Run(context.Background(), base)
	if err != nil {
		t.Fatal(err)
	}
	open := base
	open.Rate = 100 // twice what the server can take
	before := served.Load()
	res, err := Run(context.Background(), open)
	if err != nil {
		t.Fatal(err)
	}
	if res.Rate != 100 {
		t.Errorf("result rate %v, want 100", res.Rate)
	}
	// Closed loop, 4 workers queue behind one another: about 4 service times.
	if closed.P50ms > 150 {
		t.Errorf("closed loop p50 %.1f ms, want about 80", closed.P50ms)
	}
	// Open loop: the backlog grows by ~50 requests a second, so the last
	// requests waited ~0.5 s or more from when they were due; all 100 due
	// in the measured second are sent and counted, the slowest included.
	if res.Requests != 100 || res.Unsent != 0 {
		t.Errorf("open loop measured %d requests (%d unsent), want the 100 due", res.Requests, res.Unsent)
	}
	if res.MaxMS < 300 {
		t.Errorf("open loop max %.1f ms: latency not counted from when requests were due", res.MaxMS)
	}
	if res.Late == 0 {
		t.Errorf("open loop counted no late request, though every worker was busy")
	}
	// It sends no more than offered: at most rate × duration (+ the probe).
	if n := served.Load() - before; n > 101+1 {
		t.Errorf("served %d requests, more than the 100 offered", n)
	}
}

func TestOpenLoopKeepsItsRate(t *testing.T) {
	var served atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/v1/track" { // not the RSS sampler's /metrics
			served.Add(1)
		}
	}))
	defer srv.Close()
	res, err := Run(context.Background(), Config{URL: srv.URL, Shape: "track", Concurrency: 8, BatchSize: 1, Users: 10,
		WriteKey: "k", Duration: time.Second, Warmup: 200 * time.Millisecond, Rate: 200})
	if err != nil {
		t.Fatal(err)
	}
	// 240 due in warm-up and measurement; the measured ones are the 200 due
	// in the measured second, all sent however late the generator runs.
	if res.Requests+res.Unsent < 199 || res.Requests > 201 || res.Unsent != 0 {
		t.Errorf("measured %d requests (%d unsent) in 1 s at 200/s, want 200", res.Requests, res.Unsent)
	}
	if n := served.Load(); n > 241+1 {
		t.Errorf("served %d requests, more than the 240 offered (+ the probe)", n)
	}
	if _, err := Run(context.Background(), Config{URL: srv.URL, Shape: "track", Concurrency: 1, BatchSize: 1, Users: 1,
		WriteKey: "k", Duration: time.Second, Rate: -1}); err == nil || !strings.Contains(err.Error(), "--rate") {
		t.Errorf("a negative rate: %v", err)
	}
}

// A server so far behind that requests due in the window are still unsent long
// after it: they are reported as unsent, not left out silently, and the run
// ends.
func TestOpenLoopReportsUnsent(t *testing.T) {
	old := drainFor
	drainFor = 300 * time.Millisecond
	defer func() { drainFor = old }()
	var calls atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/v1/track" && calls.Add(1) > 1 { // not the probe
			time.Sleep(100 * time.Millisecond) // 10 a second from one worker
		}
	}))
	defer srv.Close()
	t0 := time.Now()
	res, err := Run(context.Background(), Config{URL: srv.URL, Shape: "track", Concurrency: 1, BatchSize: 1, Users: 1,
		WriteKey: "k", Duration: 500 * time.Millisecond, Rate: 100})
	if err != nil {
		t.Fatal(err)
	}
	// 50 due; about 8 answered by the end of the drain, the rest unsent.
	if res.Unsent < 20 || res.Requests+res.Unsent != 50 {
		t.Errorf("requests %d, unsent %d; want most of the 50 due unsent and every one accounted for", res.Requests, res.Unsent)
	}
	if d := time.Since(t0); d > 10*time.Second {
		t.Errorf("the run took %s", d)
	}
}
