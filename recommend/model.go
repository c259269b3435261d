package recommend

import (
	"cmp"
	"encoding/binary"
	"math"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// Model is one workspace's recommender state. It is not safe for concurrent
// use: the Service guards it (many readers or one writer).
type Model struct {
	cfg   Config
	ids   []string
	index map[string]int32
	items []item
	// cnt is C(i,i) per item (subjects whose counted items include i),
	// packed apart from items: a recommendation reads it for every
	// entry of every row it walks.
	cnt   []int32
	users map[string]*user
	// sims caches each item's similarities to its neighbours (simRow), built
	// by the first recommendation that walks the row; one cell per item. A
	// change of the row's own counts drops it; a change of C(j,j) of any item
	// j stamps uver[j] with a new epoch, and a cached row built before the
	// stamp of itself or of one of its neighbours is stale (checked when it
	// is read: a change costs O(1), however many rows hold the item).
	sims  []*simCell
	uver  []uint64
	epoch uint64
	// holders are, per item, the subjects counting it, kept only when
	// ItemSupport > 1 (nil otherwise): when an item reaches ItemSupport
	// subjects, the pairs of all of them with it are added at once.
	holders [][]*user
}

// simRow is a row's similarities, in the row's slot order (so scores sum in
// the same order as from the counts, to the same bits), entries below the
// threshold left out.
type simRow struct {
	j []int32
	s []float64
	// built is the model's epoch when the row was computed.
	built uint64
}

// simCell holds an item's cached row. Recommendations read and fill it under
// the service's read lock, concurrently, so it is atomic; changes, under the
// write lock, clear it.
type simCell struct{ atomic.Pointer[simRow] }

// simCacheMin is the smallest row worth caching: a short row costs little
// to score from the counts. (A variable for the tests, which cache every row,
// or none with a negative value.)
var simCacheMin = 32

// item is what every subject together says of one item: integer sums, so that
// subtracting a subject is exact.
type item struct {
	// pop counts subjects who interacted with i while analytics was allowed.
	pop int32
	// co is C(i,j) for j ≠ i, kept in both rows.
	co row
}

// user is one subject's contribution, all of it, so it can be taken back.
type user struct {
	// counted are the distinct items counted in co-occurrence, in the order the
	// subject met them (at most MaxItems).
	counted []int32
	// hpos[k] is this subject's place in holders[counted[k]] (ItemSupport > 1).
	hpos []int32
	// aff is the affinity per item, in the order the subject met them.
	aff []affinity
	at  map[int32]int32
	// ref is the time (ms) affinity weights are relative to (time decay).
	ref int64
	// popular are the items counted in popularity for this subject.
	popular []int32
	popAt   map[int32]struct{}
}

type affinity struct {
	item   int32
	w      float64
	bought bool
}

// NewModel returns an empty model; cfg's zero fields take the defaults.
func NewModel(cfg Config) (*Model, error) {
	c, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	return &Model{cfg: c, index: map[string]int32{}, users: map[string]*user{}}, nil
}

// Config returns the effective configuration.
func (m *Model) Config() Config { return m.cfg }

func (m *Model) intern(id string) int32 {
	if x, ok := m.index[id]; ok {
		return x
	}
	x := int32(len(m.ids))
	m.ids = append(m.ids, id)
	m.items = append(m.items, item{})
	m.cnt = append(m.cnt, 0)
	m.sims = append(m.sims, &simCell{})
	m.uver = append(m.uver, 0)
	if m.cfg.ItemSupport > 1 {
		m.holders = append(m.holders, nil)
	}
	m.index[id] = x
	return x
}

// Add applies one interaction of a subject: to its affinity and the
// co-occurrence counts when personal (personalization allowed), to popularity
// when popular (analytics allowed).
func (m *Model) Add(subject string, in *Interaction, personal, popular bool) {
	if in == nil || (!personal && !popular) || len(in.Items) == 0 {
		return
	}
	u := m.users[subject]
	if u == nil {
		u = &user{}
		m.users[subject] = u
	}
	var f float64
	if personal {
		f = u.decay(in.Time, m.cfg.HalfLife)
	}
	for _, id := range in.Items {
		x := m.intern(id)
		if personal {
			m.addAffinity(u, x, in.Weight*f, in.Purchase)
		}
		if popular {
			if u.popAt == nil {
				u.popAt = map[int32]struct{}{}
			}
			if _, ok := u.popAt[x]; !ok {
				u.popAt[x] = struct{}{}
				u.popular = append(u.popular, x)
				m.items[x].pop++
			}
		}
	}
}

// decay returns the factor an interaction at t gets relative to the subject's
// reference time, moving the reference forward (and scaling what is there)
// before the factor grows too large for a float64.
func (u *user) decay(t int64, halfLife time.Duration) float64 {
	if halfLife <= 0 {
		return 1
	}
	if len(u.aff) == 0 {
		u.ref = t
		return 1
	}
	e := float64(t-u.ref) / float64(halfLife.Milliseconds())
	if e > 64 {
		scale := math.Exp2(-e)
		for i := range u.aff {
			u.aff[i].w *= scale
		}
		u.ref = t
		return 1
	}
	return math.Exp2(e)
}

func (m *Model) addAffinity(u *user, x int32, w float64, bought bool) {
	if u.at == nil {
		u.at = map[int32]int32{}
	}
	if i, ok := u.at[x]; ok {
		u.aff[i].w += w
		u.aff[i].bought = u.aff[i].bought || bought
		return
	}
	u.at[x] = int32(len(u.aff))
	u.aff = append(u.aff, affinity{item: x, w: w, bought: bought})
	if len(u.counted) >= m.cfg.MaxItems {
		return
	}
	m.cnt[x]++
	m.usersChanged(x)
	u.counted = append(u.counted, x)
	support := int32(m.cfg.ItemSupport)
	if support > 1 {
		u.hpos = append(u.hpos, int32(len(m.holders[x])))
		m.holders[x] = append(m.holders[x], u)
	}
	switch {
	case m.cnt[x] < support: // no pairs yet
	case m.cnt[x] == support && support > 1:
		// x is kept from now: every holder's pairs with it, this one's too.
		for _, v := range m.holders[x] {
			for _, y := range v.counted {
				if y != x && m.cnt[y] >= support {
					m.inc(x, y)
					m.inc(y, x)
				}
			}
		}
	default:
		for _, i := range u.counted[:len(u.counted)-1] {
			if m.cnt[i] >= support {
				m.inc(i, x)
				m.inc(x, i)
			}
		}
	}
}

func (m *Model) inc(i, j int32) { m.items[i].co.inc(j); m.sims[i].Store(nil) }

func (m *Model) dec(i, j int32) { m.items[i].co.dec(j); m.sims[i].Store(nil) }

// usersChanged records that C(x,x) changed: x's cached row and every
// cached row holding x are stale from now (simRow checks the stamps).
func (m *Model) usersChanged(x int32) {
	m.epoch++
	m.uver[x] = m.epoch
}

// Remove takes a subject's whole contribution back. It reports whether the
// subject was in the model.
func (m *Model) Remove(subject string) bool {
	u, ok := m.users[subject]
	if !ok {
		return false
	}
	support := int32(m.cfg.ItemSupport)
	for a, i := range u.counted {
		if m.cnt[i] < support {
			continue
		}
		for _, j := range u.counted[a+1:] {
			if m.cnt[j] >= support {
				m.dec(i, j)
				m.dec(j, i)
			}
		}
	}
	for k, i := range u.counted {
		if support > 1 {
			m.unhold(u, k)
		}
		m.cnt[i]--
		m.usersChanged(i)
		if m.cnt[i] == support-1 && support > 1 {
			// i is no longer kept: its pairs with the other holders go.
			m.items[i].co.each(func(j, c int32) {
				for range c {
					m.dec(j, i)
				}
			})
			m.items[i].co = row{}
			m.sims[i].Store(nil)
		}
	}
	for _, x := range u.popular {
		m.items[x].pop--
	}
	delete(m.users, subject)
	return true
}

// unhold takes u out of the holders of u.counted[k] (swapping the last
// holder into its place).
func (m *Model) unhold(u *user, k int) {
	x, p := u.counted[k], u.hpos[k]
	hs := m.holders[x]
	last := hs[len(hs)-1]
	hs[p] = last
	for k2, y := range last.counted {
		if y == x {
			last.hpos[k2] = p
			break
		}
	}
	hs[len(hs)-1] = nil
	m.holders[x] = hs[:len(hs)-1]
}

// Has reports whether the subject contributes anything.
func (m *Model) Has(subject string) bool { _, ok := m.users[subject]; return ok }

// Personal reports whether the subject has personalization history.
func (m *Model) Personal(subject string) bool {
	u, ok := m.users[subject]
	return ok && len(u.aff) > 0
}

// Stats describes the model's size.
type Stats struct {
	Subjects int `json:"subjects"`
	Items    int `json:"items"`
	// Pairs counts item pairs with a co-occurrence (each pair once).
	Pairs int `json:"pairs"`
}

// Stats returns the model's size.
func (m *Model) Stats() Stats {
	s := Stats{Subjects: len(m.users)}
	for i := range m.items {
		if m.cnt[i] > 0 || m.items[i].pop > 0 {
			s.Items++
		}
		s.Pairs += m.items[i].co.len()
	}
	s.Pairs /= 2
	return s
}

// sim is the similarity of two items from their counts; 0 below the threshold.
func (m *Model) sim(cij, ci, cj int32) float64 {
	if cij < int32(m.cfg.Threshold) {
		return 0
	}
	return m.pairSim(cij, float64(ci), cj)
}

// Because is one of the subject's own items and how much it added to a score.
type Because struct {
	ItemID string  `json:"item_id"`
	Weight float64 `json:"weight"`
}

// Rec is one recommended item.
type Rec struct {
	ItemID  string    `json:"item_id"`
	Score   float64   `json:"score"`
	Because []Because `json:"because"`
}

// MaxBecause is how many contributing items explain one recommendation.
const MaxBecause = 3

type scratch struct {
	scores  []float64
	mark    []uint32
	gen     uint32
	touched []int32
	// own marks (with gen) the subject's own items that are excluded from
	// their recommendations: an array read per candidate, not a map look-up.
	own []uint32
}

var scratchPool = sync.Pool{New: func() any { return &scratch{} }}

// combined is the affinity of one or more subjects (a profile's), in a fixed
// order: subjects as given, items in the order each met them.
type combined struct {
	aff []affinity
	at  map[int32]int32
}

func (m *Model) combine(subjects []string, now int64) combined {
	var c combined
	for _, s := range subjects {
		u, ok := m.users[s]
		if !ok || len(u.aff) == 0 {
			continue
		}
		f := 1.0
		if hl := m.cfg.HalfLife; hl > 0 {
			f = math.Exp2(float64(u.ref-now) / float64(hl.Milliseconds()))
		}
		if math.IsInf(f, 0) || math.IsNaN(f) {
			continue // a reference far after now: nothing sensible to add
		}
		if c.at == nil {
			c.at = make(map[int32]int32, len(u.aff))
		}
		for _, a := range u.aff {
			if i, ok := c.at[a.item]; ok {
				c.aff[i].w += a.w * f
				c.aff[i].bought = c.aff[i].bought || a.bought
				continue
			}
			c.at[a.item] = int32(len(c.aff))
			c.aff = append(c.aff, affinity{item: a.item, w: a.w * f, bought: a.bought})
		}
	}
	return c
}

// Recommend scores items for the subjects (one profile's) at time now (ms): the
// sum over their items i of affinity(i) × similarity(i, j), best k first (ties
// by item id), each with the subject's items that added most. history is false
// when the subjects have no personalization history.
func (m *Model) Recommend(subjects []string, now int64, k int) (recs []Rec, history bool) {
	c := m.combine(subjects, now)
	if len(c.aff) == 0 {
		return nil, false
	}
	if k <= 0 {
		return []Rec{}, true
	}
	sc := scratchPool.Get().(*scratch)
	defer scratchPool.Put(sc)
	if n := len(m.items); len(sc.scores) < n {
		sc.scores = make([]float64, n+n/4)
		sc.mark = make([]uint32, n+n/4)
		sc.own = make([]uint32, n+n/4)
		sc.gen = 0
	}
	sc.gen++
	if sc.gen == 0 { // wrapped: old marks could collide
		clear(sc.mark)
		clear(sc.own)
		sc.gen = 1
	}
	sc.touched = sc.touched[:0]
	scores, mark, gen, cnt := sc.scores, sc.mark, sc.gen, m.cnt
	thr := int32(m.cfg.Threshold)
	for _, a := range c.aff {
		it, ci32 := &m.items[a.item], cnt[a.item]
		if ci32 == 0 {
			continue // met beyond the cap and by no one else: no similarities
		}
		if s := m.sim(ci32, ci32, ci32); s > 0 {
			if mark[a.item] != gen {
				mark[a.item], scores[a.item] = gen, 0
				sc.touched = append(sc.touched, a.item)
			}
			scores[a.item] += a.w * s
		}
		w := a.w
		if sr := m.simRow(a.item); sr != nil {
			// The cached similarities: a multiply-add per neighbour.
			for n, j := range sr.j {
				if mark[j] != gen {
					mark[j], scores[j] = gen, 0
					sc.touched = append(sc.touched, j)
				}
				scores[j] += w * sr.s[n]
			}
			continue
		}
		// A short row, from the counts: one similarity per entry.
		ci := float64(ci32)
		for _, slot := range it.co.slots {
			cij := int32(uint32(slot))
			if slot == 0 || cij < thr {
				continue
			}
			j := int32(slot>>32 - 1)
			s := m.pairSim(cij, ci, cnt[j])
			if mark[j] != gen {
				mark[j], scores[j] = gen, 0
				sc.touched = append(sc.touched, j)
			}
			scores[j] += w * s
		}
	}
	own := sc.own
	for _, a := range c.aff {
		if m.cfg.Exclude == ExcludeSeen || (m.cfg.Exclude == ExcludePurchased && a.bought) {
			own[a.item] = gen
		}
	}
	top := make([]int32, 0, k+1)
	better := func(a, b int32) bool {
		if sc.scores[a] != sc.scores[b] {
			return sc.scores[a] > sc.scores[b]
		}
		return m.ids[a] < m.ids[b]
	}
	scores = sc.scores
	floor := 0.0 // once the top is full: the score a candidate must reach
	for _, j := range sc.touched {
		if v := scores[j]; v <= 0 || v < floor || own[j] == gen {
			continue
		}
		top = insertTop(top, j, k, better)
		if len(top) == k {
			floor = scores[top[k-1]]
		}
	}
	recs = make([]Rec, len(top))
	for n, j := range top {
		recs[n] = Rec{ItemID: m.ids[j], Score: sc.scores[j], Because: m.because(c, j)}
	}
	return recs, true
}

// simRow returns item i's cached similarities, building them when the row is
// long enough to be worth it (nil otherwise). The values are computed as the
// uncached loop computes them, in the same order.
func (m *Model) simRow(i int32) *simRow {
	c := m.sims[i]
	if sr := c.Load(); sr != nil && (sr.built == m.epoch || sr.fresh(m.uver, i)) {
		return sr
	}
	it := &m.items[i]
	if simCacheMin < 0 || it.co.len() < simCacheMin {
		return nil
	}
	sr := &simRow{j: make([]int32, 0, it.co.len()), s: make([]float64, 0, it.co.len()), built: m.epoch}
	ci, thr, cnt := float64(m.cnt[i]), int32(m.cfg.Threshold), m.cnt
	for _, slot := range it.co.slots {
		cij := int32(uint32(slot))
		if slot == 0 || cij < thr {
			continue
		}
		j := int32(slot>>32 - 1)
		sr.j, sr.s = append(sr.j, j), append(sr.s, m.pairSim(cij, ci, cnt[j]))
	}
	c.Store(sr)
	return sr
}

// pairSim is the similarity of a row's item (C(i,i) = ci) to neighbour j
// from their counts, as both the cached and the uncached walk compute it
// (the same expression, so the same bits).
func (m *Model) pairSim(cij int32, ci float64, cj int32) float64 {
	switch m.cfg.Similarity {
	case Jaccard:
		return float64(cij) / (ci + float64(cj) - float64(cij))
	case Lift:
		return float64(cij) / (ci * float64(cj))
	}
	return float64(cij)
}

// fresh reports whether no count the row was computed from changed since.
// simRow asks only when the model changed at all since the row was built
// (no stamp can be newer than the epoch then): a model that is only read
// pays nothing per neighbour.
func (sr *simRow) fresh(uver []uint64, i int32) bool {
	if uver[i] > sr.built {
		return false
	}
	for _, j := range sr.j {
		if uver[j] > sr.built {
			return false
		}
	}
	return true
}

// because lists the subject's items that added most to item j's score.
func (m *Model) because(c combined, j int32) []Because {
	out := make([]Because, 0, MaxBecause+1)
	weight := make([]float64, 0, MaxBecause+1)
	for _, a := range c.aff {
		ci := m.cnt[a.item]
		if ci == 0 {
			continue
		}
		var s float64
		if a.item == j {
			s = m.sim(ci, ci, ci)
		} else if cij := m.items[a.item].co.get(j); cij > 0 {
			s = m.sim(cij, ci, m.cnt[j])
		}
		v := a.w * s
		if v <= 0 {
			continue
		}
		pos := len(out)
		for pos > 0 && (weight[pos-1] < v || (weight[pos-1] == v && m.ids[a.item] < out[pos-1].ItemID)) {
			pos--
		}
		if pos >= MaxBecause {
			continue
		}
		out = slices.Insert(out, pos, Because{ItemID: m.ids[a.item], Weight: v})
		weight = slices.Insert(weight, pos, v)
		if len(out) > MaxBecause {
			out, weight = out[:MaxBecause], weight[:MaxBecause]
		}
	}
	return out
}

// Scored is an item and a score.
type Scored struct {
	ItemID string  `json:"item_id"`
	Score  float64 `json:"score"`
}

// Similar returns the k items most similar to item (ties by id), each pair
// met by at least MinSupport subjects; ok is false when fewer subjects'
// counted items include the item.
func (m *Model) Similar(itemID string, k int) (out []Scored, ok bool) {
	x, found := m.index[itemID]
	support := int32(m.cfg.MinSupport)
	if !found || m.cnt[x] < support {
		return nil, false
	}
	if k <= 0 {
		return []Scored{}, true
	}
	it := &m.items[x]
	out = make([]Scored, 0, it.co.len())
	it.co.each(func(j, cij int32) {
		if cij < support {
			return
		}
		if s := m.sim(cij, m.cnt[x], m.cnt[j]); s > 0 {
			out = append(out, Scored{ItemID: m.ids[j], Score: s})
		}
	})
	return topScored(out, k), true
}

// Popular returns the k items the most subjects interacted with while
// analytics was allowed (ties by id), at least MinSupport of them; the score
// is that number of subjects.
func (m *Model) Popular(k int) []Scored {
	if k <= 0 {
		return []Scored{}
	}
	out := make([]Scored, 0, k+1)
	for x := range m.items {
		p := m.items[x].pop
		if p == 0 || p < int32(m.cfg.MinSupport) {
			continue
		}
		out = insertTop(out, Scored{ItemID: m.ids[x], Score: float64(p)}, k, scoredBefore)
	}
	return out
}

// insertTop inserts v into top, the best first and at most k long.
func insertTop[T any](top []T, v T, k int, before func(a, b T) bool) []T {
	if len(top) == k && !before(v, top[k-1]) {
		return top
	}
	pos, _ := slices.BinarySearchFunc(top, v, func(a, b T) int {
		if before(a, b) {
			return -1
		}
		return 1
	})
	top = slices.Insert(top, pos, v)
	if len(top) > k {
		top = top[:k]
	}
	return top
}

func scoredBefore(a, b Scored) bool {
	if a.Score != b.Score {
		return a.Score > b.Score
	}
	return a.ItemID < b.ItemID
}

func topScored(s []Scored, k int) []Scored {
	slices.SortFunc(s, func(a, b Scored) int {
		if scoredBefore(a, b) {
			return -1
		}
		if scoredBefore(b, a) {
			return 1
		}
		return 0
	})
	if len(s) > k {
		s = s[:k]
	}
	return s
}

// Encode returns the model's state in a canonical form: items by id with their
// counts and co-occurrences, subjects by name with everything they added. Two
// models are the same model exactly when their encodings are equal, whatever
// order items were first met in (their internal numbering).
func (m *Model) Encode() []byte {
	var b []byte
	str := func(s string) { b = binary.AppendUvarint(b, uint64(len(s))); b = append(b, s...) }
	num := func(v int64) { b = binary.AppendVarint(b, v) }
	order := make([]int32, 0, len(m.items))
	for x := range m.items {
		if it := &m.items[x]; m.cnt[x] > 0 || it.pop > 0 || it.co.len() > 0 {
			order = append(order, int32(x))
		}
	}
	byID := func(a, b int32) int { return cmp.Compare(m.ids[a], m.ids[b]) }
	slices.SortFunc(order, byID)
	num(int64(len(order)))
	for _, x := range order {
		it := &m.items[x]
		str(m.ids[x])
		num(int64(m.cnt[x]))
		num(int64(it.pop))
		row := make([]int32, 0, it.co.len())
		it.co.each(func(j, _ int32) { row = append(row, j) })
		slices.SortFunc(row, byID)
		num(int64(len(row)))
		for _, j := range row {
			str(m.ids[j])
			num(int64(it.co.get(j)))
		}
	}
	subjects := make([]string, 0, len(m.users))
	for s := range m.users {
		subjects = append(subjects, s)
	}
	slices.Sort(subjects)
	num(int64(len(subjects)))
	for _, s := range subjects {
		u := m.users[s]
		str(s)
		num(u.ref)
		num(int64(len(u.counted)))
		for _, x := range u.counted {
			str(m.ids[x])
		}
		num(int64(len(u.aff)))
		for _, a := range u.aff {
			str(m.ids[a.item])
			b = binary.BigEndian.AppendUint64(b, math.Float64bits(a.w))
			if a.bought {
				b = append(b, 1)
			} else {
				b = append(b, 0)
			}
		}
		num(int64(len(u.popular)))
		for _, x := range u.popular {
			str(m.ids[x])
		}
	}
	return b
}
