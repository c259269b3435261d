package identity

import (
	"fmt"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/trustloop/trustloop"
)

func mustCompile(t testing.TB, c Config) *Rules {
	t.Helper()
	r, err := Compile(c)
	if err != nil {
		t.Fatalf("Compile: %v", err)
	}
	return r
}

func TestNormalize(t *testing.T) {
	c := DefaultConfig()
	c.CustomTypes = []CustomType{{Name: "loyalty_id"}}
	r := mustCompile(t, c)
	long := strings.Repeat("x", trustloop.MaxIdentifierLen)
	tests := []struct {
		typ, in string
		want    string // normalized value when reason is ""
		reason  string
	}{
		// email
		{"email", "jane@example.com", "jane@example.com", ""},
		{"email", "  Jane.Doe+News@Example.COM \n", "jane.doe+news@example.com", ""},
		{"email", "ÉLODIE@exemple.fr", "élodie@exemple.fr", ""},
		{"email", "user@bücher.de", "user@bücher.de", ""},
		{"email", "a@b.co", "a@b.co", ""},
		{"email", "user@sub.domain.example", "user@sub.domain.example", ""},
		{"email", strings.Repeat("a", 64) + "@example.com", strings.Repeat("a", 64) + "@example.com", ""},
		{"email", strings.Repeat("a", 65) + "@example.com", "", ReasonMalformedEmail},
		{"email", "a@" + strings.Repeat("b", 251) + ".de", "", ReasonMalformedEmail},
		{"email", strings.Repeat("a", 64) + "@" + strings.Repeat("b", 187) + ".de", "", ReasonMalformedEmail}, // 255 in all
		{"email", "n/a", "", ReasonMalformedEmail},
		{"email", "jane", "", ReasonMalformedEmail},
		{"email", "@example.com", "", ReasonMalformedEmail},
		{"email", "jane@", "", ReasonMalformedEmail},
		{"email", "jane@localhost", "", ReasonMalformedEmail},
		{"email", "jane@.example.com", "", ReasonMalformedEmail},
		{"email", "jane@example.com.", "", ReasonMalformedEmail},
		{"email", "jane@example..com", "", ReasonMalformedEmail},
		{"email", "a@b@example.com", "", ReasonMalformedEmail},
		{"email", "jane doe@example.com", "", ReasonMalformedEmail},
		{"email", "jane@exa mple.com", "", ReasonMalformedEmail},
		{"email", "jane@example_x.com", "", ReasonMalformedEmail},
		{"email", "<jane@example.com>", "", ReasonMalformedEmail},
		{"email", `"jane"@example.com`, "", ReasonMalformedEmail},
		{"email", ".jane@example.com", "", ReasonMalformedEmail},
		{"email", "jane\x00@example.com", "", ReasonMalformedEmail},
		{"email", "jane\xff@example.com", "", ReasonMalformedEmail},
		{"email", "null@example.com", "null@example.com", ""},
		{"email", "", "", ReasonEmpty},
		{"email", " \t", "", ReasonEmpty},

		// phone
		{"phone", "+33 6 12 34 56 78", "+33612345678", ""},
		{"phone", "0033612345678", "+33612345678", ""},
		{"phone", "+1 (415) 555-2671", "+14155552671", ""},
		{"phone", "+44 (0)20 7946 0958", "+442079460958", ""},
		{"phone", "0044 (0)20.7946.0958", "+442079460958", ""},
		{"phone", "+49\u00a030\u202f1234567", "+49301234567", ""},
		{"phone", "+12345678", "+12345678", ""},               // 8 digits
		{"phone", "+123456789012345", "+123456789012345", ""}, // 15 digits
		{"phone", "+1234567", "", ReasonMalformedPhone},       // 7 digits
		{"phone", "+1234567890123456", "", ReasonMalformedPhone},
		{"phone", "06 12 34 56 78", "", ReasonMalformedPhone}, // no country code
		{"phone", "612345678", "", ReasonMalformedPhone},
		{"phone", "+0612345678", "", ReasonMalformedPhone}, // country codes do not start with 0
		{"phone", "+33 6 12 34 56 78 ext 5", "", ReasonMalformedPhone},
		{"phone", "+33+612345678", "", ReasonMalformedPhone},
		{"phone", "33+612345678", "", ReasonMalformedPhone},
		{"phone", "+", "", ReasonMalformedPhone},
		{"phone", "00", "", ReasonMalformedPhone},
		{"phone", "+٣٣٦١٢٣٤٥٦٧٨", "", ReasonMalformedPhone}, // non-ASCII digits
		{"phone", "+00000000", "", ReasonMalformedPhone},
		{"phone", "", "", ReasonEmpty},

		// plain types: trimmed only, case kept
		{"user_id", "  U-42 ", "U-42", ""},
		{"anonymous_id", "9f1c2e3d-4b5a", "9f1c2e3d-4b5a", ""},
		{"device_id", "B5372DB0-C21E", "B5372DB0-C21E", ""},
		{"loyalty_id", " L-1 ", "L-1", ""},
		{PreviousID, " anon ", "anon", ""},
		{"user_id", long, long, ""},
		{"user_id", " " + long + " ", long, ""},
		{"user_id", long + "x", "", ReasonTooLong},
		{"email", long + "@example.com", "", ReasonTooLong},

		// blocked placeholders, whatever their case
		{"anonymous_id", "anonymous", "", ReasonBlocked},
		{"anonymous_id", "Anonymous", "", ReasonBlocked},
		{"user_id", "null", "", ReasonBlocked},
		{"user_id", " NULL ", "", ReasonBlocked},
		{"user_id", "undefined", "", ReasonBlocked},
		{"user_id", "-1", "", ReasonBlocked},
		{"user_id", "0", "", ReasonBlocked},
		{"device_id", "0000", "", ReasonBlocked},
		{"device_id", "00000000-0000-0000-0000-000000000000", "", ReasonBlocked},
		{"loyalty_id", "undefined", "", ReasonBlocked},
		{PreviousID, "anonymous", "", ReasonBlocked},
		{"user_id", "-2", "-2", ""},
		{"user_id", "nullable", "nullable", ""},
		{"user_id", "10", "10", ""},
		{"user_id", "", "", ReasonEmpty},

		// unknown types
		{"cookie", "x", "", ReasonUnknownType},
		{"Email", "a@b.co", "", ReasonUnknownType},
		{"", "x", "", ReasonUnknownType},
	}
	for _, tt := range tests {
		got, reason := r.normalize(tt.typ, tt.in)
		if got != tt.want || reason != tt.reason {
			t.Errorf("normalize(%s, %q) = %q, %q; want %q, %q", tt.typ, tt.in, got, reason, tt.want, tt.reason)
			continue
		}
		v, err := r.Normalize(tt.typ, tt.in)
		switch {
		case tt.reason == "" && (err != nil || v != tt.want):
			t.Errorf("Normalize(%s, %q) = %q, %v", tt.typ, tt.in, v, err)
		case tt.reason != "":
			checkValueFreeError(t, err, trustloop.EINVALID, tt.in)
		}
		if tt.reason == "" {
			// Normalizing is idempotent: stored values are matched again.
			if again, reason := r.normalize(tt.typ, got); again != got || reason != "" {
				t.Errorf("normalize(%s, %q) = %q, %q; not idempotent", tt.typ, got, again, reason)
			}
		}
	}
}

