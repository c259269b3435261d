package profile

import (
	"bytes"
	"encoding/json"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/trustloop/trustloop"
)

// groupPrefix namespaces a group call's traits among the profile's traits.
const groupPrefix = "group."

// Times outside (1970-01-01T00:00:00Z, 2200-01-01) are not event times but clock
// bugs; bounding them also lets the sealed form keep a time as int64 nanoseconds,
// with 0 for "unset".
var (
	minTime = time.Unix(0, 0)
	maxTime = time.Date(2200, 1, 1, 0, 0, 0, 0, time.UTC)
)

// normTime returns t in its one stored form (UTC, no monotonic reading, so that
// equal instants are equal values) and whether it is a usable event time.
func normTime(t time.Time) (time.Time, bool) {
	if !t.After(minTime) || !t.Before(maxTime) {
		return time.Time{}, false
	}
	return time.Unix(0, t.UnixNano()).UTC(), true
}

// Apply applies one event to s and reports what it did. It never fails: parts of
// the event that cannot be used are skipped and named in the result.
func (c Config) Apply(s *State, in Input) Result {
	var r Result
	if s == nil {
		return r
	}
	var name string
	switch in.Type {
	case trustloop.EventTrack:
		name = in.Event
		if name == "" {
			name = "track"
		}
	case trustloop.EventIdentify, trustloop.EventPage, trustloop.EventScreen,
		trustloop.EventGroup, trustloop.EventAlias:
		name = in.Type.String()
	default:
		r.skip(ReasonEventTypeUnknown)
		return r
	}
	at, ok := normTime(in.Timestamp)
	if !ok {
		if !in.Timestamp.IsZero() {
			r.skip(ReasonTimestampOutOfRange)
		}
		if at, ok = normTime(in.ReceivedAt); !ok {
			r.skip(ReasonTimestampMissing)
			return r
		}
	}
	// An out-of-range receipt time only loses its say in tie-breaks.
	recv, _ := normTime(in.ReceivedAt)
	w := Trait{At: at, ReceivedAt: recv, SourceID: in.SourceID}
	rl := c.rules()
	applyTraits(s, &in, w, &r)
	// Computed traits are kept per set of purposes allowed at collection (T3:
	// a read for purpose P merges the sets that name P); the totals are the
	// merge of every set and of the events of no known purposes.
	if len(in.Purposes) > 0 {
		applyComputed(s.forPurposes(in.Purposes), &in, name, at, &rl, &r)
	} else {
		applyComputed(&s.Computed, &in, name, at, &rl, &r)
	}
	return r
}

// applyTraits applies the event's trait writes, all stamped w.
func applyTraits(s *State, in *Input, w Trait, r *Result) {
	var keys keySet
	var buf [32]member
	var own []member
	if (in.Type == trustloop.EventIdentify || in.Type == trustloop.EventGroup) && len(in.Traits) > 0 && !isNull(in.Traits) {
		own = objectMembers(buf[:0], in.Traits, ReasonTraitsNotObject, r)
	}
	prefix := ""
	if in.Type == trustloop.EventGroup {
		prefix = groupPrefix
		if in.GroupID == "" || len(in.GroupID) > trustloop.MaxIdentifierLen {
			r.skip(ReasonGroupIDInvalid)
		} else {
			v, _ := json.Marshal(in.GroupID)
			setTrait(s, []byte(groupPrefix+"id"), v, false, w, r, &keys)
		}
	}
	var kb [96]byte
	for i := range own {
		k := own[i].key
		if prefix != "" {
			k = append(append(kb[:0], prefix...), k...)
		}
		setTrait(s, k, own[i].val, own[i].spaced, w, r, &keys)
	}
	if prefix != "" {
		// Group traits live under their own prefix: nothing to give way to.
		own = nil
	}
	if len(in.ContextTraits) == 0 || isNull(in.ContextTraits) {
		return
	}
	var cbuf [32]member
	ctx := objectMembers(cbuf[:0], in.ContextTraits, ReasonContextTraitsInvalid, r)
	// Within one event the call's own traits take precedence over context.traits,
	// which browsers fill from a cache that may be stale.
	var ownKeys map[string]bool
	if len(own) > 16 {
		ownKeys = make(map[string]bool, len(own))
		for _, m := range own {
			ownKeys[string(m.key)] = true
		}
	}
	for _, m := range ctx {
		if ownKeys != nil {
			if ownKeys[string(m.key)] {
				continue
			}
		} else if slices.ContainsFunc(own, func(o member) bool { return bytes.Equal(o.key, m.key) }) {
			continue
		}
		setTrait(s, m.key, m.val, m.spaced, w, r, &keys)
	}
}

