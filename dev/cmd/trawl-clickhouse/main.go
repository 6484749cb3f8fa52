// Command clickhouse runs the embedded ClickHouse used for development in the
// foreground until Ctrl-C (make clickhouse), or only fetches its library
// (--fetch-only, used by make deps).
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/trawl-dev/trawl/dev/chserver"
)

func main() {
	var (
		fetchOnly = flag.Bool("fetch-only", false, "fetch and verify the ClickHouse library, then exit")
		dataDir   = flag.String("data-dir", ".cache/clickhouse", "storage directory")
		tcpPort   = flag.Int("tcp-port", 9000, "native protocol port (0: any free port)")
		httpPort  = flag.Int("http-port", 8123, "HTTP port (0: any free port)")
	)
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, *fetchOnly, *dataDir, *tcpPort, *httpPort); err != nil {
		fmt.Fprintln(os.Stderr, "clickhouse:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, fetchOnly bool, dataDir string, tcp, http int) error {
	if fetchOnly {
		if _, err := chserver.Library(ctx); err != nil {
			return err
		}
		_, err := chserver.Launcher(ctx)
		return err
	}
	if err := os.MkdirAll(dataDir, 0o755); err != nil {
		return err
	}
	srv, err := chserver.Start(ctx, chserver.Config{DataDir: dataDir, TCPPort: tcp, HTTPPort: http, Log: os.Stderr})
	if err != nil {
		return err
	}
	fmt.Printf("ClickHouse %s ready: native %s, HTTP %s, data %s (Ctrl-C stops)\n", chserver.PackageVersion, srv.Addr, srv.HTTPAddr, dataDir)
	select {
	case <-ctx.Done():
	case <-srv.Done():
		return fmt.Errorf("server exited")
	}
	return srv.Stop()
}
