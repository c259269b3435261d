// Package http is Trustloop's HTTP face: the Segment-compatible collector routes,
// health, readiness, metrics and the OpenAPI document, the API, the customer's
// preference center (/portal) and the staff's admin console (/admin), whose
// templates, texts and charts live in http/html.
//
// It owns the mapping of trustloop error codes to HTTP statuses (Error, the one
// place), authentication of write keys, CORS, rate limits and request limits. It
// must never write events, consent or derived data itself (the ingest pipeline
// and the services do; it stores only keys and operators), never put personal
// data in a URL, never log a body, identifier or key, and never answer 2xx for
// events that are not committed.
package http
