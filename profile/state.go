package profile

import (
	"encoding/json"
	"maps"
	"slices"
	"strings"
	"time"
)

// Trait is one trait's current value and the write that set it. In State.Deleted
// the same shape records a deletion (Value nil): the write that set the key to null.
type Trait struct {
	// Value is compacted JSON; it is never modified in place (States share it).
	Value json.RawMessage `json:"value"`
	// At is the event timestamp of the write; ReceivedAt and SourceID break ties.
	At         time.Time `json:"at"`
	ReceivedAt time.Time `json:"received_at"`
	// SourceID is the source (channel) that sent the write.
	SourceID int64 `json:"source"`
}

// State is a profile's projection state: what Apply and Merge maintain and what the
// storage layer seals at rest. The zero value is an empty profile.
type State struct {
	// Traits are the live traits by key; group traits are under "group.<key>".
	Traits map[string]Trait
	// Deleted holds tombstones: keys last set to null, kept so that an older write
	// arriving later cannot bring the value back.
	Deleted  map[string]Trait
	Computed Computed
	// ByPurposes holds the computed traits per set of purposes allowed when
	// the events were collected (ordered by the sets' joined ids), so that a
	// read for a purpose sees them computed from exactly those events (T3).
	// Computed holds those of events of no known purposes (collected before
	// consent was enforced); the profile's totals (Config.Totals) are the merge
	// of Computed and every set.
	ByPurposes []PurposeComputed
}

// PurposeComputed is the computed traits of the events collected for one set of
// purposes.
type PurposeComputed struct {
	// Purposes are sorted and distinct.
	Purposes []string
	Computed Computed
}

// purposesKey orders and identifies purpose sets.
func purposesKey(p []string) string { return strings.Join(p, " ") }

// forPurposes returns the entry of a purpose set (sorted), made if new.
func (s *State) forPurposes(p []string) *Computed {
	k := purposesKey(p)
	i, found := slices.BinarySearchFunc(s.ByPurposes, k, func(e PurposeComputed, k string) int {
		return strings.Compare(purposesKey(e.Purposes), k)
	})
	if !found {
		s.ByPurposes = slices.Insert(s.ByPurposes, i, PurposeComputed{Purposes: slices.Clone(p)})
	}
	return &s.ByPurposes[i].Computed
}

// ComputedFor returns the computed traits of the events collected while
// purpose was allowed, as Map shows them (every enabled trait, zero when no
// such event).
func (c Config) ComputedFor(s *State, purpose string) map[string]any {
	var sum Computed
	for i := range s.ByPurposes {
		if _, ok := slices.BinarySearch(s.ByPurposes[i].Purposes, purpose); ok {
			c.mergeComputed(&sum, &s.ByPurposes[i].Computed)
		}
	}
	return c.computedMap(&sum)
}

// Totals returns the profile's computed traits over all its events. With no
// purpose sets (events of no known purposes only) it is Computed itself,
// shared, not copied.
func (c Config) Totals(s *State) *Computed {
	if len(s.ByPurposes) == 0 {
		return &s.Computed
	}
	if len(s.ByPurposes) == 1 && s.Computed.empty() {
		return &s.ByPurposes[0].Computed
	}
	sum := cloneComputed(s.Computed)
	for i := range s.ByPurposes {
		c.mergeComputed(&sum, &s.ByPurposes[i].Computed)
	}
	return &sum
}

