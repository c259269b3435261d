package password

import (
	"errors"
	"strings"
	"testing"

	"github.com/trustloop/trustloop"
)

// reference is the argon2id vector of the reference implementation
// (phc-winner-argon2, src/test.c): "password" under the salt "somesalt".
const reference = "$argon2id$v=19$m=65536,t=2,p=1$c29tZXNhbHQ$CTFhFdXPJO1aFaMaO6Mm5c8y7cJHAph8ArZWb2GRPPc"

func TestHashVerify(t *testing.T) {
	h, err := Hash("correct horse battery staple")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(h, "$argon2id$v=19$m=19456,t=2,p=1$") {
		t.Fatalf("Hash = %q, want OWASP's argon2id parameters in a PHC string", h)
	}
	p, err := parse(h)
	if err != nil || len(p.salt) != SaltLen || len(p.key) != KeyLen {
		t.Fatalf("parse(Hash) = %+v, %v", p, err)
	}
	if NeedsRehash(h) {
		t.Fatal("a fresh hash needs a rehash")
	}
	h2, _ := Hash("correct horse battery staple")
	if h2 == h {
		t.Fatal("two hashes of one password are equal: the salt is not random")
	}
	for _, c := range []struct {
		hash, pw string
		want     bool
	}{
		{h, "correct horse battery staple", true},
		{h2, "correct horse battery staple", true},
		{h, "correct horse battery stapler", false},
		{h, "Correct horse battery staple", false},
		{h, "", false},
		{reference, "password", true},
		{reference, "Password", false},
	} {
		ok, err := Verify(c.hash, c.pw)
		if err != nil || ok != c.want {
			t.Errorf("Verify(%.40s…, %q) = %v, %v; want %v", c.hash, c.pw, ok, err, c.want)
		}
	}
	if !NeedsRehash(reference) {
		t.Error("a hash with other parameters does not need a rehash")
	}
}

func TestVerifyMalformed(t *testing.T) {
	salt, key := "c29tZXNhbHQ", "CTFhFdXPJO1aFaMaO6Mm5c8y7cJHAph8ArZWb2GRPPc"
	for name, h := range map[string]string{
		"empty":                "",
		"plain password":       "password",
		"argon2i":              "$argon2i$v=19$m=65536,t=2,p=1$" + salt + "$" + key,
		"argon2d":              "$argon2d$v=19$m=65536,t=2,p=1$" + salt + "$" + key,
		"bcrypt":               "$2a$10$N9qo8uLOickgx2ZMRZoMyeIjZAgcfl7p92ldGxad68LJZdL17lhWy",
		"no version":           "$argon2id$m=65536,t=2,p=1$" + salt + "$" + key,
		"version 16":           "$argon2id$v=16$m=65536,t=2,p=1$" + salt + "$" + key,
		"no key":               "$argon2id$v=19$m=65536,t=2,p=1$" + salt,
		"extra field":          "$argon2id$v=19$m=65536,t=2,p=1$" + salt + "$" + key + "$x",
		"trailing dollar":      "$argon2id$v=19$m=65536,t=2,p=1$" + salt + "$" + key + "$",
		"parameters reordered": "$argon2id$v=19$t=2,m=65536,p=1$" + salt + "$" + key,
		"parameter missing":    "$argon2id$v=19$m=65536,t=2$" + salt + "$" + key,
		"extra parameter":      "$argon2id$v=19$m=65536,t=2,p=1,keyid=x$" + salt + "$" + key,
		"leading zero":         "$argon2id$v=19$m=065536,t=2,p=1$" + salt + "$" + key,
		"plus sign":            "$argon2id$v=19$m=+65536,t=2,p=1$" + salt + "$" + key,
		"negative":             "$argon2id$v=19$m=65536,t=-2,p=1$" + salt + "$" + key,
		"not a number":         "$argon2id$v=19$m=lots,t=2,p=1$" + salt + "$" + key,
		"too much memory":      "$argon2id$v=19$m=4194304,t=2,p=1$" + salt + "$" + key,
		"too little memory":    "$argon2id$v=19$m=7,t=2,p=1$" + salt + "$" + key,
		"no passes":            "$argon2id$v=19$m=65536,t=0,p=1$" + salt + "$" + key,
		"too many passes":      "$argon2id$v=19$m=65536,t=1000,p=1$" + salt + "$" + key,
		"no lanes":             "$argon2id$v=19$m=65536,t=2,p=0$" + salt + "$" + key,
		"too many lanes":       "$argon2id$v=19$m=65536,t=2,p=255$" + salt + "$" + key,
		"huge number":          "$argon2id$v=19$m=99999999999999999999,t=2,p=1$" + salt + "$" + key,
		"padded salt":          "$argon2id$v=19$m=65536,t=2,p=1$c29tZXNhbHQ=$" + key,
		"salt not base64":      "$argon2id$v=19$m=65536,t=2,p=1$c29t*XNhbHQ$" + key,
		"short salt":           "$argon2id$v=19$m=65536,t=2,p=1$c29tZQ$" + key,
		"short key":            "$argon2id$v=19$m=65536,t=2,p=1$" + salt + "$CTFhFdXPJO1a",
		"stray bits in key":    "$argon2id$v=19$m=65536,t=2,p=1$" + salt + "$" + key[:len(key)-1] + "d",
		"url-safe base64":      "$argon2id$v=19$m=65536,t=2,p=1$" + salt + "$" + strings.ReplaceAll("CTFhFdXPJO1aFaMaO6Mm5c8y7cJHAph8ArZWb2GRPP/", "/", "_"),
		"space":                " " + reference,
		"newline":              reference + "\n",
	} {
		ok, err := Verify(h, "password")
		if ok || !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: Verify = %v, %v; want false and ErrMalformed", name, ok, err)
		}
		if trustloop.ErrorCode(err) != trustloop.EINTERNAL {
			t.Errorf("%s: error code %q, want internal (a stored hash is not the caller's input)", name, trustloop.ErrorCode(err))
		}
		if !NeedsRehash(h) {
			t.Errorf("%s: a malformed hash does not need a rehash", name)
		}
	}
}

