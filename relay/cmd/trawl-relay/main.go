// Command trawl-relay is the Trawl relay: it receives what agents see, keeps
// it in ClickHouse and serves the observer API (`trawl observe`).
//
//	trawl-relay [serve] [flags]   serve (the default action)
//	trawl-relay migrate [flags]   bring the ClickHouse schema up to date and exit
package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/trawl-dev/trawl/internal/logging"
	"github.com/trawl-dev/trawl/internal/version"
	"github.com/trawl-dev/trawl/relay"
)

func main() {
	if err := newCommand().Execute(); err != nil {
		fmt.Fprintf(os.Stderr, "trawl-relay: %v\n", err)
		os.Exit(1)
	}
}

func newCommand() *cobra.Command {
	cfg := relay.DefaultConfiguration()
	logLevel := slog.LevelInfo
	serve := func(cmd *cobra.Command, _ []string) error {
		cfg.Log = logging.New(logLevel)
		ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
		defer stop()
		r, err := relay.New(cfg)
		if err != nil {
			return err
		}
		return r.Run(ctx)
	}
	root := &cobra.Command{
		Use:           "trawl-relay",
		Short:         "the Trawl relay: stores flows in ClickHouse and serves the observer API",
		Version:       version.Version,
		Args:          cobra.NoArgs,
		SilenceUsage:  true,
		SilenceErrors: true,
		RunE:          serve,
	}
	addFlags := func(fs *pflag.FlagSet) {
		relay.RegisterFlags(fs, &cfg)
		fs.Var(logging.Level{L: &logLevel}, "log-level", "debug, info, warn or error")
	}
	addFlags(root.Flags())

	serveCmd := &cobra.Command{
		Use:   "serve",
		Short: "receive agent streams, store flows and serve the observer API (default)",
		Args:  cobra.NoArgs,
		RunE:  serve,
	}
	addFlags(serveCmd.Flags())

	migrate := &cobra.Command{
		Use:   "migrate",
		Short: "create or upgrade the ClickHouse schema, then exit",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg.Log = logging.New(logLevel)
			if err := relay.Migrate(context.Background(), cfg); err != nil {
				return err
			}
			cfg.Log.Info("ClickHouse schema is up to date")
			return nil
		},
	}
	fs := migrate.Flags()
	fs.StringVar(&cfg.ClickHouseDSN, "clickhouse-dsn", cfg.ClickHouseDSN, "ClickHouse DSN, clickhouse://user:pass@host:9000/database (env TRAWL_CLICKHOUSE_DSN)")
	fs.StringVar(&cfg.ClickHouseCluster, "clickhouse-cluster", cfg.ClickHouseCluster, "ClickHouse cluster name: Replicated + Distributed tables, DDL ON CLUSTER")
	fs.DurationVar(&cfg.Retention, "retention", cfg.Retention, "how long flows are kept (TTL)")
	fs.Var(logging.Level{L: &logLevel}, "log-level", "debug, info, warn or error")

	root.AddCommand(serveCmd, migrate)
	return root
}