// Computed holds the computed traits, each kept so that it is exact and independent
// of the order events are applied in (see doc.go).
type Computed struct {
	// FirstSeen and LastSeen are the smallest and largest event timestamps (zero
	// before the first event).
	FirstSeen, LastSeen time.Time
	// Events counts every applied event.
	Events int64
	// ByEvent counts events by name: a track event's name, else the call type
	// ("page", "screen", "identify", "group", "alias"). OtherEvents counts those
	// whose name did not get one of the MaxEventNames slots.
	ByEvent     map[string]int64
	OtherEvents int64
	// Sources are the source (channel) ids seen, ascending.
	Sources []int64
	// Orders counts order events; RevenueMicros sums their revenue (else total) in
	// millionths of a unit. The sum ignores currencies.
	Orders        int64
	RevenueMicros int64
	// LastViewed are the most recently viewed products, by the event timestamp of
	// their latest view: most recent first, ties by product id, distinct, capped.
	LastViewed []View
	// Categories counts properties.category over track events; OtherCategories
	// counts those that did not get one of the MaxCategories slots.
	Categories      map[string]int64
	OtherCategories int64
}

// View is a product's latest view.
type View struct {
	Product string
	At      time.Time
}

// LifetimeValue is the revenue sum in units.
func (c *Computed) LifetimeValue() float64 { return float64(c.RevenueMicros) / microsPerUnit }

// LastViewedProducts returns the product ids of LastViewed, most recent first.
func (c *Computed) LastViewedProducts() []string {
	out := make([]string, len(c.LastViewed))
	for i, v := range c.LastViewed {
		out[i] = v.Product
	}
	return out
}

// FavouriteCategory is the most counted category, ties to the lexically smallest;
// "" when none was counted. Categories beyond the cap (OtherCategories) never are.
func (s *State) FavouriteCategory() string { return Config{}.Totals(s).favourite() }

func (cs *Computed) favourite() string {
	best, n := "", int64(0)
	for k, v := range cs.Categories {
		if v > n || (v == n && k < best) {
			best, n = k, v
		}
	}
	return best
}

// Clone returns a deep copy of s (trait values are shared: they are never modified
// in place).
func (s *State) Clone() *State {
	c := &State{Traits: maps.Clone(s.Traits), Deleted: maps.Clone(s.Deleted), Computed: s.Computed}
	c.Computed.ByEvent = maps.Clone(s.Computed.ByEvent)
	c.Computed.Sources = slices.Clone(s.Computed.Sources)
	c.Computed.LastViewed = slices.Clone(s.Computed.LastViewed)
	c.Computed.Categories = maps.Clone(s.Computed.Categories)
	if s.ByPurposes != nil {
		c.ByPurposes = make([]PurposeComputed, len(s.ByPurposes))
		for i, e := range s.ByPurposes {
			c.ByPurposes[i] = PurposeComputed{Purposes: slices.Clone(e.Purposes), Computed: cloneComputed(e.Computed)}
		}
	}
	return c
}

// empty reports whether c holds nothing (no event fed it).
func (c *Computed) empty() bool {
	return c.FirstSeen.IsZero() && c.LastSeen.IsZero() && c.Events == 0 && len(c.ByEvent) == 0 && c.OtherEvents == 0 &&
		len(c.Sources) == 0 && c.Orders == 0 && c.RevenueMicros == 0 && len(c.LastViewed) == 0 &&
		len(c.Categories) == 0 && c.OtherCategories == 0
}

func cloneComputed(c Computed) Computed {
	c.ByEvent = maps.Clone(c.ByEvent)
	c.Sources = slices.Clone(c.Sources)
	c.LastViewed = slices.Clone(c.LastViewed)
	c.Categories = maps.Clone(c.Categories)
	return c
}

// OtherEventName is the key events_by_name counts overflowing event names under.
const OtherEventName = "(other)"

// Map returns the profile as audience rules (CEL) and the API see it:
//
//	{"traits": {key: value decoded as encoding/json decodes into any},
//	 "computed": {"first_seen": time.Time, "last_seen": time.Time, "events": int64,
//	   "events_by_name": map[string]int64, "channels": []int64, "order_count": int64,
//	   "lifetime_value": float64, "last_viewed_products": []string,
//	   "favourite_category": string}}
//
// Computed traits the Config disables are left out, so that a rule naming one fails
// as unknown instead of silently matching a zero. Numbers in traits decode to
// float64 (integers beyond 2^53 lose precision). The result shares nothing with s.
func (c Config) Map(s *State) map[string]any {
	traits := make(map[string]any, len(s.Traits))
	for k, t := range s.Traits {
		var v any
		if json.Unmarshal(t.Value, &v) == nil {
			traits[k] = v
		}
	}
	return map[string]any{"traits": traits, "computed": c.computedMap(c.Totals(s))}
}

