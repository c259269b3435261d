package keyring_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/trustloop/trustloop"
	"github.com/trustloop/trustloop/keyring"
)

// newKeyring returns a keyring with workspace 1 added.
func newKeyring(t testing.TB) (*keyring.Keyring, *trustloop.Workspace) {
	t.Helper()
	kr := keyring.New(keyring.NewKey(), 100)
	ws := &trustloop.Workspace{ID: 1, Name: "default", IndexKey: kr.NewIndexKey()}
	if err := kr.AddWorkspace(ws); err != nil {
		t.Fatal(err)
	}
	return kr, ws
}

func mustBlind(t testing.TB, kr *keyring.Keyring, ws int64, idType, value string) []byte {
	t.Helper()
	b, err := kr.Blind(ws, idType, value)
	if err != nil {
		t.Fatalf("Blind(%d, %q) = %v", ws, idType, err)
	}
	if len(b) != keyring.BlindSize {
		t.Fatalf("blind is %d bytes, want %d", len(b), keyring.BlindSize)
	}
	return b
}

func TestSealOpen(t *testing.T) {
	key := keyring.NewKey()
	plaintext := []byte(`{"v":1,"type":"track","message":{"event":"Order Completed"}}`)
	aad := keyring.EventAAD(nil, 1, 2, bytes.Repeat([]byte{7}, keyring.MessageHashSize))

	prefix := []byte("prefix")
	sealed := keyring.Seal(append([]byte(nil), prefix...), key, plaintext, aad)
	if !bytes.HasPrefix(sealed, prefix) {
		t.Fatal("Seal did not append to dst")
	}
	sealed = sealed[len(prefix):]
	if bytes.Contains(sealed, []byte("Order Completed")) {
		t.Fatal("sealed data contains the plaintext")
	}
	got, err := keyring.Open(key, sealed, aad)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, plaintext) {
		t.Fatalf("Open = %q, want %q", got, plaintext)
	}

	// Empty plaintext round-trips too.
	empty := keyring.Seal(nil, key, nil, aad)
	if got, err := keyring.Open(key, empty, aad); err != nil || len(got) != 0 {
		t.Fatalf("Open(empty) = %q, %v", got, err)
	}

	flipped := append([]byte(nil), sealed...)
	flipped[len(flipped)/2] ^= 1
	otherAAD := keyring.EventAAD(nil, 1, 3, bytes.Repeat([]byte{7}, keyring.MessageHashSize))
	for _, tc := range []struct {
		name   string
		key    []byte
		sealed []byte
		aad    []byte
	}{
		{"wrong key", keyring.NewKey(), sealed, aad},
		{"other aad", key, sealed, otherAAD},
		{"nil aad", key, sealed, nil},
		{"flipped byte", key, flipped, aad},
		{"flipped nonce", key, append([]byte{sealed[0] ^ 0x80}, sealed[1:]...), aad},
		{"truncated", key, sealed[:len(sealed)-1], aad},
		{"shorter than nonce", key, sealed[:11], aad},
		{"only nonce", key, sealed[:12], aad},
		{"empty", key, nil, aad},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := keyring.Open(tc.key, tc.sealed, tc.aad)
			if err == nil {
				t.Fatalf("Open succeeded: %q", got)
			}
			if got != nil {
				t.Fatalf("Open returned data with an error: %q", got)
			}
			if strings.Contains(err.Error(), "Order Completed") {
				t.Fatalf("error carries plaintext: %v", err)
			}
		})
	}
}

func TestSealRandomNonce(t *testing.T) {
	key, pt := keyring.NewKey(), []byte("same plaintext")
	a := keyring.Seal(nil, key, pt, nil)
	b := keyring.Seal(nil, key, pt, nil)
	if bytes.Equal(a, b) {
		t.Fatal("two Seals of the same plaintext are equal")
	}
	if bytes.Equal(a[:12], b[:12]) {
		t.Fatal("two Seals used the same nonce")
	}
	if len(a) != 12+len(pt)+16 {
		t.Fatalf("sealed length %d, want nonce+plaintext+tag = %d", len(a), 12+len(pt)+16)
	}
}

