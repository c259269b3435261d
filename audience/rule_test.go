package audience

import (
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/trustloop/trustloop"
)

// now is the evaluation time of every test, so that "recently seen" is stable.
var now = time.Date(2026, 3, 2, 12, 0, 0, 0, time.UTC) // a Monday

const day = 24 * time.Hour

// proProfile is a customer on the pro plan in France who bought seven times and was
// seen two hours ago. Its types are those the Go side hands over: JSON numbers as
// float64, counts as int64, times as time.Time.
func proProfile() (traits, computed map[string]any) {
	traits = map[string]any{
		"plan":    "pro",
		"country": "FR",
		"age":     float64(34),
		"email":   "Ana.Martin@Example.com",
		"vip":     true,
		"score":   "high",
		"tags":    []any{"beta", "newsletter"},
		"address": map[string]any{"city": "Lyon", "zip": "69001"},
		"signup":  "2025-01-15T10:00:00Z",
		"secret":  "s3cr3t-value",
	}
	computed = map[string]any{
		"first_seen":           now.Add(-400 * day),
		"last_seen":            now.Add(-2 * time.Hour),
		"events":               int64(152),
		"events_by_name":       map[string]any{"Order Completed": int64(7), "Product Viewed": int64(120)},
		"channels":             []any{int64(1), int64(3)},
		"order_count":          int64(7),
		"lifetime_value":       1234.5,
		"last_viewed_products": []any{"p-1", "p-42"},
		"favourite_category":   "shoes",
	}
	return traits, computed
}

// freeProfile is a dormant customer on the free plan with typed Go slices and maps
// in computed, and without most traits.
func freeProfile() (traits, computed map[string]any) {
	traits = map[string]any{"plan": "free", "country": "US", "age": "thirty"}
	computed = map[string]any{
		"first_seen":           now.Add(-90 * day),
		"last_seen":            now.Add(-75 * day),
		"events":               int64(3),
		"events_by_name":       map[string]int64{"Product Viewed": 3},
		"channels":             []int64{2},
		"order_count":          int64(0),
		"lifetime_value":       0.0,
		"last_viewed_products": []string{"p-9"},
		"favourite_category":   "books",
	}
	return traits, computed
}

