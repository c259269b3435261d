// Package recommend owns the recommender: an item-to-item co-occurrence model in
// the style of SAR (Smart Adaptive Recommendations) that learns from each
// consented event as it is committed and forgets a subject exactly.
//
// The Model is pure (no I/O, no clock): user×item affinity from weighted
// interactions with optional time decay, item×item co-occurrence counted over
// the distinct items each subject interacted with (the first MaxItems of them,
// recorded, so that a subject's contribution can be subtracted), similarity
// (Jaccard, lift or raw counts) and scores = affinity × similarity, with the
// subject's own items that contributed most as the explanation. Every number
// a subject adds is kept with the subject, and what is shared (co-occurrence
// and popularity counts) is an integer sum over subjects, so removing a
// subject leaves exactly the model built without them (Encode makes that
// checkable byte for byte).
//
// The Service feeds one Model per workspace from the collector's group commits,
// from the log at start, and from consent changes and erasures. A subject
// contributes to personalization only with events collected while
// personalization was allowed, of a category it may use, while the subject's
// stored choices still allow it; popularity (the fallback) likewise under
// analytics.
//
// It must never store or log an item a subject interacted with next to who the
// subject is, keep a subject after their erasure or withdrawal, or answer with
// another subject's items as an explanation.
package recommend
