package bench

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"net/http"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Shapes beyond the collector's own.
const (
	// ShapeRecommend reads recommendations of profiles (GET
	// /v1/profiles/{id}/recommendations) with an admin API key.
	ShapeRecommend = "recommend"
	// ShapeLoad posts a shopping history for the recommender to /v1/batch
	// once, as fast as the server takes it, and reports what it posted.
	ShapeLoad = "load-interactions"
	// ShopperPrefix prefixes the user ids load-interactions makes and
	// recommend looks up: user i is "shopper-<i>", 0 ≤ i < Users.
	ShopperPrefix = "shopper-"
)

// LoadStats is what load-interactions posted.
type LoadStats struct {
	Seed       uint64 `json:"seed"`
	Users      int    `json:"users"`
	Items      int    `json:"items"`
	Categories int    `json:"categories"`
	// Interactions counts the weighted events (viewed + added + ordered);
	// Consents the consent updates, one per user before their first event.
	Interactions int `json:"interactions"`
	Viewed       int `json:"product_viewed"`
	Added        int `json:"product_added"`
	Ordered      int `json:"order_completed"`
	Consents     int `json:"consents"`
	Sessions     int `json:"sessions"`
	// ItemsMet counts the distinct items some user interacted with.
	ItemsMet int `json:"items_met"`
}

// The kinds of shopping events.
const (
	evConsent = iota
	evViewed
	evAdded
	evOrdered
)

var shopEventNames = [...]string{"Segment Consent Preference Updated", "Product Viewed", "Product Added", "Order Completed"}

// shopEvent is one event of the history: its user, kind, products (one, or an
// order's) and its time as an offset from the history's start.
type shopEvent struct {
	user  int32
	kind  uint8
	items []int32
	at    time.Duration
}

// cdf is a cumulative weight table to draw indexes from.
type cdf []float64

func (c cdf) pick(r *rand.Rand) int {
	return min(sort.SearchFloat64s(c, r.Float64()*c[len(c)-1]), len(c)-1)
}

func cumulative(w []float64) cdf {
	c := make(cdf, len(w))
	sum := 0.0
	for i, v := range w {
		sum += v
		c[i] = sum
	}
	return c
}

// catalog is the shop's items: item i is "p-<i>", i its popularity rank
// (weight 1/(i+1), Zipf with exponent 1), in one of a few dozen categories
// drawn at random, with a price.
type catalog struct {
	cat    []int32
	cents  []int32
	all    cdf
	byCat  [][]int32
	catCDF []cdf
}

func newCatalog(r *rand.Rand, items int) *catalog {
	cats := min(max(items/100, 2), 50)
	c := &catalog{cat: make([]int32, items), cents: make([]int32, items), byCat: make([][]int32, cats), catCDF: make([]cdf, cats)}
	w := make([]float64, items)
	for i := range items {
		w[i] = 1 / float64(i+1)
		c.cat[i] = int32(r.IntN(cats))
		c.cents[i] = int32(199 + r.IntN(19_800))
		c.byCat[c.cat[i]] = append(c.byCat[c.cat[i]], int32(i))
	}
	c.all = cumulative(w)
	for k, list := range c.byCat {
		cw := make([]float64, len(list))
		for j, i := range list {
			cw[j] = w[i]
		}
		if len(cw) > 0 {
			c.catCDF[k] = cumulative(cw)
		}
	}
	return c
}

// pick draws an item for a user who prefers the categories prefs: mostly one
// of theirs (by popularity within it), sometimes anything popular.
func (c *catalog) pick(r *rand.Rand, prefs []int32) int32 {
	if r.Float64() < 0.85 {
		k := prefs[r.IntN(len(prefs))]
		if list := c.byCat[k]; len(list) > 0 {
			return list[c.catCDF[k].pick(r)]
		}
	}
	return int32(c.all.pick(r))
}

// historySpan is how far back the history's timestamps reach.
const historySpan = 28 * 24 * time.Hour

