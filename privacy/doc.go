// Package privacy runs customers' privacy requests (issue 5; T6): access and
// portability (the streamed access package), erasure (crypto-shredding and
// deletion of everything held about a subject, with a signed receipt),
// rectification, restriction and objection, with their legal deadlines, on the
// store's durable job queue.
//
// It owns the requests' lifecycle and the erasure's order of steps. It must
// never keep an identifier in the clear (requests name subjects by blind
// index, cleared by an erasure), write an audit entry that names a subject of
// a request, or store an access package (it is made when downloaded).
package privacy
