package ingest

import (
	"log/slog"

	"github.com/trawl-dev/trawl/internal/flowid"
)

// Config configures a Server. Start from DefaultConfiguration.
type Config struct {
	Limits Limits
	// RequireClientCert rejects streams without a verified client
	// certificate (mutual TLS mode).
	RequireClientCert bool
	// NodeNameInCert additionally requires the node name of the hello to
	// be one of the certificate's DNS names or its common name, so one
	// node's certificate cannot speak for another.
	NodeNameInCert bool
	// Enricher is optional: records are stored as they come by default.
	Enricher Enricher
	// NameEntries bounds the FQDN cache that names flows from the DNS
	// answers their clients received (relay/enrich.Names): 0 is
	// enrich.DefaultNameEntries, negative turns naming off.
	NameEntries int
	// Log is optional: default slog.Default().
	Log *slog.Logger
}

// Limits bound what one batch may carry.
type Limits struct {
	// MaxBatchBytes is the largest encoded batch accepted (default 16 MiB).
	MaxBatchBytes int
	// MaxBatchRecords is the most records in one batch (default 100,000;
	// at most 2^20, the index space of flow ids).
	MaxBatchRecords int
}

// DefaultConfiguration is the one place of ingest's defaults.
func DefaultConfiguration() Config {
	return Config{
		Limits: Limits{MaxBatchBytes: 16 << 20, MaxBatchRecords: 100_000},
	}
}

// maxBatchRecords is the index space of flow ids within one batch.
const maxBatchRecords = flowid.MaxIndex + 1

// setDefaults replaces unset or impossible limits by the defaults.
func (l *Limits) setDefaults() {
	def := DefaultConfiguration().Limits
	if l.MaxBatchBytes <= 0 {
		l.MaxBatchBytes = def.MaxBatchBytes
	}
	if l.MaxBatchRecords <= 0 || l.MaxBatchRecords > maxBatchRecords {
		l.MaxBatchRecords = def.MaxBatchRecords
	}
}
