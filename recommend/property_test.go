package recommend

import (
	"bytes"
	"fmt"
	"math"
	"testing"
	"time"

	"pgregory.net/rapid"
)

type histEvent struct {
	subject  string
	in       Interaction
	personal bool
	popular  bool
}

func genHistory(t *rapid.T) []histEvent {
	nSubjects := rapid.IntRange(1, 8).Draw(t, "subjects")
	nItems := rapid.IntRange(1, 30).Draw(t, "items")
	n := rapid.IntRange(0, 120).Draw(t, "events")
	now := int64(1_700_000_000_000)
	out := make([]histEvent, n)
	for k := range out {
		items := rapid.SliceOfNDistinct(rapid.IntRange(0, nItems-1), 1, 3, rapid.ID[int]).Draw(t, "event items")
		ids := make([]string, len(items))
		for i, it := range items {
			ids[i] = fmt.Sprintf("p%d", it)
		}
		// Mostly forward in time, sometimes back (late events), sometimes far
		// ahead (the decay's reference moves).
		now += rapid.Int64Range(-3_600_000, 200*3_600_000).Draw(t, "step")
		out[k] = histEvent{
			subject:  fmt.Sprintf("s%d", rapid.IntRange(0, nSubjects-1).Draw(t, "subject")),
			in:       Interaction{Items: ids, Weight: rapid.SampledFrom([]float64{1, 3, 5, 0.5}).Draw(t, "weight"), Purchase: rapid.Bool().Draw(t, "purchase"), Time: now},
			personal: rapid.IntRange(0, 3).Draw(t, "personal") > 0,
			popular:  rapid.Bool().Draw(t, "popular"),
		}
	}
	return out
}

func genConfig(t *rapid.T) Config {
	c := Defaults()
	c.MaxItems = rapid.SampledFrom([]int{2, 5, 200}).Draw(t, "max items")
	c.HalfLife = rapid.SampledFrom([]time.Duration{0, time.Hour, 30 * 24 * time.Hour}).Draw(t, "half-life")
	c.Similarity = rapid.SampledFrom([]Similarity{Jaccard, Lift, Count}).Draw(t, "similarity")
	c.Threshold = rapid.IntRange(1, 3).Draw(t, "threshold")
	c.ItemSupport = rapid.SampledFrom([]int{1, 1, 2, 3}).Draw(t, "item support")
	return c
}

func build(t interface{ Fatalf(string, ...any) }, c Config, h []histEvent, skip string) *Model {
	m, err := NewModel(c)
	if err != nil {
		t.Fatalf("NewModel: %v", err)
	}
	for i := range h {
		if h[i].subject != skip {
			m.Add(h[i].subject, &h[i].in, h[i].personal, h[i].popular)
		}
	}
	return m
}

// Removing a subject leaves exactly the model built without them: byte for
// byte, whatever the configuration, order of events, cap or decay.
func TestRemoveEqualsRebuild(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		c := genConfig(t)
		h := genHistory(t)
		// Mostly someone in the history (removing no one must change nothing too).
		victim := "nobody"
		if len(h) > 0 && rapid.IntRange(0, 9).Draw(t, "someone") > 0 {
			victim = h[rapid.IntRange(0, len(h)-1).Draw(t, "victim event")].subject
		}
		m := build(t, c, h, "")
		m.Remove(victim)
		want := build(t, c, h, victim)
		if !bytes.Equal(m.Encode(), want.Encode()) {
			t.Fatalf("model after removing %s differs from the model built without them", victim)
		}
		// And it answers the same.
		now := int64(1_700_000_000_000)
		if len(h) > 0 {
			now = h[len(h)-1].in.Time
		}
		for s := range 8 {
			subj := []string{fmt.Sprintf("s%d", s)}
			a, _ := m.Recommend(subj, now, 5)
			b, _ := want.Recommend(subj, now, 5)
			if fmt.Sprint(a) != fmt.Sprint(b) {
				t.Fatalf("answers differ for %v: %v vs %v", subj, a, b)
			}
			// Explanations name only the subject's own items, met while
			// personalization was allowed.
			own := map[string]bool{}
			for _, e := range h {
				if e.subject == subj[0] && e.subject != victim && e.personal {
					for _, it := range e.in.Items {
						own[it] = true
					}
				}
			}
			for _, r := range a {
				if len(r.Because) == 0 {
					t.Fatalf("%s is recommended without a reason", r.ItemID)
				}
				for _, why := range r.Because {
					if !own[why.ItemID] {
						t.Fatalf("an explanation for %v names %s, not one of their allowed items", subj, why.ItemID)
					}
				}
			}
		}
	})
}

