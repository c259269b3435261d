package profile

import (
	"slices"

	"github.com/trustloop/trustloop"
)

// Names of the computed traits, as Config.Map shows them and Config.Disabled names
// them.
const (
	ComputedFirstSeen          = "first_seen"
	ComputedLastSeen           = "last_seen"
	ComputedEvents             = "events"
	ComputedEventsByName       = "events_by_name"
	ComputedChannels           = "channels"
	ComputedOrderCount         = "order_count"
	ComputedLifetimeValue      = "lifetime_value"
	ComputedLastViewedProducts = "last_viewed_products"
	ComputedFavouriteCategory  = "favourite_category"
)

// computedNames is in bit order: bit i of a disabled mask is computedNames[i].
var computedNames = [...]string{
	ComputedFirstSeen, ComputedLastSeen, ComputedEvents, ComputedEventsByName,
	ComputedChannels, ComputedOrderCount, ComputedLifetimeValue,
	ComputedLastViewedProducts, ComputedFavouriteCategory,
}

const (
	bitFirstSeen uint16 = 1 << iota
	bitLastSeen
	bitEvents
	bitEventsByName
	bitChannels
	bitOrderCount
	bitLifetimeValue
	bitLastViewed
	bitFavouriteCategory
)

// Defaults and bounds of Config.
const (
	DefaultLastViewed    = 10
	DefaultMaxEventNames = 200
	DefaultMaxCategories = 200
	MaxLastViewed        = 100
	MaxMaxEventNames     = 10_000
	MaxMaxCategories     = 10_000

	// MaxTraitBytes caps one trait value (compacted JSON). A larger value is
	// skipped: a profile is read on every audience evaluation, and values this
	// large are blobs, not traits.
	MaxTraitBytes = 8 << 10
	// MaxTraitKeys caps the keys a profile holds, tombstones included (see doc.go
	// for which keys are kept).
	MaxTraitKeys = 500
	// MaxNameBytes caps a trait key, an event name, a category and a product id.
	MaxNameBytes = 256
)

// traitKeyCap is MaxTraitKeys, a variable only so that tests can reach the cap
// with small profiles.
var traitKeyCap = MaxTraitKeys

// DefaultOrderEvents and DefaultViewEvents are the Segment e-commerce spec's names.
var (
	DefaultOrderEvents = []string{"Order Completed"}
	DefaultViewEvents  = []string{"Product Viewed"}
)

// Config is a workspace's projection settings. The zero value means the defaults.
// A Config must stay the same for the life of the profiles it projects: caps and
// switches apply to the events applied after a change, not to history (rebuild the
// profiles from the log to apply a change retroactively).
type Config struct {
	// LastViewed is how many last viewed product ids to keep (0: 10, at most 100).
	LastViewed int `json:"last_viewed,omitempty"`
	// MaxEventNames caps the distinct event names counted per profile (0: 200, at
	// most 10,000); the rest are counted under "(other)".
	MaxEventNames int `json:"max_event_names,omitempty"`
	// MaxCategories caps the distinct categories counted per profile (0: 200, at
	// most 10,000); the rest are counted but cannot be the favourite.
	MaxCategories int `json:"max_categories,omitempty"`
	// OrderEvents are the track event names that are orders. nil means
	// ["Order Completed"]; an empty, non-nil list means none.
	OrderEvents []string `json:"order_events,omitempty"`
	// ViewEvents are the track event names that are product views. nil means
	// ["Product Viewed"]; an empty, non-nil list means none.
	ViewEvents []string `json:"view_events,omitempty"`
	// Disabled names computed traits (Computed* constants) not to maintain.
	Disabled []string `json:"disabled,omitempty"`
}

// Validate reports settings out of bounds and unknown computed trait names.
// Apply works with any Config (it clamps), so this is for the API that stores one.
func (c Config) Validate() error {
	switch {
	case c.LastViewed < 0 || c.LastViewed > MaxLastViewed:
		return trustloop.Errorf(trustloop.EINVALID, "last_viewed must be between 0 and %d", MaxLastViewed).
			WithHint("Use 0 for the default of 10.")
	case c.MaxEventNames < 0 || c.MaxEventNames > MaxMaxEventNames:
		return trustloop.Errorf(trustloop.EINVALID, "max_event_names must be between 0 and %d", MaxMaxEventNames).
			WithHint("Use 0 for the default of 200.")
	case c.MaxCategories < 0 || c.MaxCategories > MaxMaxCategories:
		return trustloop.Errorf(trustloop.EINVALID, "max_categories must be between 0 and %d", MaxMaxCategories).
			WithHint("Use 0 for the default of 200.")
	}
	for i, name := range c.Disabled {
		if !slices.Contains(computedNames[:], name) {
			return trustloop.Errorf(trustloop.EINVALID, "disabled[%d] is not a computed trait", i).
				WithHint("Name one of first_seen, last_seen, events, events_by_name, channels, order_count, lifetime_value, last_viewed_products, favourite_category.")
		}
	}
	for i, name := range c.OrderEvents {
		if name == "" {
			return trustloop.Errorf(trustloop.EINVALID, "order_events[%d] is empty", i).
				WithHint("Name each event that completes an order, such as \"Order Completed\", or leave the list out for the default.")
		}
	}
	for i, name := range c.ViewEvents {
		if name == "" {
			return trustloop.Errorf(trustloop.EINVALID, "view_events[%d] is empty", i).
				WithHint("Name each event that views a product, such as \"Product Viewed\", or leave the list out for the default.")
		}
	}
	return nil
}

// rules is a Config resolved to the values Apply uses.
type rules struct {
	lastViewed    int
	maxEventNames int
	maxCategories int
	orders, views []string
	off           uint16
}

func (c Config) rules() rules {
	r := rules{
		lastViewed:    clamp(c.LastViewed, DefaultLastViewed, MaxLastViewed),
		maxEventNames: clamp(c.MaxEventNames, DefaultMaxEventNames, MaxMaxEventNames),
		maxCategories: clamp(c.MaxCategories, DefaultMaxCategories, MaxMaxCategories),
		orders:        c.OrderEvents,
		views:         c.ViewEvents,
	}
	if r.orders == nil {
		r.orders = DefaultOrderEvents
	}
	if r.views == nil {
		r.views = DefaultViewEvents
	}
	for _, name := range c.Disabled {
		if i := slices.Index(computedNames[:], name); i >= 0 {
			r.off |= 1 << i
		}
	}
	return r
}

func (r *rules) on(bit uint16) bool { return r.off&bit == 0 }

func clamp(v, def, limit int) int {
	switch {
	case v <= 0:
		return def
	case v > limit:
		return limit
	}
	return v
}
