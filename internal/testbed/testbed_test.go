package testbed

import (
	"context"
	"io"
	"net"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/trawl-dev/trawl/internal/testbed/roottest"
)

func TestPodsReachEachOtherThroughTheNodeAndTheNodeReachesTheRootNamespace(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	b := NewT(t, Config{Pods: []string{"client", "server"}})
	client, server := b.Pod("client"), b.Pod("server")

	ln, err := server.Listen("tcp", net.JoinHostPort(server.IP.String(), "8080"))
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		io.WriteString(c, "hello from "+c.RemoteAddr().String())
		c.Close()
	}()
	conn, err := client.Dial(ctx, "tcp", net.JoinHostPort(server.IP.String(), "8080"))
	if err != nil {
		t.Fatalf("client -> server: %v", err)
	}
	got, _ := io.ReadAll(conn)
	conn.Close()
	if want := "hello from " + client.IP.String(); !strings.HasPrefix(string(got), want) {
		t.Fatalf("server saw %q, want the client's address %s (routed, not NATed)", got, want)
	}

	// The route goes through the node: the pod's next hop is the host veth.
	out, err := client.Run(ctx, "ip", "route", "get", server.IP.String())
	if err != nil || !strings.Contains(out, "via 169.254.1.1") {
		t.Fatalf("route from client: %q, %v", out, err)
	}

	rootLn, err := net.Listen("tcp", net.JoinHostPort(b.RootAddr.String(), "0"))
	if err != nil {
		t.Fatal(err)
	}
	defer rootLn.Close()
	go func() {
		if c, err := rootLn.Accept(); err == nil {
			c.Close()
		}
	}()
	nc, err := b.Node.Dial(ctx, "tcp", rootLn.Addr().String())
	if err != nil {
		t.Fatalf("node -> root namespace: %v", err)
	}
	nc.Close()
	go func() {
		if c, err := rootLn.Accept(); err == nil {
			c.Close()
		}
	}()
	pc, err := client.Dial(ctx, "tcp", rootLn.Addr().String())
	if err != nil {
		t.Fatalf("pod -> root namespace through the node: %v", err)
	}
	pc.Close()
}

func TestCloseRemovesNamespacesAndLinksAndParallelBedsDoNotCollide(t *testing.T) {
	roottest.Require(t, "builds network namespaces")
	ctx := context.Background()
	b1, err := New(ctx, Config{})
	if err != nil {
		t.Fatal(err)
	}
	b2, err := New(ctx, Config{Pods: []string{"x"}})
	if err != nil {
		b1.Close()
		t.Fatal(err)
	}
	if b1.Slot == b2.Slot || b1.ID == b2.ID {
		t.Errorf("two live beds share slot %d / id %s", b1.Slot, b1.ID)
	}
	names := []string{b1.Node.Path, b1.Pods[0].Path, b2.Node.Path, "/sys/class/net/" + b1.RootLink}
	for _, b := range []*Bed{b1, b2} {
		if err := b.Close(); err != nil {
			t.Errorf("close: %v", err)
		}
	}
	for _, p := range names {
		if _, err := os.Stat(p); err == nil {
			t.Errorf("%s still exists after Close", p)
		}
	}
}

func TestConntrackLockRestoresTheLimit(t *testing.T) {
	roottest.Require(t, "sets nf_conntrack_max")
	if _, err := os.Stat(ConntrackMaxPath); err != nil {
		// nf_conntrack loads when a namespace first needs it.
		b := NewT(t, Config{Pods: []string{"a"}, NoUplink: true})
		if _, err := b.Node.Run(context.Background(), "iptables", "-A", "FORWARD", "-m", "conntrack", "--ctstate", "INVALID", "-j", "DROP"); err != nil {
			t.Fatal(err)
		}
	}
	l, err := LockConntrack(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	defer l.Unlock()
	// Read under the lock: other tests may hold it with a lowered limit.
	orig, err := os.ReadFile(ConntrackMaxPath)
	if err != nil {
		t.Fatal(err)
	}
	if err := l.SetMax(1234); err != nil {
		t.Fatal(err)
	}
	if got, _ := os.ReadFile(ConntrackMaxPath); strings.TrimSpace(string(got)) != "1234" {
		t.Fatalf("nf_conntrack_max = %q after SetMax(1234)", got)
	}
	if err := l.Restore(); err != nil {
		t.Fatal(err)
	}
	if got, _ := os.ReadFile(ConntrackMaxPath); strings.TrimSpace(string(got)) != strings.TrimSpace(string(orig)) {
		t.Fatalf("nf_conntrack_max = %q after Restore, want %q", got, orig)
	}
}
