package testbed

import (
	"context"
	"testing"

	"github.com/trawl-dev/trawl/internal/testbed/roottest"
)

// NewT builds a bed for a test and removes it in t.Cleanup. Under -short
// the test skips: a bed needs root and network namespaces.
func NewT(t testing.TB, cfg Config) *Bed {
	t.Helper()
	roottest.Require(t, "builds network namespaces")
	b, err := New(context.Background(), cfg)
	if err != nil {
		t.Fatalf("testbed: %v", err)
	}
	t.Cleanup(func() {
		if err := b.Close(); err != nil {
			t.Errorf("testbed close: %v", err)
		}
	})
	return b
}

// LockConntrackT takes the conntrack lock for a test and restores
// nf_conntrack_max in t.Cleanup. Under -short the test skips: the lock
// writes a global sysctl.
func LockConntrackT(t testing.TB) *ConntrackLock {
	t.Helper()
	roottest.Require(t, "sets nf_conntrack_max")
	l, err := LockConntrack(context.Background())
	if err != nil {
		t.Fatalf("conntrack lock: %v", err)
	}
	t.Cleanup(func() {
		if err := l.Unlock(); err != nil {
			t.Errorf("conntrack unlock: %v", err)
		}
	})
	return l
}
