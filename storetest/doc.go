// Package storetest is the one conformance suite every storage backend must pass:
// each backend's tests call Run with a function that opens a fresh, empty store.
//
// It owns the definition of correct storage behaviour; it must never depend on a
// particular backend or reach around the trustloop interfaces.
package storetest
