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
	sims  []atomic.Pointer[simRow]
	uver  []uint64
	epoch uint64
	// holders are, per item, the subjects counting it, kept only when
	// ItemSupport > 1 (nil otherwise): when an item reaches ItemSupport
	// subjects, the pairs of all of them with it are added at once.
	holders [][]*user
}

// simRow is a row's similarities, highest first (ties by item index), entries
// below the threshold left out. Each neighbour is in it once, so the order
// does not change any score's sum, only how deep scoreTop must walk.
type simRow struct {
	j []int32
	s []float64
	// built is the model's epoch when the row was computed.
	built uint64
}

// An item's cached row (sims[i]) is read and filled by recommendations under
// the service's read lock, concurrently, so it is atomic; changes, under the
// write lock, clear it. The cells are one slice, not an object per item: a
// model of a million items is a million fewer objects for the GC to trace.

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
	// at indexes aff by item once it is long (nil before: a short list is
	// searched, which saves a map per subject; most subjects meet few items).
	at map[int32]int32
	// ref is the time (ms) affinity weights are relative to (time decay).
	ref int64
	// popular are the items counted in popularity for this subject.
	popular []int32
	// popAt indexes popular once it is long, as at does aff.
	popAt map[int32]struct{}
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
	// The cells are atomics; append copies them only under the write lock,
	// when no reader is looking.
	m.sims = append(m.sims, atomic.Pointer[simRow]{})
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
		if popular && !u.isPopular(x) {
			u.popular = append(u.popular, x)
			if u.popAt != nil {
				u.popAt[x] = struct{}{}
			} else if len(u.popular) > shortList {
				u.popAt = make(map[int32]struct{}, 2*len(u.popular))
				for _, y := range u.popular {
					u.popAt[y] = struct{}{}
				}
			}
			m.items[x].pop++
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

// shortList is the longest list of a subject's items searched rather than
// indexed with a map.
const shortList = 32

// affAt returns x's place in u.aff, or -1.
func (u *user) affAt(x int32) int {
	if u.at != nil {
		if i, ok := u.at[x]; ok {
			return int(i)
		}
		return -1
	}
	for i := range u.aff {
		if u.aff[i].item == x {
			return i
		}
	}
	return -1
}

// isPopular reports whether x is counted in popularity for u.
func (u *user) isPopular(x int32) bool {
	if u.popAt != nil {
		_, ok := u.popAt[x]
		return ok
	}
	return slices.Contains(u.popular, x)
}

func (m *Model) addAffinity(u *user, x int32, w float64, bought bool) {
	if i := u.affAt(x); i >= 0 {
		u.aff[i].w += w
		u.aff[i].bought = u.aff[i].bought || bought
		return
	}
	u.aff = append(u.aff, affinity{item: x, w: w, bought: bought})
	if u.at != nil {
		u.at[x] = int32(len(u.aff) - 1)
	} else if len(u.aff) > shortList {
		u.at = make(map[int32]int32, 2*len(u.aff))
		for i, a := range u.aff {
			u.at[a.item] = int32(i)
		}
	}
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
	// cells are per item: what a recommendation reads and writes of an item
	// while walking rows, side by side (valid with gen).
	cells   []cell
	gen     uint32
	touched []int32
	// rows are the cached rows of the subject's items (nil: none), in order.
	rows []*simRow
	// next are scoreTop's row bounds; terms, from cell.termAt, are the terms
	// of the items exactScore scored.
	next  []float64
	terms []float64
}

// cell is one item's state in one recommendation.
type cell struct {
	// score is the sum so far (partial while scoreTop walks), exact the
	// exact score once scoreTop scored it (done == gen).
	score, exact float64
	// seen has bit n set once scoreTop met the item in row n.
	seen uint64
	// mark == gen: score and seen are this recommendation's. own == gen: one
	// of the subject's own items that is excluded from their recommendations.
	mark, done, own uint32
	// termAt is where exactScore left the item's terms in scratch.terms.
	termAt int32
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
		if c.aff == nil {
			// The first subject's items are distinct: no look-ups.
			c.aff = make([]affinity, len(u.aff))
			for i, a := range u.aff {
				c.aff[i] = affinity{item: a.item, w: a.w * f, bought: a.bought}
			}
			continue
		}
		if c.at == nil {
			c.at = make(map[int32]int32, len(c.aff)+len(u.aff))
			for i, a := range c.aff {
				c.at[a.item] = int32(i)
			}
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
//
// Two ways give the same answer, bit for bit: when the subject's cached rows
// are short, every entry is added up (scoreAll); when they are long, only the
// heads of the rows, sorted by similarity, are walked until no item further
// down can reach the k-th score, and the candidates that still might are
// scored exactly (scoreTop). Most of a long row is items whose similarity is
// far too small to matter.
func (m *Model) Recommend(subjects []string, now int64, k int) (recs []Rec, history bool) {
	c := m.combine(subjects, now)
	if len(c.aff) == 0 {
		return nil, false
	}
	if k <= 0 {
		return []Rec{}, true
	}
	sc := scratchPool.Get().(*scratch)
	defer func() {
		clear(sc.rows) // no stale rows kept alive in the pool
		scratchPool.Put(sc)
	}()
	m.fresh(c, sc)
	sc.rows = sc.rows[:0]
	walk := 0
	for _, a := range c.aff {
		var sr *simRow
		if m.cnt[a.item] > 0 {
			sr = m.simRow(a.item)
		}
		sc.rows = append(sc.rows, sr)
		if sr != nil {
			walk += len(sr.j)
		}
	}
	// Pruning pays when the rows are long and the subject's items and k few:
	// an exact score costs a look-up per item of the subject's.
	if walk >= pruneMin && k <= pruneMaxK && len(c.aff) <= pruneMaxItems {
		sc.terms = sc.terms[:0]
		if top, ok := m.scoreTop(c, sc, k, walk); ok {
			recs = make([]Rec, 0, len(top))
			for _, j := range top {
				cl := &sc.cells[j]
				recs = append(recs, Rec{ItemID: m.ids[j], Score: cl.exact, Because: m.because(c, j, sc.terms[cl.termAt:int(cl.termAt)+len(c.aff)])})
			}
			return recs, true
		}
		m.fresh(c, sc) // over its budget: start again, adding up everything
	}
	top := m.scoreAll(c, sc, k)
	recs = make([]Rec, 0, len(top))
	for _, j := range top {
		recs = append(recs, Rec{ItemID: m.ids[j], Score: sc.cells[j].score, Because: m.because(c, j, nil)})
	}
	return recs, true
}

// fresh readies sc for a new recommendation of c: a new generation (so no
// cell holds anything of this one yet), and the subject's excluded items.
func (m *Model) fresh(c combined, sc *scratch) {
	if n := len(m.items); len(sc.cells) < n {
		sc.cells = make([]cell, n+n/4)
		sc.gen = 0
	}
	sc.gen++
	if sc.gen == 0 { // wrapped: old marks could collide
		clear(sc.cells)
		sc.gen = 1
	}
	sc.touched = sc.touched[:0]
	for _, a := range c.aff {
		if m.cfg.Exclude == ExcludeSeen || (m.cfg.Exclude == ExcludePurchased && a.bought) {
			sc.cells[a.item].own = sc.gen
		}
	}
}

// pruneMin is the fewest cached row entries a recommendation has to walk for
// it to walk only the rows' heads (a variable for the tests).
var pruneMin = 512

// pruneDepth is how deep scoreTop's first round walks each row; each round
// after it goes twice as deep (a variable for the tests).
var pruneDepth = 128

// pruneMaxK and pruneMaxItems are the largest k and number of the subject's
// items pruning is tried for; pruneBudget is how many exact look-ups it may
// make per entry a full walk would add (a look-up costs several adds), past
// which it gives up and the full walk runs (variables for the tests).
var (
	pruneMaxK     = 20
	pruneMaxItems = 64
	pruneBudget   = 0.25
)

// add adds v to item j's sum, starting it at 0 the first time in this
// recommendation; it returns j's cell.
func (sc *scratch) add(j int32, v float64) *cell {
	cl := &sc.cells[j]
	if cl.mark != sc.gen {
		cl.mark, cl.score, cl.seen = sc.gen, 0, 0
		sc.touched = append(sc.touched, j)
	}
	cl.score += v
	return cl
}

// shortRow adds a's terms from its counts, for an item with no cached row.
func (m *Model) shortRow(a affinity, sc *scratch) {
	ci, cnt, thr := float64(m.cnt[a.item]), m.cnt, int32(m.cfg.Threshold)
	for _, slot := range m.items[a.item].co.slots {
		cij := int32(uint32(slot))
		if slot == 0 || cij < thr {
			continue
		}
		j := int32(slot>>32 - 1)
		sc.add(j, float64(a.w*m.pairSim(cij, ci, cnt[j]))) // rounded: see term
	}
}

// selfTerm is what an item of the subject's adds to its own score.
func (m *Model) selfTerm(a affinity) float64 {
	ci := m.cnt[a.item]
	if s := m.sim(ci, ci, ci); s > 0 {
		return a.w * s
	}
	return 0
}

// scoreAll adds up every entry of every row of the subject's items, in the
// order of their items, and returns the best k.
func (m *Model) scoreAll(c combined, sc *scratch, k int) []int32 {
	for n, a := range c.aff {
		if m.cnt[a.item] == 0 {
			continue // met beyond the cap and by no one else: no similarities
		}
		if v := m.selfTerm(a); v > 0 {
			sc.add(a.item, v)
		}
		if sr := sc.rows[n]; sr != nil {
			for x, j := range sr.j {
				sc.add(j, float64(a.w*sr.s[x])) // rounded: see term
			}
			continue
		}
		m.shortRow(a, sc)
	}
	return m.best(sc, k)
}

// best returns the k best of the items touched by their sums (ties by item
// id): above 0, not excluded and not scored exactly yet (in scoreAll's fresh
// generation nothing is).
func (m *Model) best(sc *scratch, k int) []int32 {
	cells, gen := sc.cells, sc.gen
	top := make([]int32, 0, k+1)
	better := func(a, b int32) bool {
		if va, vb := cells[a].score, cells[b].score; va != vb {
			return va > vb
		}
		return m.ids[a] < m.ids[b]
	}
	floor := 0.0 // once the top is full: the score a candidate must reach
	for _, j := range sc.touched {
		cl := &cells[j]
		v := cl.score
		if v <= 0 || v < floor || cl.own == gen || cl.done == gen {
			continue
		}
		top = insertTop(top, j, k, better)
		if len(top) == k {
			floor = cells[top[k-1]].score
		}
	}
	return top
}

// exactScore is item j's score as scoreAll adds it up: the same terms in the
// same order, so the same bits. The terms are kept in sc.terms (from the
// cell's termAt) for because.
func (m *Model) exactScore(c combined, sc *scratch, j int32) float64 {
	v := 0.0
	sc.cells[j].termAt = int32(len(sc.terms))
	for _, a := range c.aff {
		t := m.term(a, j)
		sc.terms = append(sc.terms, t)
		if t > 0 {
			v += t
		}
	}
	return v
}

// slack covers the rounding of partial sums, which add the same terms as the
// exact ones in another order: a bound is raised by it before it is trusted
// to exclude an item (a few ulps would do; this is far more).
const slack = 1 + 1e-9

// scoreTop returns what scoreAll would, walking the cached rows (sorted by
// similarity, highest first) only as deep as it must. After each round, the
// rows' next similarities, each × its item's affinity, bound what an item can
// still gain from a row it was not met in yet: its partial sum plus those
// bounds is at least its score, and an item never met is bound by all of
// them. Candidates whose bound reaches the k-th exact score found so far are
// scored exactly; the walk stops once no other item's bound reaches it.
func (m *Model) scoreTop(c combined, sc *scratch, k, walk int) (top []int32, ok bool) {
	// Items without a cached row (short) and the self terms go in whole.
	for n, a := range c.aff {
		if m.cnt[a.item] == 0 {
			continue
		}
		if v := m.selfTerm(a); v > 0 {
			sc.add(a.item, v)
		}
		if sc.rows[n] == nil {
			m.shortRow(a, sc)
		}
	}
	cells, gen := sc.cells, sc.gen
	top = make([]int32, 0, k+1)
	budget := int(pruneBudget * float64(walk))
	better := func(a, b int32) bool {
		if cells[a].exact != cells[b].exact {
			return cells[a].exact > cells[b].exact
		}
		return m.ids[a] < m.ids[b]
	}
	floor := 0.0 // once the top is full: its k-th exact score
	// consider scores j exactly (once) and keeps it if it makes the top.
	consider := func(j int32) {
		cl := &cells[j]
		if cl.done == gen {
			return
		}
		v := m.exactScore(c, sc, j)
		budget -= len(c.aff)
		cl.done, cl.exact = gen, v
		if v <= 0 || (len(top) == k && v < floor) {
			return
		}
		top = insertTop(top, j, k, better)
		if len(top) == k {
			floor = cells[top[k-1]].exact
		}
	}
	// next[n] is row n's bound (0 once walked to its end). Rows past the
	// 64th do not mark seen, which only loosens their items' bounds.
	next := sc.next[:0]
	for range c.aff {
		next = append(next, 0)
	}
	defer func() { sc.next = next }()
	for depth, from := max(pruneDepth, 1), 0; ; from, depth = depth, 2*depth {
		rest, bound := false, 0.0
		for n, a := range c.aff {
			sr := sc.rows[n]
			if sr == nil {
				continue
			}
			bit := uint64(0)
			if n < 64 {
				bit = 1 << n
			}
			end := min(depth, len(sr.j))
			for x := from; x < end; x++ {
				sc.add(sr.j[x], float64(a.w*sr.s[x])).seen |= bit
			}
			next[n] = 0
			if end < len(sr.j) {
				next[n] = a.w * sr.s[end]
				rest, bound = true, bound+next[n]
			}
		}
		// The best partial sums first: they raise the k-th score soonest.
		for _, j := range m.best(sc, k) {
			consider(j)
		}
		for _, j := range sc.touched {
			cl := &cells[j]
			if cl.done == gen || cl.own == gen {
				continue
			}
			if len(top) == k && (cl.score+bound)*slack < floor {
				continue
			}
			if len(top) == k && cl.seen != 0 {
				// The tight bound: only the rows j was not met in yet.
				rem := 0.0
				for n, b := range next {
					if b > 0 && (n >= 64 || cl.seen&(1<<n) == 0) {
						rem += b
					}
				}
				if (cl.score+rem)*slack < floor {
					continue
				}
			}
			consider(j)
			if budget < 0 {
				return nil, false
			}
		}
		if !rest || (len(top) == k && bound*slack < floor) {
			return top, true
		}
	}
}

// simRow returns item i's cached similarities, building them when the row is
// long enough to be worth it (nil otherwise). The values are computed as the
// uncached loop computes them (pairSim), sorted highest first.
func (m *Model) simRow(i int32) *simRow {
	c := &m.sims[i]
	if sr := c.Load(); sr != nil && (sr.built == m.epoch || sr.fresh(m.uver, i)) {
		return sr
	}
	it := &m.items[i]
	if simCacheMin < 0 || it.co.len() < simCacheMin {
		return nil
	}
	type entry struct {
		j int32
		s float64
	}
	es := make([]entry, 0, it.co.len())
	ci, thr, cnt := float64(m.cnt[i]), int32(m.cfg.Threshold), m.cnt
	for _, slot := range it.co.slots {
		cij := int32(uint32(slot))
		if slot == 0 || cij < thr {
			continue
		}
		j := int32(slot>>32 - 1)
		es = append(es, entry{j, m.pairSim(cij, ci, cnt[j])})
	}
	slices.SortFunc(es, func(a, b entry) int {
		if c := cmp.Compare(b.s, a.s); c != 0 {
			return c
		}
		return cmp.Compare(a.j, b.j)
	})
	sr := &simRow{j: make([]int32, len(es)), s: make([]float64, len(es)), built: m.epoch}
	for x, e := range es {
		sr.j[x], sr.s[x] = e.j, e.s
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
// terms, when not nil, are j's terms as exactScore computed them (one per
// item of c, in order), so that they need not be looked up again.
func (m *Model) because(c combined, j int32, terms []float64) []Because {
	out := make([]Because, 0, MaxBecause+1)
	weight := make([]float64, 0, MaxBecause+1)
	for n, a := range c.aff {
		var v float64
		if terms != nil {
			v = terms[n]
		} else {
			v = m.term(a, j)
		}
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

// term is what the subject's item a adds to item j's score (0: nothing), the
// same expression as every other path computes, so the same bits. Every path
// rounds the product before adding it (float64(…) where it is added at once):
// where Go may fuse a multiply and an add (arm64, ppc64le, s390x, riscv64), a
// fused sum would differ in its last bits from one of rounded terms.
func (m *Model) term(a affinity, j int32) float64 {
	ci := m.cnt[a.item]
	if ci == 0 {
		return 0
	}
	if a.item == j {
		return m.selfTerm(a)
	}
	if cij := m.items[a.item].co.get(j); cij >= int32(m.cfg.Threshold) {
		return a.w * m.pairSim(cij, float64(ci), m.cnt[j])
	}
	return 0
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
