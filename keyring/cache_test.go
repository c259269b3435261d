package keyring

import (
	"encoding/binary"
	"testing"

	"pgregory.net/rapid"
)

func blindOf(i int) []byte {
	b := make([]byte, BlindSize)
	binary.BigEndian.PutUint64(b, uint64(i))
	return b
}

func (c *keyCache) len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.c.Len()
}

func TestKeyCacheGetPut(t *testing.T) {
	c := newKeyCache(4)
	if _, ok := c.get(1, blindOf(1)); ok {
		t.Fatal("hit in an empty cache")
	}
	c.put(1, blindOf(1), Key{ID: 11})
	if k, ok := c.get(1, blindOf(1)); !ok || k.ID != 11 {
		t.Fatalf("get = %+v, %v", k, ok)
	}
	if _, ok := c.get(2, blindOf(1)); ok {
		t.Fatal("hit under another workspace")
	}
	if _, ok := c.get(1, blindOf(2)); ok {
		t.Fatal("hit for another blind")
	}
	c.put(1, blindOf(1), Key{ID: 12})
	if k, _ := c.get(1, blindOf(1)); k.ID != 12 {
		t.Fatalf("get after overwrite = %d, want 12", k.ID)
	}
	c.remove(1, blindOf(1))
	if _, ok := c.get(1, blindOf(1)); ok {
		t.Fatal("hit after remove")
	}
	c.remove(1, blindOf(3)) // removing an absent key is fine
}

func TestKeyCacheSizeAtLeastOne(t *testing.T) {
	for _, size := range []int{-5, 0} {
		c := newKeyCache(size)
		c.put(1, blindOf(1), Key{ID: 1})
		if k, ok := c.get(1, blindOf(1)); !ok || k.ID != 1 {
			t.Fatalf("size %d: get after put = %+v, %v", size, k, ok)
		}
	}
}

func TestKeyCacheEviction(t *testing.T) {
	const size = 100
	c := newKeyCache(size)
	for i := range 10 * size {
		c.put(1, blindOf(i), Key{ID: int64(i)})
		if n := c.len(); n > 2*size {
			t.Fatalf("after %d puts the cache holds %d entries, over 2×%d", i+1, n, size)
		}
	}
	// The last size entries are always there; the first ones are gone.
	for i := 9 * size; i < 10*size; i++ {
		if k, ok := c.get(1, blindOf(i)); !ok || k.ID != int64(i) {
			t.Fatalf("recent entry %d missing", i)
		}
	}
	for i := range size {
		if _, ok := c.get(1, blindOf(i)); ok {
			t.Fatalf("old entry %d survived %d later puts", i, 9*size)
		}
	}
}

func TestKeyCacheRecentlyUsedSurvives(t *testing.T) {
	const size = 50
	c := newKeyCache(size)
	hot := blindOf(-1)
	c.put(1, hot, Key{ID: 42})
	for i := range 20 * size {
		c.put(1, blindOf(i), Key{ID: int64(i)})
		// Used at least once per generation, it is never dropped.
		if i%(size/2) == 0 {
			if k, ok := c.get(1, hot); !ok || k.ID != 42 {
				t.Fatalf("hot entry dropped after %d puts", i+1)
			}
		}
		if n := c.len(); n > 2*size {
			t.Fatalf("cache holds %d entries, over 2×%d", n, size)
		}
	}
	// Left alone, it goes.
	for i := range 2*size + 1 {
		c.put(2, blindOf(i), Key{})
	}
	if _, ok := c.get(1, hot); ok {
		t.Fatal("unused entry survived two generations")
	}
}

// TestKeyCacheProperty checks the cache against a reference map: a hit always
// returns the latest value put (never a stale or removed one), and an entry put
// no more than size+1 operations ago (so at most size insertions into the young
// generation since) is always a hit, whatever happened between.
func TestKeyCacheProperty(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		size := rapid.IntRange(1, 8).Draw(t, "size")
		c := newKeyCache(size)
		type entry struct {
			id  int64
			age int // operations since it was put
		}
		ref := map[cacheKey]entry{}
		var nextID int64
		ops := rapid.IntRange(0, 200).Draw(t, "ops")
		for range ops {
			ws := int64(rapid.IntRange(1, 2).Draw(t, "ws"))
			blind := blindOf(rapid.IntRange(0, 3*size).Draw(t, "blind"))
			k := mkKey(ws, blind)
			for key, e := range ref {
				e.age++
				ref[key] = e
			}
			switch op := rapid.IntRange(0, 4).Draw(t, "op"); {
			case op <= 1:
				nextID++
				c.put(ws, blind, Key{ID: nextID})
				ref[k] = entry{id: nextID}
			case op <= 3:
				got, ok := c.get(ws, blind)
				want, inRef := ref[k]
				switch {
				case ok && !inRef:
					t.Fatalf("get(%d,%x) = %d, but it was never put or was removed", ws, blind[:8], got.ID)
				case ok && got.ID != want.id:
					t.Fatalf("get(%d,%x) = %d, want latest %d", ws, blind[:8], got.ID, want.id)
				case !ok && inRef && want.age <= size+1:
					t.Fatalf("get(%d,%x) missed an entry put %d operations ago (size %d)", ws, blind[:8], want.age, size)
				}
			default:
				c.remove(ws, blind)
				delete(ref, k)
			}
			if n := c.len(); n > 2*size {
				t.Fatalf("cache holds %d entries, over 2×%d", n, size)
			}
		}
	})
}