func TestCompileErrors(t *testing.T) {
	const keys = "channels, events, events_by_name, favourite_category, first_seen, last_seen, last_viewed_products, lifetime_value, order_count"
	tests := []struct {
		name, rule, want string
	}{
		{"empty", "", "the rule is empty"},
		{"blank", " \n\t", "the rule is empty"},
		{"too long", `traits.plan == "` + strings.Repeat("x", MaxRuleBytes) + `"`, "the rule is 4113 bytes long; the limit is 4096"},
		{"not UTF-8", "traits.plan == \"\xff\"", "the rule is not valid UTF-8"},
		{"syntax error at the end", `traits.plan ==`, "the rule is not valid: 1:15: Syntax error: mismatched input '<EOF>'"},
		{"syntax error on line 2", "traits.plan == \"pro\" &&\n  traits.age >", "the rule is not valid: 2:15: Syntax error"},
		{"bad token", `traits.plan == "pro" &&& true`, "the rule is not valid: 1:24: Syntax error: token recognition error"},
		{"unknown variable", `trait.plan == "pro"`, "the rule is not valid: 1:1: undeclared reference to 'trait'"},
		{"unknown function", `lower(traits.plan) == "pro"`, "the rule is not valid: 1:6: undeclared reference to 'lower'"},
		{"unknown method", `traits.plan.lower() == "pro"`, "the rule is not valid: 1:18: undeclared reference to 'lower'"},
		{"unknown computed key", `computed.lastseen > now`, `the rule is not valid: 1:9: computed has no key "lastseen"; its keys are ` + keys},
		{"unknown computed key in has", `has(computed.orders)`, `1:4: computed has no key "orders"`},
		{"unknown computed key by index", `computed["last-seen"] > now`, `1:10: computed has no key "last-seen"`},
		{"type error", `now > 3`, "1:5: found no matching overload for '_>_' applied to '(timestamp, int)'"},
		{"int", `computed.order_count + 1`, "the rule must evaluate to true or false, but it evaluates to int"},
		{"string", `"pro"`, "the rule must evaluate to true or false, but it evaluates to string"},
		{"timestamp", `now`, "the rule must evaluate to true or false, but it evaluates to google.protobuf.Timestamp"},
		{"map", `traits`, "the rule must evaluate to true or false, but it evaluates to map(string, dyn)"},
		{"list", `[true]`, "the rule must evaluate to true or false, but it evaluates to list(bool)"},
		{"null", `null`, "the rule must evaluate to true or false, but it evaluates to null_type"},
		{"day duration", `computed.last_seen > now - duration("30d")`, `1:37: invalid duration argument (durations are written like "720h"`},
		{"bad timestamp", `computed.first_seen < timestamp("2020-13-01")`, "invalid timestamp argument (timestamps are RFC 3339"},
		{"bad regexp", `traits.email.matches("[")`, "1:22: invalid matches argument (regular expressions use RE2 syntax)"},
		{"bad has", `has(traits)`, "1:5: invalid argument to has() macro"},
		{"nested too deep", strings.Repeat("(", 300) + "true" + strings.Repeat(")", 300), "expression recursion limit exceeded"},
		{"nested loops", `traits.a.exists(x, traits.b.exists(y, x == y))`, "the rule is too expensive: its estimated worst-case cost is 2098947, the limit is 100000"},
		{"loop in a loop over products", `computed.last_viewed_products.exists(p, traits.wishlist.exists(w, w == p))`, "the rule is too expensive"},
		{"many errors", `a + b + c + d + e == f`, "1:1: undeclared reference to 'a'; 1:5: undeclared reference to 'b'; 1:9: undeclared reference to 'c'; and 3 more"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := Compile(tt.rule)
			if err == nil {
				t.Fatalf("Compile(%q) = %v, want an error", tt.rule, p)
			}
			if code := trustloop.ErrorCode(err); code != trustloop.EINVALID {
				t.Fatalf("code = %q, want %q (%v)", code, trustloop.EINVALID, err)
			}
			if msg := trustloop.ErrorMessage(err); !strings.Contains(msg, tt.want) {
				t.Errorf("message = %q\nwant it to contain %q", msg, tt.want)
			}
			if hint := err.(*trustloop.Error).Hint; !strings.Contains(hint, "traits.<name>") || !strings.Contains(hint, "computed.<key>") {
				t.Errorf("hint %q does not say what a rule can use", hint)
			}
		})
	}
}

