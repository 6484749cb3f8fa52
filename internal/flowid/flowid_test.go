package flowid

import (
	"regexp"
	"testing"
)

var canonical = regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-8[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$`)

func TestDerivedIdsAreCanonicalStableAndDistinct(t *testing.T) {
	a := Derive("node-1", "boot-a", 7, 3)
	if !canonical.MatchString(a) {
		t.Fatalf("Derive = %q, not a canonical UUIDv8", a)
	}
	if again := Derive("node-1", "boot-a", 7, 3); again != a {
		t.Errorf("a resend derives %q, the first send %q", again, a)
	}
	seen := map[string]string{a: "first"}
	for name, id := range map[string]string{
		"other index":    Derive("node-1", "boot-a", 7, 4),
		"other sequence": Derive("node-1", "boot-a", 8, 3),
		"other boot":     Derive("node-1", "boot-b", 7, 3),
		"other node":     Derive("node-2", "boot-a", 7, 3),
	} {
		if prev, ok := seen[id]; ok {
			t.Errorf("%s gives the same id as %s: %s", name, prev, id)
		}
		seen[id] = name
	}
}

func TestFromHalvesIsBigEndian(t *testing.T) {
	got := FromHalves(0x0011223344556677, 0x8899aabbccddeeff)
	if want := "00112233-4455-6677-8899-aabbccddeeff"; got != want {
		t.Errorf("FromHalves = %s, want %s", got, want)
	}
}