// A subject removed in the middle of the stream and then active again: the
// model equals the one built from the history with their earlier events left
// out.
func TestRemoveThenContinue(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		c := genConfig(t)
		h := genHistory(t)
		if len(h) == 0 {
			return
		}
		cut := rapid.IntRange(0, len(h)).Draw(t, "cut")
		victim := h[rapid.IntRange(0, len(h)-1).Draw(t, "victim event")].subject
		m := build(t, c, h[:cut], "")
		m.Remove(victim)
		for i := range h[cut:] {
			e := &h[cut+i]
			m.Add(e.subject, &e.in, e.personal, e.popular)
		}
		var kept []histEvent
		for i, e := range h {
			if i >= cut || e.subject != victim {
				kept = append(kept, e)
			}
		}
		want := build(t, c, kept, "")
		if !bytes.Equal(m.Encode(), want.Encode()) {
			t.Fatalf("model differs from the rebuild")
		}
	})
}

// The encoding does not depend on the order items were first met in, only on
// the state: two subjects' events interleaved differently give one model.
func TestEncodeIndependentOfSubjectOrder(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		c := genConfig(t)
		h := genHistory(t)
		// Stable partition by subject: each subject's events keep their order.
		var byFirst []histEvent
		for s := range 8 {
			for _, e := range h {
				if e.subject == fmt.Sprintf("s%d", s) {
					byFirst = append(byFirst, e)
				}
			}
		}
		a, b := build(t, c, h, ""), build(t, c, byFirst, "")
		if !bytes.Equal(a.Encode(), b.Encode()) {
			t.Fatalf("the same subjects' histories in another interleaving give another model")
		}
	})
}

// The flat co-occurrence row behaves as a map of counts under any sequence of
// increments and decrements (deletions shift probe chains back, wrapping).
func TestRowIsAMap(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		var r row
		want := map[int32]int32{}
		keys := rapid.IntRange(1, 200).Draw(t, "key range")
		for range rapid.IntRange(0, 600).Draw(t, "ops") {
			k := int32(rapid.IntRange(0, keys-1).Draw(t, "key"))
			if rapid.IntRange(0, 2).Draw(t, "op") > 0 {
				r.inc(k)
				want[k]++
			} else {
				r.dec(k)
				if want[k] > 1 {
					want[k]--
				} else {
					delete(want, k)
				}
			}
		}
		if r.len() != len(want) {
			t.Fatalf("len %d, want %d", r.len(), len(want))
		}
		for k := range int32(keys) {
			if got := r.get(k); got != want[k] {
				t.Fatalf("get(%d) = %d, want %d", k, got, want[k])
			}
		}
		seen := map[int32]int32{}
		r.each(func(k, c int32) { seen[k] = c })
		if fmt.Sprint(seen) != fmt.Sprint(want) {
			t.Fatalf("each gives %v, want %v", seen, want)
		}
	})
}

