// Package consent owns the customer's choices and what follows from them: the
// purpose catalog (Catalog, Validate, Compile), the one decision function that
// says which purposes an event or a read may serve (Compiled.Decide, T1), the
// folding of consent records into stored consent, signed consent receipts, and
// the Service that keeps stored consent at hand for the collector and the API.
//
// It must never fail open: unknown, missing, malformed, expired or withdrawn
// consent is a no, and only a purpose on the contract basis (essential) is
// allowed without a choice. It must never hold or log an identifier in the
// clear: subjects are blind indexes. The decision itself is pure (no I/O, no
// clock): the Service feeds it.
package consent
