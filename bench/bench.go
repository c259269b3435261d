package bench

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Config describes one run.
type Config struct {
	URL      string
	WriteKey string
	// APIKey is the admin API key shape recommend reads with.
	APIKey      string
	Shape       string // "track", "batch", "recommend" or "load-interactions"
	BatchSize   int
	Concurrency int
	// Rate, when above 0, sends open loop: request k is due at k/Rate seconds
	// after the start, whatever the answers before it took, from up to
	// Concurrency workers; its latency counts from when it was due, so a
	// server (or a generator) that falls behind shows in the latencies instead
	// of slowing the sender down. 0 sends closed loop: each worker sends its
	// next request when its last one is answered.
	Rate     float64
	Duration time.Duration
	Warmup   time.Duration
	// Users is how many distinct users the load is spread over; 0 takes the
	// shape's default (DefaultUsers).
	Users int
	// Items and Interactions size the shopping history load-interactions
	// posts (0: 5,000 and 100,000); Seed makes it (0: 1).
	Items        int
	Interactions int
	Seed         uint64
	JSON         bool
}

// DefaultUsers is the user count of a shape when Config.Users is 0.
func DefaultUsers(shape string) int {
	if shape == ShapeRecommend || shape == ShapeLoad {
		return 10_000
	}
	return 100_000
}

// Result is what a run measured (after the warm-up).
type Result struct {
	Shape       string `json:"shape"`
	BatchSize   int    `json:"batch_size"`
	Concurrency int    `json:"concurrency"`
	// Rate is the offered rate of an open-loop run (requests/s); Late counts
	// its measured answers whose request went out over a millisecond after it
	// was due (no worker free, or the generator's own timer late on a busy
	// machine; their latency includes the wait).
	Rate float64 `json:"rate,omitempty"`
	Late int64   `json:"late,omitempty"`
	// Unsent counts an open-loop run's requests due in the measured window
	// that were never sent: the server was still drainFor (10 s) behind
	// after the end. Not in Requests; a run with any is overloaded.
	Unsent        int64          `json:"unsent,omitempty"`
	Seconds       float64        `json:"seconds"`
	Requests      int64          `json:"requests"`
	Events        int64          `json:"events"`
	EventsPerSec  float64        `json:"events_per_sec"`
	RequestsPerS  float64        `json:"requests_per_sec"`
	P50ms         float64        `json:"p50_ms"`
	P95ms         float64        `json:"p95_ms"`
	P99ms         float64        `json:"p99_ms"`
	MaxMS         float64        `json:"max_ms"`
	Errors        map[string]int `json:"errors"`
	ServerRSSMB   float64        `json:"server_max_rss_mb"` // -1 when /metrics could not be read
	ServerRSSSeen int            `json:"server_rss_samples"`

	// Shape recommend: the profiles resolved and how long that took, the
	// model's size before the run, the answers that were not 200 (each is
	// an error, also counted in Errors) and the 200 answers that were
	// personalized.
	P90ms         float64     `json:"p90_ms,omitempty"`
	Profiles      int         `json:"profiles,omitempty"`
	ResolveSecs   float64     `json:"resolve_seconds,omitempty"`
	Model         *ModelStats `json:"model,omitempty"`
	Non200        *int64      `json:"non_200,omitempty"`
	Personalized  *int64      `json:"personalized,omitempty"`
	PersonalShare float64     `json:"personalized_share,omitempty"`

	// Shape load-interactions: what was posted.
	Load *LoadStats `json:"load,omitempty"`
}

