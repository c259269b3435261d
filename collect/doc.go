// Package collect owns the Segment wire format: it decodes a tracking-API request
// body into validated trustloop.Messages, enforcing the size limits, the all-or-
// nothing rule, messageId generation and clock-skew correction.
//
// It reads only the few fields Trustloop routes, keys and deduplicates on (type,
// ids, event name, timestamps, the consent context); properties, traits and the rest
// of the context stay raw bytes to be sealed, because decoding them would cost the
// collector most of its throughput for nothing. It validates that the whole body is
// well-formed JSON all the same.
//
// It must never store, log or authenticate anything, nor return personal data in
// an error: reasons name fields and indexes, never values.
package collect
