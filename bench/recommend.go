package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
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

// ModelStats is the recommender model's size as GET /v1/recommender/model
// tells it.
type ModelStats struct {
	Subjects int `json:"subjects"`
	Items    int `json:"items"`
	Pairs    int `json:"pairs"`
	Pending  int `json:"pending"`
}

// personalizedMark is how a personalized answer is told from a fallback
// without decoding it.
var personalizedMark = []byte(`"personalized":true`)

// runRecommend resolves the profiles of users shopper-0 … shopper-(Users-1)
// (GET /v1/profiles/lookup, purpose essential), then reads recommendations
// of profiles picked at random (GET /v1/profiles/{id}/recommendations?limit=10)
// from Concurrency workers for Duration after Warmup. Every answer but 200 is
// an error; 200 answers are counted as personalized when they say so.
func runRecommend(ctx context.Context, cfg Config) (*Result, error) {
	if cfg.APIKey == "" { // the rest Run checked (Config.Check)
		return nil, fmt.Errorf("an admin API key is needed (--api-key)")
	}
	base := strings.TrimRight(cfg.URL, "/")
	tr := &http.Transport{MaxIdleConns: cfg.Concurrency * 2, MaxIdleConnsPerHost: cfg.Concurrency * 2,
		MaxConnsPerHost: cfg.Concurrency, DisableCompression: true, IdleConnTimeout: time.Minute}
	client := &http.Client{Transport: tr, Timeout: 30 * time.Second}
	defer tr.CloseIdleConnections()
	auth := "Bearer " + cfg.APIKey

	// Fail fast on a wrong URL or key, or a server without the recommender.
	model, err := modelStats(ctx, client, base, auth)
	if err != nil {
		return nil, err
	}
	t0 := time.Now()
	paths, lookupErrs, err := resolveProfiles(ctx, client, base, auth, cfg)
	if err != nil {
		return nil, err
	}
	resolveSecs := time.Since(t0).Seconds()

	proto, err := newKeepAlive(base, 30*time.Second)
	if err != nil {
		return nil, err
	}
	var conns []*keepAlive // one per worker, closed when the run is over
	defer func() {
		for _, c := range conns {
			c.close()
		}
	}()
	m := drive(ctx, cfg, base, func(w int, start time.Time) call {
		seed := uint64(w) + uint64(start.UnixNano())
		r := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
		var buf bytes.Buffer
		conn := proto.another()
		conns = append(conns, conn)
		return func(ctx context.Context) (int, int64, error) {
			status, err := conn.get(ctx, paths[r.IntN(len(paths))], auth, &buf)
			personal := int64(0)
			if bytes.Contains(buf.Bytes(), personalizedMark) {
				personal = 1
			}
			return status, personal, err
		}
	})
	for k, v := range lookupErrs {
		m.errs[k] += v
	}
	res := m.result(cfg)
	res.BatchSize, res.Profiles, res.ResolveSecs, res.Model = 1, len(paths), resolveSecs, model
	res.Non200, res.Personalized = &m.non200, &m.counted
	if m.requests > 0 {
		res.PersonalShare = float64(m.counted) / float64(m.requests)
	}
	return res, nil
}

// get reads url into buf (reset first) and returns the status.
func get(ctx context.Context, client *http.Client, url, auth string, buf *bytes.Buffer) (int, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return 0, err
	}
	req.Header.Set("Authorization", auth)
	resp, err := client.Do(req)
	if err != nil {
		return 0, err
	}
	buf.Reset()
	_, err = buf.ReadFrom(resp.Body)
	resp.Body.Close()
	return resp.StatusCode, err
}

