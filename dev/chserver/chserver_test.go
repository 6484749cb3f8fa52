package chserver_test

import (
	"context"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/ClickHouse/ch-go"
	"github.com/ClickHouse/ch-go/proto"
	"github.com/ClickHouse/clickhouse-go/v2"

	"github.com/trawl-dev/trawl/dev/chserver"
	"github.com/trawl-dev/trawl/dev/chtest"
)

// Two test binaries may each start a server at the same time: they must get
// their own ports and directories, and stopping one leaves nothing behind.
func TestServersStartedTogetherAreSeparateAndStopWithoutTrace(t *testing.T) {
	chtest.SkipShort(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	servers := make([]*chserver.Server, 2)
	errs := make([]error, 2)
	var wg sync.WaitGroup
	for i := range servers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			servers[i], errs[i] = chserver.Start(ctx, chserver.Config{})
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("server %d: %v", i, err)
		}
	}
	a, b := servers[0], servers[1]
	if a.Addr == b.Addr || a.HTTPAddr == b.HTTPAddr || a.DataDir == b.DataDir {
		t.Fatalf("servers share an address or directory: %+v %+v", a, b)
	}
	for _, s := range servers {
		c, err := net.DialTimeout("tcp", s.Addr, time.Second)
		if err != nil {
			t.Fatalf("server at %s does not answer: %v", s.Addr, err)
		}
		c.Close()
	}

	pid := a.PID()
	if err := a.Stop(); err != nil {
		t.Fatalf("stop: %v", err)
	}
	if err := syscall.Kill(pid, 0); err == nil {
		t.Errorf("launcher process %d still exists after Stop", pid)
	}
	if _, err := os.Stat(a.DataDir); !os.IsNotExist(err) {
		t.Errorf("temporary data dir %s still exists after Stop (err %v)", a.DataDir, err)
	}
	if _, err := net.DialTimeout("tcp", a.Addr, time.Second); err == nil {
		t.Errorf("something still listens on %s after Stop", a.Addr)
	}
	// The other server is unaffected.
	c, err := net.DialTimeout("tcp", b.Addr, time.Second)
	if err != nil {
		t.Fatalf("stopping one server broke the other: %v", err)
	}
	c.Close()
	if err := b.Stop(); err != nil {
		t.Fatal(err)
	}
}

func TestServerKeepsDataAcrossRestartsOnTheSameDirectory(t *testing.T) {
	chtest.SkipShort(t)
	ctx := context.Background()
	dir := t.TempDir()
	query := func(q string) uint64 {
		t.Helper()
		s, err := chserver.Start(ctx, chserver.Config{DataDir: dir})
		if err != nil {
			t.Fatal(err)
		}
		defer s.Stop()
		conn, err := clickhouse.Open(&clickhouse.Options{Addr: []string{s.Addr}})
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		if err := conn.Exec(ctx, "CREATE TABLE IF NOT EXISTS kept (x UInt64) ENGINE = MergeTree ORDER BY x"); err != nil {
			t.Fatal(err)
		}
		if q != "" {
			if err := conn.Exec(ctx, q); err != nil {
				t.Fatal(err)
			}
		}
		var n uint64
		if err := conn.QueryRow(ctx, "SELECT count() FROM kept").Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	if n := query("INSERT INTO kept SELECT number FROM numbers(42)"); n != 42 {
		t.Fatalf("first run: %d rows, want 42", n)
	}
	if n := query(""); n != 42 {
		t.Errorf("after restart on the same directory: %d rows, want 42", n)
	}
	if _, err := os.Stat(dir); err != nil {
		t.Fatalf("caller's data dir was removed by Stop: %v", err)
	}
}

// A server restarted on its port while another process holds it (taken
// while the server was down) must fail to start, not be reported ready
// because the other process answers: its clients would talk to the wrong
// process for the rest of the test.
func TestAServerWhosePortAnotherProcessHoldsFailsToStart(t *testing.T) {
	chtest.SkipShort(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	for _, held := range []string{"tcp", "http"} {
		t.Run(held, func(t *testing.T) {
			tcp, err := chserver.FreePort()
			if err != nil {
				t.Fatal(err)
			}
			http, err := chserver.FreePort()
			if err != nil {
				t.Fatal(err)
			}
			port := map[string]int{"tcp": tcp, "http": http}[held]
			l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
			if err != nil {
				t.Fatal(err)
			}
			defer l.Close()
			go func() { // answer as the process on that port would
				for {
					c, err := l.Accept()
					if err != nil {
						return
					}
					c.Close()
				}
			}()
			s, err := chserver.Start(ctx, chserver.Config{TCPPort: tcp, HTTPPort: http})
			if err == nil {
				s.Stop()
				t.Fatalf("Start on a %s port another process holds succeeded", held)
			}
			if !strings.Contains(err.Error(), "held by another process") {
				t.Errorf("error %q does not say the port is held", err)
			}
		})
	}
}

// Ports are picked where the kernel never gives one to a listener on port
// 0 or to an outgoing connection, so that a restarted server finds its
// port free.
func TestFreePortsLieOutsideTheEphemeralRange(t *testing.T) {
	b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if err != nil {
		t.Fatal(err)
	}
	var lo, hi int
	if _, err := fmt.Sscan(string(b), &lo, &hi); err != nil {
		t.Fatal(err)
	}
	for range 50 {
		p, err := chserver.FreePort()
		if err != nil {
			t.Fatal(err)
		}
		if p >= lo && p <= hi {
			t.Fatalf("port %d lies in the ephemeral range %d-%d", p, lo, hi)
		}
	}
}

// resetDialer keeps the connection it dials, so that the test can reset it.
type resetDialer struct{ conn *net.TCPConn }

func (d *resetDialer) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	c, err := (&net.Dialer{}).DialContext(ctx, network, addr)
	if err == nil {
		d.conn = c.(*net.TCPConn)
	}
	return c, err
}

// A client killed with unread data in its socket resets its connections
// (RST, not FIN). libchdb 26.7 aborted the whole server when a connection
// it was reading from was reset: a relay killed in a soak took a shard
// with it. Each case resets a connection the server waits on after a
// query; the server must keep answering.
func TestAClientThatResetsItsConnectionLeavesTheServerRunning(t *testing.T) {
	chtest.SkipShort(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	srv, err := chserver.Start(ctx, chserver.Config{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Stop() })
	for _, q := range []string{"SELECT 1 AS x", "SELECT x FROM no_such_table"} {
		d := &resetDialer{}
		c, err := ch.Dial(ctx, ch.Options{Address: srv.Addr, Dialer: d})
		if err != nil {
			t.Fatal(err)
		}
		var x proto.ColUInt8
		_ = c.Do(ctx, ch.Query{Body: q, Result: proto.Results{{Name: "x", Data: &x}}}) // an error too leaves the connection open
		if err := d.conn.SetLinger(0); err != nil {                                    // close sends RST
			t.Fatal(err)
		}
		d.conn.Close()
		select {
		case <-srv.Done():
			t.Fatalf("after a client reset its connection (query %q), the server exited: %v", q, srv.Err())
		case <-time.After(time.Second):
		}
		c2, err := ch.Dial(ctx, ch.Options{Address: srv.Addr})
		if err != nil {
			t.Fatalf("after a client reset its connection (query %q): %v", q, err)
		}
		if err := c2.Ping(ctx); err != nil {
			t.Fatalf("after a client reset its connection (query %q): ping: %v", q, err)
		}
		c2.Close()
	}
}