// checkValueFreeError checks that err is an application error with the code and
// that neither its message nor its hint holds the value (or its trimmed or lower-case
// forms, when they are distinctive enough to be found by accident).
func checkValueFreeError(t *testing.T, err error, code, value string) {
	t.Helper()
	if trustloop.ErrorCode(err) != code {
		t.Errorf("error %v: code %q, want %q", err, trustloop.ErrorCode(err), code)
		return
	}
	e := err.(*trustloop.Error)
	for _, v := range []string{value, strings.TrimSpace(value), strings.ToLower(strings.TrimSpace(value))} {
		if len(v) < 3 || strings.Contains(knownWords, v) {
			continue
		}
		if strings.Contains(e.Message, v) || strings.Contains(e.Hint, v) {
			t.Errorf("error for a value %q shows it: %q / %q", value, e.Message, e.Hint)
		}
	}
}

// knownWords are the words error texts are made of; values that are one of them
// cannot be told apart from the text.
const knownWords = "the identifier is empty longer than bytes blocked placeholder value not valid email " +
	"address international phone number unknown type user_id email phone device_id anonymous_id " +
	"null anonymous send"

func TestCompileErrors(t *testing.T) {
	base := DefaultConfig
	tests := []struct {
		name   string
		change func(c *Config)
		want   string // in the message
		secret string // must not be in the message ("" for none)
	}{
		{"bad regexp", func(c *Config) { c.Blocked = append(c.Blocked, `^secret@(example\.com$`) },
			"Blocked[5] is not a valid regular expression: missing closing )", "secret"},
		{"bad repetition", func(c *Config) { c.Blocked = []string{`*private`} },
			"Blocked[0] is not a valid regular expression: missing argument to repetition operator", "private"},
		{"limit zero", func(c *Config) { c.Limits = map[string]int{"email": 0} }, `Limits["email"] must be at least 1`, ""},
		{"limit negative", func(c *Config) { c.Limits = map[string]int{"phone": -3} }, `Limits["phone"] must be at least 1`, ""},
		{"limit unknown type", func(c *Config) { c.Limits = map[string]int{"cookie": 2} }, `Limits has an unknown identifier type "cookie"`, ""},
		{"default limit", func(c *Config) { c.DefaultLimit = 0 }, "DefaultLimit must be at least 1", ""},
		{"priority unknown", func(c *Config) { c.Priority = []string{"user_id", "cookie"} }, `Priority[1] is an unknown identifier type "cookie"`, ""},
		{"priority duplicate", func(c *Config) { c.Priority = []string{"email", "user_id", "email"} }, `Priority[2] "email" is listed twice`, ""},
		{"priority previous_id", func(c *Config) { c.Priority = []string{PreviousID} }, `Priority[0] is an unknown identifier type`, ""},
		{"custom clashes with built-in", func(c *Config) { c.CustomTypes = []CustomType{{Name: "phone"}} }, `CustomTypes[0].Name "phone" is a built-in type`, ""},
		{"custom previous_id", func(c *Config) { c.CustomTypes = []CustomType{{Name: PreviousID}} }, `CustomTypes[0].Name "previous_id" is reserved`, ""},
		{"custom duplicate", func(c *Config) { c.CustomTypes = []CustomType{{Name: "crm_id"}, {Name: "crm_id"}} }, `CustomTypes[1].Name "crm_id" is defined twice`, ""},
		{"custom bad name", func(c *Config) { c.CustomTypes = []CustomType{{Name: "Loyalty ID"}} }, `CustomTypes[0].Name must be lower-case`, ""},
		{"custom colon", func(c *Config) { c.CustomTypes = []CustomType{{Name: "a:b"}} }, `CustomTypes[0].Name must be lower-case`, ""},
		{"custom empty name", func(c *Config) { c.CustomTypes = []CustomType{{}} }, `CustomTypes[0].Name must be lower-case`, ""},
		{"custom reads email", func(c *Config) { c.CustomTypes = []CustomType{{Name: "work_email", Traits: []string{"email"}}} },
			`CustomTypes[0].Traits[0] "email" is already read as email`, ""},
		{"custom shared trait", func(c *Config) {
			c.CustomTypes = []CustomType{{Name: "a_id", Traits: []string{"x"}}, {Name: "b_id", Traits: []string{"y", "x"}}}
		}, `CustomTypes[1].Traits[1] "x" is already read as a_id`, ""},
		{"custom empty trait", func(c *Config) { c.CustomTypes = []CustomType{{Name: "a_id", Traits: []string{""}}} }, `CustomTypes[0].Traits[0] is empty`, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := base()
			tt.change(&c)
			r, err := Compile(c)
			if err == nil {
				t.Fatalf("Compile = %v, no error", r)
			}
			if trustloop.ErrorCode(err) != trustloop.EINVALID {
				t.Fatalf("code %q", trustloop.ErrorCode(err))
			}
			msg := trustloop.ErrorMessage(err)
			if !strings.Contains(msg, tt.want) {
				t.Fatalf("message %q, want it to contain %q", msg, tt.want)
			}
			if tt.secret != "" && strings.Contains(msg+err.(*trustloop.Error).Hint, tt.secret) {
				t.Fatalf("message %q shows the pattern", msg)
			}
		})
	}
}