func TestCheck(t *testing.T) {
	for _, c := range []struct {
		name, pw string
		ok       bool
	}{
		{"empty", "", false},
		{"11 characters", "abcdefghijk", false},
		{"12 characters", "abcdefghijkl", true},
		{"12 spaces count too", "            ", true},
		{"11 runes, more bytes", "ääääääääääö", false},
		{"12 runes", "äääääääääääö", true},
		{"passphrase", "correct horse battery staple", true},
		{"at the maximum", strings.Repeat("a", MaxLength), true},
		{"too long", strings.Repeat("a", MaxLength+1), false},
		{"invalid UTF-8", "abcdefghijkl\xff", false},
	} {
		t.Run(c.name, func(t *testing.T) {
			err := Check(c.pw)
			if c.ok != (err == nil) {
				t.Fatalf("Check = %v, want ok %v", err, c.ok)
			}
			if err == nil {
				return
			}
			var e *trustloop.Error
			if !errors.As(err, &e) || e.Code != trustloop.EINVALID || e.Message == "" || e.Hint == "" {
				t.Fatalf("Check = %#v, want EINVALID with a message and a hint", err)
			}
			if len(c.pw) > 0 && strings.Contains(e.Message+e.Hint, c.pw) {
				t.Fatal("the error repeats the password")
			}
		})
	}
}

// FuzzVerify: no string makes the parser panic or accept something that is
// not its canonical form, and a string it accepts verifies without error.
func FuzzVerify(f *testing.F) {
	f.Add(reference, "password")
	f.Add("$argon2id$v=19$m=64,t=1,p=1$c29tZXNhbHQ$CTFhFdXPJO1aFaMaO6Mm5c8y7cJHAph8ArZWb2GRPPc", "pw")
	f.Add("$argon2id$v=19$m=65536,t=2,p=1$c29tZXNhbHQ=$CTFhFdXPJO1a", "")
	f.Add("$argon2id$v=19$m=,t=,p=$$", "x")
	f.Add("$argon2i$v=19$m=65536,t=2,p=1$c29tZXNhbHQ$RdescudvJCsgt3ub+b+dWRWJTmaaJObG", "password")
	f.Fuzz(func(t *testing.T, hash, pw string) {
		p, err := parse(hash)
		if err != nil {
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("parse error %v does not wrap ErrMalformed", err)
			}
			if ok, verr := Verify(hash, pw); ok || verr == nil {
				t.Fatalf("Verify of a string parse refuses = %v, %v", ok, verr)
			}
			return
		}
		if p.encode() != hash {
			t.Fatalf("accepted %q, whose canonical form is %q", hash, p.encode())
		}
		// Keep each run fast: verify only cheap parameter sets (a seed's
		// 64 MiB is verified by TestHashVerify).
		if p.memory <= 1024 && p.time <= 2 {
			if _, err := Verify(hash, pw); err != nil {
				t.Fatalf("Verify of a parsed hash: %v", err)
			}
		}
	})
}