// objectMembers reads the members of a traits object, or names why it cannot.
func objectMembers(dst []member, raw []byte, notObject Reason, r *Result) []member {
	if b := firstByte(raw); b != '{' {
		r.skip(notObject)
		return dst
	}
	dst, ok := readMembers(dst, raw)
	if !ok {
		r.skip(ReasonTraitsMalformed)
	}
	return dst
}

func firstByte(raw []byte) byte {
	for _, c := range raw {
		switch c {
		case ' ', '\t', '\n', '\r':
		default:
			return c
		}
	}
	return 0
}

var nullValue = []byte("null")

// after reports whether write a supersedes write b of the same key: the later event
// timestamp, then the later receipt, then the larger source id, then the larger
// value bytes (a deletion's are "null"). A total order, so the winner among any set
// of writes is the same whatever order they come in.
func (a *Trait) after(b *Trait) bool {
	if c := a.At.Compare(b.At); c != 0 {
		return c > 0
	}
	if c := a.ReceivedAt.Compare(b.ReceivedAt); c != 0 {
		return c > 0
	}
	if a.SourceID != b.SourceID {
		return a.SourceID > b.SourceID
	}
	av, bv := []byte(a.Value), []byte(b.Value)
	if av == nil {
		av = nullValue
	}
	if bv == nil {
		bv = nullValue
	}
	return bytes.Compare(av, bv) > 0
}

// setTrait applies one write of val (raw, validated JSON, with white space in it
// only if spaced) to key.
func setTrait(s *State, key, val []byte, spaced bool, w Trait, r *Result, keys *keySet) {
	if !utf8.Valid(key) {
		// encoding/json would turn the invalid bytes into U+FFFD when the state is
		// sealed; doing it now keeps the key the same before and after.
		key = []byte(strings.ToValidUTF8(string(key), "\uFFFD"))
	}
	if len(key) == 0 || len(key) > MaxNameBytes {
		r.skip(ReasonTraitKeyInvalid)
		return
	}
	null := isNull(val)
	copied := true
	if !null {
		n := len(val)
		if spaced {
			n = compactLen(val)
		}
		if n > MaxTraitBytes {
			r.skip(ReasonTraitTooLarge)
			return
		}
		if n != len(val) {
			val = appendCompact(make([]byte, 0, n), val)
		} else {
			// Copied only once it wins: never keep a slice of the message.
			copied = false
		}
		w.Value = val
	}
	cur, live := s.Traits[string(key)]
	dead := false
	if !live {
		cur, dead = s.Deleted[string(key)]
	}
	if (live || dead) && !w.after(&cur) {
		return
	}
	k := string(key)
	if !live && !dead && !admitKey(s, k, r, keys) {
		return
	}
	r.Changed = true
	if null {
		if live {
			delete(s.Traits, k)
		}
		if s.Deleted == nil {
			s.Deleted = make(map[string]Trait)
		}
		s.Deleted[k] = w
		return
	}
	if dead {
		delete(s.Deleted, k)
	}
	if s.Traits == nil {
		s.Traits = make(map[string]Trait)
	}
	if !copied {
		w.Value = bytes.Clone(w.Value)
	}
	s.Traits[k] = w
}

// admitKey decides whether a new key gets a slot. The profile keeps the
// MaxTraitKeys lexically smallest keys ever written (tombstones included): unlike
// first come, first served, that set does not depend on the order of events, and a
// key once refused is never admitted later, so every kept key's value is exact.
func admitKey(s *State, k string, r *Result, keys *keySet) bool {
	for len(s.Traits)+len(s.Deleted) >= traitKeyCap {
		largest := keys.largest(s)
		if k > largest {
			r.skip(ReasonTraitKeysOverLimit)
			return false
		}
		delete(s.Traits, largest)
		delete(s.Deleted, largest)
		keys.removeLargest()
		r.skip(ReasonTraitEvicted)
	}
	keys.add(k)
	return true
}

// keySet finds a profile's largest keys once it is at the key cap (which a sane
// profile never reaches), for the rest of one Apply. One new key costs a scan;
// only a second eviction in the same event pays for sorting every key.
type keySet struct {
	max     string // the largest key, when hasMax
	hasMax  bool
	evicted bool     // a key was evicted before the set was sorted
	sorted  []string // every key in order, when built
	built   bool
}

