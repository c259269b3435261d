// Package metrics owns Trustloop's Prometheus metrics: their names, labels and
// buckets, and the registry /metrics serves.
//
// Label values are fixed vocabularies (routes, reasons, status classes); it must
// never put an identifier, write key, event name or any other caller-chosen string
// in a label.
package metrics
