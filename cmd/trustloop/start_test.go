package main_test

import (
	"bytes"
	"encoding/base64"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/trustloop/trustloop/postgres/pgtest"
)

// A start that is refused for its address, its database URL, its master key,
// its bootstrap keys or a flag's value creates nothing: no data directory, no
// master key, no credentials printed.
func TestServeRefusedStartCreatesNothing(t *testing.T) {
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	free := func() string { // a port nothing listens on, for the cases that must not get as far as listening
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		return ln.Addr().String()
	}
	short := base64Key(16)
	for _, c := range []struct {
		name string
		env  []string
		args []string
		code int
		want string
	}{
		{"port out of range", nil, []string{"--addr", "127.0.0.1:99999"}, 2, "port from 0 to 65535"},
		{"no port", nil, []string{"--addr", "127.0.0.1"}, 2, "is not host:port"},
		{"address in use", nil, []string{"--addr", busy.Addr().String()}, 1, "Another process already listens"},
		{"address not of this machine", nil, []string{"--addr", "192.0.2.1:8080"}, 1, "is not an address of this machine"},
		{"empty address", []string{"TRUSTLOOP_ADDR="}, nil, 2, "--addr is empty"},
		{"not a database URL", nil, []string{"--addr", free(), "--database-url", "mysql://x"}, 2, "must start with postgres://"},
		{"database URL that does not parse", nil, []string{"--addr", free(), "--database-url", "postgres://x@127.0.0.1:bad/x"}, 1, "Use postgres://user:password@host"},
		{"database unreachable", nil, []string{"--addr", free(), "--database-url", "postgres://nobody@127.0.0.1:1/x?connect_timeout=2"}, 1, "Check --database-url"},
		{"master key too short", []string{"TRUSTLOOP_MASTER_KEY=" + short}, []string{"--addr", free()}, 1, "must be 32 bytes"},
		{"bootstrap admin key too short", []string{"TRUSTLOOP_BOOTSTRAP_ADMIN_KEY=short"}, []string{"--addr", free()}, 2, "16 to 200 printable"},
		{"bootstrap key with a space", []string{"TRUSTLOOP_BOOTSTRAP_WRITE_KEY=a key with spaces in it"}, []string{"--addr", free()}, 2, "without spaces"},
		{"bootstrap keys alike", []string{"TRUSTLOOP_BOOTSTRAP_WRITE_KEY=same-key-0123456789", "TRUSTLOOP_BOOTSTRAP_ADMIN_KEY=same-key-0123456789"},
			[]string{"--addr", free()}, 2, "must differ"},
		{"negative rate limit", nil, []string{"--addr", free(), "--rate-limit", "-5"}, 2, "--rate-limit"},
		{"negative burst", nil, []string{"--addr", free(), "--rate-burst", "-1"}, 2, "--rate-burst"},
		{"negative shutdown timeout", nil, []string{"--addr", free(), "--shutdown-timeout", "-1s"}, 2, "--shutdown-timeout"},
		{"zero max items", nil, []string{"--addr", free(), "--rec-max-items", "0"}, 2, "--rec-max-items"},
		{"zero item support", []string{"TRUSTLOOP_REC_ITEM_SUPPORT=0"}, []string{"--addr", free()}, 2, "--rec-item-support"},
	} {
		t.Run(c.name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "data")
			code, out, errOut := runWith(t, c.env, "", append([]string{"serve", "--data-dir", dir}, c.args...)...)
			if code != c.code || !strings.Contains(errOut, c.want) {
				t.Fatalf("exit %d, want %d with %q; stderr:\n%s", code, c.code, c.want, errOut)
			}
			if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("the data directory was created (stat: %v)", err)
			}
			if strings.Contains(out+errOut, "admin API key") {
				t.Errorf("credentials were printed:\n%s", out+errOut)
			}
		})
	}
}

// base64Key is an n-byte key in base64 (a master key of the wrong size when
// n ≠ 32).
func base64Key(n int) string {
	return base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{0x5a}, n))
}

// Help on help prints the usage (it looped until the stack overflowed), and
// commands that take no arguments say so.
func TestHelpAndVersionArguments(t *testing.T) {
	for _, c := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"help", "help"}, 0, "Usage:"},
		{[]string{"-h", "-h"}, 0, "Usage:"},
		{[]string{"--help", "--help"}, 0, "Usage:"},
		{[]string{"help", "-h"}, 0, "Usage:"},
		{[]string{"help", "serve", "extra"}, 2, "help takes one command name"},
		{[]string{"version", "extra"}, 2, "version takes no arguments"},
		{[]string{"version"}, 0, "trustloop"},
	} {
		code, out, errOut := runWith(t, nil, "", c.args...)
		if code != c.code || !strings.Contains(out+errOut, c.want) {
			t.Errorf("%q: exit %d, want %d with %q; output:\n%s%s", c.args, code, c.code, c.want, out, errOut)
		}
	}
}

