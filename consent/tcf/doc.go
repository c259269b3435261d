// Package tcf decodes IAB Europe Transparency & Consent Framework (TCF) v2
// TC strings, the format version 2 that TCF v2.2 (TcfPolicyVersion 4) and
// v2.3 (5) strings use, into plain Go values.
//
// It owns the wire format and nothing more:
//
//   - the core segment: metadata, purpose consent and legitimate-interest
//     bits, special-feature opt-ins, vendor consent and legitimate-interest
//     sections (bitfield or range encoded) and publisher restrictions;
//   - the DisclosedVendors segment (type 1), and the AllowedVendors segment
//     (type 2) that v2.0/v2.1 CMPs could surface, both decoded into vendor
//     sets;
//   - the Publisher TC segment (type 3): publisher purpose consent and
//     legitimate-interest bits and the publisher's custom purposes.
//
// What it must never do:
//
//   - No I/O. Decode is a pure function of its input; it fetches no Global
//     Vendor List and reads no clock, so the same string always decodes to
//     the same value.
//   - Never treat a malformed string as consent. Any string that is not a
//     well-formed version 2 TC string (bad base64url, a field running past
//     the end of its segment, a range that contradicts itself, an unknown or
//     repeated segment, a version other than 2) is an error, and an error
//     carries no partial result: a caller has nothing to read consent from
//     and must fall back to "no consent". Unknown segment types are rejected
//     rather than skipped for the same reason: a decoder that skips what it
//     does not understand can be fed a string whose meaning it only half
//     read.
//   - No policy and no mapping to Trustloop purposes. Whether a TcfPolicyVersion
//     is still acceptable, whether a global-scope string (IsServiceSpecific
//     false) may be used, how PurposeOneTreatment or a publisher restriction
//     changes a vendor's legal basis, and which Trustloop purpose a TCF
//     purpose stands for, are decisions for the caller's consent package.
//     This package reports what the string says.
//
// Errors never quote the input: TC strings are personal data about a
// user's choices and end up in logs. A *DecodeError names the segment and
// the field that failed and wraps ErrMalformed or ErrUnsupportedVersion.
//
// Decoding costs time linear in the length of the string and allocates at
// most in proportion to it: every count read from the string (range
// entries, restrictions) is checked against the bits that remain before
// anything is allocated for it.
package tcf