// The cached similarity rows give exactly what scoring from the counts gives,
// bit for bit, while the model changes under them (adds, removals, reads in
// between): every change drops what it makes stale.
func TestSimCacheExact(t *testing.T) {
	defer func(v int) { simCacheMin = v }(simCacheMin)
	rapid.Check(t, func(t *rapid.T) {
		c := genConfig(t)
		h := genHistory(t)
		cached, _ := NewModel(c)
		plain, _ := NewModel(c)
		now := int64(1_800_000_000_000)
		check := func(subject string) {
			simCacheMin = 1
			got, _ := cached.Recommend([]string{subject}, now, 10)
			simCacheMin = -1
			want, _ := plain.Recommend([]string{subject}, now, 10)
			if fmt.Sprintf("%#v", got) != fmt.Sprintf("%#v", want) {
				t.Fatalf("cached %v\nplain  %v", got, want)
			}
		}
		for i := range h {
			e := &h[i]
			cached.Add(e.subject, &e.in, e.personal, e.popular)
			plain.Add(e.subject, &e.in, e.personal, e.popular)
			check(e.subject)
			if rapid.IntRange(0, 9).Draw(t, "remove") == 0 {
				cached.Remove(e.subject)
				plain.Remove(e.subject)
			}
			check(h[rapid.IntRange(0, i).Draw(t, "reader")].subject)
		}
	})
}

// With an item support, the model keeps exactly the pairs of items that many
// subjects count, each with the number of subjects counting both: checked
// against the subjects' counted items, after building and after removing
// one subject.
func TestItemSupportKeepsExactlyTheSupportedPairs(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		c := genConfig(t)
		c.ItemSupport = rapid.IntRange(1, 4).Draw(t, "item support")
		h := genHistory(t)
		m := build(t, c, h, "")
		check := func(when string) {
			cnt := map[int32]int32{}
			both := map[[2]int32]int32{}
			for _, u := range m.users {
				for a, i := range u.counted {
					cnt[i]++
					for _, j := range u.counted[a+1:] {
						both[[2]int32{i, j}]++
						both[[2]int32{j, i}]++
					}
				}
			}
			support := int32(c.ItemSupport)
			for i := range m.items {
				if m.cnt[i] != cnt[int32(i)] {
					t.Fatalf("%s: C(%d,%d) = %d, want %d", when, i, i, m.cnt[i], cnt[int32(i)])
				}
				for j := range m.items {
					want := int32(0)
					if i != j && cnt[int32(i)] >= support && cnt[int32(j)] >= support {
						want = both[[2]int32{int32(i), int32(j)}]
					}
					if got := m.items[i].co.get(int32(j)); got != want {
						t.Fatalf("%s: C(%d,%d) = %d, want %d (support %d)", when, i, j, got, want, support)
					}
				}
				if support > 1 && len(m.holders[i]) != int(cnt[int32(i)]) {
					t.Fatalf("%s: item %d has %d holders, %d subjects count it", when, i, len(m.holders[i]), cnt[int32(i)])
				}
			}
		}
		if support := c.ItemSupport; support == 1 && m.holders != nil {
			t.Fatal("holders kept without an item support")
		}
		check("built")
		if len(h) > 0 {
			m.Remove(h[rapid.IntRange(0, len(h)-1).Draw(t, "victim event")].subject)
			check("after a removal")
		}
	})
}

// Walking only the rows' heads (scoreTop) gives exactly what adding up every
// row gives (scoreAll), bit for bit, for any k, exclusion and similarity,
// while the model changes: the bound never leaves out an item that belongs
// in the top, ties by item id included.
func TestPrunedEqualsFull(t *testing.T) {
	defer func(c, p, d, k, i int, b float64) {
		simCacheMin, pruneMin, pruneDepth, pruneMaxK, pruneMaxItems, pruneBudget = c, p, d, k, i, b
	}(simCacheMin, pruneMin, pruneDepth, pruneMaxK, pruneMaxItems, pruneBudget)
	pruneMaxK, pruneMaxItems = math.MaxInt, math.MaxInt
	rapid.Check(t, func(t *rapid.T) {
		// Mostly an unlimited budget (pruning runs to its end); sometimes
		// the default or none (it gives up, and the full walk runs after it).
		pruneBudget = rapid.SampledFrom([]float64{math.Inf(1), math.Inf(1), 0.25, 0}).Draw(t, "budget")
		c := genConfig(t)
		c.Exclude = rapid.SampledFrom([]Exclude{ExcludePurchased, ExcludeSeen, ExcludeNone}).Draw(t, "exclude")
		h := genHistory(t)
		m, _ := NewModel(c)
		simCacheMin = rapid.IntRange(1, 4).Draw(t, "cache min")
		depth := rapid.IntRange(1, 3).Draw(t, "depth")
		now := int64(1_800_000_000_000)
		check := func(subject string) {
			k := rapid.IntRange(1, 12).Draw(t, "k")
			pruneMin, pruneDepth = 0, depth
			got, _ := m.Recommend([]string{subject}, now, k)
			pruneMin = math.MaxInt
			want, _ := m.Recommend([]string{subject}, now, k)
			if fmt.Sprintf("%#v", got) != fmt.Sprintf("%#v", want) {
				t.Fatalf("k=%d pruned %v\nfull   %v", k, got, want)
			}
		}
		for i := range h {
			e := &h[i]
			m.Add(e.subject, &e.in, e.personal, e.popular)
			check(e.subject)
			if rapid.IntRange(0, 9).Draw(t, "remove") == 0 {
				m.Remove(e.subject)
			}
			check(h[rapid.IntRange(0, i).Draw(t, "reader")].subject)
		}
	})
}

