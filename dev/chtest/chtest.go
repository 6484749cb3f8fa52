// Package chtest gives tests a real ClickHouse: one embedded server per test
// binary (started on first use, stopped by Main) and a fresh database per
// test. Set TRAWL_CLICKHOUSE_DSN to use your own server instead.
package chtest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net/url"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"
	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"

	"github.com/trawl-dev/trawl/dev/chserver"
)

var shared struct {
	once sync.Once
	srv  *chserver.Server
	log  *os.File // the server's output, kept when it died under the tests
	base string   // DSN without a database
	err  error
}

// SkipShort skips t under go test -short: a test that needs ClickHouse is no
// unit test. Tests that start a server themselves call it too.
func SkipShort(t testing.TB) {
	t.Helper()
	if testing.Short() {
		t.Skip("skipped by -short: needs ClickHouse")
	}
}

// Main runs the tests and stops the shared server afterwards. Use it from
// TestMain: func TestMain(m *testing.M) { chtest.Main(m) }.
func Main(m *testing.M) {
	code := m.Run()
	if shared.srv != nil {
		if died := exited(); died != "" {
			fmt.Fprintln(os.Stderr, "chtest:", died)
		} else if err := shared.srv.Stop(); err != nil {
			fmt.Fprintln(os.Stderr, "chtest: stop ClickHouse:", err)
		} else {
			shared.log.Close()
			os.Remove(shared.log.Name())
		}
	}
	os.Exit(code)
}

// Server returns the DSN of the shared server (without a database), starting
// it on first use. A test that cannot get one fails: ClickHouse is a real
// dependency of these tests, not an optional one. Under go test -short (make
// test-unit) the test skips instead, saying it needs ClickHouse.
func Server(t testing.TB) string {
	t.Helper()
	SkipShort(t)
	shared.once.Do(func() {
		if dsn := os.Getenv("TRAWL_CLICKHOUSE_DSN"); dsn != "" {
			shared.base = dsn
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
		defer cancel()
		if shared.log, shared.err = os.CreateTemp("", "trawl-chtest-*.log"); shared.err != nil {
			return
		}
		shared.srv, shared.err = chserver.Start(ctx, chserver.Config{Log: shared.log})
		if shared.err == nil {
			shared.base = "clickhouse://" + shared.srv.Addr
		}
	})
	if shared.err != nil {
		t.Fatalf("embedded ClickHouse: %v", shared.err)
	}
	return shared.base
}

// exited says, when the shared server is no longer running, how it ended
// and where its log is, with the log's first lines: a test that finds the
// server gone must say why, not only that it refused a connection.
func exited() string {
	if shared.srv == nil {
		return ""
	}
	select {
	case <-shared.srv.Done():
	case <-time.After(2 * time.Second):
		return ""
	}
	tail := ""
	if b, err := os.ReadFile(shared.log.Name()); err == nil {
		lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
		// A crash report starts with the signal and the query.
		if len(lines) > 12 {
			lines = lines[:12]
		}
		tail = "\n\t" + strings.Join(lines, "\n\t")
	}
	return fmt.Sprintf("the embedded ClickHouse exited during the tests (%v); its log is %s, starting:%s",
		shared.srv.Err(), shared.log.Name(), tail)
}

// Database creates a fresh database on the shared server, drops it when the
// test ends, and returns a DSN that selects it.
func Database(t testing.TB) string {
	t.Helper()
	base := Server(t)
	var b [6]byte
	_, _ = rand.Read(b[:])
	name := "trawl_test_" + hex.EncodeToString(b[:])
	conn := Open(t, base)
	ctx := context.Background()
	if err := conn.Exec(ctx, "CREATE DATABASE "+name); err != nil {
		if died := exited(); died != "" {
			t.Fatalf("create database %s: %v; %s", name, err, died)
		}
		t.Fatalf("create database %s: %v", name, err)
	}
	t.Cleanup(func() {
		_ = conn.Exec(context.Background(), "DROP DATABASE IF EXISTS "+name+" SYNC")
	})
	u, err := url.Parse(base)
	if err != nil {
		t.Fatalf("parse DSN %q: %v", base, err)
	}
	u.Path = "/" + name
	return u.String()
}

// Open connects to dsn and closes the connection when the test ends. Under
// -short the test skips, like Server.
func Open(t testing.TB, dsn string) driver.Conn {
	t.Helper()
	SkipShort(t)
	opts, err := clickhouse.ParseDSN(dsn)
	if err != nil {
		t.Fatalf("parse DSN %q: %v", dsn, err)
	}
	conn, err := clickhouse.Open(opts)
	if err != nil {
		t.Fatalf("open %s: %v", dsn, err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}
