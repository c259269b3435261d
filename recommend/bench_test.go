package recommend

import (
	"fmt"
	"math/rand/v2"
	"runtime"
	"testing"
	"time"
)

// shopping generates n interactions of users shoppers over items products:
// item popularity is Zipf-like, each shopper keeps to a few categories of 50
// items, and views, adds and orders come 8:3:1, in time order.
func shopping(seed uint64, users, items, n int) []histEvent {
	r := rand.New(rand.NewPCG(seed, 1))
	zipf := rand.NewZipf(r, 1.1, 2, uint64(items-1))
	cats := max(items/50, 1)
	taste := make([][]int, users)
	for u := range taste {
		taste[u] = []int{r.IntN(cats), r.IntN(cats), r.IntN(cats)}
	}
	names := []struct {
		w        float64
		purchase bool
	}{{1, false}, {1, false}, {1, false}, {1, false}, {1, false}, {1, false}, {1, false}, {1, false}, {3, false}, {3, false}, {3, false}, {5, true}}
	out := make([]histEvent, n)
	t := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC).UnixMilli()
	for k := range out {
		u := r.IntN(users)
		var it int
		if r.IntN(4) == 0 {
			it = int(zipf.Uint64()) // popular anywhere
		} else {
			c := taste[u][r.IntN(3)]
			it = (c*50 + int(zipf.Uint64())%50) % items
		}
		e := names[r.IntN(len(names))]
		t += int64(r.IntN(60_000))
		out[k] = histEvent{subject: fmt.Sprintf("u%d", u), in: Interaction{Items: []string{fmt.Sprintf("p%d", it)}, Weight: e.w, Purchase: e.purchase, Time: t},
			personal: true, popular: true}
	}
	return out
}

func buildBench(b *testing.B, h []histEvent) *Model {
	m, err := NewModel(Defaults())
	if err != nil {
		b.Fatal(err)
	}
	for i := range h {
		m.Add(h[i].subject, &h[i].in, true, true)
	}
	return m
}

// BenchmarkRecommend: one answer (top 10 with explanations) from a model of
// 100,000 interactions of 10,000 shoppers over 5,000 products.
func BenchmarkRecommend(b *testing.B) {
	h := shopping(1, 10_000, 5_000, 100_000)
	m := buildBench(b, h)
	now := h[len(h)-1].in.Time
	b.ReportMetric(float64(m.Stats().Pairs), "pairs")
	b.ResetTimer()
	for i := range b.N {
		m.Recommend([]string{fmt.Sprintf("u%d", i%10_000)}, now, 10)
	}
}

// BenchmarkRecommendParallel: the same on every CPU (readers share the model).
func BenchmarkRecommendParallel(b *testing.B) {
	h := shopping(1, 10_000, 5_000, 100_000)
	m := buildBench(b, h)
	now := h[len(h)-1].in.Time
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		for pb.Next() {
			m.Recommend([]string{fmt.Sprintf("u%d", i%10_000)}, now, 10)
			i += 7
		}
	})
}

// BenchmarkRemoveSubject500: taking back one subject with 500 interactions
// from a 100,000-interaction model. distinct is how many different items the
// 500 interactions name (the co-occurrence work grows with its square, up to
// the 200 counted).
func BenchmarkRemoveSubject500(b *testing.B) {
	for _, distinct := range []int{50, 200, 500} {
		b.Run(fmt.Sprintf("distinct=%d", distinct), func(b *testing.B) {
			h := shopping(2, 10_000, 5_000, 100_000)
			m := buildBench(b, h)
			r := rand.New(rand.NewPCG(3, 3))
			heavy := make([]Interaction, 500)
			for k := range heavy {
				it := k % distinct
				if k >= distinct {
					it = r.IntN(distinct)
				}
				heavy[k] = Interaction{Items: []string{fmt.Sprintf("p%d", it*7%5_000)}, Weight: 1, Time: int64(k) * 1000}
			}
			b.ResetTimer()
			for range b.N {
				b.StopTimer()
				for k := range heavy {
					m.Add("heavy", &heavy[k], true, true)
				}
				b.StartTimer()
				m.Remove("heavy")
			}
		})
	}
}

// BenchmarkBuild1M: a model from 1,000,000 interactions of 100,000 shoppers
// over 50,000 products; reports the heap it holds.
func BenchmarkBuild1M(b *testing.B) {
	h := shopping(4, 100_000, 50_000, 1_000_000)
	runtime.GC()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	b.ResetTimer()
	var m *Model
	for range b.N {
		m = nil
		m = buildBench(b, h)
	}
	b.StopTimer()
	runtime.GC()
	runtime.ReadMemStats(&after)
	// The model's own heap: what is live beyond the generated history.
	b.ReportMetric(float64(after.HeapAlloc-before.HeapAlloc)/(1<<20), "model-MB")
	b.ReportMetric(float64(m.Stats().Pairs), "pairs")
	runtime.KeepAlive(m)
	runtime.KeepAlive(h)
}
