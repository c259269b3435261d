package http_test

import (
	"fmt"
	"net/http"
	"sync/atomic"
	"testing"
	"time"
)

// BenchmarkProfileReadsAudited is the read target: profile reads by id
// for a purpose, each filtered by the customer's consent and recorded as a data
// use in the audit log (group-committed, fsync'd) before the answer, over real
// HTTP on the embedded store, 32 readers at once. It reports reads/s.
//
//	go test ./http -run '^$' -bench ProfileReadsAudited -benchtime 20000x -count 3
func BenchmarkProfileReadsAudited(b *testing.B) {
	s := newServer(b, options{regime: "opt_out"})
	const profiles = 2000
	ids := make([]string, profiles)
	var batch []obj
	for i := range profiles {
		batch = append(batch, obj{"type": "identify", "userId": fmt.Sprint("reader-", i), "messageId": fmt.Sprint("r", i),
			"traits": obj{"email": fmt.Sprintf("r%d@example.com", i), "plan": "gold"}},
			obj{"type": "track", "userId": fmt.Sprint("reader-", i), "messageId": fmt.Sprint("t", i), "event": "Product Viewed",
				"properties": obj{"product_id": "p1", "category": "Shoes"}})
		if len(batch) == 400 || i == profiles-1 {
			mustOK(b, s.post(b, "/v1/batch", obj{"batch": batch}))
			batch = batch[:0]
		}
	}
	for i := range profiles {
		p := decode[profileJSON](b, s.api(b, "GET", fmt.Sprintf("/v1/profiles/lookup?purpose=analytics&identifier=user_id:reader-%d", i), nil), 200)
		ids[i] = p.ProfileID
	}
	before, _ := s.Audit.Size(b.Context(), s.WS.ID)
	var n, failed atomic.Int64
	b.SetParallelism(16) // 32 goroutines on 2 CPUs
	b.ResetTimer()
	start := time.Now()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			i := n.Add(1)
			r, err := s.send(req{method: http.MethodGet, path: "/v1/profiles/" + ids[int(i)%profiles] + "?purpose=analytics",
				headers: map[string]string{"Authorization": "Bearer " + adminKey}})
			if err != nil || r.Status != 200 {
				failed.Add(1)
			}
		}
	})
	elapsed := time.Since(start)
	b.StopTimer()
	if failed.Load() > 0 {
		b.Fatalf("%d reads failed", failed.Load())
	}
	after, _ := s.Audit.Size(b.Context(), s.WS.ID)
	if got := after - before; got != int64(b.N) {
		b.Fatalf("%d reads recorded %d data uses", b.N, got)
	}
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "reads/s")
}