// shopHistory makes the events load-interactions posts, deterministic by seed:
// every user gets at least one interaction and the rest are spread by a
// log-normal activity; each user prefers 2–3 categories; a session views
// items (about 2 on average), adds some to the cart (25 %) and orders the
// cart now and then (40 % of sessions with one). Sessions of all users are
// shuffled and spread evenly over historySpan; a user's consent update comes
// just before their first event.
func shopHistory(seed uint64, users, items, total int) (*catalog, []shopEvent, LoadStats) {
	r := rand.New(rand.NewPCG(seed, seed^0x5851f42d4c957f2d))
	c := newCatalog(r, items)
	st := LoadStats{Seed: seed, Users: users, Items: items, Categories: len(c.byCat)}
	activity := make([]float64, users)
	for u := range activity {
		activity[u] = math.Exp(r.NormFloat64())
	}
	act := cumulative(activity)
	budget := make([]int, users)
	for u := range budget {
		budget[u] = 1
	}
	for range total - users {
		budget[act.pick(r)]++
	}
	var sessions [][]shopEvent
	for u := range users {
		prefs := make([]int32, 0, 3)
		for len(prefs) < 2+r.IntN(2) {
			if k := int32(r.IntN(len(c.byCat))); !slices.Contains(prefs, k) {
				prefs = append(prefs, k)
			}
		}
		for b := budget[u]; b > 0; {
			var s []shopEvent
			var cart []int32
			for {
				it := c.pick(r, prefs)
				s = append(s, shopEvent{user: int32(u), kind: evViewed, items: []int32{it}})
				b--
				if b > 0 && r.Float64() < 0.25 {
					s = append(s, shopEvent{user: int32(u), kind: evAdded, items: []int32{it}})
					b--
					if !slices.Contains(cart, it) {
						cart = append(cart, it)
					}
				}
				if b == 0 || r.Float64() < 0.45 {
					break
				}
			}
			if len(cart) > 0 && b > 0 && r.Float64() < 0.4 {
				s = append(s, shopEvent{user: int32(u), kind: evOrdered, items: cart})
				b--
			}
			sessions = append(sessions, s)
		}
	}
	r.Shuffle(len(sessions), func(i, j int) { sessions[i], sessions[j] = sessions[j], sessions[i] })
	st.Sessions = len(sessions)
	out := make([]shopEvent, 0, total+users)
	consented := make([]bool, users)
	met := make([]bool, items)
	step := historySpan / time.Duration(len(sessions)+1)
	for k, s := range sessions {
		at := time.Duration(k) * step
		if u := s[0].user; !consented[u] {
			consented[u] = true
			out = append(out, shopEvent{user: u, kind: evConsent, at: at})
			st.Consents++
		}
		for i, ev := range s {
			ev.at = at + time.Duration(i+1)*20*time.Second
			out = append(out, ev)
			switch ev.kind {
			case evViewed:
				st.Viewed++
			case evAdded:
				st.Added++
			case evOrdered:
				st.Ordered++
			}
			for _, it := range ev.items {
				if !met[it] {
					met[it] = true
					st.ItemsMet++
				}
			}
		}
	}
	st.Interactions = st.Viewed + st.Added + st.Ordered
	return c, out, st
}