func TestMatch(t *testing.T) {
	pro, proComputed := proProfile()
	free, freeComputed := freeProfile()
	type profile struct{ traits, computed map[string]any }
	proP, freeP := profile{pro, proComputed}, profile{free, freeComputed}
	tests := []struct {
		name    string
		rule    string
		profile profile
		want    bool
	}{
		{"plan", `traits.plan == "pro"`, proP, true},
		{"plan, other profile", `traits.plan == "pro"`, freeP, false},
		{"country in list", `traits.country in ["FR", "DE", "ES"]`, proP, true},
		{"country not in list", `traits.country in ["FR", "DE", "ES"]`, freeP, false},
		{"case-insensitive email domain", `traits.email.lowerAscii().endsWith("@example.com")`, proP, true},
		{"nested trait", `traits.address.city == "Lyon"`, proP, true},
		{"JSON number against int", `traits.age > 30 && traits.age == 34`, proP, true},
		{"boolean trait as the rule", `traits.vip`, proP, true},
		{"list trait", `"beta" in traits.tags`, proP, true},
		{"lifetime value threshold", `computed.lifetime_value >= 1000`, proP, true},
		{"lifetime value threshold, double", `computed.lifetime_value > 2000.0`, proP, false},
		{"lifetime value, zero", `computed.lifetime_value >= 1000`, freeP, false},
		{"orders", `computed.order_count >= 5 && computed.events > 100`, proP, true},
		{"events by name", `computed.events_by_name["Order Completed"] >= 5`, proP, true},
		{"events by name, typed map", `computed.events_by_name["Product Viewed"] == 3`, freeP, true},
		{"events by name, missing event", `computed.events_by_name["Order Completed"] >= 5`, freeP, false},
		{"events by name, guarded", `!("Order Completed" in computed.events_by_name)`, freeP, true},
		{"any event like", `computed.events_by_name.exists(k, k.startsWith("Order") && computed.events_by_name[k] > 3)`, proP, true},
		{"seen in the last 30 days", `computed.last_seen > now - duration("720h")`, proP, true},
		{"seen in the last 30 days, dormant", `computed.last_seen > now - duration("720h")`, freeP, false},
		{"customer for over a year", `now - computed.first_seen > duration("8760h")`, proP, true},
		{"day of week of now, in UTC", `now.getDayOfWeek() == 1`, proP, true},
		{"viewed product", `'p-1' in computed.last_viewed_products`, proP, true},
		{"viewed product, typed list", `'p-1' in computed.last_viewed_products`, freeP, false},
		{"viewed any product of a list", `computed.last_viewed_products.exists(p, p in ["p-9", "p-10"])`, freeP, true},
		{"channel", `3 in computed.channels`, proP, true},
		{"channel, typed list", `2 in computed.channels && size(computed.channels) == 1`, freeP, true},
		{"favourite category", `computed.favourite_category == "shoes"`, proP, true},
		{"trait parsed as timestamp", `timestamp(traits.signup) < now - duration("720h")`, proP, true},

		// A missing trait makes the rule false, whichever way it is written.
		{"missing trait", `traits.company == "Acme"`, proP, false},
		{"missing trait, negated", `!(traits.company == "Acme")`, proP, false},
		{"missing trait, not equal", `traits.company != "Acme"`, proP, false},
		{"missing trait, has", `has(traits.company)`, proP, false},
		{"missing trait, not has", `!has(traits.company) || traits.company != "Acme"`, proP, true},
		{"missing trait, absorbed by ||", `traits.company == "Acme" || traits.plan == "pro"`, proP, true},
		{"missing trait, absorbed by &&", `traits.company == "Acme" && traits.plan == "enterprise"`, proP, false},
		{"missing nested trait", `traits.address.country == "FR"`, proP, false},
		{"missing computed key", `computed.order_count > 0`, profile{pro, map[string]any{}}, false},
		{"no traits at all", `traits.plan == "pro"`, profile{nil, nil}, false},
		{"no computed at all", `computed.last_seen > now - duration("720h")`, profile{pro, nil}, false},

		// A value of the wrong type makes the rule false, not a panic.
		{"string compared as number", `traits.age > 30`, freeP, false},
		{"string compared as number, dyn string", `traits.score > 3`, proP, false},
		{"method of another type", `traits.age.startsWith("3")`, proP, false},
		{"conversion failure", `int(traits.secret) > 0`, proP, false},
		{"bad timestamp in a trait", `timestamp(traits.plan) < now`, proP, false},
		{"select on a string", `traits.plan.tier == "gold"`, proP, false},
		{"index out of range", `traits.tags[5] == "x"`, proP, false},
		{"in over a string", `"x" in traits.plan`, proP, false},
		{"not a boolean result", `traits.plan`, proP, false},
		{"division by zero", `computed.events / computed.order_count > 1`, freeP, false},
		{"overflow", `computed.events * 9223372036854775807 > 0`, proP, false},
		{"regexp on a trait", `traits.email.matches("^[a-z.]+@")`, proP, false},
		{"regexp on a trait, match", `traits.email.matches("(?i)^[a-z.]+@example\\.com$")`, proP, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := Compile(tt.rule)
			if err != nil {
				t.Fatalf("Compile(%q): %v", tt.rule, err)
			}
			got, err := p.Match(tt.profile.traits, tt.profile.computed, now)
			if err != nil {
				t.Fatalf("Match: %v", err)
			}
			if got != tt.want {
				t.Errorf("Match(%q) = %v, want %v", tt.rule, got, tt.want)
			}
		})
	}
}