func TestCompile(t *testing.T) {
	r := mustCompile(t, DefaultConfig())
	if got, want := r.Types(), []string{"user_id", "email", "phone", "device_id", "anonymous_id"}; !slices.Equal(got, want) {
		t.Errorf("Types = %v, want %v", got, want)
	}
	for typ, want := range map[string]int{"user_id": 1, "email": 5, "phone": 5, "device_id": 5, "anonymous_id": 5, "cookie": 0} {
		if got := r.Limit(typ); got != want {
			t.Errorf("Limit(%s) = %d, want %d", typ, got, want)
		}
	}

	// Types left out of Priority rank after the listed ones, built-ins then custom
	// types; a custom type without Traits is read from its own name.
	c := DefaultConfig()
	c.Priority = []string{"crm_id", "email"}
	c.CustomTypes = []CustomType{{Name: "loyalty_id"}, {Name: "crm_id", Traits: []string{"crmId", "crm"}}}
	c.Limits = map[string]int{"crm_id": 1}
	c.DefaultLimit = 3
	r = mustCompile(t, c)
	want := []string{"crm_id", "email", "user_id", "phone", "device_id", "anonymous_id", "loyalty_id"}
	if got := r.Types(); !slices.Equal(got, want) {
		t.Errorf("Types = %v, want %v", got, want)
	}
	if r.Limit("crm_id") != 1 || r.Limit("loyalty_id") != 3 || r.Limit("user_id") != 3 {
		t.Errorf("limits: crm_id %d, loyalty_id %d, user_id %d", r.Limit("crm_id"), r.Limit("loyalty_id"), r.Limit("user_id"))
	}
	if want := []string{"email", "phone", "loyalty_id", "crmId", "crm"}; !slices.Equal(r.traitKeys, want) {
		t.Errorf("trait keys %v, want %v", r.traitKeys, want)
	}

	// No blocked values at all: only the empty value is refused.
	c = DefaultConfig()
	c.Blocked = nil
	r = mustCompile(t, c)
	if v, err := r.Normalize("user_id", "null"); err != nil || v != "null" {
		t.Errorf("Normalize without blocks = %q, %v", v, err)
	}
	if _, err := r.Normalize("user_id", " "); err == nil {
		t.Error("the empty value is accepted without blocks")
	}

	// A pattern cannot escape the group it is put in.
	c.Blocked = []string{`a|b`, `c`}
	r = mustCompile(t, c)
	for v, blocked := range map[string]bool{"a": true, "b": true, "C": true, "ab": false, "xa": false, "bx": false} {
		if _, reason := r.normalize("user_id", v); (reason == ReasonBlocked) != blocked {
			t.Errorf("%q blocked: %v, want %v", v, reason == ReasonBlocked, blocked)
		}
	}
}

