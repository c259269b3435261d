package trustloop_test

import (
	"errors"
	"fmt"
	"testing"

	"github.com/trustloop/trustloop"
)

func TestErrorCodeAndMessage(t *testing.T) {
	appErr := trustloop.Errorf(trustloop.ENOTFOUND, "Profile %s not found.", "p1")
	for _, tc := range []struct {
		name          string
		err           error
		code, message string
	}{
		{"nil", nil, "", ""},
		{"application error", appErr, trustloop.ENOTFOUND, "Profile p1 not found."},
		{"wrapped application error", fmt.Errorf("op: %w", appErr), trustloop.ENOTFOUND, "Profile p1 not found."},
		{"other error hides its text", errors.New("disk on fire at /var/lib/x"), trustloop.EINTERNAL, "Internal error."},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := trustloop.ErrorCode(tc.err); got != tc.code {
				t.Errorf("ErrorCode = %q, want %q", got, tc.code)
			}
			if got := trustloop.ErrorMessage(tc.err); got != tc.message {
				t.Errorf("ErrorMessage = %q, want %q", got, tc.message)
			}
		})
	}
	if e := trustloop.Errorf(trustloop.EINVALID, "x").WithHint("do y"); e.Hint != "do y" || e.Error() == "" {
		t.Fatalf("WithHint: %+v", e)
	}
}

func TestEventTypes(t *testing.T) {
	for _, name := range []string{"track", "identify", "page", "screen", "group", "alias"} {
		typ, ok := trustloop.ParseEventType(name)
		if !ok || typ.String() != name {
			t.Errorf("ParseEventType(%q) = %v, %v", name, typ, ok)
		}
	}
	for _, bad := range []string{"", "Track", "batch", "event"} {
		if _, ok := trustloop.ParseEventType(bad); ok {
			t.Errorf("ParseEventType(%q) accepted", bad)
		}
	}
	if trustloop.EventType(0).String() != "" || trustloop.EventType(99).String() != "unknown" {
		t.Error("out-of-range EventType names")
	}
}

func TestNormalizeIdentifier(t *testing.T) {
	for _, tc := range []struct{ typ, in, want string }{
		{"email", "  Jane.Doe@Example.COM ", "jane.doe@example.com"},
		{"user_id", "  U-1 ", "U-1"},
		{"anonymous_id", "Abc", "Abc"},
	} {
		if got := trustloop.NormalizeIdentifier(tc.typ, tc.in); got != tc.want {
			t.Errorf("NormalizeIdentifier(%q, %q) = %q, want %q", tc.typ, tc.in, got, tc.want)
		}
	}
}

func TestMessageSubject(t *testing.T) {
	m := trustloop.Message{UserID: "u1", AnonymousID: "a1"}
	if typ, v := m.Subject(); typ != "user_id" || v != "u1" {
		t.Errorf("Subject with both ids = %s:%s, want the user id", typ, v)
	}
	m.UserID = ""
	if typ, v := m.Subject(); typ != "anonymous_id" || v != "a1" {
		t.Errorf("Subject without user id = %s:%s", typ, v)
	}
}
