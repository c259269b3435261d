// Package http is Trustloop's HTTP face: the Segment-compatible collector routes,
// health, readiness, metrics and the OpenAPI document (and, as they are built, the
// API, the preference center and the admin console).
//
// It owns the mapping of trustloop error codes to HTTP statuses (Error, the one
// place), authentication of write keys, CORS, rate limits and request limits. It
// must never write to storage itself (the ingest pipeline does), never log a body,
// identifier or key, and never answer 2xx for events that are not committed.
package http
