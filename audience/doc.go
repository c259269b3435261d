// Package audience owns audiences: named rules, written by a workspace's staff in CEL
// (https://cel.dev), that say which profiles belong to a segment. It validates them,
// compiles them into programs of bounded cost, and evaluates them against one
// profile's traits and computed traits at a time given by the caller.
//
// A rule sees three variables: traits (the profile's traits, map(string, dyn)),
// computed (the traits Trustloop computes from the event log, map(string, dyn) with
// the keys ComputedKeys lists) and now (a timestamp the caller passes, so the package
// never reads the clock and evaluation is reproducible). A rule that cannot be
// evaluated for a profile (a missing trait, a value of another type) does not match
// it; see Program.Match.
//
// Cost is bounded twice: at compile time by CEL's estimate under assumed sizes
// (MaxEstimatedCost), at evaluation by CEL's cost units (RuntimeCostLimit) and a count
// of loop iterations (MaxIterations), both deterministic.
//
// It must never read the clock, store or log anything, or put a trait value in an
// error: evaluation errors are folded into "does not match" and never echoed, since
// CEL's own messages may quote the values they failed on. The rule text is written by
// staff and may be echoed in compile errors.
package audience