// TestMatchLimits shows the runtime limits stopping a rule that passed the estimate but
// meets a far larger profile than assumed, with an error that quotes nothing of it.
func TestMatchLimits(t *testing.T) {
	tags := func(n int) []any {
		l := make([]any, n)
		for i := range l {
			l[i] = "s3cr3t-value"
		}
		return l
	}
	tests := []struct {
		name, rule string
		traits     map[string]any
		want       bool
		wantCode   string
		wantMsg    string
	}{
		{"loop within the bound", `traits.tags.all(t, t != "never")`, map[string]any{"tags": tags(MaxIterations)}, true, "", ""},
		{"loop past the bound", `traits.tags.all(t, t != "never")`, map[string]any{"tags": tags(MaxIterations + 1)}, false,
			trustloop.ETOOLARGE, "evaluating the rule on this profile went past 2000 loop iterations"},
		{"loops add up", `traits.tags.map(t, t + "x").exists(x, x == "y")`, map[string]any{"tags": tags(MaxIterations/2 + 1)}, false,
			trustloop.ETOOLARGE, "went past 2000 loop iterations"},
		{"huge loop", `traits.tags.exists(t, t == "never")`, map[string]any{"tags": tags(500_000)}, false,
			trustloop.ETOOLARGE, "went past 2000 loop iterations"},
		{"string within the cost limit", `traits.bio.contains("never")`, map[string]any{"bio": strings.Repeat("s3cr3t-value", 10_000)}, false, "", ""},
		{"string past the cost limit", `traits.bio.contains("never")`, map[string]any{"bio": strings.Repeat("s3cr3t-value", 1_000_000)}, false,
			trustloop.ETOOLARGE, "evaluating the rule on this profile went past the cost limit (1000000)"},
		// A limit hit where the other side of || decides is absorbed like any error.
		{"absorbed by ||", `traits.tags.exists(t, t == "never") || traits.plan == "pro"`, map[string]any{"plan": "pro", "tags": tags(5000)}, true, "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := Compile(tt.rule)
			if err != nil {
				t.Fatal(err)
			}
			got, err := p.Match(tt.traits, nil, now)
			if got != tt.want || trustloop.ErrorCode(err) != tt.wantCode {
				t.Fatalf("Match = %v, %v; want %v, code %q", got, err, tt.want, tt.wantCode)
			}
			if err == nil {
				return
			}
			if msg := trustloop.ErrorMessage(err); !strings.Contains(msg, tt.wantMsg) {
				t.Errorf("message = %q, want it to contain %q", msg, tt.wantMsg)
			}
			if e := err.(*trustloop.Error); strings.Contains(e.Message+e.Hint, "s3cr3t") {
				t.Errorf("error quotes a trait value: %v", err)
			}
		})
	}
}

// TestLimited checks which rules run under the runtime limits: those whose cost grows
// with the profile's data, and only those, since the limits slow evaluation down.
func TestLimited(t *testing.T) {
	tests := []struct {
		rule    string
		limited bool
	}{
		{`traits.plan == "pro"`, false},
		{`traits.country in ["FR", "DE"]`, false},
		{`computed.last_seen > now - duration("720h") && computed.order_count > 3`, false},
		{`computed.events_by_name["Order Completed"] >= 5`, false},
		{`[1, 2, 3].exists(x, x == computed.order_count)`, false},
		{`'p-1' in computed.last_viewed_products`, true},
		{`computed.events_by_name.exists(k, k.startsWith("Order"))`, true},
		{`traits.email.lowerAscii().endsWith("@example.com")`, true},
		{`traits.name.contains("x")`, true},
		{`traits.a == traits.b`, true},
	}
	for _, tt := range tests {
		p, err := Compile(tt.rule)
		if err != nil {
			t.Fatalf("Compile(%q): %v", tt.rule, err)
		}
		if p.limited != tt.limited {
			t.Errorf("Compile(%q).limited = %v, want %v", tt.rule, p.limited, tt.limited)
		}
	}
}

func TestMatchConcurrent(t *testing.T) {
	p, err := Compile(`traits.plan == "pro" && computed.last_seen > now - duration("720h")`)
	if err != nil {
		t.Fatal(err)
	}
	pro, proComputed := proProfile()
	free, freeComputed := freeProfile()
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 200 {
				traits, computed, want := pro, proComputed, true
				if i%2 == 1 {
					traits, computed, want = free, freeComputed, false
				}
				if got, err := p.Match(traits, computed, now); got != want || err != nil {
					t.Errorf("Match = %v, %v; want %v", got, err, want)
					return
				}
			}
		}()
	}
	wg.Wait()
}

func TestNilProgram(t *testing.T) {
	var p *Program
	if _, err := p.Match(nil, nil, now); trustloop.ErrorCode(err) != trustloop.EINTERNAL {
		t.Errorf("nil Program: err = %v, want %s", err, trustloop.EINTERNAL)
	}
}

