// Package dns reads the DNS messages the flow program copies from packets
// (agent/bpf/dns.h) and pairs responses with their queries.
//
// Parsing is golang.org/x/net/dns/dnsmessage's; this package only picks the
// fields a Trawl record carries (docs/dns.md) and says what it could not
// read. Nothing here panics or blocks on hostile input (FuzzParse).
package dns

import (
	"encoding/binary"
	"errors"
	"net/netip"

	"golang.org/x/net/dns/dnsmessage"

	"github.com/trawl-dev/trawl/internal/dnscodes"
)

// Message is what a record says about one DNS message.
type Message struct {
	ID       uint16
	Response bool
	Rcode    uint32
	// Query is the first question's name, with its trailing dot.
	Query  string
	Qtypes []string
	// Answer section: A/AAAA addresses, CNAME targets, the lowest TTL of
	// all answer records and the distinct record types, in order.
	IPs     []string
	TTL     uint32
	CNAMEs  []string
	RRTypes []string
	// Partial: the answer section could not be read to its end (the
	// capture was cut, or it is malformed); the fields hold what was read.
	Partial bool
}

// Outcome of reading a captured payload; label values of
// trawl_agent_dns_messages_total.
type Outcome string

const (
	// Parsed: a whole message was read.
	Parsed Outcome = "parsed"
	// Partial: header and question were read, not all answers.
	Partial Outcome = "partial"
	// Malformed: the header or question section is unreadable; no record.
	Malformed Outcome = "malformed"
	// TCPUnparsed: a TCP segment that does not start with a whole
	// message's length prefix (a message split over segments, or the rest
	// of one); no record.
	TCPUnparsed Outcome = "tcp_unparsed"
	// NotCaptured: the packet had a payload the program could not copy;
	// no record.
	NotCaptured Outcome = "not_captured"
)

// Outcomes lists every Outcome, for metrics that start at zero.
var Outcomes = []Outcome{Parsed, Partial, Malformed, TCPUnparsed, NotCaptured}

var errNoQuestion = errors.New("dns: no question")

// Parse reads one DNS message into m (reused: its slices are truncated and
// refilled). It fails only when the header or the question section cannot
// be read; a bad or cut answer section sets m.Partial instead.
func Parse(b []byte, m *Message) error {
	var p dnsmessage.Parser
	h, err := p.Start(b)
	if err != nil {
		return err
	}
	*m = Message{
		ID: h.ID, Response: h.Response, Rcode: uint32(h.RCode),
		Qtypes: m.Qtypes[:0], IPs: m.IPs[:0], CNAMEs: m.CNAMEs[:0], RRTypes: m.RRTypes[:0],
	}
	for i := 0; ; i++ {
		q, err := p.Question()
		if errors.Is(err, dnsmessage.ErrSectionDone) {
			if i == 0 {
				return errNoQuestion
			}
			break
		}
		if err != nil {
			return err
		}
		if i == 0 {
			m.Query = q.Name.String()
		}
		m.Qtypes = appendDistinct(m.Qtypes, dnscodes.TypeName(uint16(q.Type)))
	}
	if !m.Response {
		return nil
	}
	first := true
	for {
		ah, err := p.AnswerHeader()
		if errors.Is(err, dnsmessage.ErrSectionDone) {
			return nil
		}
		if err != nil {
			m.Partial = true
			return nil
		}
		switch ah.Type {
		case dnsmessage.TypeA:
			r, err := p.AResource()
			if err != nil {
				m.Partial = true
				return nil
			}
			m.IPs = append(m.IPs, netip.AddrFrom4(r.A).String())
		case dnsmessage.TypeAAAA:
			r, err := p.AAAAResource()
			if err != nil {
				m.Partial = true
				return nil
			}
			m.IPs = append(m.IPs, netip.AddrFrom16(r.AAAA).String())
		case dnsmessage.TypeCNAME:
			r, err := p.CNAMEResource()
			if err != nil {
				m.Partial = true
				return nil
			}
			m.CNAMEs = append(m.CNAMEs, r.CNAME.String())
		default:
			if err := p.SkipAnswer(); err != nil {
				m.Partial = true
				return nil
			}
		}
		if first || ah.TTL < m.TTL {
			m.TTL = ah.TTL
		}
		first = false
		m.RRTypes = appendDistinct(m.RRTypes, dnscodes.TypeName(uint16(ah.Type)))
	}
}

func appendDistinct(s []string, v string) []string {
	for _, x := range s {
		if x == v {
			return s
		}
	}
	return append(s, v)
}

// Payload is a captured DNS payload as the flow program sends it.
type Payload struct {
	Data []byte // the bytes copied
	// Len is the payload's length in the packet; more than len(Data) when
	// the capture was cut.
	Len int
	TCP bool // Data starts with the 2-byte length prefix of DNS over TCP
}

// Each calls fn for every message of a payload (a UDP datagram holds one;
// a TCP segment usually one, sometimes several) that parses, and returns
// the outcome of each message it found (appended to out, for metrics). m
// is reused between calls to fn.
func (pl Payload) Each(m *Message, out []Outcome, fn func(*Message)) []Outcome {
	cut := pl.Len > len(pl.Data)
	if len(pl.Data) == 0 {
		return append(out, NotCaptured)
	}
	if !pl.TCP {
		return parseOne(pl.Data, m, out, fn)
	}
	b := pl.Data
	for len(b) > 0 {
		if len(b) < 2 {
			return append(out, TCPUnparsed)
		}
		n := int(binary.BigEndian.Uint16(b))
		b = b[2:]
		if n > len(b) {
			if !cut {
				// The message continues in the next segment.
				return append(out, TCPUnparsed)
			}
			return parseOne(b, m, out, fn)
		}
		out = parseOne(b[:n], m, out, fn)
		b = b[n:]
	}
	return out
}

func parseOne(b []byte, m *Message, out []Outcome, fn func(*Message)) []Outcome {
	if err := Parse(b, m); err != nil {
		return append(out, Malformed)
	}
	// A cut message whose answers were all read lost only authority and
	// additional records, which no record carries: not partial.
	fn(m)
	if m.Partial {
		return append(out, Partial)
	}
	return append(out, Parsed)
}
