package profile

import (
	"slices"
	"strings"
)

// Merge folds the profile from into into, as when identity resolution finds two
// profiles are one customer. The result is the state that applying both profiles'
// events to one empty state would give (the two event sets being disjoint), because
// every rule keeps exactly what it needs to combine: the winning write per trait
// key, sums, minima and maxima, sets, and the capped sets' smallest names and
// latest views. from is left unchanged; into shares trait values with it (they are
// never modified in place).
func (c Config) Merge(into, from *State) {
	if into == nil || from == nil {
		return
	}
	if into == from {
		from = from.Clone()
	}
	mergeTraits(into, from)
	c.mergeComputed(&into.Computed, &from.Computed)
	for i := range from.ByPurposes {
		c.mergeComputed(into.forPurposes(from.ByPurposes[i].Purposes), &from.ByPurposes[i].Computed)
	}
}

// mergeComputed merges b's computed traits into a's (b is left unchanged).
func (c Config) mergeComputed(a, b *Computed) {
	rl := c.rules()
	if rl.on(bitFirstSeen) && !b.FirstSeen.IsZero() && (a.FirstSeen.IsZero() || b.FirstSeen.Before(a.FirstSeen)) {
		a.FirstSeen = b.FirstSeen
	}
	if rl.on(bitLastSeen) && b.LastSeen.After(a.LastSeen) {
		a.LastSeen = b.LastSeen
	}
	if rl.on(bitEvents) {
		a.Events += b.Events
	}
	if rl.on(bitEventsByName) {
		mergeCapped(&a.ByEvent, &a.OtherEvents, b.ByEvent, b.OtherEvents, rl.maxEventNames)
	}
	if rl.on(bitChannels) {
		for _, id := range b.Sources {
			if i, found := slices.BinarySearch(a.Sources, id); !found {
				a.Sources = slices.Insert(a.Sources, i, id)
			}
		}
	}
	if rl.on(bitOrderCount) {
		a.Orders += b.Orders
	}
	if rl.on(bitLifetimeValue) {
		a.RevenueMicros += b.RevenueMicros // wraps: see money.go
	}
	if rl.on(bitLastViewed) {
		for _, v := range b.LastViewed {
			addView(&a.LastViewed, v.Product, v.At, rl.lastViewed)
		}
	}
	if rl.on(bitFavouriteCategory) {
		mergeCapped(&a.Categories, &a.OtherCategories, b.Categories, b.OtherCategories, rl.maxCategories)
	}
}

// mergeTraits keeps, per key, the write that wins (see Trait.after), then the
// MaxTraitKeys smallest keys: a key kept by the combined history is kept, with its
// exact value, by each side that saw it.
func mergeTraits(into, from *State) {
	take := func(k string, t Trait) {
		cur, live := into.Traits[k]
		dead := false
		if !live {
			cur, dead = into.Deleted[k]
		}
		if (live || dead) && !t.after(&cur) {
			return
		}
		if live {
			delete(into.Traits, k)
		}
		if dead {
			delete(into.Deleted, k)
		}
		if t.Value == nil {
			if into.Deleted == nil {
				into.Deleted = make(map[string]Trait)
			}
			into.Deleted[k] = t
		} else {
			if into.Traits == nil {
				into.Traits = make(map[string]Trait)
			}
			into.Traits[k] = t
		}
	}
	for k, t := range from.Traits {
		take(k, t)
	}
	for k, t := range from.Deleted {
		take(k, t)
	}
	if n := len(into.Traits) + len(into.Deleted); n > traitKeyCap {
		keys := make([]string, 0, n)
		for k := range into.Traits {
			keys = append(keys, k)
		}
		for k := range into.Deleted {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		for _, k := range keys[traitKeyCap:] {
			delete(into.Traits, k)
			delete(into.Deleted, k)
		}
	}
}

// mergeCapped adds counter from into counter *m and keeps the limit smallest names.
// A name counted exactly on one side and overflowed on the other cannot be among
// the combined smallest (the other side had limit smaller names), so the kept
// counts stay exact.
func mergeCapped(m *map[string]int64, other *int64, from map[string]int64, fromOther int64, limit int) {
	*other += fromOther
	if len(from) == 0 {
		trimCappedSorted(*m, other, limit)
		return
	}
	if *m == nil {
		*m = make(map[string]int64, len(from))
	}
	for k, v := range from {
		(*m)[k] += v
	}
	trimCappedSorted(*m, other, limit)
}

// trimCappedSorted is trimCapped for many names at once.
func trimCappedSorted(m map[string]int64, other *int64, limit int) {
	if len(m) <= limit {
		return
	}
	names := make([]string, 0, len(m))
	for k := range m {
		names = append(names, k)
	}
	slices.SortFunc(names, strings.Compare)
	for _, k := range names[limit:] {
		*other += m[k]
		delete(m, k)
	}
}
