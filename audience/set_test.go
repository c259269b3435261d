package audience

import (
	"slices"
	"strings"
	"testing"

	"github.com/trustloop/trustloop"
)

// workspaceAudiences are twenty audiences a workspace could define, with ids out of
// order. Against proProfile, those with odd ids match.
func workspaceAudiences() []*Audience {
	rules := map[int64]string{
		1:  `traits.plan == "pro"`,
		2:  `traits.plan == "free"`,
		3:  `traits.country in ["FR", "DE", "ES", "IT"]`,
		4:  `traits.country == "US"`,
		5:  `computed.lifetime_value >= 1000`,
		6:  `computed.lifetime_value >= 10000`,
		7:  `computed.last_seen > now - duration("720h")`,
		8:  `computed.last_seen < now - duration("1440h")`,
		9:  `computed.events_by_name["Order Completed"] >= 5`,
		10: `"Cart Abandoned" in computed.events_by_name`,
		11: `'p-1' in computed.last_viewed_products`,
		12: `computed.last_viewed_products.exists(p, p.startsWith("sku-"))`,
		13: `traits.email.lowerAscii().endsWith("@example.com")`,
		14: `traits.company == "Acme"`,
		15: `traits.age >= 30 && traits.age < 40 && traits.vip`,
		16: `computed.order_count == 0`,
		17: `now - computed.first_seen > duration("8760h") && computed.order_count > 3`,
		18: `computed.favourite_category in ["books", "music"]`,
		19: `computed.events_by_name.exists(k, k.startsWith("Product") && computed.events_by_name[k] > 100)`,
		20: `3 in computed.channels && !(2 in computed.channels) && traits.address.city == "Paris"`,
	}
	as := make([]*Audience, 0, len(rules))
	for id := int64(20); id >= 1; id-- {
		as = append(as, &Audience{ID: id, WorkspaceID: 7, Name: "audience", Rule: rules[id]})
	}
	return as
}

func TestSet(t *testing.T) {
	s, err := NewSet(workspaceAudiences())
	if err != nil {
		t.Fatalf("%v: %+v", err, err.(*trustloop.Error).Details)
	}
	if s.Len() != 20 {
		t.Errorf("Len = %d, want 20", s.Len())
	}
	pro, proComputed := proProfile()
	free, freeComputed := freeProfile()
	tests := []struct {
		name             string
		traits, computed map[string]any
		want             []int64
	}{
		{"pro profile", pro, proComputed, []int64{1, 3, 5, 7, 9, 11, 13, 15, 17, 19}},
		{"free profile", free, freeComputed, []int64{2, 4, 8, 16, 18}},
		{"empty profile", nil, nil, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := s.Evaluate(tt.traits, tt.computed, now); !slices.Equal(got, tt.want) {
				t.Errorf("Evaluate = %v, want %v", got, tt.want)
			}
		})
	}
	var empty *Set
	if got := empty.Evaluate(pro, proComputed, now); got != nil {
		t.Errorf("nil Set: Evaluate = %v, want nil", got)
	}
}

func TestNewSetErrors(t *testing.T) {
	as := []*Audience{
		{ID: 1, Rule: `traits.plan == "pro"`},
		nil,
		{ID: 1, Rule: `traits.plan == "free"`},
		{ID: 4, Rule: `traits.plan ==`},
	}
	s, err := NewSet(as)
	if s != nil || trustloop.ErrorCode(err) != trustloop.EINVALID {
		t.Fatalf("NewSet = %v, %v; want nil, %s", s, err, trustloop.EINVALID)
	}
	e := err.(*trustloop.Error)
	if e.Message != "3 of 4 audiences are invalid" {
		t.Errorf("message = %q", e.Message)
	}
	want := []trustloop.ErrorDetail{
		{Index: 1, Reason: "the audience is missing"},
		{Index: 2, Reason: "audience 1 appears more than once"},
		{Index: 3, Reason: "audience 4: the rule is not valid: 1:15: Syntax error: mismatched input '<EOF>'"},
	}
	if len(e.Details) != len(want) {
		t.Fatalf("details = %+v, want %d", e.Details, len(want))
	}
	for i, d := range e.Details {
		if d.Index != want[i].Index || !strings.HasPrefix(d.Reason, want[i].Reason) {
			t.Errorf("detail %d = %+v, want %+v…", i, d, want[i])
		}
	}
}

func BenchmarkSetEvaluate(b *testing.B) {
	s, err := NewSet(workspaceAudiences())
	if err != nil {
		b.Fatal(err)
	}
	traits, computed := proProfile()
	b.ReportAllocs()
	for b.Loop() {
		if got := s.Evaluate(traits, computed, now); len(got) != 10 {
			b.Fatalf("Evaluate = %v", got)
		}
	}
}
