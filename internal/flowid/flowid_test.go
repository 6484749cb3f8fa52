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

func TestDerivedIdsOverManyBatchesAreUniqueAndShareTheirBootPrefix(t *testing.T) {
	seen := map[string]string{}
	for _, node := range []string{"node-a", "node-b"} {
		for _, boot := range []string{"boot1", "boot2"} {
			for seq := uint64(1); seq <= 50; seq++ {
				for idx := range 50 {
					id := Derive(node, boot, seq, idx)
					if !canonical.MatchString(id) {
						t.Fatalf("Derive(%s, %s, %d, %d) = %q, not a version-8 UUID", node, boot, seq, idx, id)
					}
					if id != Derive(node, boot, seq, idx) {
						t.Fatal("Derive is not deterministic")
					}
					where := node + "/" + boot
					if prev, dup := seen[id]; dup {
						t.Fatalf("Derive collision between %s and %s/%d/%d", prev, where, seq, idx)
					}
					seen[id] = where
				}
			}
		}
	}
	if a, b := Derive("n", "b", 1, 0), Derive("n", "b", 1, 1); a[:18] != b[:18] {
		t.Errorf("ids of one boot should share their prefix (they compress): %s vs %s", a, b)
	}
}

func TestPolicyVerdictIdsAreStableNameBasedAndPerDirection(t *testing.T) {
	parent := Derive("node-1", "boot-a", 7, 3)
	in, out := PolicyVerdict(parent, "INGRESS"), PolicyVerdict(parent, "EGRESS")
	v5 := regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-5[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$`)
	for _, id := range []string{in, out} {
		if !v5.MatchString(id) {
			t.Errorf("PolicyVerdict = %q, not a canonical UUIDv5", id)
		}
	}
	if in == out || in == parent {
		t.Errorf("verdict ids collide: ingress %s, egress %s, flow %s", in, out, parent)
	}
	if again := PolicyVerdict(parent, "INGRESS"); again != in {
		t.Errorf("a resent flow derives verdict id %s, the first %s", again, in)
	}
}
