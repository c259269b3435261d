package identity

import (
	"cmp"
	"slices"
	"time"

	"github.com/trustloop/trustloop"
)

// Event is what the graph needs of one event: its identifiers, and for the merge
// records its id and time.
type Event struct {
	ID          string
	At          time.Time
	Identifiers []trustloop.Identifier
}

// Merge records one profile merged into another: the evidence a person can review
// and the undo information Split uses.
type Merge struct {
	ID   int64
	Into int64
	From int64
	// Moved are the identifiers that moved from From into Into, sorted.
	Moved []trustloop.Identifier
	// Linking are the identifiers of the event that caused the merge.
	Linking []trustloop.Identifier
	EventID string
	At      time.Time
	// Split is true once the merge has been reversed.
	Split bool
}

// Graph is the whole identity state in memory: the reference model of the rules
// that the storage backends must match, and the model the tests check properties
// on. Profile ids are 1, 2, 3… in creation order, so the lowest id is the oldest.
//
// A Graph is not safe for concurrent use.
type Graph struct {
	rules  *Rules
	owner  map[trustloop.Identifier]int64
	ids    map[int64]map[trustloop.Identifier]struct{} // live profiles, never empty
	last   int64                                       // the last profile id given
	merges []Merge                                     // merges[i].ID == i+1
	// Separations are kept on the profiles a split was made between; parent and
	// children are the merges not split, so that a profile that absorbed one side
	// of a split stays separated from the other (see Separated).
	separated map[[2]int64]bool
	parent    map[int64]int64   // From → Into of its merge not split
	children  map[int64][]int64 // Into → the Froms merged into it, not split
}

// NewGraph returns an empty graph under the given rules.
func NewGraph(r *Rules) *Graph {
	return &Graph{
		rules:     r,
		owner:     map[trustloop.Identifier]int64{},
		ids:       map[int64]map[trustloop.Identifier]struct{}{},
		separated: map[[2]int64]bool{},
		parent:    map[int64]int64{},
		children:  map[int64][]int64{},
	}
}

// Apply resolves one event and applies the decision. Unlike Resolve's, the
// returned decision of an event that made a new profile carries its id in Profile.
func (g *Graph) Apply(ev Event) Decision {
	d := g.rules.Resolve(g, ev.Identifiers)
	if d.Profile == 0 && !d.New {
		return d
	}
	if d.New {
		g.last++
		d.Profile = g.last
		g.ids[d.Profile] = map[trustloop.Identifier]struct{}{}
	}
	for _, from := range d.Merge {
		moved := g.Identifiers(from)
		for _, id := range moved {
			g.own(id, d.Profile)
		}
		delete(g.ids, from)
		g.merges = append(g.merges, Merge{ID: int64(len(g.merges) + 1), Into: d.Profile, From: from,
			Moved: moved, Linking: slices.Clone(d.Linking), EventID: ev.ID, At: ev.At})
		g.parent[from] = d.Profile
		g.children[d.Profile] = append(g.children[d.Profile], from)
	}
	for _, id := range d.Attach {
		g.own(id, d.Profile)
	}
	return d
}

// ApplyMessage applies a decoded message: FromMessage, then Apply with the message
// id and corrected timestamp. The decision's Skipped starts with FromMessage's.
func (g *Graph) ApplyMessage(m *trustloop.Message) Decision {
	ids, skipped := g.rules.FromMessage(m)
	d := g.Apply(Event{ID: m.MessageID, At: m.Timestamp, Identifiers: ids})
	d.Skipped = append(skipped, d.Skipped...)
	return d
}

// own moves id to profile p.
func (g *Graph) own(id trustloop.Identifier, p int64) {
	if old, ok := g.owner[id]; ok {
		delete(g.ids[old], id)
		if len(g.ids[old]) == 0 {
			delete(g.ids, old)
		}
	}
	g.owner[id] = p
	if g.ids[p] == nil {
		g.ids[p] = map[trustloop.Identifier]struct{}{}
	}
	g.ids[p][id] = struct{}{}
}