// Check names the first setting out of range for the shape, in the flags'
// terms, before anything is sent: Run calls it, and the command line calls it
// first to answer with a usage error.
func (cfg *Config) Check() error {
	users := cfg.Users
	if users == 0 {
		users = DefaultUsers(cfg.Shape)
	}
	load := cfg.Shape == ShapeLoad
	u, err := url.Parse(cfg.URL)
	switch {
	case !slices.Contains([]string{"track", "batch", ShapeRecommend, ShapeLoad}, cfg.Shape):
		return fmt.Errorf("--shape must be track, batch, recommend or load-interactions, not %q", cfg.Shape)
	case err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "":
		return fmt.Errorf("--url must be the server's base URL, such as http://127.0.0.1:8080")
	case cfg.Concurrency < 1 || cfg.Concurrency > 10_000:
		return fmt.Errorf("--concurrency %d: want 1 to 10000", cfg.Concurrency)
	case (cfg.Shape == "batch" || load) && (cfg.BatchSize < 1 || cfg.BatchSize > 2500):
		return fmt.Errorf("--batch %d: want 1 to 2500 events a request", cfg.BatchSize)
	case !load && cfg.Duration <= 0:
		return fmt.Errorf("--duration %s: want a positive duration such as 30s", cfg.Duration)
	case cfg.Warmup < 0:
		return fmt.Errorf("--warmup %s: want 0 or a positive duration", cfg.Warmup)
	case !(cfg.Rate >= 0) || math.IsInf(cfg.Rate, 0):
		return fmt.Errorf("--rate %v: want 0 (closed loop) or requests per second", cfg.Rate)
	case users < 1:
		return fmt.Errorf("--users %d: want 0 (the shape's default) or more", cfg.Users)
	case load && cfg.Items < 1:
		return fmt.Errorf("--items %d: want 1 or more products", cfg.Items)
	case load && cfg.Interactions < users:
		return fmt.Errorf("--interactions (%d) must be at least --users (%d): every user gets one", cfg.Interactions, users)
	}
	return nil
}

// Run drives the server and returns what it measured.
func Run(ctx context.Context, cfg Config) (*Result, error) {
	if err := cfg.Check(); err != nil {
		return nil, err
	}
	if cfg.Users == 0 {
		cfg.Users = DefaultUsers(cfg.Shape)
	}
	switch cfg.Shape {
	case ShapeRecommend:
		return runRecommend(ctx, cfg)
	case ShapeLoad:
		return loadInteractions(ctx, cfg)
	}
	if cfg.WriteKey == "" {
		return nil, fmt.Errorf("a write key is needed (--write-key)")
	}
	if cfg.Shape == "track" {
		cfg.BatchSize = 1
	}
	base := strings.TrimRight(cfg.URL, "/")
	tr := &http.Transport{MaxIdleConns: cfg.Concurrency * 2, MaxIdleConnsPerHost: cfg.Concurrency * 2,
		MaxConnsPerHost: cfg.Concurrency, DisableCompression: true, IdleConnTimeout: time.Minute}
	client := &http.Client{Transport: tr, Timeout: 30 * time.Second}
	defer tr.CloseIdleConnections()

	// Fail fast on a wrong URL or key rather than measuring errors for a minute.
	if err := probe(ctx, client, base, cfg); err != nil {
		return nil, err
	}

	path := "/v1/batch"
	if cfg.Shape == "track" {
		path = "/v1/track"
	}
	m := drive(ctx, cfg, base, func(w int, start time.Time) call {
		g := newGenerator(uint64(w)+uint64(start.UnixNano()), cfg.Users)
		var body []byte
		return func(ctx context.Context) (int, int64, error) {
			if cfg.Shape == "track" {
				body = g.track(body[:0], time.Now())
			} else {
				body = g.batch(body[:0], cfg.BatchSize, time.Now())
			}
			status, err := post(ctx, client, base+path, cfg.WriteKey, body)
			return status, int64(cfg.BatchSize), err
		}
	})
	r := m.result(cfg)
	r.BatchSize, r.Events, r.EventsPerSec = cfg.BatchSize, m.counted, float64(m.counted)/m.seconds
	return r, nil
}

// call makes one request and returns its status, a transport error, and what
// the shape counts for a 200 (events sent, a personalized answer).
type call func(ctx context.Context) (status int, counted int64, err error)

// measured is what the workers of a run saw in the measured window.
type measured struct {
	lat      []time.Duration // sorted
	requests int64
	counted  int64
	non200   int64
	late     int64
	unsent   int64
	errs     map[string]int
	seconds  float64
	rss      *rssSampler
}