// modelStats reads the model's size; it is the probe of shape recommend.
func modelStats(ctx context.Context, client *http.Client, base, auth string) (*ModelStats, error) {
	var buf bytes.Buffer
	status, err := get(ctx, client, base+"/v1/recommender/model", auth, &buf)
	switch {
	case err != nil:
		return nil, fmt.Errorf("cannot reach %s: %v", base, err)
	case status == http.StatusNotFound:
		return nil, fmt.Errorf("GET /v1/recommender/model answered HTTP 404: is the server running with --profiles (and --recommend)?")
	case status != http.StatusOK:
		return nil, fmt.Errorf("GET /v1/recommender/model answered HTTP %d (an admin API key is needed): %.300s", status, buf.Bytes())
	}
	var m ModelStats
	if err := json.Unmarshal(buf.Bytes(), &m); err != nil {
		return nil, fmt.Errorf("GET /v1/recommender/model: %v", err)
	}
	return &m, nil
}

// resolveProfiles looks up the profiles of the Users shoppers and returns
// their recommendation paths (under the base URL), and the failed lookups by answer. Users without
// a profile are left out; none at all is an error.
func resolveProfiles(ctx context.Context, client *http.Client, base, auth string, cfg Config) ([]string, map[string]int, error) {
	paths := make([]string, cfg.Users)
	var (
		next atomic.Int64
		wg   sync.WaitGroup
		mu   sync.Mutex
		errs = map[string]int{}
	)
	for range cfg.Concurrency {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var buf bytes.Buffer
			for ctx.Err() == nil {
				i := int(next.Add(1) - 1)
				if i >= cfg.Users {
					return
				}
				q := base + "/v1/profiles/lookup?purpose=essential&identifier=" + url.QueryEscape("user_id:"+ShopperPrefix+strconv.Itoa(i))
				status, err := get(ctx, client, q, auth, &buf)
				var p struct {
					ProfileID string `json:"profile_id"`
				}
				switch {
				case err != nil:
					mu.Lock()
					errs["lookup transport: "+err.Error()]++
					mu.Unlock()
				case status != http.StatusOK:
					mu.Lock()
					errs["lookup HTTP "+strconv.Itoa(status)]++
					mu.Unlock()
				case json.Unmarshal(buf.Bytes(), &p) != nil || p.ProfileID == "":
					mu.Lock()
					errs["lookup answer without profile_id"]++
					mu.Unlock()
				default:
					paths[i] = "/v1/profiles/" + url.PathEscape(p.ProfileID) + "/recommendations?limit=10"
				}
			}
		}()
	}
	wg.Wait()
	if err := ctx.Err(); err != nil {
		return nil, nil, err
	}
	paths = slices.DeleteFunc(paths, func(s string) bool { return s == "" })
	if len(paths) == 0 {
		return nil, nil, fmt.Errorf("no profile found for user_id:%s0 … %s%d (load them with --shape %s first): %v",
			ShopperPrefix, ShopperPrefix, cfg.Users-1, ShapeLoad, errs)
	}
	return paths, errs, nil
}

func (r *Result) printRecommend(w io.Writer) error {
	fmt.Fprintf(w, "shape %s, %d profiles (resolved in %.1f s), concurrency %d%s, %.1f s measured\n",
		r.Shape, r.Profiles, r.ResolveSecs, r.Concurrency, r.openLoop(), r.Seconds)
	if m := r.Model; m != nil {
		fmt.Fprintf(w, "  model       %d subjects, %d items, %d pairs (%d pending)\n", m.Subjects, m.Items, m.Pairs, m.Pending)
	}
	fmt.Fprintf(w, "  requests/s  %.0f (200 answers)\n", r.RequestsPerS)
	fmt.Fprintf(w, "  latency     p50 %.2f ms  p90 %.2f ms  p99 %.2f ms  max %.2f ms\n", r.P50ms, r.P90ms, r.P99ms, r.MaxMS)
	var personal, non200 int64
	if r.Personalized != nil {
		personal = *r.Personalized
	}
	if r.Non200 != nil {
		non200 = *r.Non200
	}
	fmt.Fprintf(w, "  personalized %d of %d answers (%.1f %%)\n", personal, r.Requests, 100*r.PersonalShare)
	fmt.Fprintf(w, "  non-200     %d\n", non200)
	r.printTail(w)
	return nil
}
