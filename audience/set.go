package audience

import (
	"cmp"
	"fmt"
	"slices"
	"time"

	"github.com/trustloop/trustloop"
)

// Set is a workspace's audiences compiled for evaluation on profile after profile. It
// is safe for concurrent use.
type Set struct {
	ids      []int64 // sorted, so that Evaluate returns sorted ids without sorting
	programs []*Program
}

// NewSet compiles audiences once. It fails with EINVALID if any audience is nil, has
// an ID already seen or a rule that does not compile; Details then name each by its
// index in as. A set is all or nothing so that a bad rule is noticed where the set
// is built rather than by its audience staying empty.
func NewSet(as []*Audience) (*Set, error) {
	type entry struct {
		id  int64
		prg *Program
	}
	entries := make([]entry, 0, len(as))
	var details []trustloop.ErrorDetail
	seen := make(map[int64]bool, len(as))
	for i, a := range as {
		if a == nil {
			details = append(details, trustloop.ErrorDetail{Index: i, Reason: "the audience is missing"})
			continue
		}
		if seen[a.ID] {
			details = append(details, trustloop.ErrorDetail{Index: i, Reason: fmt.Sprintf("audience %d appears more than once", a.ID)})
			continue
		}
		seen[a.ID] = true
		prg, err := Compile(a.Rule)
		if err != nil {
			details = append(details, trustloop.ErrorDetail{Index: i, Reason: fmt.Sprintf("audience %d: %s", a.ID, trustloop.ErrorMessage(err))})
			continue
		}
		entries = append(entries, entry{a.ID, prg})
	}
	if len(details) > 0 {
		e := trustloop.Errorf(trustloop.EINVALID, "%d of %d audiences are invalid", len(details), len(as)).WithHint(ruleHint)
		e.Details = details
		return nil, e
	}
	slices.SortFunc(entries, func(a, b entry) int { return cmp.Compare(a.id, b.id) })
	s := &Set{ids: make([]int64, len(entries)), programs: make([]*Program, len(entries))}
	for i, e := range entries {
		s.ids[i], s.programs[i] = e.id, e.prg
	}
	return s, nil
}

// Len returns the number of audiences in the set.
func (s *Set) Len() int { return len(s.ids) }

// Evaluate returns the ids of the audiences the profile matches, sorted, or nil for
// none. The profile is converted for CEL once for all rules. Matching follows
// Program.Match; an audience whose evaluation goes past the runtime cost limit is not
// matched (use Program.Match to see that error).
func (s *Set) Evaluate(traits, computed map[string]any, now time.Time) []int64 {
	if s == nil || len(s.programs) == 0 {
		return nil
	}
	act := newActivation(s.programs[0].adapter, traits, computed, now)
	var matched []int64
	for i, p := range s.programs {
		if ok, _ := p.match(act); ok {
			matched = append(matched, s.ids[i])
		}
	}
	return matched
}