// FuzzCompile checks that no rule makes Compile, CheckTypes or Match panic (a
// recovered panic shows as EINTERNAL) and that every refusal is EINVALID.
func FuzzCompile(f *testing.F) {
	for _, seed := range []string{
		`traits.plan == "pro"`,
		`computed.last_seen > now - duration("720h")`,
		`'p-1' in computed.last_viewed_products`,
		`computed.events_by_name.exists(k, computed.events_by_name[k] > 3)`,
		`traits.email.lowerAscii().split("@")[1] == "example.com"`,
		`has(traits.address.city) ? traits.address.city == "Lyon" : false`,
		`traits.tags.map(t, t + t).filter(x, x.size() > 2).size() > 0`,
		`timestamp(traits.signup).getFullYear() == 2025`,
		`{"a": 1}.a == 1 && [1, 2][1] == 2 && b"x" != b"y" && 1u < 2u`,
		`traits.x.matches("(a+)+$")`,
		"traits.plan ==",
		"\"\xff",
		`"%s".format([traits.plan]) == "pro"`,
	} {
		f.Add(seed)
	}
	traits, computed := proProfile()
	f.Fuzz(func(t *testing.T, rule string) {
		p, err := Compile(rule)
		if err == nil {
			err = CheckTypes(rule)
		}
		if err != nil {
			if code := trustloop.ErrorCode(err); code != trustloop.EINVALID {
				t.Fatalf("Compile(%q): code %q: %v", rule, code, err)
			}
			return
		}
		if _, err := p.Match(traits, computed, now); err != nil && trustloop.ErrorCode(err) != trustloop.ETOOLARGE {
			t.Fatalf("Match(%q): %v", rule, err)
		}
	})
}