// drive runs cfg.Concurrency workers, each with the call newCall makes for it,
// for cfg.Warmup and then cfg.Duration; only calls started (open loop: due) in
// the measured window count, and the server's RSS is sampled meanwhile. Any
// answer but 200 is an error.
func drive(ctx context.Context, cfg Config, base string, newCall func(w int, start time.Time) call) *measured {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	start := time.Now()
	measureFrom := start.Add(cfg.Warmup)
	end := measureFrom.Add(cfg.Duration)
	var (
		measuring atomic.Bool
		next      atomic.Int64 // open loop: the next request's number
		wg        sync.WaitGroup
		mu        sync.Mutex
		m         = &measured{errs: map[string]int{}}
	)
	m.rss = &rssSampler{url: base + "/metrics", client: &http.Client{Timeout: 2 * time.Second}}
	go func() {
		t := time.NewTimer(time.Until(measureFrom))
		defer t.Stop()
		select {
		case <-t.C:
			measuring.Store(true)
			m.rss.run(ctx, end)
		case <-ctx.Done():
		}
	}()
	if cfg.Warmup == 0 {
		measuring.Store(true)
	}
	for w := 0; w < cfg.Concurrency; w++ {
		wg.Add(1)
		go func(do call) {
			defer wg.Done()
			my := measured{lat: make([]time.Duration, 0, 1<<14), errs: map[string]int{}}
			for ctx.Err() == nil {
				t0, late := time.Now(), false
				if cfg.Rate > 0 {
					// Open loop: every request due before end is sent, even
					// after end when the server fell behind (those are the
					// slowest), unless that backlog lasts past drainFor: then
					// the rest are counted as unsent.
					k := next.Add(1) - 1
					due := start.Add(time.Duration(float64(k) * float64(time.Second) / cfg.Rate))
					if !due.Before(end) {
						break
					}
					measured := !due.Before(measureFrom)
					if time.Now().After(end.Add(drainFor)) {
						if measured {
							my.unsent++
						}
						continue
					}
					if wait := time.Until(due); wait > 0 {
						select {
						case <-time.After(wait):
						case <-ctx.Done():
							continue
						}
					}
					late = time.Since(due) > time.Millisecond
					t0 = due
					status, counted, err := do(ctx)
					if measured {
						my.add(ctx, status, counted, err, time.Since(t0), late)
					}
					continue
				}
				if !time.Now().Before(end) {
					break
				}
				status, counted, err := do(ctx)
				d := time.Since(t0)
				if !measuring.Load() || t0.After(end) {
					continue
				}
				my.add(ctx, status, counted, err, d, late)
			}
			mu.Lock()
			m.lat = append(m.lat, my.lat...)
			m.requests += my.requests
			m.counted += my.counted
			m.non200 += my.non200
			m.late += my.late
			m.unsent += my.unsent
			for k, v := range my.errs {
				m.errs[k] += v
			}
			mu.Unlock()
		}(newCall(w, start))
	}
	wg.Wait()
	cancel()
	m.seconds = min(time.Since(measureFrom), cfg.Duration).Seconds()
	slices.Sort(m.lat)
	return m
}

// drainFor is how long an open-loop run goes on past its end sending the
// requests that were due before it (a variable for the tests).
var drainFor = 10 * time.Second

// add counts one measured call's outcome: an answer's latency (and whether it
// was sent late) only for a 200.
func (my *measured) add(ctx context.Context, status int, counted int64, err error, d time.Duration, late bool) {
	switch {
	case err != nil:
		if ctx.Err() == nil {
			my.errs["transport: "+err.Error()]++
		}
	case status != http.StatusOK:
		my.non200++
		my.errs["HTTP "+strconv.Itoa(status)]++
	default:
		my.lat = append(my.lat, d)
		my.requests++
		my.counted += counted
		if late {
			my.late++
		}
	}
}

