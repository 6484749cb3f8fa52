package enrich

import (
	"net/netip"
	"testing"
)

func TestTheFastIPv4ParserAgreesWithNetip(t *testing.T) {
	for _, s := range []string{"10.244.1.10", "0.0.0.0", "255.255.255.255", "1.2.3", "1.2.3.4.5", "256.1.1.1",
		"01.2.3.4", "1..2.3", ".1.2.3", "1.2.3.", "::1", "::ffff:10.0.0.1", "fe80::1%eth0", "", "a.b.c.d", "1.2.3.1000"} {
		got, ok := parseIPv4(s)
		a, err := netip.ParseAddr(s)
		want := err == nil && a.Is4()
		if ok != want {
			t.Errorf("%q: fast parser ok=%v, netip says IPv4=%v", s, ok, want)
			continue
		}
		if ok && netip.AddrFrom4(be4(got)) != a {
			t.Errorf("%q: parsed %v", s, netip.AddrFrom4(be4(got)))
		}
	}
}
