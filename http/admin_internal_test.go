package http

import (
	"fmt"
	"net/http"
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
