package policy

import "math/bits"

// bitset is a set of pod indices; one bit per pod keeps a policy's selected
// pods at n/8 bytes however many pods match.
type bitset []uint64

func newBitset(n int) bitset { return make(bitset, (n+63)/64) }

func (b bitset) set(i int32)      { b[i>>6] |= 1 << (uint(i) & 63) }
func (b bitset) has(i int32) bool { return int(i>>6) < len(b) && b[i>>6]&(1<<(uint(i)&63)) != 0 }

func (b bitset) each(f func(int32)) {
	for w, word := range b {
		for word != 0 {
			t := bits.TrailingZeros64(word)
			f(int32(w*64 + t))
			word &= word - 1
		}
	}
}
