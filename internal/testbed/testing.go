package testbed

import (
	"context"
	"testing"
)

// NewT builds a bed for a test and removes it in t.Cleanup.
func NewT(t testing.TB, cfg Config) *Bed {
	t.Helper()
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
// nf_conntrack_max in t.Cleanup.
func LockConntrackT(t testing.TB) *ConntrackLock {
	t.Helper()
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