// TestCheckTypes: a rule using a computed value as another kind of value is
// refused on save; each refused rule here, whose bad part decides it, indeed
// matches neither sample profile (it errors on each). Rules whose types only
// look different (numbers of different kinds, the map's dyn access, traits)
// pass.
func TestCheckTypes(t *testing.T) {
	refused := []struct{ rule, msg string }{
		{`computed.order_count > "3"`, `1:22: found no matching overload for '_>_' applied to '(int, string)'`},
		{`computed.last_seen > 30`, `1:20: found no matching overload for '_>_' applied to '(timestamp, int)'`},
		{`computed.channels.exists(c, c == "web")`, `'_==_' applied to '(int, string)'`},
		{`computed.favourite_category > 3 || traits.plan == "pro" && computed.events > "x"`, `'_>_' applied to '(string, int)'; 1:76: found no matching overload for '_>_' applied to '(int, string)'`},
		{`computed.first_seen < "2024-01-01T00:00:00Z"`, `'(timestamp, string)'`},
		{`computed.last_viewed_products.exists(p, p > 2)`, `'(string, int)'`},
		{`computed.events_by_name["Order Completed"] == "7"`, `'(int, string)'`},
		{`"web" in computed.channels`, `'@in' applied to '(string, list(int))'`},
		{`computed.lifetime_value / computed.order_count > 50.0`, `'_/_' applied to '(double, int)'`},
		{`computed.order_count * 2.0 > 3.0`, `'_*_' applied to '(int, double)'`},
		{`computed.favourite_category == null`, `'(string, null)'`},
		{`computed.order_count.total > 3`, `does not support field selection`},
	}
	// A bad part that || can do without, or one negated, is refused too: the
	// rule holds or not whatever that part says.
	for _, rule := range []string{`traits.plan == "pro" || computed.order_count > "3"`, `!(computed.order_count == "3")`} {
		if err := CheckTypes(rule); trustloop.ErrorCode(err) != trustloop.EINVALID {
			t.Errorf("%s: CheckTypes = %v, want EINVALID", rule, err)
		}
	}
	traitsP, computedP := proProfile()
	traitsF, computedF := freeProfile()
	for _, tc := range refused {
		t.Run(tc.rule, func(t *testing.T) {
			p, err := Compile(tc.rule)
			if err != nil {
				t.Fatalf("Compile: %v (the check is for rules that compile)", err)
			}
			err = CheckTypes(tc.rule)
			if trustloop.ErrorCode(err) != trustloop.EINVALID {
				t.Fatalf("CheckTypes = %v, want EINVALID", err)
			}
			e := err.(*trustloop.Error)
			if !strings.HasPrefix(e.Message, "part of the rule can never hold: ") || !strings.Contains(e.Message, tc.msg) {
				t.Errorf("message = %q, want it to say part of the rule can never hold and %q", e.Message, tc.msg)
			}
			if !strings.Contains(e.Hint, "last_seen timestamp") || !strings.Contains(e.Hint, "order_count int") {
				t.Errorf("hint = %q, want the computed keys' types", e.Hint)
			}
			for _, pr := range []struct{ traits, computed map[string]any }{{traitsP, computedP}, {traitsF, computedF}} {
				if ok, err := p.Match(pr.traits, pr.computed, now); ok || err != nil {
					t.Errorf("Match = %v, %v: a refused rule matched a profile", ok, err)
				}
			}
		})
	}
	for _, rule := range []string{
		`computed.lifetime_value == 100`,
		`computed.order_count >= 3.5 && computed.order_count != 4.0`,
		`computed.events > 10u`,
		`computed["order_count"] > "3"`, // through the map of dyn: not checked
		`has(computed.favourite_category) && computed.favourite_category == "shoes"`,
		`computed.favourite_category in ["shoes", "bags"]`,
		`computed.channels.exists(c, c == 2)`,
		`computed.events_by_name["Order Completed"] >= 2`,
		`computed.events_by_name.exists(k, computed.events_by_name[k] > 3)`,
		`computed.first_seen > now - duration("720h")`,
		`computed.last_seen.getDayOfWeek() == 1`,
		`computed.lifetime_value / double(computed.order_count) > 50.0`,
		`computed.last_viewed_products.exists(p, p == traits.fav)`,
		`traits.age > "thirty" && traits.plan == 3`, // traits are whatever was sent
		// Numbers of different kinds inside containers, ternaries and indexes
		// work when the rule runs; != across kinds always holds.
		`computed.lifetime_value in [0, 1234.5]`,
		`computed.order_count in [7.0, 8.0]`,
		`1.0 in computed.channels && 1u in computed.channels`,
		`computed.channels[0.0] == 1`,
		`computed.channels == [1.0, 3.0]`,
		`computed.events_by_name == {"Order Completed": 7.0, "Product Viewed": 120.0}`,
		`(has(traits.plan) ? computed.lifetime_value : 0) > 50`,
		`computed.favourite_category != null`,
		`computed.last_viewed_products.all(p, p != 3)`,
		`[1, 2].exists(computed, computed > 1)`,
	} {
		if _, err := Compile(rule); err != nil {
			t.Errorf("Compile(%s): %v", rule, err)
			continue
		}
		if err := CheckTypes(rule); err != nil {
			t.Errorf("CheckTypes(%s) = %v, want nil", rule, err)
		}
	}
	// A stored rule is not checked again: a set made of one still loads.
	if _, err := NewSet([]*Audience{{ID: 1, Name: "Old", Rule: `computed.last_seen > 30`}}); err != nil {
		t.Errorf("NewSet with a rule refused on save today: %v", err)
	}
}

func TestComputedTypesCoverTheKeys(t *testing.T) {
	if len(computedTypes) != len(computedKeys) {
		t.Fatalf("%d typed keys, %d keys", len(computedTypes), len(computedKeys))
	}
	for k := range computedKeys {
		if _, ok := computedTypes[k]; !ok {
			t.Errorf("computed key %q has no type", k)
		}
	}
}

// A syntax error says where, not what: the token CEL stopped at can be a
// broken string holding a value (an email, a name).
func TestSyntaxErrorsKeepValuesOut(t *testing.T) {
	for _, rule := range []string{
		`traits.email == "ann@example.com`,
		`traits.email == 'ann@example.com`,
		`traits.name == "Ann" "ann@example.com"`,
		`traits.email = "ann@example.com"`,
		`traits.name == "x' expecting annsecret`,
		`traits.email == ann@example.com`,
		`traits.code == "ann`,
	} {
		_, err := Compile(rule)
		if trustloop.ErrorCode(err) != trustloop.EINVALID {
			t.Fatalf("Compile(%s) = %v, want EINVALID", rule, err)
		}
		if msg := err.(*trustloop.Error).Message; strings.Contains(msg, "ann") || !strings.Contains(msg, "1:") {
			t.Errorf("Compile(%s): %q repeats the value or lacks the position", rule, msg)
		}
	}
}
