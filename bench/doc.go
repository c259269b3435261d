// Package bench is Trustloop's load generator (`trustloop bench`): it drives a
// running server's collector with realistic Segment events over real HTTP and
// reports throughput, latency percentiles, errors and the server's peak RSS.
//
// Beyond the collector's shapes (track, batch) it has two for the
// recommender: load-interactions posts a deterministic shopping history
// (users shopper-0 … with a consent update each, then product views, cart
// additions and orders over Zipf-like popular items) once, and recommend
// reads GET /v1/profiles/{id}/recommendations of those users' profiles
// (scripts/rec-bench.sh runs both).
//
// Every timed shape runs closed loop (Concurrency workers, each sending its
// next request when its last is answered) or, with Rate, open loop: requests
// are due on a fixed schedule and timed from when they were due, so a stall
// shows in every request that should have gone out during it instead of
// quietly lowering the rate (coordinated omission).
//
// The recommend shape's workers each keep one HTTP/1.1 connection of their
// own and write requests as bytes, as wrk does (conn.go): net/http's client
// cost ~90 µs of CPU per request here against ~45, and on two cores shared
// with the server that difference was taken from the server being measured.
//
// It owns only the client side of a measurement; it must never reach into the
// server's process or storage, so what it measures is what a client sees.
package bench
