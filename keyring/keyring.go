package keyring

import (
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/ed25519"
	"crypto/hkdf"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"hash"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/trustloop/trustloop"
)

// KeySize is the size of every symmetric key here (AES-256, HMAC-SHA256).
const KeySize = 32

// BlindSize is the length of an identifier's blind index.
const BlindSize = 32

// MessageHashSize is the length of a messageId's keyed hash: 128 bits keep
// accidental collisions out of reach for any realistic log while halving the index.
const MessageHashSize = 16

// LoadMasterKey returns the master key: from envKey (base64 of 32 bytes) when set,
// else from file; when file does not exist it is generated (mode 0600) and generated
// is true, so the caller can warn that it belongs outside the data directory.
func LoadMasterKey(envKey, file string) (key []byte, generated bool, err error) {
	if key, err = ReadMasterKey(envKey, file); err != nil || key != nil {
		return key, false, err
	}
	return generateMasterKey(file)
}

// ReadMasterKey is LoadMasterKey without the generating: the key from envKey
// (base64) or file, nil when neither gives one (file does not exist), an
// error when the one given is not a key. It writes nothing, so a start can
// check its key before it creates anything.
func ReadMasterKey(envKey, file string) (key []byte, err error) {
	if envKey != "" {
		key, err = decodeKey(envKey)
		if err != nil {
			return nil, fmt.Errorf("TRUSTLOOP_MASTER_KEY: %w (a master key is %d random bytes in base64: `openssl rand -base64 %d`)", err, KeySize, KeySize)
		}
		return key, nil
	}
	b, err := os.ReadFile(file)
	if err == nil {
		key, err = decodeKey(strings.TrimSpace(string(b)))
		if err != nil {
			return nil, fmt.Errorf("master key file %s: %w (a master key is %d random bytes in base64: `openssl rand -base64 %d`)", file, err, KeySize, KeySize)
		}
		return key, nil
	} else if !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("master key file: %w", err)
	}
	return nil, nil
}

