// Package profile owns the projection rules of a customer profile: how one event
// changes what Trustloop knows about its customer (State), how two profiles of one
// customer combine (Merge), how a profile looks to audience rules and the API
// (Config.Map), and the versioned form a State is sealed in at rest.
//
// It is pure: it must never do I/O, read the clock (every time comes from the
// event), log, or know about storage, keys or ingest, which call it from the
// writer. It must never put personal data (trait values, identifiers, product ids,
// category names) into an error or a Result: reasons name the field and the rule.
// And it must never fail an event: the event is already committed to the log when
// it is projected, so anything unusable is skipped and named in Result.Skipped.
//
// # Rules
//
// Traits. identify and group calls' `traits` and every call's context.traits
// (else the batch context's) write traits, stamped with the event's timestamp,
// receipt time and source. Per key the latest write wins: by event timestamp, then
// receipt time, then source id, then value bytes, a total order, so the outcome does
// not depend on the order events are applied in. Within one identify, its own
// traits take precedence over its context.traits (a browser's possibly stale
// cache). A value is stored whole, compacted: nested objects are replaced, never
// deep-merged, so that a trait is always a value some event actually sent. A write
// of null deletes the key and leaves a tombstone (State.Deleted) with the write's
// stamp, so an older write applied later cannot bring the value back. Tombstones
// are never purged (that would break order independence).
//
// Group traits. A group call's traits are stored as "group.<key>", each key with its
// own last-write-wins, and its groupId as "group.id": a partial group call updates
// only the keys it sends, and audience rules address traits["group.plan"] like any
// other. The profile does not separate the traits of different groups: with several
// groups, each key holds the latest group call's value. (Group profiles of their
// own are a later concern.) A user trait whose key starts with "group." shares that
// namespace.
//
// Limits. A trait value over 8 KiB (compacted) is skipped, as are keys that are
// empty or over 256 bytes. A profile keeps at most 500 trait keys, tombstones
// included: the 500 lexically smallest keys ever written. A new key beyond them is
// skipped; one that sorts before the largest kept key evicts it (reason
// trait_evicted_over_limit). First come, first served would be kinder to early
// keys but would depend on the order of events; a real profile never gets near the
// cap. Event names and categories are capped the same way (Config.MaxEventNames,
// MaxCategories): the smallest names get counters, the rest add to OtherEvents /
// OtherCategories ("(other)" in events_by_name). Invalid UTF-8 in keys and names is
// replaced by U+FFFD.
//
// Computed traits. first_seen/last_seen are the smallest and largest event
// timestamps; events counts all events, events_by_name by track name or else by
// call type (a track event named "page" counts with page calls); channels is the
// set of source ids. Order events (Config.OrderEvents) count in order_count, and
// their properties.revenue, else properties.total (numbers or numeric strings,
// rounded to millionths and summed as integers, so that the sum is exact and
// order-independent; currencies are not converted) in lifetime_value. A present
// but non-numeric revenue is skipped without falling back to total.
// View events (Config.ViewEvents) record properties.product_id, else sku, else id
// (string or number) with the event timestamp; last_viewed_products lists the
// products with the latest views, most recent first, ties by product id, distinct,
// capped. favourite_category is the most counted properties.category over all
// track events, ties to the smallest name.
//
// Event time. The corrected timestamp; if it is missing or outside
// (1970-01-01, 2200-01-01), the receipt time (reason timestamp_out_of_range); if
// that is unusable too, the event is not applied.
//
// # Order independence and Merge
//
// For a fixed Config, applying the same multiset of events in any order gives the
// same State, and Merge of two profiles gives the State of applying both profiles'
// events to one (each event applied once: the ingest layer deduplicates). The caps
// keep this exact: the lexically-smallest rule and the (latest view, product) pairs
// kept for last_viewed_products carry all that a later event or merge can need.
// What is not: a Config change between events (caps and switches apply from then
// on; rebuild from the log to apply one to history). A revenue total beyond
// ±9.2e12 units wraps around: still the same in any order, but wrong.
//
// # Raw JSON
//
// Members of a message are read with collect.Pick, which skips without validating
// (the collector validated the message). Trait objects are read with this
// package's validating scanner (json.go) instead, because their values are stored
// and sealed: a malformed object must yield nothing and a stored value must be
// well-formed JSON even when an Input did not come from the collector.
//
// A State is not safe for concurrent use: the ingest writer owns it while applying.
package profile