// result is the part of a Result every shape fills the same way.
func (m *measured) result(cfg Config) *Result {
	r := &Result{Shape: cfg.Shape, Concurrency: cfg.Concurrency, Rate: cfg.Rate, Late: m.late, Unsent: m.unsent, Seconds: m.seconds,
		Requests: m.requests, RequestsPerS: float64(m.requests) / m.seconds,
		P50ms: pct(m.lat, 0.50), P90ms: pct(m.lat, 0.90), P95ms: pct(m.lat, 0.95), P99ms: pct(m.lat, 0.99), Errors: m.errs,
		ServerRSSMB: m.rss.maxMB(), ServerRSSSeen: m.rss.samples}
	if len(m.lat) > 0 {
		r.MaxMS = ms(m.lat[len(m.lat)-1])
	}
	return r
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

func pct(sorted []time.Duration, p float64) float64 {
	if len(sorted) == 0 {
		return 0
	}
	i := int(float64(len(sorted))*p+0.5) - 1
	return ms(sorted[min(max(i, 0), len(sorted)-1)])
}

func probe(ctx context.Context, client *http.Client, base string, cfg Config) error {
	g := newGenerator(1, 1)
	status, err := post(ctx, client, base+"/v1/track", cfg.WriteKey, g.track(nil, time.Now()))
	if err != nil {
		return fmt.Errorf("cannot reach %s: %v", base, err)
	}
	if status != http.StatusOK {
		return fmt.Errorf("probe event answered HTTP %d (wrong write key?)", status)
	}
	return nil
}

func post(ctx context.Context, client *http.Client, url, writeKey string, body []byte) (int, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return 0, err
	}
	req.SetBasicAuth(writeKey, "")
	req.Header.Set("Content-Type", "application/json")
	resp, err := client.Do(req)
	if err != nil {
		return 0, err
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode, nil
}

// Print writes the result for a person, or as JSON.
func (r *Result) Print(w io.Writer, asJSON bool) error {
	if asJSON {
		return json.NewEncoder(w).Encode(r)
	}
	switch r.Shape {
	case ShapeRecommend:
		return r.printRecommend(w)
	case ShapeLoad:
		return r.printLoad(w)
	}
	fmt.Fprintf(w, "shape %s, %d events/request, concurrency %d%s, %.1f s measured\n", r.Shape, r.BatchSize, r.Concurrency, r.openLoop(), r.Seconds)
	fmt.Fprintf(w, "  events/s    %.0f\n  requests/s  %.0f\n", r.EventsPerSec, r.RequestsPerS)
	fmt.Fprintf(w, "  latency     p50 %.2f ms  p95 %.2f ms  p99 %.2f ms  max %.2f ms\n", r.P50ms, r.P95ms, r.P99ms, r.MaxMS)
	r.printTail(w)
	return nil
}

// openLoop describes an open-loop run's offered rate for the first line ("" for
// closed loop).
func (r *Result) openLoop() string {
	if r.Rate <= 0 {
		return ""
	}
	unsent := ""
	if r.Unsent > 0 {
		unsent = fmt.Sprintf(", %d never sent: the server was over %s behind at the end", r.Unsent, drainFor)
	}
	return fmt.Sprintf(" (at most), open loop at %.0f requests/s offered (%d answered over a millisecond late%s)", r.Rate, r.Late, unsent)
}

// printTail prints what the timed shapes end with: the server's RSS and the
// errors by kind.
func (r *Result) printTail(w io.Writer) {
	rss := "unknown (server /metrics not readable)"
	if r.ServerRSSMB >= 0 {
		rss = fmt.Sprintf("%.1f MB (max of %d samples)", r.ServerRSSMB, r.ServerRSSSeen)
	}
	fmt.Fprintf(w, "  server RSS  %s\n", rss)
	r.printErrors(w)
}

// printErrors prints the errors by kind (or that there were none).
func (r *Result) printErrors(w io.Writer) {
	if len(r.Errors) == 0 {
		fmt.Fprintln(w, "  errors      0")
	}
	for k, v := range r.Errors {
		fmt.Fprintf(w, "  error       %s: %d\n", k, v)
	}
}

// rssSampler reads process_resident_memory_bytes from the server's /metrics.
type rssSampler struct {
	url     string
	client  *http.Client
	max     float64
	samples int
	mu      sync.Mutex
}

func (s *rssSampler) run(ctx context.Context, end time.Time) {
	t := time.NewTicker(250 * time.Millisecond)
	defer t.Stop()
	for time.Now().Before(end) {
		if v, ok := s.read(ctx); ok {
			s.mu.Lock()
			s.max = max(s.max, v)
			s.samples++
			s.mu.Unlock()
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

func (s *rssSampler) read(ctx context.Context) (float64, bool) {
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, s.url, nil)
	resp, err := s.client.Do(req)
	if err != nil {
		return 0, false
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "process_resident_memory_bytes "); ok {
			f, err := strconv.ParseFloat(v, 64)
			return f, err == nil
		}
	}
	return 0, false
}

func (s *rssSampler) maxMB() float64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.samples == 0 {
		return -1
	}
	return s.max / (1 << 20)
}

// generator makes realistic Segment messages: e-commerce track events with
// properties and a browser context, some pages and identifies, spread over a pool
// of users, each with a unique messageId.
type generator struct {
	r     *rand.Rand
	users int
}

func newGenerator(seed uint64, users int) *generator {
	return &generator{r: rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15)), users: users}
}

var trackEvents = []string{"Product Viewed", "Product Viewed", "Product Viewed", "Product Added", "Product List Viewed", "Checkout Started", "Order Completed"}

var categories = []string{"Shoes", "Jackets", "Home & Living", "Electronics", "Sports", "Beauty", "Toys"}

const hexd = "0123456789abcdef"

