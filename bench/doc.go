// Package bench is Trustloop's load generator (`trustloop bench`): it drives a
// running server's collector with realistic Segment events over real HTTP and
// reports throughput, latency percentiles, errors and the server's peak RSS.
//
// It owns only the client side of a measurement; it must never reach into the
// server's process or storage, so what it measures is what a client sees.
package bench
