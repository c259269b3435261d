package cache

// TwoGen keeps up to about twice size recently used entries in two generations:
// when the young map is full it becomes the old one and the previous old one is
// dropped, and a hit in the old map moves the entry back to the young. That bounds
// memory with O(1) operations and no per-entry bookkeeping (an LRU's list costs
// two pointers and a write per hit).
//
// It is not safe for concurrent use: callers hold their own lock.
type TwoGen[K comparable, V any] struct {
	size       int
	young, old map[K]V
}

// NewTwoGen returns a cache of generations of size entries (at least 1).
func NewTwoGen[K comparable, V any](size int) *TwoGen[K, V] {
	c := &TwoGen[K, V]{size: max(size, 1)}
	c.Clear()
	return c
}

// Get returns the value of k, if cached.
func (c *TwoGen[K, V]) Get(k K) (V, bool) {
	if v, ok := c.young[k]; ok {
		return v, true
	}
	v, ok := c.old[k]
	if ok {
		delete(c.old, k)
		c.Put(k, v)
	}
	return v, ok
}

// Put sets the value of k.
func (c *TwoGen[K, V]) Put(k K, v V) {
	if _, ok := c.young[k]; !ok && len(c.young) >= c.size {
		c.old, c.young = c.young, make(map[K]V, c.size/4)
	}
	delete(c.old, k) // a stale older value must not come back after a rotation
	c.young[k] = v
}

// Remove drops k.
func (c *TwoGen[K, V]) Remove(k K) {
	delete(c.young, k)
	delete(c.old, k)
}

// Clear drops everything.
func (c *TwoGen[K, V]) Clear() {
	c.young, c.old = map[K]V{}, map[K]V{}
}

// Len returns how many entries are held (both generations).
func (c *TwoGen[K, V]) Len() int { return len(c.young) + len(c.old) }
