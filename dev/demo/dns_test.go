package demo

import (
	"context"
	"net"
	"net/netip"
	"strings"
	"testing"
)

func TestDNSServerAnswersClusterNamesAndRefusesOthers(t *testing.T) {
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := NewDNSServer(pc, map[string]netip.Addr{
		"postgres.databases.svc.cluster.local": netip.MustParseAddr("10.96.0.20"),
	})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("serve: %v", err)
		}
	}()
	var d net.Dialer
	tests := []struct {
		name    string
		want    string
		wantErr string
	}{
		{"postgres.databases.svc.cluster.local", "10.96.0.20", ""},
		{"POSTGRES.databases.svc.cluster.local.", "10.96.0.20", ""},
		{"missing.databases.svc.cluster.local", "", "rcode 3"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := LookupA(context.Background(), d.DialContext, pc.LocalAddr().String(), tt.name)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("LookupA = %v, %v; want error containing %q", got, err, tt.wantErr)
				}
				return
			}
			if err != nil || got.String() != tt.want {
				t.Fatalf("LookupA = %v, %v; want %s", got, err, tt.want)
			}
		})
	}
}

func TestDNSServerIgnoresGarbage(t *testing.T) {
	s := NewDNSServer(nil, nil)
	for _, q := range [][]byte{nil, {1, 2, 3}, make([]byte, 12), {0, 1, 0x80, 0, 0, 1, 0, 0, 0, 0, 0, 0, 5, 'a'}} {
		if resp := s.answer(q); resp != nil && len(q) < 13 {
			t.Errorf("answer(%v) = %v, want no answer", q, resp)
		}
	}
}
