package demo

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"time"
)

// DNSServer answers A queries for cluster names (e.g.
// "postgres.databases.svc.cluster.local.") from a fixed table, like the
// cluster DNS of the demo. It implements only what the demo's clients ask:
// one question per query, class IN, type A; anything else gets NXDOMAIN or
// NOTIMP. It exists because the demo's pods have no real resolver and the
// DNS flows are part of the story.
type DNSServer struct {
	conn    net.PacketConn
	records map[string]netip.Addr
}

// NewDNSServer serves on conn (already bound, possibly inside a pod's network
// namespace). Names are matched case-insensitively, with or without the
// trailing dot.
func NewDNSServer(conn net.PacketConn, records map[string]netip.Addr) *DNSServer {
	r := make(map[string]netip.Addr, len(records))
	for name, addr := range records {
		r[canonical(name)] = addr
	}
	return &DNSServer{conn: conn, records: r}
}

// Serve answers until ctx ends or the connection is closed.
func (s *DNSServer) Serve(ctx context.Context) error {
	go func() {
		<-ctx.Done()
		s.conn.Close()
	}()
	buf := make([]byte, 512)
	for {
		n, addr, err := s.conn.ReadFrom(buf)
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
				return nil
			}
			return fmt.Errorf("dns read: %w", err)
		}
		if resp := s.answer(buf[:n]); resp != nil {
			_, _ = s.conn.WriteTo(resp, addr)
		}
	}
}

const (
	dnsTypeA   = 1
	dnsClassIN = 1
	rcodeOK    = 0
	rcodeNX    = 3
	rcodeNoImp = 4
)

func (s *DNSServer) answer(q []byte) []byte {
	if len(q) < 12 || q[2]&0x80 != 0 || binary.BigEndian.Uint16(q[4:6]) != 1 {
		return nil // not a query with exactly one question
	}
	name, end, err := readName(q, 12)
	if err != nil || end+4 > len(q) {
		return nil
	}
	qtype := binary.BigEndian.Uint16(q[end:])
	qclass := binary.BigEndian.Uint16(q[end+2:])
	question := q[12 : end+4]

	resp := make([]byte, 12, 12+len(question)+16)
	copy(resp, q[:2])          // id
	resp[2] = 0x84 | q[2]&0x01 // QR, AA, keep RD
	binary.BigEndian.PutUint16(resp[4:], 1)
	resp = append(resp, question...)
	addr, ok := s.records[canonical(name)]
	switch {
	case qclass != dnsClassIN:
		resp[3] = rcodeNoImp
	case !ok:
		resp[3] = rcodeNX
	case qtype != dnsTypeA || !addr.Is4():
		resp[3] = rcodeOK // the name exists, but has no record of that type
	default:
		binary.BigEndian.PutUint16(resp[6:], 1)
		resp = append(resp, 0xc0, 12) // pointer to the question's name
		resp = binary.BigEndian.AppendUint16(resp, dnsTypeA)
		resp = binary.BigEndian.AppendUint16(resp, dnsClassIN)
		resp = binary.BigEndian.AppendUint32(resp, 30) // TTL
		resp = binary.BigEndian.AppendUint16(resp, 4)
		a4 := addr.As4()
		resp = append(resp, a4[:]...)
	}
	return resp
}

// LookupA asks server (ip:port) for name's A record over conn's network
// namespace: dial must create the socket where the client lives.
func LookupA(ctx context.Context, dial func(ctx context.Context, network, addr string) (net.Conn, error), server, name string) (netip.Addr, error) {
	c, err := dial(ctx, "udp", server)
	if err != nil {
		return netip.Addr{}, fmt.Errorf("dns dial %s: %w", server, err)
	}
	defer c.Close()
	if dl, ok := ctx.Deadline(); ok {
		_ = c.SetDeadline(dl)
	} else {
		_ = c.SetDeadline(time.Now().Add(2 * time.Second))
	}
	id := uint16(time.Now().UnixNano())
	q := make([]byte, 12)
	binary.BigEndian.PutUint16(q, id)
	q[2] = 0x01 // RD
	binary.BigEndian.PutUint16(q[4:], 1)
	for _, label := range strings.Split(strings.TrimSuffix(name, "."), ".") {
		if len(label) == 0 || len(label) > 63 {
			return netip.Addr{}, fmt.Errorf("dns: bad name %q", name)
		}
		q = append(q, byte(len(label)))
		q = append(q, label...)
	}
	q = append(q, 0)
	q = binary.BigEndian.AppendUint16(q, dnsTypeA)
	q = binary.BigEndian.AppendUint16(q, dnsClassIN)
	if _, err := c.Write(q); err != nil {
		return netip.Addr{}, fmt.Errorf("dns query %s: %w", server, err)
	}
	buf := make([]byte, 512)
	n, err := c.Read(buf)
	if err != nil {
		return netip.Addr{}, fmt.Errorf("dns answer from %s: %w", server, err)
	}
	r := buf[:n]
	if n < 12 || binary.BigEndian.Uint16(r) != id {
		return netip.Addr{}, fmt.Errorf("dns: malformed answer from %s", server)
	}
	if rc := r[3] & 0x0f; rc != rcodeOK {
		return netip.Addr{}, fmt.Errorf("dns: %s: rcode %d", name, rc)
	}
	if binary.BigEndian.Uint16(r[6:]) == 0 {
		return netip.Addr{}, fmt.Errorf("dns: %s has no A record", name)
	}
	// The answer is fixed-size after the echoed question; its last 4 bytes
	// are the address.
	return netip.AddrFrom4([4]byte(r[n-4 : n])), nil
}

func readName(b []byte, off int) (string, int, error) {
	var labels []string
	for {
		if off >= len(b) {
			return "", 0, errors.New("dns: name runs past the message")
		}
		l := int(b[off])
		off++
		if l == 0 {
			return strings.Join(labels, ".") + ".", off, nil
		}
		if l > 63 || off+l > len(b) {
			return "", 0, errors.New("dns: bad label") // compression is not used in questions
		}
		labels = append(labels, string(b[off:off+l]))
		off += l
	}
}

func canonical(name string) string {
	name = strings.ToLower(name)
	if !strings.HasSuffix(name, ".") {
		name += "."
	}
	return name
}