func TestNewKey(t *testing.T) {
	a, b := keyring.NewKey(), keyring.NewKey()
	if len(a) != keyring.KeySize || bytes.Equal(a, b) || bytes.Equal(a, make([]byte, keyring.KeySize)) {
		t.Fatalf("NewKey = %x, %x", a, b)
	}
}

func TestLoadMasterKeyEnv(t *testing.T) {
	want := keyring.NewKey()
	file := filepath.Join(t.TempDir(), "master.key") // must not be read or created
	got, generated, err := keyring.LoadMasterKey(base64.StdEncoding.EncodeToString(want), file)
	if err != nil || generated || !bytes.Equal(got, want) {
		t.Fatalf("LoadMasterKey(env) = %x, %v, %v", got, generated, err)
	}
	if _, err := os.Stat(file); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("key file touched although the env key was set: %v", err)
	}

	for _, tc := range []struct{ name, env string }{
		{"not base64", "this is not base64!"},
		{"url alphabet", base64.URLEncoding.EncodeToString(bytes.Repeat([]byte{0xfb}, 32))},
		{"16 bytes", base64.StdEncoding.EncodeToString(make([]byte, 16))},
		{"33 bytes", base64.StdEncoding.EncodeToString(make([]byte, 33))},
	} {
		t.Run(tc.name, func(t *testing.T) {
			key, _, err := keyring.LoadMasterKey(tc.env, file)
			if err == nil {
				t.Fatalf("LoadMasterKey(%q) = %x, want an error", tc.env, key)
			}
			if !strings.Contains(err.Error(), "TRUSTLOOP_MASTER_KEY") {
				t.Fatalf("error %q does not name the variable", err)
			}
			if strings.Contains(err.Error(), tc.env) {
				t.Fatalf("error %q echoes the secret", err)
			}
		})
	}
}

func TestLoadMasterKeyFile(t *testing.T) {
	want := keyring.NewKey()
	file := filepath.Join(t.TempDir(), "master.key")
	// Surrounding whitespace (an editor's newline) is tolerated.
	if err := os.WriteFile(file, []byte("  "+base64.StdEncoding.EncodeToString(want)+"\n\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	got, generated, err := keyring.LoadMasterKey("", file)
	if err != nil || generated || !bytes.Equal(got, want) {
		t.Fatalf("LoadMasterKey(file) = %x, %v, %v", got, generated, err)
	}

	bad := filepath.Join(t.TempDir(), "bad.key")
	if err := os.WriteFile(bad, []byte(base64.StdEncoding.EncodeToString(make([]byte, 31))), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, _, err := keyring.LoadMasterKey("", bad); err == nil || !strings.Contains(err.Error(), bad) {
		t.Fatalf("LoadMasterKey(short key file) err = %v, want one naming the file", err)
	}
	// A key file that is a directory is an error, not a reason to generate.
	if _, _, err := keyring.LoadMasterKey("", t.TempDir()); err == nil {
		t.Fatal("LoadMasterKey(directory) succeeded")
	}
}

func TestLoadMasterKeyGenerated(t *testing.T) {
	file := filepath.Join(t.TempDir(), "data", "master.key") // the directory is made too
	key, generated, err := keyring.LoadMasterKey("", file)
	if err != nil || !generated || len(key) != keyring.KeySize {
		t.Fatalf("LoadMasterKey(missing) = %x, %v, %v", key, generated, err)
	}
	fi, err := os.Stat(file)
	if err != nil {
		t.Fatal(err)
	}
	if mode := fi.Mode().Perm(); mode != 0o600 {
		t.Fatalf("key file mode %o, want 600", mode)
	}
	again, generated, err := keyring.LoadMasterKey("", file)
	if err != nil || generated || !bytes.Equal(again, key) {
		t.Fatalf("second LoadMasterKey = %x, %v, %v; want the generated key, not generated", again, generated, err)
	}
	keyring.New(key, 1) // usable as a master key
}

func TestNewPanicsOnWrongKeySize(t *testing.T) {
	for _, n := range []int{0, 16, 31, 33, 64} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("New with a %d-byte master key did not panic", n)
				}
			}()
			keyring.New(make([]byte, n), 10)
		}()
	}
}