func (ks *keySet) largest(s *State) string {
	if !ks.built && ks.evicted {
		ks.built = true
		ks.sorted = make([]string, 0, len(s.Traits)+len(s.Deleted)+1)
		for k := range s.Traits {
			ks.sorted = append(ks.sorted, k)
		}
		for k := range s.Deleted {
			ks.sorted = append(ks.sorted, k)
		}
		slices.Sort(ks.sorted)
	}
	if ks.built {
		return ks.sorted[len(ks.sorted)-1]
	}
	if !ks.hasMax {
		for k := range s.Traits {
			if !ks.hasMax || k > ks.max {
				ks.max, ks.hasMax = k, true
			}
		}
		for k := range s.Deleted {
			if !ks.hasMax || k > ks.max {
				ks.max, ks.hasMax = k, true
			}
		}
	}
	return ks.max
}

func (ks *keySet) removeLargest() {
	if ks.built {
		ks.sorted = ks.sorted[:len(ks.sorted)-1]
		return
	}
	ks.hasMax, ks.evicted = false, true
}

// add records a key being added to the state.
func (ks *keySet) add(k string) {
	switch {
	case ks.built:
		i, _ := slices.BinarySearch(ks.sorted, k)
		ks.sorted = slices.Insert(ks.sorted, i, k)
	case ks.hasMax && k > ks.max:
		ks.max = k
	}
}

// applyComputed maintains the computed traits for one event at time at.
func applyComputed(c *Computed, in *Input, name string, at time.Time, rl *rules, r *Result) {
	if rl.on(bitFirstSeen) && (c.FirstSeen.IsZero() || at.Before(c.FirstSeen)) {
		c.FirstSeen = at
		r.Changed = true
	}
	if rl.on(bitLastSeen) && at.After(c.LastSeen) {
		c.LastSeen = at
		r.Changed = true
	}
	if rl.on(bitEvents) {
		c.Events++
		r.Changed = true
	}
	if rl.on(bitEventsByName) {
		r.Changed = true
		if !utf8.ValidString(name) {
			name = strings.ToValidUTF8(name, "\uFFFD")
		}
		if len(name) > MaxNameBytes {
			// Counted, but a name this long is not worth a slot.
			c.OtherEvents++
			r.skip(ReasonEventNameTooLong)
		} else if countCapped(&c.ByEvent, &c.OtherEvents, name, rl.maxEventNames) {
			r.skip(ReasonEventNamesOverLimit)
		}
	}
	if rl.on(bitChannels) {
		if i, found := slices.BinarySearch(c.Sources, in.SourceID); !found {
			c.Sources = slices.Insert(c.Sources, i, in.SourceID)
			r.Changed = true
		}
	}
	if in.Type != trustloop.EventTrack {
		return
	}
	order := (rl.on(bitOrderCount) || rl.on(bitLifetimeValue)) && slices.Contains(rl.orders, in.Event)
	view := rl.on(bitLastViewed) && slices.Contains(rl.views, in.Event)
	category := rl.on(bitFavouriteCategory)
	if order && rl.on(bitOrderCount) {
		c.Orders++
		r.Changed = true
	}
	if !(order || view || category) || len(in.Properties) == 0 || isNull(in.Properties) {
		return
	}
	p, ok := readProperties(in.Properties, r)
	if !ok {
		return
	}
	if order && rl.on(bitLifetimeValue) {
		if v := p.revenue; v != nil || p.total != nil {
			if v == nil {
				v = p.total
			}
			micros, reason := amountValue(v)
			if reason != "" {
				r.skip(reason)
			} else if micros != 0 {
				c.RevenueMicros += micros // wraps: see money.go
				r.Changed = true
			}
		}
	}
	if view {
		if v := p.productID(); v != nil {
			if id := idValue(v); id == "" || len(id) > MaxNameBytes {
				r.skip(ReasonProductIDInvalid)
			} else if addView(&c.LastViewed, id, at, rl.lastViewed) {
				r.Changed = true
			}
		}
	}
	if category && p.category != nil {
		cat, ok := stringValue(p.category)
		if !ok || cat == "" || len(cat) > MaxNameBytes {
			r.skip(ReasonCategoryInvalid)
		} else {
			r.Changed = true
			if countCapped(&c.Categories, &c.OtherCategories, cat, rl.maxCategories) {
				r.skip(ReasonCategoriesOverLimit)
			}
		}
	}
}

