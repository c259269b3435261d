package keyring

import "sync"

// keyCache keeps recently used subject keys in memory. It is a two-generation
// cache: when the young map is full it becomes the old one and the previous old is
// dropped; a hit in the old map moves the entry back. That bounds memory at twice
// the size with O(1) operations and no per-entry bookkeeping.
type keyCache struct {
	mu         sync.Mutex
	size       int
	young, old map[cacheKey]Key
}

type cacheKey struct {
	ws    int64
	blind [BlindSize]byte
}

func newKeyCache(size int) *keyCache {
	if size < 1 {
		size = 1
	}
	return &keyCache{size: size, young: map[cacheKey]Key{}, old: map[cacheKey]Key{}}
}

func mkKey(ws int64, blind []byte) cacheKey {
	k := cacheKey{ws: ws}
	copy(k.blind[:], blind)
	return k
}

func (c *keyCache) get(ws int64, blind []byte) (Key, bool) {
	k := mkKey(ws, blind)
	c.mu.Lock()
	defer c.mu.Unlock()
	if v, ok := c.young[k]; ok {
		return v, true
	}
	if v, ok := c.old[k]; ok {
		delete(c.old, k)
		c.putLocked(k, v)
		return v, true
	}
	return Key{}, false
}

func (c *keyCache) put(ws int64, blind []byte, v Key) {
	c.mu.Lock()
	c.putLocked(mkKey(ws, blind), v)
	c.mu.Unlock()
}

func (c *keyCache) putLocked(k cacheKey, v Key) {
	if len(c.young) >= c.size {
		c.old, c.young = c.young, make(map[cacheKey]Key, c.size)
	}
	c.young[k] = v
}

func (c *keyCache) remove(ws int64, blind []byte) {
	k := mkKey(ws, blind)
	c.mu.Lock()
	delete(c.young, k)
	delete(c.old, k)
	c.mu.Unlock()
}