func TestAddWorkspaceWrongMasterKey(t *testing.T) {
	other := keyring.New(keyring.NewKey(), 10)
	ws := &trustloop.Workspace{ID: 7, IndexKey: other.NewIndexKey()}
	kr := keyring.New(keyring.NewKey(), 10)
	err := kr.AddWorkspace(ws)
	if err == nil {
		t.Fatal("AddWorkspace with an index key of another master key succeeded")
	}
	if !strings.Contains(err.Error(), "master key") || !strings.Contains(err.Error(), "7") {
		t.Fatalf("error %q does not point at the master key and the workspace", err)
	}
	if _, err := kr.Blind(7, "user_id", "u1"); err == nil {
		t.Fatal("Blind works for a workspace that failed to load")
	}
	// Adding it properly still works, and adding again is a no-op.
	if err := other.AddWorkspace(ws); err != nil {
		t.Fatal(err)
	}
	if err := other.AddWorkspace(&trustloop.Workspace{ID: 7, IndexKey: []byte("garbage")}); err != nil {
		t.Fatalf("second AddWorkspace = %v, want a no-op", err)
	}
}

func TestBlind(t *testing.T) {
	kr, _ := newKeyring(t)
	if err := kr.AddWorkspace(&trustloop.Workspace{ID: 2, IndexKey: kr.NewIndexKey()}); err != nil {
		t.Fatal(err)
	}
	a := mustBlind(t, kr, 1, "user_id", "u-1")
	if b := mustBlind(t, kr, 1, "user_id", "u-1"); !bytes.Equal(a, b) {
		t.Fatal("Blind is not deterministic")
	}
	if b := mustBlind(t, kr, 2, "user_id", "u-1"); bytes.Equal(a, b) {
		t.Fatal("Blind is equal across workspaces")
	}
	if b := mustBlind(t, kr, 1, "anonymous_id", "u-1"); bytes.Equal(a, b) {
		t.Fatal("Blind is equal across identifier types")
	}
	if b := mustBlind(t, kr, 1, "user_id", "u-2"); bytes.Equal(a, b) {
		t.Fatal("Blind is equal for different values")
	}
	if bytes.Contains(a, []byte("u-1")) {
		t.Fatal("blind contains the value")
	}

	// Emails: trimmed and lower-cased.
	e := mustBlind(t, kr, 1, "email", "jane.doe@example.com")
	for _, v := range []string{"Jane.Doe@Example.COM", "  jane.doe@example.com\n", "\tJANE.DOE@EXAMPLE.COM "} {
		if b := mustBlind(t, kr, 1, "email", v); !bytes.Equal(b, e) {
			t.Errorf("Blind(email %q) differs from the normalized one", v)
		}
	}
	// Other types: trimmed, case kept.
	if b := mustBlind(t, kr, 1, "user_id", " u-1\t"); !bytes.Equal(b, a) {
		t.Error("Blind(user_id) is not trimmed")
	}
	if b := mustBlind(t, kr, 1, "user_id", "U-1"); bytes.Equal(b, a) {
		t.Error("Blind(user_id) folds case")
	}

	// The label and value are separated: ("ab","c") and ("a","bc") differ.
	if bytes.Equal(mustBlind(t, kr, 1, "ab", "c"), mustBlind(t, kr, 1, "a", "bc")) {
		t.Error("label and value run together")
	}

	// Another keyring under another master key, same workspace id: different blinds.
	kr2, _ := newKeyring(t)
	if bytes.Equal(mustBlind(t, kr2, 1, "user_id", "u-1"), a) {
		t.Error("Blind equal under another index key")
	}

	if _, err := kr.Blind(99, "user_id", "u-1"); err == nil {
		t.Error("Blind for an unknown workspace without Load succeeded")
	}
}