// properties holds the raw values of the members the rules read (nil if absent or
// null).
type properties struct {
	revenue, total, productIDv, sku, id, category []byte
}

// productID is product_id, else sku, else id.
func (p *properties) productID() []byte {
	switch {
	case p.productIDv != nil:
		return p.productIDv
	case p.sku != nil:
		return p.sku
	}
	return p.id
}

// propertyMembers are the properties the rules read, in the order of properties'
// fields.
var propertyMembers = []string{"revenue", "total", "product_id", "sku", "id", "category"}

func readProperties(raw []byte, r *Result) (p properties, ok bool) {
	var v [6][]byte
	if firstByte(raw) != '{' {
		r.skip(ReasonPropertiesNotObject)
		return p, false
	}
	if !pick(raw, propertyMembers, v[:]) {
		r.skip(ReasonPropertiesMalformed)
		return p, false
	}
	return properties{
		revenue: notNull(v[0]), total: notNull(v[1]), productIDv: notNull(v[2]),
		sku: notNull(v[3]), id: notNull(v[4]), category: notNull(v[5]),
	}, true
}

// countCapped counts name in a counter that keeps at most limit names: the
// lexically smallest ones, for the same reason as admitKey. The counts of names
// that lose their slot, or never get one, go to *other. It reports whether anything
// went to *other.
func countCapped(m *map[string]int64, other *int64, name string, limit int) bool {
	if n, ok := (*m)[name]; ok {
		(*m)[name] = n + 1
		return false
	}
	if *m == nil {
		*m = make(map[string]int64)
	}
	(*m)[name] = 1
	return trimCapped(*m, other, limit)
}

// trimCapped moves the largest names' counts to *other until m holds limit names.
func trimCapped(m map[string]int64, other *int64, limit int) bool {
	trimmed := false
	for len(m) > limit {
		largest, first := "", true
		for k := range m {
			if first || k > largest {
				largest, first = k, false
			}
		}
		*other += m[largest]
		delete(m, largest)
		trimmed = true
	}
	return trimmed
}

// precedes is LastViewed's order: later view first, ties by product id.
func precedes(a, b *View) bool {
	if c := a.At.Compare(b.At); c != 0 {
		return c > 0
	}
	return a.Product < b.Product
}

// addView records a view of product at time at in the list of the limit products
// with the latest views. A product's later view moves it up; an earlier one changes
// nothing. Only the top limit (product, latest view) pairs are kept, and that is
// enough to stay exact: a product outside them whose latest view is no later than
// the last kept one can only get back in with a view later than that, which the
// list then records correctly.
func addView(list *[]View, product string, at time.Time, limit int) bool {
	l := *list
	changed := false
	if len(l) > limit { // a state from before a lower cap
		l, changed = l[:limit], true
	}
	v := View{Product: product, At: at}
	if i := slices.IndexFunc(l, func(x View) bool { return x.Product == product }); i >= 0 {
		if !at.After(l[i].At) {
			*list = l
			return changed
		}
		l = slices.Delete(l, i, i+1)
	}
	j, _ := slices.BinarySearchFunc(l, v, func(x, t View) int {
		if precedes(&x, &t) {
			return -1
		}
		return 1
	})
	if j >= limit {
		*list = l
		return changed
	}
	l = slices.Insert(l, j, v)
	if len(l) > limit {
		l = l[:limit]
	}
	*list = l
	return true
}

// Correct applies a rectification: each named trait takes its corrected value
// (null removes it, with a tombstone), dated at or, if a write already stored
// is newer, just after it, so the correction wins over everything the profile
// has seen; computed traits are untouched (no event happened).
func Correct(s *State, traits map[string]json.RawMessage, at time.Time) {
	for name, v := range traits {
		when := at
		for _, m := range []map[string]Trait{s.Traits, s.Deleted} {
			if cur, ok := m[name]; ok && !cur.At.Before(when) {
				when = cur.At.Add(time.Millisecond)
			}
		}
		t := Trait{At: when, ReceivedAt: when}
		if isNull(v) {
			delete(s.Traits, name)
			if s.Deleted == nil {
				s.Deleted = map[string]Trait{}
			}
			s.Deleted[name] = t
			continue
		}
		t.Value = appendCompact(nil, v)
		if s.Traits == nil {
			s.Traits = map[string]Trait{}
		}
		s.Traits[name] = t
		delete(s.Deleted, name)
	}
}
