package cache

import (
	"testing"

	"pgregory.net/rapid"
)

func TestTwoGenBasics(t *testing.T) {
	c := NewTwoGen[int, string](2)
	c.Put(1, "a")
	c.Put(2, "b")
	c.Put(3, "c") // rotates: {1,2} old, {3} young
	for k, want := range map[int]string{1: "a", 2: "b", 3: "c"} {
		if v, ok := c.Get(k); !ok || v != want {
			t.Fatalf("Get(%d) = %q, %v; want %q", k, v, ok, want)
		}
	}
	c.Remove(2)
	if _, ok := c.Get(2); ok {
		t.Fatal("removed entry still there")
	}
	c.Clear()
	if c.Len() != 0 {
		t.Fatalf("Len after Clear = %d", c.Len())
	}
}

// Whatever the operations, a cached value is the last one put for its key (never
// an older one), and the cache never holds more than twice its size.
func TestTwoGenNeverStale(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		size := rapid.IntRange(1, 8).Draw(t, "size")
		c := NewTwoGen[int, int](size)
		truth := map[int]int{}
		for i, n := 0, rapid.IntRange(1, 200).Draw(t, "ops"); i < n; i++ {
			k := rapid.IntRange(0, 20).Draw(t, "key")
			switch rapid.IntRange(0, 3).Draw(t, "op") {
			case 0, 1:
				c.Put(k, i)
				truth[k] = i
			case 2:
				c.Remove(k)
				delete(truth, k)
			case 3:
				if v, ok := c.Get(k); ok && v != truth[k] {
					t.Fatalf("Get(%d) = %d; the last put was %d", k, v, truth[k])
				} else if ok {
					if _, live := truth[k]; !live {
						t.Fatalf("Get(%d) found a removed key", k)
					}
				}
			}
			if c.Len() > 2*size {
				t.Fatalf("Len = %d > 2*%d", c.Len(), size)
			}
		}
	})
}
