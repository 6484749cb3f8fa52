// Package version holds the versions a process reports: the build's, set by
// the Makefile with
// -ldflags "-X github.com/trawl-dev/trawl/internal/version.Version=...",
// and the running kernel's release.
package version

import "golang.org/x/sys/unix"

// Version is the release or git description of this build.
var Version = "dev"

// KernelRelease is the running kernel's release (uname -r), "unknown" if
// uname fails.
func KernelRelease() string {
	var u unix.Utsname
	if err := unix.Uname(&u); err != nil {
		return "unknown"
	}
	return unix.ByteSliceToString(u.Release[:])
}
