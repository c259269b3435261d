package audience

import (
	"strings"
	"testing"

	"github.com/trustloop/trustloop"
)

func TestValidate(t *testing.T) {
	const rule = `traits.plan == "pro"`
	tests := []struct {
		name     string
		a        *Audience
		want     string // "" for valid; else the whole message
		wantHint string
	}{
		{"valid", &Audience{Name: "Pro customers", Rule: rule, Description: "Paying, pro plan."}, "", ""},
		{"valid, 100 characters", &Audience{Name: strings.Repeat("é", 100), Rule: rule}, "", ""},
		{"valid, no description", &Audience{Name: "Dormant", Rule: `computed.last_seen < now - duration("1440h")`}, "", ""},
		{"missing", nil, "the audience is missing", ""},
		{"empty name", &Audience{Rule: rule}, "invalid audience: the name is empty", "a name of 1 to 100 characters"},
		{"blank name", &Audience{Name: " \t ", Rule: rule}, "invalid audience: the name is empty", "a name of 1 to 100 characters"},
		{"long name", &Audience{Name: strings.Repeat("a", 101), Rule: rule}, "invalid audience: the name is longer than 100 characters", "a name of 1 to 100"},
		{"spaces around the name", &Audience{Name: "Pro ", Rule: rule}, "invalid audience: the name starts or ends with spaces", "a name of 1 to 100"},
		{"control character", &Audience{Name: "Pro\ncustomers", Rule: rule}, "invalid audience: the name contains control characters", "a name of 1 to 100"},
		{"name not UTF-8", &Audience{Name: "Pro\xff", Rule: rule}, "invalid audience: the name is not valid UTF-8", "a name of 1 to 100"},
		{"long description", &Audience{Name: "Pro", Rule: rule, Description: strings.Repeat("d", 1001)}, "invalid audience: the description is longer than 1000 characters", "a description of at most 1000"},
		{"empty rule", &Audience{Name: "Pro"}, "invalid audience: the rule is empty", "traits.<name>"},
		{"bad rule", &Audience{Name: "Pro", Rule: `trait.plan == "pro"`}, "invalid audience: the rule is not valid: 1:1: undeclared reference to 'trait'", "traits.<name>"},
		{"everything wrong", &Audience{Name: "", Rule: `1 + 1`, Description: strings.Repeat("d", 1001)},
			"invalid audience: the name is empty; the description is longer than 1000 characters; the rule must evaluate to true or false, but it evaluates to int", "traits.<name>"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := Validate(tt.a)
			if tt.want == "" {
				if err != nil {
					t.Fatalf("Validate: %v", err)
				}
				return
			}
			if code := trustloop.ErrorCode(err); code != trustloop.EINVALID {
				t.Fatalf("code = %q, want %q (%v)", code, trustloop.EINVALID, err)
			}
			e := err.(*trustloop.Error)
			if e.Message != tt.want {
				t.Errorf("message = %q\nwant      %q", e.Message, tt.want)
			}
			if !strings.Contains(e.Hint, tt.wantHint) {
				t.Errorf("hint = %q, want it to contain %q", e.Hint, tt.wantHint)
			}
		})
	}
}