func TestNormalizeErrorMessages(t *testing.T) {
	r := mustCompile(t, DefaultConfig())
	for _, tt := range []struct{ typ, value, want string }{
		{"email", "jane@localhost", "The email identifier is not a valid email address."},
		{"phone", "0612345678", "The phone identifier is not a valid international phone number."},
		{"user_id", "undefined", "The user_id identifier is a blocked placeholder value."},
		{"user_id", strings.Repeat("7", 2000), "The user_id identifier is longer than 1024 bytes."},
		{"anonymous_id", "  ", "The anonymous_id identifier is empty."},
		// An unknown type is not echoed either: callers parse "type:value" and a
		// value with no type can end up in the type.
		{"jane@example.com", "x", "Unknown identifier type."},
	} {
		_, err := r.Normalize(tt.typ, tt.value)
		if got := trustloop.ErrorMessage(err); got != tt.want {
			t.Errorf("Normalize(%s, …) message %q, want %q", tt.typ, got, tt.want)
		}
		if e, ok := err.(*trustloop.Error); !ok || e.Hint == "" || strings.Contains(e.Hint, tt.value) {
			t.Errorf("Normalize(%s, …) hint %+v", tt.typ, err)
		}
	}
}

// Plain-word patterns are compared with EqualFold instead of the regexp: the two
// must block exactly the same values.
func TestBlockedWordsMatchTheRegexp(t *testing.T) {
	patterns := []string{`^null$`, `undefined`, `\Anone\z`, `-1`, `(?i)NaN`, `(?-i)Nil`, `(?m)^x$`, `nul{2}`,
		`ß`, `k`, `^[0-]*$`, `a.c`, `(?:zz)`, `^$`, `İ`}
	c := DefaultConfig()
	c.Blocked = patterns
	r := mustCompile(t, c)
	if len(r.blockedWords) < 6 {
		t.Fatalf("only %d words: %q", len(r.blockedWords), r.blockedWords)
	}
	ref := referenceBlocked(patterns)
	values := []string{"null", "NULL", "nUlL", "null ", "xnull", "undefined", "UNDEFINED", "none", "NONE", "-1", "-2",
		"nan", "NaN", "NAN", "Nil", "nil", "NIL", "x", "X", "nulll", "ß", "ẞ", "SS", "ss", "k", "K", "\u212a",
		"0", "00-0", "abc", "ABC", "a\nc", "zz", "ZZ", "", "İ", "i̇", "i", "I"}
	for _, v := range values {
		if got, want := r.isBlocked(v), ref.MatchString(v); got != want {
			t.Errorf("isBlocked(%q) = %v, the regexp says %v", v, got, want)
		}
	}
}

