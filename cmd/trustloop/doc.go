// Command trustloop is the one binary: the server (`serve`) and the operator's
// tools (`stats`, `bench`, `version`, `help`). main.go parses flags and environment
// and wires the packages together by hand; it owns process concerns (signals, the
// data directory, bootstrap credentials) and no business rules.
package main