// generateMasterKey writes a new random key to file, which must not exist.
func generateMasterKey(file string) (key []byte, generated bool, err error) {
	key = make([]byte, KeySize)
	rand.Read(key)
	if err := os.MkdirAll(filepath.Dir(file), 0o700); err != nil {
		return nil, false, fmt.Errorf("master key file: %w", err)
	}
	// O_EXCL: two processes starting at once must not each write a different key.
	f, err := os.OpenFile(file, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return nil, false, fmt.Errorf("master key file: %w", err)
	}
	if _, err := f.WriteString(base64.StdEncoding.EncodeToString(key) + "\n"); err != nil {
		f.Close()
		return nil, false, fmt.Errorf("master key file: %w", err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return nil, false, fmt.Errorf("master key file: %w", err)
	}
	return key, true, f.Close()
}

func decodeKey(s string) ([]byte, error) {
	k, err := base64.StdEncoding.DecodeString(s)
	if err != nil {
		return nil, errors.New("not base64")
	}
	if len(k) != KeySize {
		return nil, fmt.Errorf("must be %d bytes, got %d", KeySize, len(k))
	}
	return k, nil
}

// NewKey returns a fresh random key.
func NewKey() []byte {
	k := make([]byte, KeySize)
	rand.Read(k) // never fails (crypto/rand panics instead of returning short reads)
	return k
}

// newAEAD returns AES-256-GCM under key.
func newAEAD(key []byte) cipher.AEAD {
	b, err := aes.NewCipher(key)
	if err != nil {
		panic("keyring: " + err.Error()) // only for a key of the wrong size: a bug
	}
	a, err := cipher.NewGCM(b)
	if err != nil {
		panic("keyring: " + err.Error())
	}
	return a
}

// Seal encrypts plaintext under key, binding aad, and appends nonce||ciphertext to
// dst. A random 96-bit nonce per message is safe far beyond the number of events a
// subject key seals.
func Seal(dst, key, plaintext, aad []byte) []byte {
	return sealWith(newAEAD(key), dst, plaintext, aad)
}

func sealWith(a cipher.AEAD, dst, plaintext, aad []byte) []byte {
	n := len(dst)
	dst = append(dst, make([]byte, a.NonceSize())...)
	rand.Read(dst[n:])
	return a.Seal(dst, dst[n:], plaintext, aad)
}

// Open decrypts what Seal produced.
func Open(key, sealed, aad []byte) ([]byte, error) {
	a := newAEAD(key)
	if len(sealed) < a.NonceSize() {
		return nil, errors.New("keyring: sealed data too short")
	}
	out, err := a.Open(nil, sealed[:a.NonceSize()], sealed[a.NonceSize():], aad)
	if err != nil {
		return nil, errors.New("keyring: cannot open sealed data (wrong key or tampered)")
	}
	return out, nil
}

// Keyring holds the master key, the workspaces' unwrapped index keys and a cache
// of subject keys. It is safe for concurrent use.
type Keyring struct {
	kek []byte
	// Now stamps the keys it creates.
	Now func() time.Time
	// Load fetches a workspace the keyring has not seen yet (new workspaces are
	// made while the process runs); nil means only AddWorkspace adds them.
	Load func(ctx context.Context, id int64) (*trustloop.Workspace, error)

	mu         sync.Mutex
	workspaces map[int64]*workspaceKeys
	cache      *keyCache
}

type workspaceKeys struct {
	hmacs sync.Pool // of hash.Hash keyed with the workspace index key
	// signing is the workspace's Ed25519 key (consent receipts, audit
	// checkpoints), derived from the index key so that it needs no storage of
	// its own and survives a master key rotation that re-wraps the index key.
	signing ed25519.PrivateKey
	// data seals workspace-level personal data that belongs to no subject key
	// yet (a rectification request's corrected values), derived like signing.
	data []byte
}

// New returns a keyring over the master key, caching up to cacheSize subject keys.
func New(masterKey []byte, cacheSize int) *Keyring {
	if len(masterKey) != KeySize {
		panic("keyring: master key must be 32 bytes")
	}
	return &Keyring{kek: masterKey, Now: time.Now, workspaces: map[int64]*workspaceKeys{},
		cache: newKeyCache(cacheSize)}
}

var indexKeyAAD = []byte("trustloop/workspace-index-key/v1")

// NewIndexKey makes a workspace index key and returns it wrapped, to be stored
// with the workspace.
func (k *Keyring) NewIndexKey() []byte {
	return Seal(nil, k.kek, NewKey(), indexKeyAAD)
}

// AddWorkspace unwraps a workspace's index key so identifiers of that workspace can
// be indexed. Calling it again for the same workspace is a no-op.
func (k *Keyring) AddWorkspace(ws *trustloop.Workspace) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	if _, ok := k.workspaces[ws.ID]; ok {
		return nil
	}
	key, err := Open(k.kek, ws.IndexKey, indexKeyAAD)
	if err != nil {
		return fmt.Errorf("workspace %d index key: %w (is this the master key the store was created with?)", ws.ID, err)
	}
	seed, err := hkdf.Key(sha256.New, key, nil, "trustloop/workspace-signing-key/v1", ed25519.SeedSize)
	if err != nil {
		return fmt.Errorf("workspace %d signing key: %w", ws.ID, err)
	}
	data, err := hkdf.Key(sha256.New, key, nil, "trustloop/workspace-data-key/v1", KeySize)
	if err != nil {
		return fmt.Errorf("workspace %d data key: %w", ws.ID, err)
	}
	w := &workspaceKeys{signing: ed25519.NewKeyFromSeed(seed), data: data}
	w.hmacs.New = func() any { return hmac.New(sha256.New, key) }
	k.workspaces[ws.ID] = w
	return nil
}