func referenceBlocked(patterns []string) *regexp.Regexp {
	alts := make([]string, len(patterns))
	for i, p := range patterns {
		alts[i] = "(?:" + p + ")"
	}
	return regexp.MustCompile(`(?i)^(?:` + strings.Join(alts, "|") + `)$`)
}

// Bounds hold for settings saved from now on; Compile still takes a Config
// past them (settings saved before keep working).
func TestCheckBounds(t *testing.T) {
	many := DefaultConfig()
	for i := range 33 {
		many.CustomTypes = append(many.CustomTypes, CustomType{Name: fmt.Sprintf("t%d", i)})
	}
	big := DefaultConfig()
	big.Limits = map[string]int{"email": 1_000_000_000_000}
	bigDefault := DefaultConfig()
	bigDefault.DefaultLimit = 10_001
	for name, c := range map[string]Config{"33 custom types": many, "a limit of 10^12": big, "a default limit past 10,000": bigDefault} {
		if err := CheckBounds(c); trustloop.ErrorCode(err) != trustloop.EINVALID {
			t.Errorf("%s: CheckBounds = %v, want EINVALID", name, err)
		}
		if _, err := Compile(c); err != nil {
			t.Errorf("%s: Compile = %v; a stored config past the bounds must still load", name, err)
		}
	}
	if err := CheckBounds(DefaultConfig()); err != nil {
		t.Errorf("the default config: %v", err)
	}
}
