package identity

import (
	"fmt"
	"strings"
	"testing"

	"github.com/trustloop/trustloop"
)

// fakeView is a View written out by hand: profiles by id, separated pairs.
type fakeView struct {
	profiles  map[int64][]trustloop.Identifier
	separated map[[2]int64]bool
}

// view parses "1: user_id:u1 email:a@x.io; 2: anonymous_id:a2" and "1-2" pairs.
func view(t testing.TB, spec string, separated ...[2]int64) *fakeView {
	v := &fakeView{profiles: map[int64][]trustloop.Identifier{}, separated: map[[2]int64]bool{}}
	for _, part := range strings.Split(spec, ";") {
		if strings.TrimSpace(part) == "" {
			continue
		}
		var p int64
		head, ids, _ := strings.Cut(part, ":")
		if _, err := fmt.Sscan(head, &p); err != nil {
			t.Fatalf("view %q: %v", spec, err)
		}
		for _, f := range strings.Fields(ids) {
			v.profiles[p] = append(v.profiles[p], parseID(t.(*testing.T), f))
		}
	}
	for _, s := range separated {
		v.separated[pair(s[0], s[1])] = true
	}
	return v
}

func (v *fakeView) Owner(id trustloop.Identifier) int64 {
	for p, ids := range v.profiles {
		for _, x := range ids {
			if x == id {
				return p
			}
		}
	}
	return 0
}
func (v *fakeView) Counts(p int64) []TypeCount {
	n := map[string]int{}
	for _, id := range v.profiles[p] {
		n[id.Type]++
	}
	var out []TypeCount
	for t, c := range n {
		out = append(out, TypeCount{Type: t, N: c})
	}
	return out
}
func (v *fakeView) Separated(a, b int64) bool { return v.separated[pair(a, b)] }

func ids(t *testing.T, s string) []trustloop.Identifier {
	var out []trustloop.Identifier
	for _, f := range tokenize(t, s) {
		out = append(out, parseID(t, f))
	}
	return out
}

func describeDecision(d Decision) string {
	var parts []string
	switch {
	case d.New:
		parts = append(parts, "new")
	default:
		parts = append(parts, fmt.Sprintf("profile %d", d.Profile))
	}
	if len(d.Attach) > 0 {
		parts = append(parts, "attach "+idList(d.Attach))
	}
	if len(d.Merge) > 0 {
		parts = append(parts, fmt.Sprintf("merge %v linking %s", d.Merge, idList(d.Linking)))
	}
	if len(d.Skipped) > 0 {
		parts = append(parts, "skip "+skipList(d.Skipped))
	}
	return strings.Join(parts, "; ")
}

