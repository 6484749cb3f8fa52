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
	base string // DSN without a database
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
		if err := shared.srv.Stop(); err != nil {
			fmt.Fprintln(os.Stderr, "chtest: stop ClickHouse:", err)
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
		shared.srv, shared.err = chserver.Start(ctx, chserver.Config{})
		if shared.err == nil {
			shared.base = "clickhouse://" + shared.srv.Addr
		}
	})
	if shared.err != nil {
		t.Fatalf("embedded ClickHouse: %v", shared.err)
	}
	return shared.base
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
