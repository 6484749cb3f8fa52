package chserver_test

import (
	"context"
	"net"
	"os"
	"sync"
	"syscall"
	"testing"
	"time"

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