// A refused flag value is not quoted back: it can be personal data.
func TestFlagErrorsDoNotQuoteValues(t *testing.T) {
	const secret = "jane.private@example.org"
	for _, args := range [][]string{
		{"privacy", "create", "--type", "rectification", "--identifier", "email:" + secret, "--trait", "email:=" + secret},
		{"privacy", "show", secret},
		{"stats", secret},
	} {
		code, out, errOut := runWith(t, nil, "", args...)
		if code != 2 || strings.Contains(out+errOut, secret) {
			t.Errorf("%q: exit %d (want 2), output quotes the value:\n%s%s", args[:2], code, out, errOut)
		}
	}
}

// bench and stats name the flag that is wrong, with exit 2, before they send
// or open anything.
func TestBenchAndStatsFlags(t *testing.T) {
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"bench", "--concurrency", "0"}, "--concurrency 0"},
		{[]string{"bench", "--batch", "2501"}, "--batch 2501"},
		{[]string{"bench", "--rate", "NaN"}, "--rate NaN"},
		{[]string{"bench", "--warmup", "-1s"}, "--warmup -1s"},
		{[]string{"bench", "--duration", "0s"}, "--duration 0s"},
		{[]string{"bench", "--shape", "load-interactions", "--items", "0"}, "--items 0"},
		{[]string{"bench", "--shape", "load-interactions", "--users", "10", "--interactions", "9"}, "must be at least --users"},
		{[]string{"bench", "--users", "-1"}, "--users -1"},
		{[]string{"bench", "--url", "notaurl"}, "--url must be"},
		{[]string{"bench", "--shape", "nope"}, "--shape must be"},
		{[]string{"stats", "--data-dir", "/nonexistent", "--database-url", "postgres://x@127.0.0.1:1/x"}, "not both"},
	} {
		code, out, errOut := runWith(t, nil, "", c.args...)
		if code != 2 || !strings.Contains(errOut, c.want) {
			t.Errorf("%q: exit %d, want 2 with %q; output:\n%s%s", c.args, code, c.want, out, errOut)
		}
	}
}

// A store whose master key is missing is refused, and no new key is made
// (one would match none of its workspaces): the operator gives the old one.
func TestServeWithoutTheStoresKeyMakesNoKey(t *testing.T) {
	dir := t.TempDir()
	start(t, dir).stop()
	keyFile := filepath.Join(dir, "master.key")
	key, err := os.ReadFile(keyFile)
	if err != nil {
		t.Fatal(err)
	}
	os.Remove(keyFile)
	code, _, errOut := runWith(t, nil, "", "serve", "--addr", "127.0.0.1:0", "--data-dir", dir)
	if code != 1 || !strings.Contains(errOut, "No master key") {
		t.Fatalf("exit %d, want 1 with No master key; stderr:\n%s", code, errOut)
	}
	if _, err := os.Stat(keyFile); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("a master key was made: %v", err)
	}
	// With the key given, it starts (and still makes none).
	os.WriteFile(keyFile, key, 0o600)
	start(t, dir).stop()
}

// help on each command, version included, shows its help; a flag that is no
// flag is not quoted back; an empty --checkpoint is refused, not skipped.
func TestMoreUsageErrors(t *testing.T) {
	const secret = "alice@example.com"
	for _, c := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"help", "version"}, 0, "Usage: trustloop version"},
		{[]string{"serve", "---addr=" + secret}, 2, "bad flag syntax"},
		{[]string{"operators", "list", secret}, 2, "unexpected argument"},
		{[]string{"audit", "verify", "--data-dir", t.TempDir(), "--checkpoint", ""}, 2, "--checkpoint is empty"},
		{[]string{"audit", "verify", "--data-dir", t.TempDir(), "--save", ""}, 2, "--save is empty"},
	} {
		code, out, errOut := runWith(t, nil, "", c.args...)
		if code != c.code || !strings.Contains(out+errOut, c.want) || strings.Contains(out+errOut, secret) {
			t.Errorf("%q: exit %d, want %d with %q (and no %q); output:\n%s%s", c.args, code, c.code, c.want, secret, out, errOut)
		}
	}
}

// A first start on PostgreSQL with the master key in the environment and a
// data directory not made yet still hands its credentials over (the
// directory is made for them): the keys exist nowhere else.
func TestPostgresFirstStartWritesCredentials(t *testing.T) {
	url := pgtest.Schema(t, "PostgreSQL first start")
	t.Setenv("TRUSTLOOP_MASTER_KEY", base64Key(32))
	dir := filepath.Join(t.TempDir(), "not-yet")
	start(t, dir, "--database-url", url).stop()
	b, err := os.ReadFile(filepath.Join(dir, "credentials"))
	if err != nil || !strings.Contains(string(b), "admin_api_key=") {
		t.Fatalf("credentials: %v %q", err, b)
	}
	if _, err := os.Stat(filepath.Join(dir, "master.key")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("a master key file was made although the key was given: %v", err)
	}
}
