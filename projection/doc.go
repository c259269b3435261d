// Package projection turns committed events into unified profiles and reads them
// back: it runs the identity rules (identity), the profile rules (profile) and the
// audience rules (audience) inside each group commit, so that a profile shows an
// event as soon as the collector acknowledges it, and it assembles decrypted
// profiles and timelines for the API.
//
// It owns the sealing of profile state and identifier values (each under the data
// key of the subject that created the profile), profile ids, the writer-side
// caches of the identity graph, and the audience sets per workspace.
//
// It must never write the store outside a group commit or an explicit operator
// action (split, audience change), never put identifier or trait values in errors,
// logs or metrics, and never decide whether data may be used: purpose checks are
// the caller's (the consent issue adds them).
package projection
