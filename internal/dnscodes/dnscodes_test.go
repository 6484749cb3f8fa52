package dnscodes

import "testing"

func TestResponseCodesReadBackFromEverySpelling(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want uint32
	}{
		{"NXDOMAIN", NXDomain},
		{"nxdomain", NXDomain},
		{"Non-Existent Domain", NXDomain},
		{"SERVFAIL", ServFail},
		{"Server Failure", ServFail},
		{"NOERROR", NoError},
		{"3", NXDomain},
		{"RCODE23", 23},
	} {
		got, err := ParseRcode(tc.in)
		if err != nil || got != tc.want {
			t.Errorf("ParseRcode(%q) = %d, %v; want %d", tc.in, got, err, tc.want)
		}
	}
	for _, bad := range []string{"", "NXDOMAINS", "-1", "4096", "RCODE"} {
		if _, err := ParseRcode(bad); err == nil {
			t.Errorf("ParseRcode(%q) accepted", bad)
		}
	}
}

func TestNamesMatchTheRFCAndHubble(t *testing.T) {
	// Checked by hand against RFC 1035 4.1.1 and Hubble's rcode label values.
	for code, want := range map[uint32][2]string{
		0: {"NOERROR", "No Error"}, 2: {"SERVFAIL", "Server Failure"},
		3: {"NXDOMAIN", "Non-Existent Domain"}, 5: {"REFUSED", "Query Refused"},
		23: {"RCODE23", "23"},
	} {
		if RcodeName(code) != want[0] || HubbleRcode(code) != want[1] {
			t.Errorf("code %d: %q, %q; want %q, %q", code, RcodeName(code), HubbleRcode(code), want[0], want[1])
		}
		if back, err := ParseRcode(RcodeName(code)); err != nil || back != code {
			t.Errorf("code %d does not read back from %q", code, RcodeName(code))
		}
	}
	for typ, want := range map[uint16]string{1: "A", 28: "AAAA", 5: "CNAME", 33: "SRV", 65: "HTTPS", 999: "TYPE999"} {
		if got := TypeName(typ); got != want {
			t.Errorf("TypeName(%d) = %q, want %q", typ, got, want)
		}
	}
}