func (g *generator) uuid(dst []byte) []byte {
	a, b := g.r.Uint64(), g.r.Uint64()
	var raw [16]byte
	for i := 0; i < 8; i++ {
		raw[i], raw[8+i] = byte(a>>(8*i)), byte(b>>(8*i))
	}
	raw[6], raw[8] = raw[6]&0x0f|0x40, raw[8]&0x3f|0x80
	for i, c := range raw {
		if i == 4 || i == 6 || i == 8 || i == 10 {
			dst = append(dst, '-')
		}
		dst = append(dst, hexd[c>>4], hexd[c&0xf])
	}
	return dst
}

func (g *generator) ids(dst []byte) ([]byte, int) {
	u := g.r.IntN(g.users)
	dst = append(dst, `"anonymousId":"anon-`...)
	dst = strconv.AppendInt(dst, int64(u), 36)
	dst = append(dst, '"')
	if u%2 == 0 { // half of the visitors are logged in
		dst = append(dst, `,"userId":"user-`...)
		dst = strconv.AppendInt(dst, int64(u), 10)
		dst = append(dst, '"')
	}
	return dst, u
}

func (g *generator) context(dst []byte) []byte {
	return append(dst, `"context":{"ip":"203.0.113.`+strconv.Itoa(1+g.r.IntN(250))+`","library":{"name":"analytics.js","version":"next-1.70.0"},"locale":"de-DE","timezone":"Europe/Berlin","page":{"path":"/p/`+strconv.Itoa(g.r.IntN(1_800_000))+`","referrer":"https://www.google.com/","title":"Online-Shop","url":"https://shop.example/p/`+strconv.Itoa(g.r.IntN(1_800_000))+`"},"userAgent":"Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36","consent":{"categoryPreferences":{"Analytics":true,"Advertising":false,"Functional":true}}}`...)
}

func (g *generator) message(dst []byte, typ string, now time.Time) []byte {
	dst = append(dst, `{"type":"`...)
	dst = append(dst, typ...)
	dst = append(dst, `","messageId":"`...)
	dst = g.uuid(dst)
	dst = append(dst, `",`...)
	var u int
	dst, u = g.ids(dst)
	dst = append(dst, `,"timestamp":"`...)
	dst = now.UTC().AppendFormat(dst, "2006-01-02T15:04:05.000Z")
	dst = append(dst, `",`...)
	switch typ {
	case "track":
		aid := g.r.IntN(1_800_000)
		dst = append(dst, `"event":"`+trackEvents[g.r.IntN(len(trackEvents))]+`","properties":{"product_id":"`...)
		dst = strconv.AppendInt(dst, int64(aid), 10)
		dst = append(dst, `","sku":"SKU-`...)
		dst = strconv.AppendInt(dst, int64(aid), 36)
		dst = append(dst, `","category":"`+categories[g.r.IntN(len(categories))]+`","name":"Item `...)
		dst = strconv.AppendInt(dst, int64(aid), 10)
		dst = append(dst, `","brand":"Trustloop Goods","price":`...)
		dst = strconv.AppendFloat(dst, float64(g.r.IntN(20000))/100, 'f', 2, 64)
		dst = append(dst, `,"quantity":1,"currency":"EUR","position":`...)
		dst = strconv.AppendInt(dst, int64(g.r.IntN(48)), 10)
		dst = append(dst, `},`...)
	case "page":
		dst = append(dst, `"name":"Product Detail","properties":{"path":"/p/1","title":"Online-Shop"},`...)
	case "identify":
		// The visitor's own address: a shop's identify names the person whose
		// ids the event carries (a random other user's address would make every
		// identify a merge attempt between strangers).
		dst = append(dst, `"traits":{"email":"customer`...)
		dst = strconv.AppendInt(dst, int64(u), 10)
		dst = append(dst, `@example.com","first_name":"Alex","plan":"loyalty"},`...)
	}
	dst = g.context(dst)
	return append(dst, '}')
}

func (g *generator) track(dst []byte, now time.Time) []byte {
	return g.message(dst, "track", now)
}

func (g *generator) batch(dst []byte, n int, now time.Time) []byte {
	dst = append(dst, `{"batch":[`...)
	for i := 0; i < n; i++ {
		if i > 0 {
			dst = append(dst, ',')
		}
		typ := "track"
		switch x := g.r.IntN(10); {
		case x == 0:
			typ = "page"
		case x == 1:
			typ = "identify"
		}
		dst = g.message(dst, typ, now)
	}
	dst = append(dst, `],"sentAt":"`...)
	dst = now.UTC().AppendFormat(dst, "2006-01-02T15:04:05.000Z")
	return append(dst, `"}`...)
}
