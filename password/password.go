package password

import (
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"unicode/utf8"

	"golang.org/x/crypto/argon2"

	"github.com/trustloop/trustloop"
)

// Parameters of new hashes: OWASP's Password Storage Cheat Sheet's first
// argon2id setting (19 MiB, 2 passes, 1 lane), a 16-byte salt, a 32-byte key.
// About 30 ms a hash here: slow for someone trying guesses, cheap for one
// sign-in.
const (
	Memory  = 19456 // KiB
	Time    = 2
	Threads = 1
	SaltLen = 16
	KeyLen  = 32
)

// Limits of the hashes Verify accepts. A stored hash names its own cost, so
// without bounds a tampered row could make one sign-in take gigabytes or
// minutes.
const (
	maxMemory  = 256 * 1024 // KiB
	maxTime    = 16
	maxThreads = 16
	minSalt    = 8
	maxSalt    = 64
	minKey     = 16
	maxKey     = 64
)

// Rules of Check.
const (
	MinLength = 12
	MaxLength = 1024
)

// ErrMalformed is wrapped by Verify's error for a string that is not an
// argon2id PHC hash this package accepts. It is a fault of the stored data,
// not of the caller: its trustloop.ErrorCode is EINTERNAL.
var ErrMalformed = errors.New("password: malformed hash")

var b64 = base64.RawStdEncoding.Strict()

// Check applies the rule for new passwords: at least MinLength characters
// (Unicode code points) and at most MaxLength. Returns EINVALID.
func Check(pw string) error {
	if !utf8.ValidString(pw) {
		return trustloop.Errorf(trustloop.EINVALID, "The password is not valid UTF-8 text.").
			WithHint("Type it again, or paste it from a password manager.")
	}
	switch n := utf8.RuneCountInString(pw); {
	case n < MinLength:
		return trustloop.Errorf(trustloop.EINVALID, "The password is too short: it has %d characters, at least %d are needed.", n, MinLength).
			WithHint("Use a passphrase of several words; a password manager can make one.")
	case n > MaxLength:
		return trustloop.Errorf(trustloop.EINVALID, "The password is too long: at most %d characters.", MaxLength).
			WithHint("Use a shorter passphrase.")
	}
	return nil
}

// Hash returns pw's argon2id hash under a fresh random salt as a PHC string.
// It does not apply Check: callers setting a password check it first.
func Hash(pw string) (string, error) {
	salt := make([]byte, SaltLen)
	if _, err := rand.Read(salt); err != nil {
		return "", fmt.Errorf("password: salt: %w", err)
	}
	p := params{memory: Memory, time: Time, threads: Threads, salt: salt}
	p.key = argon2.IDKey([]byte(pw), salt, p.time, p.memory, p.threads, KeyLen)
	return p.encode(), nil
}

// Verify reports whether pw is the password hash was made from, comparing the
// keys in constant time. A malformed hash (see ErrMalformed) is an error, never
// a match.
func Verify(hash, pw string) (ok bool, err error) {
	p, err := parse(hash)
	if err != nil {
		return false, err
	}
	key := argon2.IDKey([]byte(pw), p.salt, p.time, p.memory, p.threads, uint32(len(p.key)))
	return subtle.ConstantTimeCompare(key, p.key) == 1, nil
}

// NeedsRehash reports whether a valid hash was made with other parameters than
// new hashes get, so that a sign-in can store a new hash of the password it
// just verified. A malformed hash needs one too.
func NeedsRehash(hash string) bool {
	p, err := parse(hash)
	return err != nil || p.memory != Memory || p.time != Time || p.threads != Threads || len(p.salt) != SaltLen || len(p.key) != KeyLen
}

type params struct {
	memory, time uint32
	threads      uint8
	salt, key    []byte
}

const prefix = "$argon2id$v=19$"

func (p *params) encode() string {
	return fmt.Sprintf("%sm=%d,t=%d,p=%d$%s$%s", prefix, p.memory, p.time, p.threads, b64.EncodeToString(p.salt), b64.EncodeToString(p.key))
}

// parse reads a PHC string of argon2id version 19 with exactly the parameters
// m, t and p in that order. Only the canonical form is accepted (no leading
// zeros, no base64 padding or stray bits): the string must be what encode
// makes of what it holds, so that one hash has one spelling.
func parse(s string) (params, error) {
	bad := func(what string) (params, error) { return params{}, fmt.Errorf("%w: %s", ErrMalformed, what) }
	var p params
	rest, ok := strings.CutPrefix(s, prefix)
	if !ok {
		return bad("not $argon2id$v=19$")
	}
	fields := strings.Split(rest, "$")
	if len(fields) != 3 {
		return bad("want parameters, salt and key")
	}
	kv := strings.Split(fields[0], ",")
	if len(kv) != 3 {
		return bad("want the parameters m, t and p")
	}
	var vals [3]uint64
	for i, name := range []string{"m=", "t=", "p="} {
		v, ok := strings.CutPrefix(kv[i], name)
		if !ok {
			return bad("want the parameters m, t and p")
		}
		n, err := strconv.ParseUint(v, 10, 32)
		if err != nil {
			return bad("a parameter is not a number")
		}
		vals[i] = n
	}
	m, t, th := vals[0], vals[1], vals[2]
	switch {
	case th < 1 || th > maxThreads:
		return bad("p out of range")
	case t < 1 || t > maxTime:
		return bad("t out of range")
	case m < 8*th || m > maxMemory: // argon2 needs 8 KiB per lane
		return bad("m out of range")
	}
	p.memory, p.time, p.threads = uint32(m), uint32(t), uint8(th)
	var err error
	if p.salt, err = b64.DecodeString(fields[1]); err != nil || len(p.salt) < minSalt || len(p.salt) > maxSalt {
		return bad("salt")
	}
	if p.key, err = b64.DecodeString(fields[2]); err != nil || len(p.key) < minKey || len(p.key) > maxKey {
		return bad("key")
	}
	if p.encode() != s {
		return bad("not in canonical form")
	}
	return p, nil
}