// The same on a shop-like model (long rows, Zipf popularity), for every
// similarity and exclusion, with the defaults the server runs with.
func TestPrunedEqualsFullShop(t *testing.T) {
	defer func(p, k int, b float64) { pruneMin, pruneMaxK, pruneBudget = p, k, b }(pruneMin, pruneMaxK, pruneBudget)
	pruneMaxK, pruneBudget = math.MaxInt, math.Inf(1)
	h := shopping(5, 2_000, 1_000, 20_000)
	for _, sim := range []Similarity{Jaccard, Lift, Count} {
		for _, ex := range []Exclude{ExcludePurchased, ExcludeSeen, ExcludeNone} {
			c := Defaults()
			c.Similarity, c.Exclude = sim, ex
			m := build(t, c, h, "")
			now := h[len(h)-1].in.Time
			for u := range 2_000 {
				k := []int{1, 3, 10, 50}[u%4]
				s := []string{fmt.Sprintf("u%d", u)}
				pruneMin = 0
				got, _ := m.Recommend(s, now, k)
				pruneMin = math.MaxInt
				want, _ := m.Recommend(s, now, k)
				if fmt.Sprintf("%#v", got) != fmt.Sprintf("%#v", want) {
					t.Fatalf("%s/%s u%d k=%d:\npruned %v\nfull   %v", sim, ex, u, k, got, want)
				}
			}
		}
	}
}

// A subject who met hundreds of items: pruning would score nearly every item
// exactly (a look-up per item of theirs each). With the defaults it is not
// tried past 64 items; with no such limit it gives up at its budget; either
// way the answer is the full walk's.
func TestPrunedHeavySubject(t *testing.T) {
	h := shopping(1, 2_000, 1_000, 20_000)
	m := build(t, Defaults(), h, "")
	now := h[len(h)-1].in.Time
	for _, n := range []int{40, 60, 300} {
		s := fmt.Sprintf("heavy%d", n)
		for i := range n {
			m.Add(s, &Interaction{Items: []string{fmt.Sprintf("p%d", i*7%1_000)}, Weight: 1, Time: now}, true, true)
		}
		for _, k := range []int{1, 10, 20} {
			for _, limits := range []string{"default", "none"} {
				if limits == "default" && n > pruneMaxItems {
					continue // the full walk both times: nothing to compare
				}
				func() {
					defer func(p, i int) { pruneMin, pruneMaxItems = p, i }(pruneMin, pruneMaxItems)
					if limits == "none" {
						pruneMaxItems = math.MaxInt // the 300 items try pruning too: the budget ends it
					}
					got, _ := m.Recommend([]string{s}, now, k)
					pruneMin = math.MaxInt
					want, _ := m.Recommend([]string{s}, now, k)
					if fmt.Sprintf("%#v", got) != fmt.Sprintf("%#v", want) {
						t.Fatalf("%d items, k=%d, %s limits:\npruned %v\nfull   %v", n, k, limits, got, want)
					}
				}()
			}
		}
	}
}