func TestBlindConcurrent(t *testing.T) {
	kr, _ := newKeyring(t)
	want := mustBlind(t, kr, 1, "email", "a@b.c")
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for range 500 {
				b, err := kr.Blind(1, "email", "A@B.C")
				if err != nil || !bytes.Equal(b, want) {
					t.Errorf("Blind = %x, %v", b, err)
					return
				}
			}
		})
	}
	wg.Wait()
}

func TestMessageHash(t *testing.T) {
	kr, _ := newKeyring(t)
	h, err := kr.MessageHash(1, "ajs-next-1")
	if err != nil {
		t.Fatal(err)
	}
	if len(h) != 16 {
		t.Fatalf("MessageHash is %d bytes", len(h))
	}
	h2, _ := kr.MessageHash(1, "ajs-next-1")
	if !bytes.Equal(h, h2) {
		t.Fatal("MessageHash is not deterministic")
	}
	h3, _ := kr.MessageHash(1, "ajs-next-2")
	if bytes.Equal(h, h3) {
		t.Fatal("MessageHash equal for different ids")
	}
	// messageIds are not normalized: case matters.
	h4, _ := kr.MessageHash(1, "AJS-NEXT-1")
	if bytes.Equal(h, h4) {
		t.Fatal("MessageHash folds case")
	}
	if b := mustBlind(t, kr, 1, "user_id", "ajs-next-1"); bytes.Equal(b[:16], h) {
		t.Fatal("MessageHash equals a blind of the same value")
	}
	if _, err := kr.MessageHash(42, "x"); err == nil {
		t.Fatal("MessageHash for an unknown workspace succeeded")
	}
}

func TestLoadCallback(t *testing.T) {
	master := keyring.NewKey()
	kr := keyring.New(master, 10)
	index := kr.NewIndexKey()
	var calls []int64
	kr.Load = func(ctx context.Context, id int64) (*trustloop.Workspace, error) {
		calls = append(calls, id)
		if id == 5 {
			return &trustloop.Workspace{ID: 5, IndexKey: index}, nil
		}
		return nil, trustloop.Errorf(trustloop.ENOTFOUND, "Workspace not found.")
	}
	a := mustBlind(t, kr, 5, "user_id", "u")
	b := mustBlind(t, kr, 5, "user_id", "u")
	if !bytes.Equal(a, b) {
		t.Fatal("blinds differ")
	}
	if _, err := kr.MessageHash(5, "m"); err != nil {
		t.Fatal(err)
	}
	if len(calls) != 1 || calls[0] != 5 {
		t.Fatalf("Load calls = %v, want one for workspace 5", calls)
	}
	// The loaded workspace gives the same blinds as one added by hand.
	kr2 := keyring.New(master, 10)
	if err := kr2.AddWorkspace(&trustloop.Workspace{ID: 5, IndexKey: index}); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(mustBlind(t, kr2, 5, "user_id", "u"), a) {
		t.Fatal("loaded workspace blinds differ from added workspace blinds")
	}
	// Known workspaces are not loaded; unknown ones still go to Load.
	if _, err := kr.Blind(6, "user_id", "u"); trustloop.ErrorCode(err) != trustloop.ENOTFOUND {
		t.Fatalf("Blind(unknown) err = %v, want the loader's not_found", err)
	}
	if len(calls) != 2 {
		t.Fatalf("Load calls = %v", calls)
	}
}

