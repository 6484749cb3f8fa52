package dns

import (
	"testing"
)

func key(clientPort, id uint16) Key {
	k := Key{ClientPort: clientPort, ServerPort: 53, Proto: 17, Family: 4, ID: id}
	copy(k.Client[:], []byte{10, 0, 0, 1})
	copy(k.Server[:], []byte{10, 0, 0, 53})
	return k
}

const ms = uint64(1_000_000)

func TestMatcherPairsAResponseWithItsQueryOnly(t *testing.T) {
	other := func(f func(*Key)) Key { k := key(4000, 1); f(&k); return k }
	tests := []struct {
		name    string
		resp    Key
		ok      bool
		latency uint64
	}{
		{"same tuple and id: matched with the time between the packets", key(4000, 1), true, 150 * ms},
		{"another id", key(4000, 2), false, 0},
		{"another client port", key(4001, 1), false, 0},
		{"another server address", other(func(k *Key) { k.Server[3] = 54 }), false, 0},
		{"another protocol", other(func(k *Key) { k.Proto = 6 }), false, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := NewMatcher(16, 10_000*ms, nil)
			m.Query(key(4000, 1), 1000*ms)
			lat, ok := m.Response(tt.resp, 1150*ms)
			if ok != tt.ok || lat != tt.latency {
				t.Errorf("got %d, %v; want %d, %v", lat, ok, tt.latency, tt.ok)
			}
		})
	}
}

func TestMatcherCountsEveryResult(t *testing.T) {
	var reported []MatchResult
	m := NewMatcher(2, 100*ms, func(r MatchResult) { reported = append(reported, r) })
	m.Query(key(1, 1), 0)
	m.Query(key(1, 1), 5*ms) // a retransmission keeps the first time
	if lat, ok := m.Response(key(1, 1), 10*ms); !ok || lat != 10*ms {
		t.Errorf("retransmitted query: latency %d, %v; want 10 ms from the first", lat, ok)
	}
	if _, ok := m.Response(key(1, 1), 11*ms); ok {
		t.Error("a second response matched the same query")
	}
	m.Query(key(2, 1), 20*ms)
	m.Query(key(3, 1), 21*ms)
	m.Query(key(4, 1), 22*ms) // full: key 2 goes
	if _, ok := m.Response(key(2, 1), 23*ms); ok {
		t.Error("the evicted query matched")
	}
	// Key 3 and 4 expire 100 ms after they came.
	if _, ok := m.Response(key(3, 1), 125*ms); ok {
		t.Error("an expired query matched")
	}
	if m.Len() != 0 {
		t.Errorf("%d queries left, want 0", m.Len())
	}
	want := map[MatchResult]uint64{Matched: 1, Unmatched: 3, Evicted: 1, Expired: 2}
	got := m.Counts()
	for _, r := range MatchResults {
		if got[r] != want[r] {
			t.Errorf("%s: %d, want %d (all %v)", r, got[r], want[r], got)
		}
	}
	if len(reported) != 7 {
		t.Errorf("reported %v, want the 7 results", reported)
	}
}

func TestMatcherQueueStaysBoundedWhenEveryQueryIsAnswered(t *testing.T) {
	m := NewMatcher(8, 10_000*ms, nil)
	for i := 0; i < 100_000; i++ {
		k := key(uint16(i), uint16(i>>16))
		m.Query(k, uint64(i))
		if _, ok := m.Response(k, uint64(i)+1); !ok {
			t.Fatal("not matched")
		}
	}
	if n := len(m.order); n > 2*8+64 {
		t.Errorf("queue of %d entries for a table of 8", n)
	}
}
