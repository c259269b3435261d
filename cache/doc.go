// Package cache is a bounded in-memory map for hot lookups that have a slower
// truth elsewhere (subject keys, identity owners): a miss costs a store query,
// never a wrong answer.
//
// It owns nothing but the entries it is given. It must never be the only copy of
// anything (callers keep the truth in the store) and never hold values the caller
// would not keep in memory anyway.
package cache