func TestLoadCallbackError(t *testing.T) {
	kr := keyring.New(keyring.NewKey(), 10)
	kr.Load = func(ctx context.Context, id int64) (*trustloop.Workspace, error) {
		return nil, trustloop.Errorf(trustloop.ENOTFOUND, "Workspace not found.")
	}
	_, err := kr.Blind(3, "user_id", "u")
	if trustloop.ErrorCode(err) != trustloop.ENOTFOUND {
		t.Fatalf("Blind err = %v, want the loader's not_found", err)
	}
	// A workspace whose index key is not ours fails with the AddWorkspace error.
	other := keyring.New(keyring.NewKey(), 10)
	kr.Load = func(ctx context.Context, id int64) (*trustloop.Workspace, error) {
		return &trustloop.Workspace{ID: id, IndexKey: other.NewIndexKey()}, nil
	}
	if _, err := kr.Blind(3, "user_id", "u"); err == nil || !strings.Contains(err.Error(), "master key") {
		t.Fatalf("Blind err = %v, want the wrong-master-key error", err)
	}
}

// fakeKeys is a SubjectKeyStore over a map.
type fakeKeys struct {
	mu    sync.Mutex
	keys  map[string]trustloop.SubjectKey
	asked [][][]byte
	err   error
}

func (f *fakeKeys) FindSubjectKeys(ctx context.Context, ws int64, blinds [][]byte) (map[string]trustloop.SubjectKey, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.asked = append(f.asked, blinds)
	if f.err != nil {
		return nil, f.err
	}
	out := map[string]trustloop.SubjectKey{}
	for _, b := range blinds {
		if k, ok := f.keys[string(b)]; ok && k.WorkspaceID == ws {
			out[string(b)] = k
		}
	}
	return out, nil
}

func (f *fakeKeys) add(ks ...trustloop.SubjectKey) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.keys == nil {
		f.keys = map[string]trustloop.SubjectKey{}
	}
	for _, k := range ks {
		f.keys[string(k.Blind)] = k
	}
}

func TestResolveNewKeys(t *testing.T) {
	ctx := context.Background()
	kr, _ := newKeyring(t)
	store := &fakeKeys{}
	a := mustBlind(t, kr, 1, "user_id", "a")
	b := mustBlind(t, kr, 1, "user_id", "b")

	r, err := kr.Resolve(ctx, store, 1, [][]byte{a, b, a, a, b})
	if err != nil {
		t.Fatal(err)
	}
	if len(store.asked) != 1 || len(store.asked[0]) != 2 {
		t.Fatalf("store asked %d times for %v, want once for 2 blinds", len(store.asked), store.asked)
	}
	if len(r.Keys) != 2 || len(r.NewKeys) != 2 {
		t.Fatalf("Resolve: %d keys, %d new keys; want 2, 2", len(r.Keys), len(r.NewKeys))
	}
	ids := map[int64]bool{}
	for _, sk := range r.NewKeys {
		k := r.Keys[string(sk.Blind)]
		if sk.ID <= 0 || k.ID != sk.ID || len(k.DEK) != keyring.KeySize || sk.WorkspaceID != 1 || sk.CreatedAt.IsZero() {
			t.Fatalf("new key %+v for key %+v", sk, k)
		}
		if bytes.Contains(sk.Wrapped, k.DEK) {
			t.Fatal("wrapped key contains the DEK")
		}
		ids[sk.ID] = true
	}
	if len(ids) != 2 || bytes.Equal(r.Keys[string(a)].DEK, r.Keys[string(b)].DEK) {
		t.Fatal("two subjects got the same key")
	}

	// New keys are not cached until Remember.
	if _, ok := kr.Cached(1, a); ok {
		t.Fatal("a new key is cached before Remember")
	}
	r2, err := kr.Resolve(ctx, store, 1, [][]byte{a})
	if err != nil {
		t.Fatal(err)
	}
	if len(r2.NewKeys) != 1 || r2.Keys[string(a)].ID == r.Keys[string(a)].ID {
		t.Fatal("a key not remembered was reused")
	}

	kr.Remember(r)
	for _, bl := range [][]byte{a, b} {
		k, ok := kr.Cached(1, bl)
		if !ok || k.ID != r.Keys[string(bl)].ID || !bytes.Equal(k.DEK, r.Keys[string(bl)].DEK) {
			t.Fatalf("Cached after Remember = %+v, %v", k, ok)
		}
	}
	asked := len(store.asked)
	r3, err := kr.Resolve(ctx, store, 1, [][]byte{b, a})
	if err != nil {
		t.Fatal(err)
	}
	if len(store.asked) != asked {
		t.Fatal("a cache hit went to the store")
	}
	if len(r3.NewKeys) != 0 || r3.Keys[string(a)].ID != r.Keys[string(a)].ID || r3.Keys[string(b)].ID != r.Keys[string(b)].ID {
		t.Fatalf("Resolve after Remember = %+v", r3)
	}
	// The cache is per workspace.
	if _, ok := kr.Cached(2, a); ok {
		t.Fatal("cached key found under another workspace")
	}

	kr.Forget(1, [][]byte{a})
	if _, ok := kr.Cached(1, a); ok {
		t.Fatal("Forget left the key cached")
	}
	if _, ok := kr.Cached(1, b); !ok {
		t.Fatal("Forget dropped another key")
	}
}

