package http

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// Guessing is slowed per key (address or account), and the limiters do not
// grow without bound.
func TestSignInLimiters(t *testing.T) {
	var ls limiters
	now := time.Unix(1_800_000_000, 0)
	for i := range 10 {
		if !ls.allow("ip:a", now) {
			t.Fatalf("attempt %d refused", i+1)
		}
	}
	if ls.allow("ip:a", now) {
		t.Fatal("the 11th attempt at once was allowed")
	}
	if !ls.allow("ip:b", now) {
		t.Fatal("another address was refused")
	}
	if !ls.allow("ip:a", now.Add(6*time.Second)) {
		t.Fatal("no attempt allowed after 6 s")
	}
	for i := range maxLimiters + 10 {
		ls.allow(fmt.Sprintf("ip:%d", i), now)
	}
	later := now.Add(2 * time.Minute)
	ls.allow("ip:new", later)
	if n := len(ls.m); n > maxLimiters {
		t.Fatalf("%d limiters kept, want at most %d", n, maxLimiters)
	}
}

func TestClientKey(t *testing.T) {
	for addr, want := range map[string]string{
		"192.0.2.7:5000":                 "ip:192.0.2.7",
		"[2001:db8:1:2:aaaa::1]:443":     "ip:2001:db8:1:2::",
		"[2001:db8:1:2:ffff:ffff::9]:80": "ip:2001:db8:1:2::",
	} {
		if got := clientKey(&http.Request{RemoteAddr: addr}); got != want {
			t.Errorf("clientKey(%s) = %s, want %s", addr, got, want)
		}
	}
}

// An internal error that is only the request's context ending (the client
// left, e.g. closed the page during a long "Verify now") is no server fault:
// logged at info, not as an internal error; any other stays an error, also
// on a request whose client left.
func TestLogInternalClientGone(t *testing.T) {
	for _, tc := range []struct {
		name    string
		cancel  bool
		err     error
		want    string
		notWant string
	}{
		{"client gone", true, fmt.Errorf("verify: %w", context.Canceled), `"level":"INFO","msg":"request ended: the client went away"`, `"level":"ERROR"`},
		{"client gone, other error", true, errors.New("disk on fire"), `"level":"ERROR","msg":"internal error"`, "client went away"},
		{"context fine", false, fmt.Errorf("verify: %w", context.Canceled), `"level":"ERROR","msg":"internal error"`, "client went away"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var buf bytes.Buffer
			s := &Server{Log: slog.New(slog.NewJSONHandler(&buf, nil))}
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			if tc.cancel {
				cancel()
			}
			r := httptest.NewRequestWithContext(ctx, http.MethodPost, "/admin/dashboard/verify", nil)
			s.logInternal(r, tc.err)
			if got := buf.String(); !strings.Contains(got, tc.want) || strings.Contains(got, tc.notWant) {
				t.Fatalf("logged %s; want %s and not %s", got, tc.want, tc.notWant)
			}
		})
	}
}
