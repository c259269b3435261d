package keyring

import (
	"sync"

	"github.com/trustloop/trustloop/cache"
)

// keyCache keeps recently used subject keys in memory (see cache.TwoGen for the
// bound), for the request goroutines and the writer at once.
type keyCache struct {
	mu sync.Mutex
	c  *cache.TwoGen[cacheKey, Key]
}

type cacheKey struct {
	ws    int64
	blind [BlindSize]byte
}

func newKeyCache(size int) *keyCache {
	return &keyCache{c: cache.NewTwoGen[cacheKey, Key](size)}
}

func mkKey(ws int64, blind []byte) cacheKey {
	k := cacheKey{ws: ws}
	copy(k.blind[:], blind)
	return k
}

func (c *keyCache) get(ws int64, blind []byte) (Key, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.c.Get(mkKey(ws, blind))
}

func (c *keyCache) put(ws int64, blind []byte, v Key) {
	c.mu.Lock()
	c.c.Put(mkKey(ws, blind), v)
	c.mu.Unlock()
}

func (c *keyCache) remove(ws int64, blind []byte) {
	c.mu.Lock()
	c.c.Remove(mkKey(ws, blind))
	c.mu.Unlock()
}
