// Package version holds the build's version, set by the Makefile with
// -ldflags "-X github.com/trawl-dev/trawl/internal/version.Version=...".
package version

// Version is the release or git description of this build.
var Version = "dev"
