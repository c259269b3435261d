// Package identity owns identity resolution: the rules that turn the identifiers
// seen on events (user ids, anonymous ids, emails, phones, device ids, custom
// types) into a partition of identifiers into customer profiles.
//
// It holds:
//   - Config and Compile: a workspace's blocked values, per-type limits, type
//     priority and custom types, checked once;
//   - Rules.Normalize: the one matched form of each type's values (e.g. E.164
//     phones), and which values are never matched (placeholders, malformed);
//   - Rules.FromMessage: which members of a Segment message are identifiers;
//   - Rules.Resolve: what an event does to the graph (new profile, attach,
//     merges), pure over a View of the graph, so that every storage backend
//     applies the same decision;
//   - Graph: the whole state in memory, with merge records and Split. It is the
//     reference model the backends must match and the tests' oracle.
//
// Safety over reach: merging two people's profiles is worse than leaving one
// person's in two pieces (it shows one customer another's data and is hard to undo),
// so when an event's identifiers disagree the lowest-priority ones give way, limits
// cap what one profile can collect, and a split is never undone by the same
// evidence. See Resolve for the exact rules.
//
// Profiles and events: events are attributed to profiles through their subject
// identifier (the user id, else the anonymous id: trustloop.Message.Subject), never
// stored per profile. After a merge or a split, an event belongs to whichever
// profile its subject identifier is with now.
//
// It must never do I/O, read the clock (times are passed in), know SQL or HTTP, or
// put an identifier value in an error, a log or a panic: errors and skips name the
// type and the reason only, because identifiers are personal data.
package identity