// appendShopEvent writes one event as a Segment message; seq makes its
// messageId (so posting the same history twice stores it once).
func (c *catalog) appendShopEvent(dst []byte, ev *shopEvent, seed uint64, seq int, start time.Time) []byte {
	dst = append(dst, `{"type":"track","userId":"`+ShopperPrefix...)
	dst = strconv.AppendInt(dst, int64(ev.user), 10)
	dst = append(dst, `","event":"`+shopEventNames[ev.kind]+`","messageId":"li-`...)
	dst = strconv.AppendUint(dst, seed, 10)
	dst = append(dst, '-')
	dst = strconv.AppendInt(dst, int64(seq), 10)
	dst = append(dst, `","timestamp":"`...)
	dst = start.Add(ev.at).UTC().AppendFormat(dst, "2006-01-02T15:04:05.000Z")
	dst = append(dst, `",`...)
	product := func(dst []byte, it int32) []byte {
		dst = append(dst, `"product_id":"p-`...)
		dst = strconv.AppendInt(dst, int64(it), 10)
		dst = append(dst, `","category":"cat-`...)
		dst = strconv.AppendInt(dst, int64(c.cat[it]), 10)
		dst = append(dst, `","price":`...)
		return strconv.AppendFloat(dst, float64(c.cents[it])/100, 'f', 2, 64)
	}
	switch ev.kind {
	case evConsent:
		return append(dst, `"context":{"consent":{"categoryPreferences":{"Analytics":true,"Personalization":true}}}}`...)
	case evViewed, evAdded:
		dst = append(dst, `"properties":{`...)
		dst = product(dst, ev.items[0])
		dst = append(dst, `,"currency":"EUR"`...)
		if ev.kind == evAdded {
			dst = append(dst, `,"quantity":1`...)
		}
	case evOrdered:
		dst = append(dst, `"properties":{"order_id":"o-`...)
		dst = strconv.AppendUint(dst, seed, 10)
		dst = append(dst, '-')
		dst = strconv.AppendInt(dst, int64(seq), 10)
		var revenue int64
		for _, it := range ev.items {
			revenue += int64(c.cents[it])
		}
		dst = append(dst, `","revenue":`...)
		dst = strconv.AppendFloat(dst, float64(revenue)/100, 'f', 2, 64)
		dst = append(dst, `,"currency":"EUR","products":[`...)
		for i, it := range ev.items {
			if i > 0 {
				dst = append(dst, ',')
			}
			dst = append(dst, '{')
			dst = product(dst, it)
			dst = append(dst, `,"quantity":1}`...)
		}
		dst = append(dst, ']')
	}
	return append(dst, `},"context":{"library":{"name":"analytics.js","version":"next-1.70.0"},"locale":"de-DE","userAgent":"Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36"}}`...)
}

// maxBatchBytes keeps a batch well under the collector's 500 KB limit.
const maxBatchBytes = 400_000

// loadInteractions posts the shopping history to /v1/batch. Each worker
// posts the events of its own users (user mod concurrency) in history order,
// so a user's consent update is committed before their first interaction.
// The first refusal ends the load (429 and 503 are retried).
func loadInteractions(ctx context.Context, cfg Config) (*Result, error) {
	if cfg.Items == 0 {
		cfg.Items = 5_000
	}
	if cfg.Interactions == 0 {
		cfg.Interactions = 100_000
	}
	if cfg.Seed == 0 {
		cfg.Seed = 1
	}
	if cfg.WriteKey == "" { // the rest Run checked (Config.Check)
		return nil, fmt.Errorf("a write key is needed (--write-key)")
	}
	c, evs, st := shopHistory(cfg.Seed, cfg.Users, cfg.Items, cfg.Interactions)
	base := strings.TrimRight(cfg.URL, "/")
	tr := &http.Transport{MaxIdleConns: cfg.Concurrency * 2, MaxIdleConnsPerHost: cfg.Concurrency * 2,
		MaxConnsPerHost: cfg.Concurrency, DisableCompression: true, IdleConnTimeout: time.Minute}
	client := &http.Client{Transport: tr, Timeout: 60 * time.Second}
	defer tr.CloseIdleConnections()

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	start := time.Now()
	histStart := start.Add(-historySpan - time.Hour)
	var (
		wg       sync.WaitGroup
		mu       sync.Mutex
		firstErr error
		lat      []time.Duration
		requests int64
		events   int64
		errs     = map[string]int{}
	)
	for w := 0; w < cfg.Concurrency; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			var myLat []time.Duration
			var myReq, myEv int64
			myErr := map[string]int{}
			body := make([]byte, 0, maxBatchBytes+4096)
			n := 0
			flush := func() error {
				if n == 0 {
					return nil
				}
				body = append(body, `]}`...)
				t0 := time.Now()
				retried, err := postRetrying(ctx, client, base+"/v1/batch", cfg.WriteKey, body)
				for k, v := range retried {
					myErr[k+" (retried)"] += v
				}
				if err != nil {
					return err
				}
				myLat = append(myLat, time.Since(t0))
				myReq++
				myEv += int64(n)
				n = 0
				return nil
			}
			var err error
			for seq := range evs {
				ev := &evs[seq]
				if int(ev.user)%cfg.Concurrency != w {
					continue
				}
				if n == 0 {
					body = append(body[:0], `{"batch":[`...)
				} else {
					body = append(body, ',')
				}
				body = c.appendShopEvent(body, ev, cfg.Seed, seq, histStart)
				n++
				if n >= cfg.BatchSize || len(body) >= maxBatchBytes {
					if err = flush(); err != nil {
						break
					}
				}
			}
			if err == nil {
				err = flush()
			}
			mu.Lock()
			defer mu.Unlock()
			if err != nil && firstErr == nil {
				firstErr = err
				cancel()
			}
			lat = append(lat, myLat...)
			requests += myReq
			events += myEv
			for k, v := range myErr {
				errs[k] += v
			}
		}(w)
	}
	wg.Wait()
	if firstErr != nil {
		return nil, fmt.Errorf("load-interactions: %w (after %d events)", firstErr, events)
	}
	elapsed := time.Since(start).Seconds()
	slices.Sort(lat)
	res := &Result{Shape: cfg.Shape, BatchSize: cfg.BatchSize, Concurrency: cfg.Concurrency, Seconds: elapsed,
		Requests: requests, Events: events, EventsPerSec: float64(events) / elapsed, RequestsPerS: float64(requests) / elapsed,
		P50ms: pct(lat, 0.50), P90ms: pct(lat, 0.90), P95ms: pct(lat, 0.95), P99ms: pct(lat, 0.99), Errors: errs,
		ServerRSSMB: -1, Load: &st}
	if len(lat) > 0 {
		res.MaxMS = ms(lat[len(lat)-1])
	}
	return res, nil
}