func TestResolve(t *testing.T) {
	c := DefaultConfig()
	c.Limits["phone"] = 1
	r := mustCompile(t, c)
	tests := []struct {
		name      string
		view      string
		separated [][2]int64
		event     string
		want      string
	}{
		{"nothing known", "", nil, "anonymous_id:a1 user_id:u1", "new; attach user_id:u1 anonymous_id:a1"},
		{"nothing usable", "", nil, "anonymous_id:null email:x", "profile 0; skip anonymous_id:blocked email:malformed_email"},
		{"no identifiers", "", nil, "", "profile 0"},
		{"known", "1: anonymous_id:a1", nil, "anonymous_id:a1", "profile 1"},
		{"attach", "1: anonymous_id:a1", nil, "anonymous_id:a1 user_id:u1", "profile 1; attach user_id:u1"},
		{"normalized before matching", "1: email:jane@x.io", nil, "email:\" JANE@X.IO\"", "profile 1"},
		{"duplicates count once", "", nil, "user_id:u1 user_id:\" u1\"", "new; attach user_id:u1"},
		{"oldest survives", "3: anonymous_id:a3; 2: anonymous_id:a2; 5: device_id:d5", nil,
			"anonymous_id:a3 device_id:d5 anonymous_id:a2",
			"profile 2; merge [3 5] linking device_id:d5 anonymous_id:a3 anonymous_id:a2"},
		{"family tablet", "1: user_id:u1 anonymous_id:A", nil, "user_id:u2 anonymous_id:A",
			"new; attach user_id:u2; skip anonymous_id:limit"},
		{"the higher-priority identifier decides", "1: user_id:u1; 2: email:e@x.io user_id:u2", nil,
			"email:e@x.io user_id:u1", "profile 1; skip email:limit"},
		{"separated", "1: user_id:u1; 2: anonymous_id:a2", [][2]int64{{1, 2}},
			"anonymous_id:a2 user_id:u1 email:new@x.io", "profile 1; attach email:new@x.io; skip anonymous_id:separated"},
		{"separation is per pair", "1: user_id:u1; 2: anonymous_id:a2; 3: device_id:d3", [][2]int64{{1, 2}},
			"anonymous_id:a2 user_id:u1 device_id:d3", "profile 1; merge [3] linking user_id:u1 device_id:d3; skip anonymous_id:separated"},
		{"merge limit counts across profiles", "1: email:1@x.io email:2@x.io email:3@x.io; 2: email:4@x.io email:5@x.io anonymous_id:b", nil,
			"email:1@x.io anonymous_id:b", "profile 1; merge [2] linking email:1@x.io anonymous_id:b"},
		{"merge limit counts new ones too", "1: email:1@x.io email:2@x.io email:3@x.io; 2: email:4@x.io email:5@x.io anonymous_id:b", nil,
			"email:1@x.io email:6@x.io anonymous_id:b", "profile 1; attach email:6@x.io; skip anonymous_id:limit"},
		{"limit only refuses growth", "1: user_id:u1 user_id:u2 anonymous_id:a1; 2: anonymous_id:a2", nil,
			"anonymous_id:a1 anonymous_id:a2", "profile 1; merge [2] linking anonymous_id:a1 anonymous_id:a2"},
		{"over a lowered limit: no more of that type", "1: user_id:u1 user_id:u2 anonymous_id:a1", nil,
			"anonymous_id:a1 user_id:u3", "new; attach user_id:u3; skip anonymous_id:limit"},
		{"over a lowered limit: no merge adding to it", "1: user_id:u1 user_id:u2; 2: user_id:u3 anonymous_id:a3", nil,
			"user_id:u1 anonymous_id:a3", "profile 1; skip anonymous_id:limit"},
		// d9 cannot join (two user ids) and is skipped; a7 conflicted only with
		// d9 (two phones), so it stays: dropping "the lowest contributor" first
		// would have dropped a7 too, for a conflict that no longer exists.
		{"only conflicts with kept identifiers count", "1: user_id:u1; 9: device_id:d9 user_id:u9 phone:+33612345679; 7: anonymous_id:a7 phone:+33612345677", nil,
			"user_id:u1 device_id:d9 anonymous_id:a7", "profile 1; merge [7] linking user_id:u1 anonymous_id:a7; skip device_id:limit"},
		{"previous id known as a user id", "1: user_id:p", nil, "user_id:u9 previous_id:p",
			"new; attach user_id:u9; skip user_id:limit"},
		{"previous id known as an anonymous id", "1: anonymous_id:p", nil, "user_id:u9 previous_id:p",
			"profile 1; attach user_id:u9"},
		{"previous id unknown", "", nil, "user_id:u9 previous_id:p", "new; attach user_id:u9 anonymous_id:p"},
		{"unknown types are skipped", "", nil, "cookie:c1 user_id:u1", "new; attach user_id:u1; skip cookie:unknown_type"},
		{"profile identifiers of types the rules do not know are not counted", "1: crm_id:c1 crm_id:c2 anonymous_id:a1", nil,
			"anonymous_id:a1 user_id:u1", "profile 1; attach user_id:u1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := r.Resolve(view(t, tt.view, tt.separated...), ids(t, tt.event))
			if got := describeDecision(d); got != tt.want {
				t.Errorf("Resolve(%s)\n got %s\nwant %s", tt.event, got, tt.want)
			}
		})
	}
}

// A view's identifiers are never moved by Attach, and Resolve does not change the
// identifiers it is given.
func TestResolveDoesNotTouchItsInput(t *testing.T) {
	r := mustCompile(t, DefaultConfig())
	in := ids(t, `email:" A@B.co " user_id:u1 anonymous_id:a1`)
	keep := append([]trustloop.Identifier(nil), in...)
	v := view(t, "1: anonymous_id:a1")
	d := r.Resolve(v, in)
	if idList(in) != idList(keep) {
		t.Fatalf("input changed: %v", in)
	}
	for _, id := range d.Attach {
		if v.Owner(id) != 0 {
			t.Fatalf("attach of an owned identifier of type %s", id.Type)
		}
	}
}

// BenchmarkResolve resolves a three-identifier event (two known, on two profiles
// that merge) against a graph of 1,000 profiles.
func BenchmarkResolve(b *testing.B) {
	r := mustCompile(b, DefaultConfig())
	g := NewGraph(r)
	for i := range 1000 {
		g.Apply(Event{Identifiers: []trustloop.Identifier{
			{Type: "anonymous_id", Value: fmt.Sprintf("anon-%d", i)},
			{Type: "device_id", Value: fmt.Sprintf("device-%d", i)},
		}})
	}
	g.Apply(Event{Identifiers: []trustloop.Identifier{{Type: "user_id", Value: "u-7"}, {Type: "anonymous_id", Value: "anon-7"}}})
	ev := []trustloop.Identifier{
		{Type: "user_id", Value: "u-7"},
		{Type: "email", Value: "Jane.Doe@Example.com"},
		{Type: "anonymous_id", Value: "anon-8"},
	}
	b.ReportAllocs()
	for b.Loop() {
		if d := r.Resolve(g, ev); len(d.Merge) != 1 {
			b.Fatalf("%+v", d)
		}
	}
}
