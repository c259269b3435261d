// Package storetest is the one conformance suite every storage backend must pass:
// each backend's tests call Run with a function that opens a fresh, empty store.
// It also holds the byte scan of a data directory (FilesHolding) that the
// backend's and the end-to-end erasure tests share.
//
// It owns the definition of correct storage behaviour; it must never depend on a
// particular backend or reach around the trustloop interfaces.
package storetest