func TestResolveFromStore(t *testing.T) {
	ctx := context.Background()
	master := keyring.NewKey()
	kr := keyring.New(master, 100)
	ws := &trustloop.Workspace{ID: 1, IndexKey: kr.NewIndexKey()}
	if err := kr.AddWorkspace(ws); err != nil {
		t.Fatal(err)
	}
	store := &fakeKeys{}
	a := mustBlind(t, kr, 1, "user_id", "a")
	b := mustBlind(t, kr, 1, "user_id", "b")
	made, err := kr.Resolve(ctx, store, 1, [][]byte{a})
	if err != nil {
		t.Fatal(err)
	}
	store.add(made.NewKeys...)

	// Another process over the same master key finds it in the store.
	kr2 := keyring.New(master, 100)
	if err := kr2.AddWorkspace(ws); err != nil {
		t.Fatal(err)
	}
	r, err := kr2.Resolve(ctx, store, 1, [][]byte{a, b, a})
	if err != nil {
		t.Fatal(err)
	}
	want := made.Keys[string(a)]
	if got := r.Keys[string(a)]; got.ID != want.ID || !bytes.Equal(got.DEK, want.DEK) {
		t.Fatalf("key from store = %+v, want %+v", got, want)
	}
	if len(r.NewKeys) != 1 || !bytes.Equal(r.NewKeys[0].Blind, b) {
		t.Fatalf("NewKeys = %+v, want only b's", r.NewKeys)
	}
	// Keys found in the store are committed already, so they are cached at once.
	if k, ok := kr2.Cached(1, a); !ok || k.ID != want.ID {
		t.Fatal("a stored key is not cached after Resolve")
	}
	if _, ok := kr2.Cached(1, b); ok {
		t.Fatal("a new key is cached before Remember")
	}

	// A stored key that does not open (tampered, or another master key) is an error.
	bad := made.NewKeys[0]
	bad.Wrapped = append([]byte(nil), bad.Wrapped...)
	bad.Wrapped[len(bad.Wrapped)-1] ^= 1
	store.add(bad)
	kr3 := keyring.New(master, 100)
	if err := kr3.AddWorkspace(ws); err != nil {
		t.Fatal(err)
	}
	if _, err := kr3.Resolve(ctx, store, 1, [][]byte{a}); err == nil {
		t.Fatal("Resolve unwrapped a tampered key")
	}

	// The store's error is returned.
	store.err = errors.New("disk on fire")
	if _, err := kr3.Resolve(ctx, store, 1, [][]byte{b}); err == nil || !strings.Contains(err.Error(), "disk on fire") {
		t.Fatalf("Resolve err = %v, want the store's", err)
	}
	// No blinds: nothing to ask.
	store.asked = nil
	if r, err := kr3.Resolve(ctx, store, 1, nil); err != nil || len(r.Keys) != 0 || len(store.asked) != 0 {
		t.Fatalf("Resolve(nil) = %+v, %v; asked %d", r, err, len(store.asked))
	}
}