// postRetrying posts body until it is taken: 429 and 503 are retried after
// their Retry-After (at most 10 times); any other answer but 200 is an
// error, with the start of the server's reason.
func postRetrying(ctx context.Context, client *http.Client, url, writeKey string, body []byte) (map[string]int, error) {
	retried := map[string]int{}
	for attempt := 0; ; attempt++ {
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
		if err != nil {
			return retried, err
		}
		req.SetBasicAuth(writeKey, "")
		req.Header.Set("Content-Type", "application/json")
		resp, err := client.Do(req)
		if err != nil {
			return retried, err
		}
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		switch resp.StatusCode {
		case http.StatusOK:
			return retried, nil
		case http.StatusTooManyRequests, http.StatusServiceUnavailable:
			if attempt < 10 {
				retried["HTTP "+strconv.Itoa(resp.StatusCode)]++
				wait := time.Second
				if s, err := strconv.Atoi(resp.Header.Get("Retry-After")); err == nil && s > 0 {
					wait = time.Duration(s) * time.Second
				}
				select {
				case <-ctx.Done():
					return retried, ctx.Err()
				case <-time.After(wait):
				}
				continue
			}
		}
		return retried, fmt.Errorf("POST %s answered HTTP %d (wrong write key?): %.300s", url, resp.StatusCode, msg)
	}
}

func (r *Result) printLoad(w io.Writer) error {
	l := r.Load
	fmt.Fprintf(w, "shape %s, seed %d: %d users, %d items in %d categories, concurrency %d, up to %d events/request\n",
		r.Shape, l.Seed, l.Users, l.Items, l.Categories, r.Concurrency, r.BatchSize)
	fmt.Fprintf(w, "  posted      %d interactions (%d Product Viewed, %d Product Added, %d Order Completed; %d sessions, %d items met)\n",
		l.Interactions, l.Viewed, l.Added, l.Ordered, l.Sessions, l.ItemsMet)
	fmt.Fprintf(w, "              and %d consent updates: %d events in %d requests, %.1f s\n", l.Consents, r.Events, r.Requests, r.Seconds)
	fmt.Fprintf(w, "  events/s    %.0f\n", r.EventsPerSec)
	fmt.Fprintf(w, "  latency     p50 %.2f ms  p99 %.2f ms  max %.2f ms (per batch)\n", r.P50ms, r.P99ms, r.MaxMS)
	r.printErrors(w)
	return nil
}