func (k *Keyring) workspace(id int64) (*workspaceKeys, error) {
	k.mu.Lock()
	w := k.workspaces[id]
	k.mu.Unlock()
	if w != nil {
		return w, nil
	}
	if k.Load == nil {
		return nil, fmt.Errorf("keyring: workspace %d not loaded", id)
	}
	ws, err := k.Load(context.Background(), id)
	if err != nil {
		return nil, fmt.Errorf("keyring: load workspace %d: %w", id, err)
	} else if ws == nil || ws.ID != id {
		return nil, fmt.Errorf("keyring: load workspace %d: loader returned another workspace", id)
	}
	if err := k.AddWorkspace(ws); err != nil {
		return nil, err
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.workspaces[id], nil
}

// SigningKey returns the workspace's Ed25519 signing key: it signs consent
// receipts and audit checkpoints, so anyone holding its public half can verify
// them offline. It is derived (HKDF-SHA256) from the workspace index key.
func (k *Keyring) SigningKey(workspaceID int64) (ed25519.PrivateKey, error) {
	w, err := k.workspace(workspaceID)
	if err != nil {
		return nil, err
	}
	return w.signing, nil
}

// SealWorkspace seals plaintext under the workspace's data key, binding aad.
func (k *Keyring) SealWorkspace(workspaceID int64, plaintext, aad []byte) ([]byte, error) {
	w, err := k.workspace(workspaceID)
	if err != nil {
		return nil, err
	}
	return Seal(nil, w.data, plaintext, aad), nil
}

// OpenWorkspace opens what SealWorkspace sealed.
func (k *Keyring) OpenWorkspace(workspaceID int64, sealed, aad []byte) ([]byte, error) {
	w, err := k.workspace(workspaceID)
	if err != nil {
		return nil, err
	}
	return Open(w.data, sealed, aad)
}

// keyed computes HMAC(index key, label 0x00 value) into dst.
func (k *Keyring) keyed(dst []byte, workspaceID int64, label, value string) ([]byte, error) {
	w, err := k.workspace(workspaceID)
	if err != nil {
		return nil, err
	}
	h := w.hmacs.Get().(hash.Hash)
	h.Reset()
	h.Write([]byte(label))
	h.Write([]byte{0})
	h.Write([]byte(value))
	dst = h.Sum(dst)
	w.hmacs.Put(h)
	return dst, nil
}

// Blind returns the blind index of an identifier: HMAC-SHA256 under the workspace
// index key of its type and normalized value. Equal identifiers give equal indexes;
// nothing of the value can be recovered from it without the key.
func (k *Keyring) Blind(workspaceID int64, idType, value string) ([]byte, error) {
	return k.keyed(make([]byte, 0, BlindSize), workspaceID, idType, trustloop.NormalizeIdentifier(idType, value))
}

// Suppression returns the keyed hash an erasure's suppression entry keeps of an
// identifier: under the index key like a blind index, but with its own label,
// so no suppression entry equals the erased subject's blind index (a scan of
// the store for those finds nothing) while a returning identifier is still
// recognised.
func (k *Keyring) Suppression(workspaceID int64, idType, value string) ([]byte, error) {
	return k.keyed(make([]byte, 0, BlindSize), workspaceID, "suppressed/"+idType, trustloop.NormalizeIdentifier(idType, value))
}

// MessageHash returns the keyed hash a messageId is deduplicated by, so the log
// never holds client-chosen ids in the clear.
func (k *Keyring) MessageHash(workspaceID int64, messageID string) ([]byte, error) {
	b, err := k.keyed(make([]byte, 0, sha256.Size), workspaceID, "message_id", messageID)
	if err != nil {
		return nil, err
	}
	return b[:MessageHashSize], nil
}

// SubjectKeyStore is what Resolve needs of the store.
type SubjectKeyStore interface {
	FindSubjectKeys(ctx context.Context, workspaceID int64, blinds [][]byte) (map[string]trustloop.SubjectKey, error)
}

// Key is an unwrapped subject key.
type Key struct {
	ID  int64
	DEK []byte
}

func subjectAAD(workspaceID int64, blind []byte) []byte {
	aad := make([]byte, 0, 16+8+len(blind))
	aad = append(aad, "trustloop/dek/v1"...)
	aad = binary.BigEndian.AppendUint64(aad, uint64(workspaceID))
	return append(aad, blind...)
}

// Resolved is the outcome of Resolve: a key for every blind index asked for, and
// the keys that were made because none existed (to be stored with the events they
// seal, and passed to Remember after the commit).
type Resolved struct {
	Keys    map[string]Key
	NewKeys []trustloop.SubjectKey
}

// Resolve returns the subject keys of the blind indexes: from the cache, else from
// the store, else newly made. New keys are not cached until Remember is called after
// they are committed, so a failed commit leaves no key in memory that the store does
// not have.
func (k *Keyring) Resolve(ctx context.Context, store SubjectKeyStore, workspaceID int64, blinds [][]byte) (*Resolved, error) {
	r := &Resolved{Keys: make(map[string]Key, len(blinds))}
	var missing [][]byte
	for _, b := range blinds {
		if _, ok := r.Keys[string(b)]; ok {
			continue
		}
		if key, ok := k.cache.get(workspaceID, b); ok {
			r.Keys[string(b)] = key
			continue
		}
		r.Keys[string(b)] = Key{} // placeholder: marks it seen
		missing = append(missing, b)
	}
	if len(missing) == 0 {
		return r, nil
	}
	found, err := store.FindSubjectKeys(ctx, workspaceID, missing)
	if err != nil {
		return nil, err
	}
	now := k.Now().UTC()
	for _, b := range missing {
		if sk, ok := found[string(b)]; ok {
			dek, err := Open(k.kek, sk.Wrapped, subjectAAD(workspaceID, b))
			if err != nil {
				return nil, fmt.Errorf("subject key %d: %w", sk.ID, err)
			}
			key := Key{ID: sk.ID, DEK: dek}
			r.Keys[string(b)] = key
			k.cache.put(workspaceID, b, key)
			continue
		}
		dek := NewKey()
		key := Key{ID: randomID(), DEK: dek}
		r.Keys[string(b)] = key
		r.NewKeys = append(r.NewKeys, trustloop.SubjectKey{
			ID: key.ID, WorkspaceID: workspaceID, Blind: b, CreatedAt: now,
			Wrapped: Seal(nil, k.kek, dek, subjectAAD(workspaceID, b)),
		})
	}
	return r, nil
}

// Cached returns the subject key of a blind index if it is in memory, so callers
// can seal without a trip to the writer.
func (k *Keyring) Cached(workspaceID int64, blind []byte) (Key, bool) {
	return k.cache.get(workspaceID, blind)
}

// Remember caches keys made by Resolve once their commit succeeded.
func (k *Keyring) Remember(r *Resolved) {
	for _, sk := range r.NewKeys {
		k.cache.put(sk.WorkspaceID, sk.Blind, r.Keys[string(sk.Blind)])
	}
}

// Forget drops cached keys, as after their subject was erased.
func (k *Keyring) Forget(workspaceID int64, blinds [][]byte) {
	for _, b := range blinds {
		k.cache.remove(workspaceID, b)
	}
}

// Rewrap makes a fresh data key for a stored subject key (same id and blind
// index) and returns it with its wrapped form: a rectification re-seals the
// subject's data under it and replaces the stored one, so whatever was sealed
// under the old key (a payload left in a segment file, a WAL frame, a backup)
// can no longer be opened.
func (k *Keyring) Rewrap(sk trustloop.SubjectKey) (Key, []byte) {
	dek := NewKey()
	return Key{ID: sk.ID, DEK: dek}, Seal(nil, k.kek, dek, subjectAAD(sk.WorkspaceID, sk.Blind))
}

// OpenSubjectKey unwraps a stored subject key.
func (k *Keyring) OpenSubjectKey(sk trustloop.SubjectKey) (Key, error) {
	dek, err := Open(k.kek, sk.Wrapped, subjectAAD(sk.WorkspaceID, sk.Blind))
	if err != nil {
		return Key{}, err
	}
	return Key{ID: sk.ID, DEK: dek}, nil
}

// randomID makes a subject key id: random rather than sequential so writers on
// several nodes can make keys without coordinating, positive to fit a signed
// 64-bit column.
func randomID() int64 {
	var b [8]byte
	for {
		rand.Read(b[:])
		if id := int64(binary.BigEndian.Uint64(b[:]) >> 1); id != 0 {
			return id
		}
	}
}

// EventAAD is the additional data an event payload is sealed with: it binds the
// ciphertext to its workspace and row identity, so a payload moved to another row
// does not open.
func EventAAD(dst []byte, workspaceID, sourceID int64, messageHash []byte) []byte {
	dst = append(dst, "trustloop/event/v1"...)
	dst = binary.BigEndian.AppendUint64(dst, uint64(workspaceID))
	dst = binary.BigEndian.AppendUint64(dst, uint64(sourceID))
	return append(dst, messageHash...)
}

// SealEvent seals an event envelope under a subject key.
func SealEvent(dst []byte, key Key, plaintext, aad []byte) []byte {
	return Seal(dst, key.DEK, plaintext, aad)
}

// WarnGenerated logs where a freshly generated master key was written.
func WarnGenerated(log *slog.Logger, file string) {
	log.Warn("generated a new master key; move it out of the data directory (set TRUSTLOOP_MASTER_KEY or --master-key-file) before production use: whoever holds it and the data directory can read all personal data",
		"file", file)
}

// MAC returns HMAC-SHA256 under the workspace index key of label and msg. The
// web faces sign their links and session cookies with it: every node holding
// the master key verifies them, and a label per use keeps a portal link from
// passing for a console session.
func (k *Keyring) MAC(workspaceID int64, label string, msg []byte) ([]byte, error) {
	return k.keyed(make([]byte, 0, sha256.Size), workspaceID, "web/"+label, string(msg))
}
