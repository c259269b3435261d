package ingest

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/trustloop/trustloop"
)

// benchRequest builds request r of a benchmark: 100 track messages of about 700
// bytes, for subjects drawn from a pool of the given size.
func benchRequest(r int64, now time.Time, subjects int64) ([]trustloop.Message, int64) {
	msgs := make([]trustloop.Message, 100)
	var size int64
	for j := range msgs {
		id := fmt.Sprintf("ajs-next-%012x-%02x-4c2a-9d6f-7a1c3e5b9f20", r, j)
		user := fmt.Sprintf("user_%d", (r*100+int64(j))*7919%subjects)
		raw := fmt.Appendf(nil, `{"type":"track","event":"Product Viewed","messageId":%q,"userId":%q,`+
			`"anonymousId":"5e3f9c1a-8b2d-4e6f-a7c9-%012x","timestamp":"2024-05-01T11:59:59.000Z",`+
			`"properties":{"product_id":"507f1f77bcf86cd799439011","sku":"G-32","name":"Monopoly: 3rd Edition",`+
			`"price":18.99,"quantity":1,"currency":"usd"},"context":{"library":{"name":"analytics.js","version":"npm:next-1.70.0"},`+
			`"page":{"path":"/products/monopoly","url":"https://www.example.com/products/monopoly"},`+
			`"userAgent":"Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36",`+
			`"consent":{"categoryPreferences":{"Advertising":false,"Analytics":true}}}}`, id, user, r)
		msgs[j] = trustloop.Message{Type: trustloop.EventTrack, MessageID: id, UserID: user, Event: "Product Viewed",
			ReceivedAt: now, Timestamp: now.Add(-time.Second),
			Consent: trustloop.ConsentSignals{CategoryPreferences: map[string]bool{"Advertising": false, "Analytics": true}},
			Raw:     raw}
		size += int64(len(raw))
	}
	return msgs, size
}

// BenchmarkIngest runs the whole pipeline (blind, hash, seal, group commit with
// fsync) over the real SQLite store, with 16 concurrent callers each sending
// 100-message requests. One op is one request. With 1,000 subjects nearly every
// key comes from the cache (the steady state of returning visitors); with 10^9
// nearly every event is a subject's first and makes a key in the writer.
func BenchmarkIngest(b *testing.B) {
	for _, subjects := range []int64{1_000, 1_000_000_000} {
		b.Run(fmt.Sprintf("subjects=%d", subjects), func(b *testing.B) { benchmarkIngest(b, subjects) })
	}
}

func benchmarkIngest(b *testing.B, subjects int64) {
	const callers, perRequest = 16, 100
	p, _, _, boot, obs := newSQLiteEnv(b)
	src := &boot.Source
	now := time.Now().UTC()
	_, size := benchRequest(0, now, subjects)
	b.SetBytes(size)
	b.ReportAllocs()

	var next atomic.Int64
	var wg sync.WaitGroup
	b.ResetTimer()
	for range callers {
		wg.Go(func() {
			for {
				r := next.Add(1)
				if r > int64(b.N) {
					return
				}
				msgs, _ := benchRequest(r, now, subjects)
				if err := p.Ingest(context.Background(), src, msgs); err != nil {
					b.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	b.StopTimer()
	b.ReportMetric(float64(b.N*perRequest)/b.Elapsed().Seconds(), "events/s")
	commits, _ := obs.snapshot()
	if len(commits) > 0 {
		b.ReportMetric(float64(b.N)/float64(len(commits)), "requests/commit")
	}
	var stored int
	for _, c := range commits {
		stored += c.stored
	}
	if stored != b.N*perRequest {
		b.Fatalf("%d events stored, want %d", stored, b.N*perRequest)
	}
}
