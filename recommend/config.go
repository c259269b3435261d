package recommend

import (
	"encoding/json"
	"fmt"
	"math"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/trustloop/trustloop"
	"github.com/trustloop/trustloop/collect"
)

// Similarity is how co-occurrence counts become item similarity.
type Similarity string

const (
	// Jaccard: C(i,j) / (C(i) + C(j) − C(i,j)), the share of the two items'
	// audiences that saw both (SAR's default; favours neither popular nor rare).
	Jaccard Similarity = "jaccard"
	// Lift: C(i,j) / (C(i) × C(j)), favouring rare items (serendipity).
	Lift Similarity = "lift"
	// Count: C(i,j), favouring popular items.
	Count Similarity = "count"
)

// Exclude says which of the subject's own items are left out of their
// recommendations.
type Exclude string

const (
	ExcludePurchased Exclude = "purchased"
	ExcludeSeen      Exclude = "seen"
	ExcludeNone      Exclude = "none"
)

// Config tunes the model. Unset fields take the defaults (Defaults), except
// HalfLife: 0 is no decay.
type Config struct {
	// Weights maps event names to interaction weights; other events are not
	// interactions.
	Weights map[string]float64
	// Purchases are the event names that mark an item bought.
	Purchases []string
	// HalfLife is the affinity's time decay: an interaction counts half as
	// much HalfLife later. 0: no decay.
	HalfLife   time.Duration
	Similarity Similarity
	// MaxItems caps the distinct items per subject counted in co-occurrence:
	// the first MaxItems in the order the subject met them (recorded with the
	// subject). It bounds the work of adding and removing one subject,
	// quadratic in their distinct items. Affinity has no cap.
	MaxItems int
	// Threshold: co-occurrence counts below it are taken as 0 (SAR's
	// threshold; 1 keeps everything).
	Threshold int
	Exclude   Exclude
	// MinSupport is the fewest customers behind anything served as aggregate
	// data: an item pair in similar items (and the item itself), an item in
	// the popular fallback. A rare item's similar items would otherwise show
	// what one customer did alongside it.
	MinSupport int
	// ItemSupport is the fewest subjects who must count an item before its
	// co-occurrences are kept: a pair (i, j) is counted while both i and j
	// are counted by at least ItemSupport subjects (1: every pair). It
	// bounds the model's memory on long-tail catalogs, where most items are
	// met by one customer and every customer's items make pairs no one else
	// shares: the pairs grow with customers × MaxItems² otherwise. The
	// counts stay a function of the histories alone, so forgetting stays
	// exact.
	ItemSupport int
}

// Defaults returns the default configuration: Product Viewed 1, Product Added
// 3, Order Completed 5, a 30-day half-life, Jaccard, 200 items, threshold 1,
// purchased items excluded.
func Defaults() Config {
	return Config{
		Weights:    map[string]float64{"Product Viewed": 1, "Product Added": 3, "Order Completed": 5},
		Purchases:  []string{"Order Completed"},
		HalfLife:   30 * 24 * time.Hour,
		Similarity: Jaccard,
		MaxItems:   100,
		Threshold:  1,
		Exclude:    ExcludePurchased,
		MinSupport: 3,
		// ItemSupport: 1 here; NewModel's callers choose (see Defaults' users).
		ItemSupport: 1,
	}
}

// withDefaults fills unset fields and checks the rest.
func (c Config) withDefaults() (Config, error) {
	d := Defaults()
	if c.Weights == nil {
		c.Weights = d.Weights
	}
	if c.Purchases == nil {
		c.Purchases = d.Purchases
	}
	if c.Similarity == "" {
		c.Similarity = d.Similarity
	}
	if c.MaxItems == 0 {
		c.MaxItems = d.MaxItems
	}
	if c.Threshold == 0 {
		c.Threshold = d.Threshold
	}
	if c.Exclude == "" {
		c.Exclude = d.Exclude
	}
	if c.MinSupport == 0 {
		c.MinSupport = d.MinSupport
	}
	if c.ItemSupport == 0 {
		c.ItemSupport = d.ItemSupport
	}
	switch {
	case c.Similarity != Jaccard && c.Similarity != Lift && c.Similarity != Count:
		return c, trustloop.Errorf(trustloop.EINVALID, "Unknown similarity %q.", c.Similarity).WithHint("Use jaccard, lift or count.")
	case c.Exclude != ExcludePurchased && c.Exclude != ExcludeSeen && c.Exclude != ExcludeNone:
		return c, trustloop.Errorf(trustloop.EINVALID, "Unknown exclusion %q.", c.Exclude).WithHint("Use purchased, seen or none.")
	case c.MaxItems < 1 || c.MaxItems > 10_000:
		return c, trustloop.Errorf(trustloop.EINVALID, "The items counted per subject must be 1 to 10000, not %d.", c.MaxItems).
			WithHint("Set serve's --rec-max-items (eval's --max-items) to a number in that range (default 100).")
	case c.MinSupport < 1 || c.MinSupport > 1000:
		return c, trustloop.Errorf(trustloop.EINVALID, "The minimum support must be 1 to 1000 customers, not %d.", c.MinSupport).
			WithHint("Set --rec-min-support to a number in that range.")
	case c.ItemSupport < 1 || c.ItemSupport > 1000:
		return c, trustloop.Errorf(trustloop.EINVALID, "The item support must be 1 to 1000 customers, not %d.", c.ItemSupport).
			WithHint("Set serve's --rec-item-support (eval's --item-support) to a number in that range (1 keeps every pair).")
	case c.Threshold < 1 || c.Threshold > 1000:
		// It counts customers, as MinSupport and ItemSupport do, and is bounded
		// as they are: a mistyped huge one would silently empty the model.
		return c, trustloop.Errorf(trustloop.EINVALID, "The co-occurrence threshold must be 1 to 1000 customers, not %d.", c.Threshold).
			WithHint("Set eval's --threshold to a number in that range: 1 counts every pair of items a customer met together; a higher threshold ignores rarer pairs.")
	case c.HalfLife < 0 || (c.HalfLife > 0 && c.HalfLife < time.Hour):
		return c, trustloop.Errorf(trustloop.EINVALID, "The half-life must be 0 (no decay) or at least one hour.").
			WithHint("Set serve's --rec-half-life (eval's --half-life) to 0 or a duration such as 720h.")
	}
	for name, w := range c.Weights {
		if name == "" || !(w > 0) || w > 1e6 || math.IsInf(w, 0) {
			return c, trustloop.Errorf(trustloop.EINVALID, "Interaction weights must be positive numbers up to 1e6 for named events.").
				WithHint("Write them as \"Product Viewed=1,Product Added=3\".")
		}
	}
	return c, nil
}