// computedMap is Map's "computed" member for cs.
func (c Config) computedMap(cs *Computed) map[string]any {
	r := c.rules()
	comp := make(map[string]any, len(computedNames))
	if r.on(bitFirstSeen) {
		comp[ComputedFirstSeen] = cs.FirstSeen
	}
	if r.on(bitLastSeen) {
		comp[ComputedLastSeen] = cs.LastSeen
	}
	if r.on(bitEvents) {
		comp[ComputedEvents] = cs.Events
	}
	if r.on(bitEventsByName) {
		by := make(map[string]int64, len(cs.ByEvent)+1)
		maps.Copy(by, cs.ByEvent)
		if cs.OtherEvents != 0 {
			// A track event may itself be named "(other)"; adding keeps the total.
			by[OtherEventName] += cs.OtherEvents
		}
		comp[ComputedEventsByName] = by
	}
	if r.on(bitChannels) {
		comp[ComputedChannels] = append([]int64{}, cs.Sources...)
	}
	if r.on(bitOrderCount) {
		comp[ComputedOrderCount] = cs.Orders
	}
	if r.on(bitLifetimeValue) {
		comp[ComputedLifetimeValue] = cs.LifetimeValue()
	}
	if r.on(bitLastViewed) {
		comp[ComputedLastViewedProducts] = cs.LastViewedProducts()
	}
	if r.on(bitFavouriteCategory) {
		comp[ComputedFavouriteCategory] = cs.favourite()
	}
	return comp
}

// Reason names why part of an event was not applied. Reasons are a fixed set (fit
// for metric labels) and never carry values.
type Reason string

const (
	ReasonEventTypeUnknown     Reason = "event_type_unknown"
	ReasonTimestampMissing     Reason = "timestamp_missing"
	ReasonTimestampOutOfRange  Reason = "timestamp_out_of_range"
	ReasonTraitsNotObject      Reason = "traits_not_object"
	ReasonTraitsMalformed      Reason = "traits_malformed"
	ReasonTraitKeyInvalid      Reason = "trait_key_invalid"
	ReasonTraitTooLarge        Reason = "trait_value_too_large"
	ReasonTraitKeysOverLimit   Reason = "trait_keys_over_limit"
	ReasonTraitEvicted         Reason = "trait_evicted_over_limit"
	ReasonGroupIDInvalid       Reason = "group_id_invalid"
	ReasonPropertiesNotObject  Reason = "properties_not_object"
	ReasonPropertiesMalformed  Reason = "properties_malformed"
	ReasonRevenueNotNumeric    Reason = "revenue_not_numeric"
	ReasonRevenueOutOfRange    Reason = "revenue_out_of_range"
	ReasonProductIDInvalid     Reason = "product_id_invalid"
	ReasonCategoryInvalid      Reason = "category_invalid"
	ReasonEventNameTooLong     Reason = "event_name_too_long"
	ReasonEventNamesOverLimit  Reason = "event_names_over_limit"
	ReasonCategoriesOverLimit  Reason = "categories_over_limit"
	ReasonContextTraitsInvalid Reason = "context_traits_not_object"
)

// Result is what applying one event did. Skipped lists a reason for each part of
// the event that was left out (one entry per occurrence); none of them fails the
// event, which the ingest layer has already committed.
type Result struct {
	// Changed is false when the state is exactly as before.
	Changed bool
	Skipped []Reason
}

func (r *Result) skip(reason Reason) { r.Skipped = append(r.Skipped, reason) }