// Split reverses a merge: the identifiers it moved that are still with the profile
// it went into (or the one that absorbed that profile since) go back to From, and
// Into and From are marked Separated, so the link that merged them — the same event
// replayed, say — does not merge them again. Identifiers that reached Into later
// through From's identifiers stay where they are. ENOTFOUND for an unknown merge,
// ECONFLICT for one already split.
//
// Events are attributed to profiles through their subject identifier (user_id,
// else anonymous_id; see trustloop.Message.Subject), so after a split each event
// belongs to the profile its subject identifier is now with.
func (g *Graph) Split(mergeID int64) error {
	if mergeID < 1 || mergeID > int64(len(g.merges)) {
		return trustloop.Errorf(trustloop.ENOTFOUND, "Merge %d does not exist.", mergeID).
			WithHint("List the profile's merges with GET /v1/profiles/{id}/merges.")
	}
	m := &g.merges[mergeID-1]
	if m.Split {
		return trustloop.Errorf(trustloop.ECONFLICT, "Merge %d was already split.", mergeID).
			WithHint("A merge is split once; list the merges to find the current ones.")
	}
	root := m.Into
	for {
		p, ok := g.parent[root]
		if !ok {
			break
		}
		root = p
	}
	for _, id := range m.Moved {
		if g.owner[id] == root {
			g.own(id, m.From)
		}
	}
	m.Split = true
	delete(g.parent, m.From)
	g.children[m.Into] = slices.DeleteFunc(g.children[m.Into], func(p int64) bool { return p == m.From })
	g.separated[pair(m.Into, m.From)] = true
	return nil
}

func pair(a, b int64) [2]int64 {
	if a > b {
		a, b = b, a
	}
	return [2]int64{a, b}
}

// Owner implements View.
func (g *Graph) Owner(id trustloop.Identifier) int64 { return g.owner[id] }

// Counts implements View.
func (g *Graph) Counts(profile int64) []TypeCount {
	var out []TypeCount
	for id := range g.ids[profile] {
		i := slices.IndexFunc(out, func(tc TypeCount) bool { return tc.Type == id.Type })
		if i < 0 {
			i = len(out)
			out = append(out, TypeCount{Type: id.Type})
		}
		out[i].N++
	}
	return out
}

// Identifiers returns a profile's identifiers, sorted.
func (g *Graph) Identifiers(profile int64) []trustloop.Identifier {
	set := g.ids[profile]
	out := make([]trustloop.Identifier, 0, len(set))
	for id := range set {
		out = append(out, id)
	}
	slices.SortFunc(out, compareIDs)
	return out
}

// Separated implements View. Two profiles are separated when a split separated any
// profile merged into one (or the profile itself) from any merged into the other:
// a profile that absorbed one side of a split inherits the separation, and loses it
// again if that merge is split in turn.
func (g *Graph) Separated(a, b int64) bool {
	if len(g.separated) == 0 || a == b {
		return false
	}
	ma, mb := g.members(a, nil), g.members(b, nil)
	for _, x := range ma {
		for _, y := range mb {
			if g.separated[pair(x, y)] {
				return true
			}
		}
	}
	return false
}

// members appends p and every profile merged into it, directly or not, by merges
// not split.
func (g *Graph) members(p int64, out []int64) []int64 {
	out = append(out, p)
	for _, c := range g.children[p] {
		out = g.members(c, out)
	}
	return out
}

// ProfileOf returns the profile of an identifier given in any form Normalize
// accepts, 0 when it has none or cannot be matched.
func (g *Graph) ProfileOf(id trustloop.Identifier) int64 {
	v, reason := g.rules.normalize(id.Type, id.Value)
	if reason != "" || id.Type == PreviousID {
		return 0
	}
	return g.owner[trustloop.Identifier{Type: id.Type, Value: v}]
}

// Profiles returns the ids of the live profiles, ascending.
func (g *Graph) Profiles() []int64 {
	out := make([]int64, 0, len(g.ids))
	for p := range g.ids {
		out = append(out, p)
	}
	slices.Sort(out)
	return out
}

// Merges returns the merge records, oldest first.
func (g *Graph) Merges() []Merge {
	out := slices.Clone(g.merges)
	for i := range out {
		out[i].Moved = slices.Clone(out[i].Moved)
		out[i].Linking = slices.Clone(out[i].Linking)
	}
	return out
}

// Partition returns the identifiers grouped by profile, in a canonical form that
// does not depend on profile ids: each profile's identifiers sorted (by type, then
// value), the profiles sorted by their identifiers.
func (g *Graph) Partition() [][]trustloop.Identifier {
	out := make([][]trustloop.Identifier, 0, len(g.ids))
	for p := range g.ids {
		out = append(out, g.Identifiers(p))
	}
	slices.SortFunc(out, func(a, b []trustloop.Identifier) int { return slices.CompareFunc(a, b, compareIDs) })
	return out
}

func compareIDs(a, b trustloop.Identifier) int {
	return cmp.Or(cmp.Compare(a.Type, b.Type), cmp.Compare(a.Value, b.Value))
}