// ParseWeights reads "Event Name=weight,Other=weight".
func ParseWeights(s string) (map[string]float64, error) {
	out := map[string]float64{}
	for _, part := range strings.Split(s, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		name, v, ok := strings.Cut(part, "=")
		w, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
		if !ok || err != nil || strings.TrimSpace(name) == "" {
			return nil, trustloop.Errorf(trustloop.EINVALID, "Interaction weight %q is not \"Event Name=number\".", part).
				WithHint(`Write serve's --rec-weights (eval's --weights) as "Product Viewed=1,Product Added=3,Order Completed=5".`)
		}
		out[strings.TrimSpace(name)] = w
	}
	if len(out) == 0 {
		return nil, trustloop.Errorf(trustloop.EINVALID, "Name at least one weighted event.").
			WithHint(`Write serve's --rec-weights (eval's --weights) as "Product Viewed=1,Product Added=3,Order Completed=5".`)
	}
	return out, nil
}

// FormatWeights is ParseWeights' inverse, sorted by name.
func FormatWeights(w map[string]float64) string {
	names := make([]string, 0, len(w))
	for n := range w {
		names = append(names, n)
	}
	sort.Strings(names)
	var b strings.Builder
	for i, n := range names {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, "%s=%g", n, w[n])
	}
	return b.String()
}

// Interaction is what one event tells the model.
type Interaction struct {
	Items []string
	// Weight is the event's configured weight.
	Weight   float64
	Purchase bool
	// Time is the event's time, in milliseconds since the epoch.
	Time int64
}

// Ignore reasons, counted by the caller.
const (
	IgnoredNoProduct = "no_product_id"
	IgnoredLongID    = "product_id_too_long"
)

// MaxItemID is the longest product id the model keeps.
const MaxItemID = 200

// Extract reads the interaction an event carries: nil if its name has no
// weight; nil with a reason if it is weighted but names no usable product
// (properties.product_id, else properties.sku; for an event with
// properties.products, each product's).
func (c *Config) Extract(m *trustloop.Message) (*Interaction, string) {
	if m.Type != trustloop.EventTrack {
		return nil, ""
	}
	w, ok := c.Weights[m.Event]
	if !ok {
		return nil, ""
	}
	// The event's own time, but never after it was received: a client's clock
	// (or a sentinel date) in the far future would make its weight dwarf
	// everything, up to infinity.
	t := m.Timestamp.UnixMilli()
	if !m.ReceivedAt.IsZero() {
		t = min(t, m.ReceivedAt.UnixMilli())
	}
	in := &Interaction{Weight: w, Time: t}
	for _, p := range c.Purchases {
		if p == m.Event {
			in.Purchase = true
		}
	}
	reason := IgnoredNoProduct
	add := func(obj []byte) {
		id, ok := productID(obj)
		switch {
		case !ok:
		case len(id) > MaxItemID:
			reason = IgnoredLongID
		default:
			for _, have := range in.Items {
				if have == id {
					return
				}
			}
			in.Items = append(in.Items, id)
		}
	}
	props, ok := collect.Lookup(m.Raw, "properties")
	if !ok {
		return nil, reason
	}
	if list, ok := collect.Lookup(props, "products"); ok {
		var products []json.RawMessage
		if json.Unmarshal(list, &products) == nil {
			for _, p := range products {
				add(p)
			}
		}
	}
	if len(in.Items) == 0 {
		add(props)
	}
	if len(in.Items) == 0 {
		return nil, reason
	}
	return in, ""
}

// productID reads an object's product_id (or sku) as a string; numbers are
// taken in their JSON form.
func productID(obj []byte) (string, bool) {
	for _, name := range []string{"product_id", "sku"} {
		v, ok := collect.Lookup(obj, name)
		if !ok {
			continue
		}
		if s, ok := collect.StringValue(v); ok {
			if s = strings.TrimSpace(s); s != "" {
				return s, true
			}
			continue
		}
		if len(v) > 0 && (v[0] == '-' || (v[0] >= '0' && v[0] <= '9')) {
			return string(v), true
		}
	}
	return "", false
}
