// Package trustloop holds Trustloop's domain: the types every other package speaks
// in, the pure rules over them, and the service interfaces that the storage, HTTP and
// pipeline packages implement or consume.
//
// It owns meaning, not mechanics: it must never do I/O, open a database, speak HTTP
// or read the clock directly (time is passed in). Every other package of the module
// imports it; it imports none of them.
package trustloop

// Version is the release of this build; `trustloop version` prints it. Release builds
// set it with -ldflags "-X github.com/trustloop/trustloop.Version=…".
var Version = "0.1.0-dev"
