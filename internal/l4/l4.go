// Package l4 is Go's one table of IP protocol numbers and TCP flag bits, and
// the one conversion between the bits and the flow record's TCPFlags
// message. The agent's decoder, the filter language and the store use it;
// the kernel's side is agent/bpf/common.h, and a test checks the two agree.
package l4

import flowv1 "github.com/trawl-dev/trawl/proto/trawl/flow/v1"

// IP protocol numbers (the IPPROTO_*_ values of agent/bpf/common.h).
const (
	ICMPv4 uint8 = 1
	TCP    uint8 = 6
	UDP    uint8 = 17
	ICMPv6 uint8 = 58
	SCTP   uint8 = 132
)

// TCP flag bits, in the order of the TCP header (TCP_FLAG_* in
// agent/bpf/common.h): the datapath's OR of flags, the filter's masks and
// the stored column all use them.
const (
	FIN uint16 = 1 << iota
	SYN
	RST
	PSH
	ACK
	URG
	ECE
	CWR
	NS
)

// FlagBits folds a TCPFlags message into a bit mask (0 for nil).
func FlagBits(f *flowv1.TCPFlags) uint16 {
	if f == nil {
		return 0
	}
	var m uint16
	set := func(b bool, bit uint16) {
		if b {
			m |= bit
		}
	}
	set(f.FIN, FIN)
	set(f.SYN, SYN)
	set(f.RST, RST)
	set(f.PSH, PSH)
	set(f.ACK, ACK)
	set(f.URG, URG)
	set(f.ECE, ECE)
	set(f.CWR, CWR)
	set(f.NS, NS)
	return m
}

// Flags is the TCPFlags message of a bit mask.
func Flags(m uint16) *flowv1.TCPFlags {
	return &flowv1.TCPFlags{
		FIN: m&FIN != 0, SYN: m&SYN != 0, RST: m&RST != 0,
		PSH: m&PSH != 0, ACK: m&ACK != 0, URG: m&URG != 0,
		ECE: m&ECE != 0, CWR: m&CWR != 0, NS: m&NS != 0,
	}
}

// Protocol is the IP protocol number of a flow's L4 layer (0 if none).
func Protocol(fl *flowv1.Flow) uint8 {
	l4 := fl.GetL4()
	switch {
	case l4.GetTCP() != nil:
		return TCP
	case l4.GetUDP() != nil:
		return UDP
	case l4.GetSCTP() != nil:
		return SCTP
	case l4.GetICMPv4() != nil:
		return ICMPv4
	case l4.GetICMPv6() != nil:
		return ICMPv6
	}
	return 0
}
