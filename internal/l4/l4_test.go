package l4_test

import (
	"bufio"
	"os"
	"regexp"
	"strconv"
	"testing"

	"github.com/trawl-dev/trawl/internal/l4"
	flowv1 "github.com/trawl-dev/trawl/proto/trawl/flow/v1"
)

// header returns the values of `#define <prefix>NAME<suffix> value` lines of
// the datapath's shared header, by NAME.
func header(t *testing.T, prefix, suffix string) map[string]uint64 {
	t.Helper()
	f, err := os.Open("../../agent/bpf/common.h")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	re := regexp.MustCompile(`^#define\s+` + prefix + `([A-Z0-9]+)` + suffix + `\s+(0x[0-9a-fA-F]+|[0-9]+)\s*$`)
	out := map[string]uint64{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		m := re.FindStringSubmatch(sc.Text())
		if m == nil {
			continue
		}
		v, err := strconv.ParseUint(m[2], 0, 64)
		if err != nil {
			t.Fatalf("%s: %v", sc.Text(), err)
		}
		out[m[1]] = v
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	if len(out) == 0 {
		t.Fatalf("no #define %sNAME%s in common.h", prefix, suffix)
	}
	return out
}

func TestTCPFlagsAgreeWithTheDatapathHeader(t *testing.T) {
	goFlags := map[string]uint16{
		"FIN": l4.FIN, "SYN": l4.SYN, "RST": l4.RST, "PSH": l4.PSH, "ACK": l4.ACK,
		"URG": l4.URG, "ECE": l4.ECE, "CWR": l4.CWR, "NS": l4.NS,
	}
	c := header(t, "TCP_FLAG_", "")
	for name, v := range c {
		if g, ok := goFlags[name]; !ok {
			t.Errorf("common.h has TCP_FLAG_%s = %#x, the Go table does not", name, v)
		} else if uint64(g) != v {
			t.Errorf("TCP_FLAG_%s: common.h %#x, Go %#x", name, v, g)
		}
	}
	for name := range goFlags {
		if _, ok := c[name]; !ok {
			t.Errorf("Go has TCP flag %s, common.h does not", name)
		}
	}
}

func TestProtocolNumbersAgreeWithTheDatapathHeader(t *testing.T) {
	c := header(t, "IPPROTO_", "_")
	for name, g := range map[string]uint8{"ICMP": l4.ICMPv4, "TCP": l4.TCP, "UDP": l4.UDP, "ICMPV6": l4.ICMPv6, "SCTP": l4.SCTP} {
		if v, ok := c[name]; !ok {
			t.Errorf("common.h has no IPPROTO_%s_", name)
		} else if uint64(g) != v {
			t.Errorf("IPPROTO_%s_: common.h %d, Go %d", name, v, g)
		}
	}
}

func TestFlagsRoundTripEveryBit(t *testing.T) {
	for m := range uint16(1 << 9) {
		if got := l4.FlagBits(l4.Flags(m)); got != m {
			t.Errorf("FlagBits(Flags(%#x)) = %#x", m, got)
		}
	}
	if l4.FlagBits(nil) != 0 {
		t.Error("FlagBits(nil) is not 0")
	}
}

func TestProtocolOfEachLayer4(t *testing.T) {
	for _, tc := range []struct {
		l4   *flowv1.Layer4
		want uint8
	}{
		{nil, 0},
		{&flowv1.Layer4{Protocol: &flowv1.Layer4_TCP{TCP: &flowv1.TCP{}}}, l4.TCP},
		{&flowv1.Layer4{Protocol: &flowv1.Layer4_UDP{UDP: &flowv1.UDP{}}}, l4.UDP},
		{&flowv1.Layer4{Protocol: &flowv1.Layer4_SCTP{SCTP: &flowv1.SCTP{}}}, l4.SCTP},
		{&flowv1.Layer4{Protocol: &flowv1.Layer4_ICMPv4{ICMPv4: &flowv1.ICMPv4{}}}, l4.ICMPv4},
		{&flowv1.Layer4{Protocol: &flowv1.Layer4_ICMPv6{ICMPv6: &flowv1.ICMPv6{}}}, l4.ICMPv6},
	} {
		if got := l4.Protocol(&flowv1.Flow{L4: tc.l4}); got != tc.want {
			t.Errorf("Protocol(%v) = %d, want %d", tc.l4, got, tc.want)
		}
	}
}
