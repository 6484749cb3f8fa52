// Package roottest marks the tests that need what a unit run does not have:
// root, the kernel's BPF, network namespaces, a mount. Under go test -short
// (make test-unit) such a test skips and says why; without -short a test run
// without root fails at once with one clear line instead of an obscure error
// from the kernel, so a test that cannot run is never silently green.
package roottest

import (
	"os"
	"testing"
)

// Require skips t under -short and fails it without root. why says what the
// test needs root for ("loads BPF programs", "builds network namespaces").
func Require(t testing.TB, why string) {
	t.Helper()
	if testing.Short() {
		t.Skipf("skipped by -short: needs root (%s)", why)
	}
	if os.Geteuid() != 0 {
		t.Fatalf("needs root (%s): run as root, or with -short (make test-unit) to skip it", why)
	}
}
