package trustloop_test

import (
	"strings"
	"testing"
	"time"

	"github.com/trustloop/trustloop"
)

func TestOperatorValidate(t *testing.T) {
	const hash = "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHRzYWx0c2FsdA$aGFzaGhhc2hoYXNoaGFzaGhhc2hoYXNoaGFzaGhhc2g"
	ok := func() trustloop.Operator {
		return trustloop.Operator{WorkspaceID: 1, Email: "ann@shop.example", Name: "Ann", PasswordHash: hash,
			Roles: []string{trustloop.RoleAdmin}, Purposes: []string{"analytics"}}
	}
	for _, c := range []struct {
		name   string
		change func(o *trustloop.Operator)
		valid  bool
	}{
		{"valid", func(o *trustloop.Operator) {}, true},
		{"all roles, no purposes", func(o *trustloop.Operator) { o.Roles, o.Purposes = trustloop.Roles, nil }, true},
		{"local host", func(o *trustloop.Operator) { o.Email = "ops@localhost" }, true},
		{"no workspace", func(o *trustloop.Operator) { o.WorkspaceID = 0 }, false},
		{"upper-case email", func(o *trustloop.Operator) { o.Email = "Ann@shop.example" }, false},
		{"untrimmed email", func(o *trustloop.Operator) { o.Email = " ann@shop.example" }, false},
		{"no at", func(o *trustloop.Operator) { o.Email = "ann.shop.example" }, false},
		{"two ats", func(o *trustloop.Operator) { o.Email = "ann@b@shop.example" }, false},
		{"display name", func(o *trustloop.Operator) { o.Email = "ann <ann@shop.example>" }, false},
		{"empty local part", func(o *trustloop.Operator) { o.Email = "@shop.example" }, false},
		{"too long", func(o *trustloop.Operator) { o.Email = strings.Repeat("a", 250) + "@x.example" }, false},
		{"no name", func(o *trustloop.Operator) { o.Name = "  " }, false},
		{"control character in name", func(o *trustloop.Operator) { o.Name = "Ann\x00" }, false},
		{"name not UTF-8", func(o *trustloop.Operator) { o.Name = "Jane\xff" }, false},
		{"no roles", func(o *trustloop.Operator) { o.Roles = nil }, false},
		{"unknown role", func(o *trustloop.Operator) { o.Roles = []string{"owner"} }, false},
		{"repeated role", func(o *trustloop.Operator) { o.Roles = []string{"admin", "admin"} }, false},
		{"bad purpose id", func(o *trustloop.Operator) { o.Purposes = []string{"Analytics"} }, false},
		{"repeated purpose", func(o *trustloop.Operator) { o.Purposes = []string{"analytics", "analytics"} }, false},
		{"no hash", func(o *trustloop.Operator) { o.PasswordHash = "" }, false},
		{"a password, not a hash", func(o *trustloop.Operator) { o.PasswordHash = "correct horse battery staple" }, false},
	} {
		o := ok()
		c.change(&o)
		err := o.Validate()
		if c.valid != (err == nil) {
			t.Errorf("%s: Validate = %v, want valid %v", c.name, err, c.valid)
		}
		if err != nil && trustloop.ErrorCode(err) != trustloop.EINVALID {
			t.Errorf("%s: code %s, want invalid", c.name, trustloop.ErrorCode(err))
		}
	}
	if got := trustloop.NormalizeOperatorEmail("  Ann@Shop.EXAMPLE\n"); got != "ann@shop.example" {
		t.Errorf("NormalizeOperatorEmail = %q", got)
	}
}

func TestUTCDay(t *testing.T) {
	want := time.Date(2025, 3, 30, 0, 0, 0, 0, time.UTC)
	for _, in := range []time.Time{
		want, want.Add(23*time.Hour + 59*time.Minute),
		time.Date(2025, 3, 30, 1, 30, 0, 0, time.FixedZone("CEST", 2*3600)).Add(24 * time.Hour), // 2025-03-30 23:30 UTC
	} {
		if got := trustloop.UTCDay(in); !got.Equal(want) || got.Location() != time.UTC {
			t.Errorf("UTCDay(%v) = %v, want %v", in, got, want)
		}
	}
	if got := trustloop.UTCDay(time.Date(1969, 12, 31, 23, 0, 0, 0, time.UTC)); !got.Equal(time.Date(1969, 12, 31, 0, 0, 0, 0, time.UTC)) {
		t.Errorf("UTCDay before 1970 = %v", got)
	}
}
