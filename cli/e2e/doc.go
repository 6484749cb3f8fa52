// Package e2e holds the CLI's end-to-end tests: the `trawl` command tree
// against an in-process relay backed by the embedded ClickHouse, fed by the
// agent's real shipper.
package e2e
