package testbed

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// ConntrackMaxPath is the global conntrack table limit. The count is per
// namespace but the limit is shared by the whole machine, so tests that
// lower it hold a ConntrackLock.
const ConntrackMaxPath = "/proc/sys/net/netfilter/nf_conntrack_max"

// ConntrackLock serializes tests that change nf_conntrack_max and restores
// the value on Unlock, even after a crash of an earlier holder (the original
// value is kept in a file until restored).
type ConntrackLock struct {
	f    *os.File
	orig string
}

func origPath() string { return filepath.Join(StateDir, "nf_conntrack_max.orig") }

// LockConntrack waits for the machine-wide conntrack lock.
func LockConntrack(ctx context.Context) (*ConntrackLock, error) {
	if err := os.MkdirAll(StateDir, 0o755); err != nil {
		return nil, fmt.Errorf("testbed state dir: %w", err)
	}
	f, err := os.OpenFile(filepath.Join(StateDir, "conntrack.lock"), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, fmt.Errorf("conntrack lock: %w", err)
	}
	for {
		err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB)
		if err == nil {
			break
		}
		if !errors.Is(err, unix.EWOULDBLOCK) {
			f.Close()
			return nil, fmt.Errorf("conntrack lock: %w", err)
		}
		select {
		case <-ctx.Done():
			f.Close()
			return nil, ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
	l := &ConntrackLock{f: f}
	// A previous holder that died left the original value: restore it.
	if saved, err := os.ReadFile(origPath()); err == nil {
		if err := os.WriteFile(ConntrackMaxPath, saved, 0o644); err != nil {
			l.Unlock()
			return nil, fmt.Errorf("restore nf_conntrack_max from a crashed test: %w", err)
		}
	}
	cur, err := os.ReadFile(ConntrackMaxPath)
	if err != nil {
		l.Unlock()
		return nil, fmt.Errorf("read nf_conntrack_max (load nf_conntrack first): %w", err)
	}
	l.orig = strings.TrimSpace(string(cur))
	if err := os.WriteFile(origPath(), []byte(l.orig), 0o644); err != nil {
		l.Unlock()
		return nil, fmt.Errorf("save nf_conntrack_max: %w", err)
	}
	return l, nil
}

// SetMax sets nf_conntrack_max while the lock is held.
func (l *ConntrackLock) SetMax(n int) error {
	if err := os.WriteFile(ConntrackMaxPath, []byte(strconv.Itoa(n)), 0o644); err != nil {
		return fmt.Errorf("set nf_conntrack_max: %w", err)
	}
	return nil
}

// Restore puts back the value nf_conntrack_max had when the lock was
// taken; the lock stays held.
func (l *ConntrackLock) Restore() error {
	if l.f == nil || l.orig == "" {
		return nil
	}
	if err := os.WriteFile(ConntrackMaxPath, []byte(l.orig), 0o644); err != nil {
		return fmt.Errorf("restore nf_conntrack_max=%s: %w", l.orig, err)
	}
	return nil
}

// Unlock restores nf_conntrack_max and releases the lock.
func (l *ConntrackLock) Unlock() error {
	if l.f == nil {
		return nil
	}
	err := l.Restore()
	if err == nil {
		os.Remove(origPath())
	}
	l.f.Close()
	l.f = nil
	return err
}
