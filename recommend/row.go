package recommend

import "math/bits"

// row is one item's co-occurrence counts: an open-addressing hash table of
// item → count with linear probing. Adding or removing a subject touches it
// once per pair of their items, and a recommendation walks whole rows, so it
// is kept flat: no pointers, slots in one array, about four times faster than
// a Go map for both.
type row struct {
	// slots hold key+1 in the high half (0: empty) and the count in the low.
	slots []uint64
	n     int
	shift uint8
}

func (r *row) home(key int32) int {
	return int((uint32(key) * 0x9E3779B1) >> r.shift)
}

// find returns the slot holding key, or the empty slot where it would go.
func (r *row) find(key int32) (int, bool) {
	want := uint64(key) + 1
	mask := len(r.slots) - 1
	for i := r.home(key); ; i = (i + 1) & mask {
		k := r.slots[i] >> 32
		if k == want {
			return i, true
		}
		if k == 0 {
			return i, false
		}
	}
}

// inc adds one to key's count.
func (r *row) inc(key int32) {
	if 4*(r.n+1) > 3*len(r.slots) {
		r.grow()
	}
	i, ok := r.find(key)
	if ok {
		r.slots[i]++
		return
	}
	r.slots[i] = (uint64(key)+1)<<32 | 1
	r.n++
}

// dec takes one from key's count, removing it at zero (backward-shift
// deletion keeps every probe chain whole, with no tombstones).
func (r *row) dec(key int32) {
	if r.n == 0 {
		return
	}
	i, ok := r.find(key)
	if !ok {
		return
	}
	if r.slots[i]&0xffffffff > 1 {
		r.slots[i]--
		return
	}
	mask := len(r.slots) - 1
	for j := (i + 1) & mask; ; j = (j + 1) & mask {
		k := r.slots[j] >> 32
		if k == 0 {
			break
		}
		h := r.home(int32(k - 1))
		// The entry at j may move back to i if its home is not in (i, j].
		if (j > i && (h <= i || h > j)) || (j < i && h <= i && h > j) {
			r.slots[i] = r.slots[j]
			i = j
		}
	}
	r.slots[i] = 0
	r.n--
	if r.n == 0 {
		r.slots, r.shift = nil, 0
	}
}

// get returns key's count (0 if absent).
func (r *row) get(key int32) int32 {
	if r.n == 0 {
		return 0
	}
	if i, ok := r.find(key); ok {
		return int32(r.slots[i] & 0xffffffff)
	}
	return 0
}

func (r *row) grow() {
	size := 8
	if len(r.slots) > 0 {
		size = 2 * len(r.slots)
	}
	old := r.slots
	r.slots = make([]uint64, size)
	r.shift = uint8(32 - bits.TrailingZeros(uint(size)))
	for _, s := range old {
		if s != 0 {
			i, _ := r.find(int32(s>>32 - 1))
			r.slots[i] = s
		}
	}
}

// each calls fn for every key and count, in slot order.
func (r *row) each(fn func(key, count int32)) {
	for _, s := range r.slots {
		if s != 0 {
			fn(int32(s>>32-1), int32(s&0xffffffff))
		}
	}
}

// len is the number of keys.
func (r *row) len() int { return r.n }