func TestOpenSubjectKey(t *testing.T) {
	kr, _ := newKeyring(t)
	a := mustBlind(t, kr, 1, "user_id", "a")
	b := mustBlind(t, kr, 1, "user_id", "b")
	r, err := kr.Resolve(context.Background(), &fakeKeys{}, 1, [][]byte{a})
	if err != nil {
		t.Fatal(err)
	}
	sk := r.NewKeys[0]
	k, err := kr.OpenSubjectKey(sk)
	if err != nil {
		t.Fatal(err)
	}
	if want := r.Keys[string(a)]; k.ID != want.ID || !bytes.Equal(k.DEK, want.DEK) {
		t.Fatalf("OpenSubjectKey = %+v, want %+v", k, want)
	}

	// The wrapped key is bound to its workspace and blind.
	moved := sk
	moved.WorkspaceID = 2
	if _, err := kr.OpenSubjectKey(moved); err == nil {
		t.Fatal("wrapped key opened under another workspace id")
	}
	moved = sk
	moved.Blind = b
	if _, err := kr.OpenSubjectKey(moved); err == nil {
		t.Fatal("wrapped key opened under another blind")
	}
	other := keyring.New(keyring.NewKey(), 10)
	if _, err := other.OpenSubjectKey(sk); err == nil {
		t.Fatal("wrapped key opened under another master key")
	}
	// And it is not interchangeable with a workspace index key.
	if err := kr.AddWorkspace(&trustloop.Workspace{ID: 3, IndexKey: sk.Wrapped}); err == nil {
		t.Fatal("a wrapped subject key was accepted as an index key")
	}
}

func TestSealEvent(t *testing.T) {
	kr, _ := newKeyring(t)
	a := mustBlind(t, kr, 1, "user_id", "a")
	r, err := kr.Resolve(context.Background(), &fakeKeys{}, 1, [][]byte{a})
	if err != nil {
		t.Fatal(err)
	}
	key := r.Keys[string(a)]
	hash, _ := kr.MessageHash(1, "m1")
	aad := keyring.EventAAD(nil, 1, 10, hash)
	sealed := keyring.SealEvent(nil, key, []byte("envelope"), aad)
	if pt, err := keyring.Open(key.DEK, sealed, aad); err != nil || string(pt) != "envelope" {
		t.Fatalf("Open = %q, %v", pt, err)
	}
	// Moved to another row (other source, other message, other workspace): does not open.
	hash2, _ := kr.MessageHash(1, "m2")
	for _, other := range [][]byte{
		keyring.EventAAD(nil, 1, 11, hash),
		keyring.EventAAD(nil, 1, 10, hash2),
		keyring.EventAAD(nil, 2, 10, hash),
	} {
		if _, err := keyring.Open(key.DEK, sealed, other); err == nil {
			t.Fatal("event payload opened under another row's AAD")
		}
	}
}

func TestSigningKeyPerWorkspaceAndStable(t *testing.T) {
	master := keyring.NewKey()
	k1, k2 := keyring.New(master, 16), keyring.New(master, 16)
	wrapped := k1.NewIndexKey()
	other := k1.NewIndexKey()
	for _, k := range []*keyring.Keyring{k1, k2} {
		if err := k.AddWorkspace(&trustloop.Workspace{ID: 1, IndexKey: wrapped}); err != nil {
			t.Fatal(err)
		}
		if err := k.AddWorkspace(&trustloop.Workspace{ID: 2, IndexKey: other}); err != nil {
			t.Fatal(err)
		}
	}
	a, _ := k1.SigningKey(1)
	b, _ := k2.SigningKey(1)
	c, _ := k1.SigningKey(2)
	if !a.Equal(b) {
		t.Fatal("the same workspace gave two signing keys across restarts")
	}
	if a.Equal(c) {
		t.Fatal("two workspaces share a signing key")
	}
	if _, err := k1.SigningKey(3); err == nil {
		t.Fatal("an unknown workspace got a signing key")
	}
}
