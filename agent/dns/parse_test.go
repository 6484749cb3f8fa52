package dns

import (
	"encoding/binary"
	"net/netip"
	"reflect"
	"testing"

	"golang.org/x/net/dns/dnsmessage"
)

func name(s string) dnsmessage.Name { return dnsmessage.MustNewName(s) }

// build packs a message: a query for q (types qt) or, with answers, its
// response.
func build(t testing.TB, id uint16, response bool, rcode dnsmessage.RCode, q string, qt []dnsmessage.Type, answers ...dnsmessage.Resource) []byte {
	t.Helper()
	m := dnsmessage.Message{Header: dnsmessage.Header{ID: id, Response: response, RCode: rcode, RecursionDesired: true}}
	for _, typ := range qt {
		m.Questions = append(m.Questions, dnsmessage.Question{Name: name(q), Type: typ, Class: dnsmessage.ClassINET})
	}
	m.Answers = answers
	b, err := m.Pack()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func a(n string, ttl uint32, ip string) dnsmessage.Resource {
	return dnsmessage.Resource{Header: dnsmessage.ResourceHeader{Name: name(n), Class: dnsmessage.ClassINET, TTL: ttl},
		Body: &dnsmessage.AResource{A: netip.MustParseAddr(ip).As4()}}
}

func aaaa(n string, ttl uint32, ip string) dnsmessage.Resource {
	return dnsmessage.Resource{Header: dnsmessage.ResourceHeader{Name: name(n), Class: dnsmessage.ClassINET, TTL: ttl},
		Body: &dnsmessage.AAAAResource{AAAA: netip.MustParseAddr(ip).As16()}}
}

func cname(n string, ttl uint32, target string) dnsmessage.Resource {
	return dnsmessage.Resource{Header: dnsmessage.ResourceHeader{Name: name(n), Class: dnsmessage.ClassINET, TTL: ttl},
		Body: &dnsmessage.CNAMEResource{CNAME: name(target)}}
}

func txt(n string, ttl uint32) dnsmessage.Resource {
	return dnsmessage.Resource{Header: dnsmessage.ResourceHeader{Name: name(n), Class: dnsmessage.ClassINET, TTL: ttl},
		Body: &dnsmessage.TXTResource{TXT: []string{"hello"}}}
}

var (
	typeA    = []dnsmessage.Type{dnsmessage.TypeA}
	typeAAAA = []dnsmessage.Type{dnsmessage.TypeAAAA}
)

func TestParseReadsTheFieldsARecordCarries(t *testing.T) {
	tests := []struct {
		name string
		msg  []byte
		want Message
	}{
		{"a query has its name with the trailing dot and its type", build(t, 7, false, 0, "example.com.", typeA),
			Message{ID: 7, Query: "example.com.", Qtypes: []string{"A"}}},
		{"a response has its addresses, lowest TTL and answer types",
			build(t, 8, true, 0, "example.com.", typeA, a("example.com.", 300, "93.184.216.34"), a("example.com.", 60, "93.184.216.35")),
			Message{ID: 8, Response: true, Query: "example.com.", Qtypes: []string{"A"}, IPs: []string{"93.184.216.34", "93.184.216.35"}, TTL: 60, RRTypes: []string{"A"}}},
		{"a CNAME chain gives the targets and both record types",
			build(t, 9, true, 0, "www.example.com.", typeAAAA, cname("www.example.com.", 30, "cdn.example.net."), aaaa("cdn.example.net.", 120, "2001:db8::1")),
			Message{ID: 9, Response: true, Query: "www.example.com.", Qtypes: []string{"AAAA"}, IPs: []string{"2001:db8::1"}, CNAMEs: []string{"cdn.example.net."}, TTL: 30, RRTypes: []string{"CNAME", "AAAA"}}},
		{"NXDOMAIN has its rcode and no answers", build(t, 10, true, dnsmessage.RCodeNameError, "nope.example.", typeA),
			Message{ID: 10, Response: true, Rcode: 3, Query: "nope.example.", Qtypes: []string{"A"}}},
		{"other answer types count in TTL and types but give no address", build(t, 11, true, 0, "t.example.", []dnsmessage.Type{dnsmessage.TypeTXT}, txt("t.example.", 5)),
			Message{ID: 11, Response: true, Query: "t.example.", Qtypes: []string{"TXT"}, TTL: 5, RRTypes: []string{"TXT"}}},
		{"two questions give two types and the first name", build(t, 12, false, 0, "x.example.", []dnsmessage.Type{dnsmessage.TypeA, dnsmessage.TypeAAAA}),
			Message{ID: 12, Query: "x.example.", Qtypes: []string{"A", "AAAA"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got Message
			if err := Parse(tt.msg, &got); err != nil {
				t.Fatal(err)
			}
			norm := func(m Message) Message {
				for _, s := range []*[]string{&m.Qtypes, &m.IPs, &m.CNAMEs, &m.RRTypes} {
					if len(*s) == 0 {
						*s = nil
					}
				}
				return m
			}
			if !reflect.DeepEqual(norm(got), norm(tt.want)) {
				t.Errorf("got %+v\nwant %+v", got, tt.want)
			}
		})
	}
}

func TestPayloadsThatCannotBeReadAreCountedAndGiveNoRecord(t *testing.T) {
	query := build(t, 1, false, 0, "example.com.", typeA)
	resp := build(t, 1, true, 0, "example.com.", typeA, a("example.com.", 300, "10.0.0.1"), a("example.com.", 300, "10.0.0.2"))
	prefixed := func(b []byte) []byte { return append(binary.BigEndian.AppendUint16(nil, uint16(len(b))), b...) }
	tests := []struct {
		name    string
		pl      Payload
		records int
		want    []Outcome
	}{
		{"a UDP query", Payload{Data: query, Len: len(query)}, 1, []Outcome{Parsed}},
		{"garbage", Payload{Data: []byte("GET / HTTP/1.1\r\n"), Len: 16}, 0, []Outcome{Malformed}},
		{"a header without a question", Payload{Data: query[:12], Len: 12}, 0, []Outcome{Malformed}},
		{"a question cut in the middle", Payload{Data: query[:15], Len: 15}, 0, []Outcome{Malformed}},
		{"a response whose last answer was cut by the capture", Payload{Data: resp[:len(resp)-3], Len: len(resp)}, 1, []Outcome{Partial}},
		{"a response whose answers are cut although the packet is whole", Payload{Data: resp[:len(resp)-3], Len: len(resp) - 3}, 1, []Outcome{Partial}},
		{"nothing captured", Payload{Len: 40}, 0, []Outcome{NotCaptured}},
		{"a TCP segment with one message", Payload{Data: prefixed(query), Len: len(query) + 2, TCP: true}, 1, []Outcome{Parsed}},
		{"a TCP segment with two messages", Payload{Data: append(prefixed(query), prefixed(resp)...), Len: len(query) + len(resp) + 4, TCP: true}, 2, []Outcome{Parsed, Parsed}},
		{"a TCP segment holding the start of a longer message", Payload{Data: prefixed(resp)[:20], Len: 20, TCP: true}, 0, []Outcome{TCPUnparsed}},
		{"a TCP segment of one byte", Payload{Data: []byte{0}, Len: 1, TCP: true}, 0, []Outcome{TCPUnparsed}},
		{"a TCP message cut by the capture", Payload{Data: prefixed(resp)[:len(resp)-1], Len: len(resp) + 2, TCP: true}, 1, []Outcome{Partial}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var m Message
			n := 0
			got := tt.pl.Each(&m, nil, func(*Message) { n++ })
			if n != tt.records || !reflect.DeepEqual(got, tt.want) {
				t.Errorf("%d records, outcomes %v; want %d, %v", n, got, tt.records, tt.want)
			}
		})
	}
}

func TestAPartialResponseKeepsTheAnswersBeforeTheCut(t *testing.T) {
	resp := build(t, 1, true, 0, "example.com.", typeA, a("example.com.", 300, "10.0.0.1"), a("example.com.", 200, "10.0.0.2"))
	var m Message
	if err := Parse(resp[:len(resp)-2], &m); err != nil {
		t.Fatal(err)
	}
	if !m.Partial || !reflect.DeepEqual(m.IPs, []string{"10.0.0.1"}) || m.TTL != 300 || m.Query != "example.com." {
		t.Errorf("got %+v, want partial with the first address", m)
	}
}

// FuzzParse feeds the parser path (payload splitting, TCP prefixes,
// dnsmessage, field picking) arbitrary bytes: it must never panic, and a
// message it reads must read back the same.
func FuzzParse(f *testing.F) {
	// Seeds: testdata/fuzz/FuzzParse holds a few; these are the valid ones.
	f.Add(build(f, 1, false, 0, "example.com.", typeA), false, 0)
	f.Add(build(f, 2, true, 0, "www.example.com.", typeAAAA, cname("www.example.com.", 30, "cdn.example.net."), aaaa("cdn.example.net.", 120, "2001:db8::1")), false, 0)
	f.Add(append([]byte{0, 29}, build(f, 3, false, 0, "example.com.", typeA)...), true, 0)
	f.Fuzz(func(t *testing.T, data []byte, tcp bool, extra int) {
		pl := Payload{Data: data, Len: len(data) + max(extra, 0)%2048, TCP: tcp}
		var m Message
		pl.Each(&m, nil, func(m *Message) {
			if m.Query == "" || len(m.Qtypes) == 0 {
				t.Errorf("record without a question: %+v", m)
			}
		})
	})
}
