// Command run is `make run`: the whole Trawl system on this machine — the
// embedded ClickHouse, trawl-relay, trawl-agent inside a node network
// namespace and a demo cluster of pod namespaces whose NetworkPolicies are
// enforced by nftables — with traffic that tells the story, then
// `trawl observe --follow` in the foreground. Ctrl-C stops everything and
// leaves the machine as it was.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	"github.com/trawl-dev/trawl/dev/demo"
)

func main() {
	var (
		binDir    = flag.String("bin-dir", "bin", "directory with trawl-agent, trawl-relay and trawl")
		manifests = flag.String("manifests", "deploy/demo", "demo cluster manifests")
		rules     = flag.String("rules", "deploy/prometheus/trawl-rules.yaml", "Prometheus rules to load (empty: no Prometheus)")
		workDir   = flag.String("work-dir", ".cache/run", "logs, rendered manifests and ClickHouse data (kept across runs)")
		burstEach = flag.Duration("burst-every", 90*time.Second, "period of the conntrack burst (0: none)")
		follow    = flag.Bool("follow", true, "run `trawl observe --follow` in the foreground")
	)
	flag.Parse()
	if os.Geteuid() != 0 {
		fmt.Fprintln(os.Stderr, "make run: needs root (eBPF, network namespaces, nftables); try: sudo make run")
		os.Exit(1)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, *binDir, *manifests, *rules, *workDir, *burstEach, *follow); err != nil {
		fmt.Fprintln(os.Stderr, "make run:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, binDir, manifests, rules, workDir string, burstEach time.Duration, follow bool) error {
	if err := os.MkdirAll(workDir, 0o755); err != nil {
		return err
	}
	cfg := demo.Config{
		BinDir:        binDir,
		Manifests:     manifests,
		WorkDir:       workDir,
		ClickHouseDir: filepath.Join(workDir, "clickhouse"),
		Log:           os.Stderr,
	}
	if rules != "" {
		cfg.Rules = []string{rules}
	}
	s, err := demo.Start(ctx, cfg)
	if err != nil {
		return err
	}
	defer func() {
		fmt.Fprintln(os.Stderr, "trawl-demo: stopping; removing namespaces, rules and processes")
		if err := s.Close(); err != nil {
			fmt.Fprintln(os.Stderr, "trawl-demo: cleanup:", err)
		}
	}()
	if err := s.StartServers(ctx); err != nil {
		return err
	}
	var wg sync.WaitGroup
	defer wg.Wait()
	wg.Add(1)
	go func() { defer wg.Done(); s.RunTraffic(ctx, 2*time.Second) }()
	if burstEach > 0 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-ctx.Done():
					return
				case <-time.After(burstEach / 3):
				}
				if _, err := s.Burst(ctx, 30*time.Second); err != nil && ctx.Err() == nil {
					fmt.Fprintln(os.Stderr, "trawl-demo: conntrack burst:", err)
				}
				select {
				case <-ctx.Done():
					return
				case <-time.After(burstEach * 2 / 3):
				}
			}
		}()
	}

	trawl := filepath.Join(binDir, "trawl")
	fmt.Fprintf(os.Stderr, `
Trawl is running. In another terminal, as root:
  %[1]s observe --server %[2]s --since 10m --verdict DROPPED     drops and policy denials
  %[1]s observe --server %[2]s --namespace payments -o table    one namespace
  %[1]s top --server %[2]s                                      top talkers
  %[1]s conntrack --server %[2]s                                conntrack pressure (bursts every %[3]s)
  %[1]s observe --server %[2]s --protocol dns --dns-rcode NXDOMAIN   frontend's search-list storm for a misspelt name
  %[1]s observe --server %[2]s --to-fqdn api.partner.example    the name a slow upstream answers (about 200 ms)
  %[1]s policy check --manifests %[4]s/manifests --from frontend/%[5]s --to databases/postgres-0 --port 5432/TCP
Metrics: relay http://%[6]s/metrics, agent http://%[7]s/metrics (node namespace)%[8]s
Logs: %[4]s/*.log    Dashboards: deploy/grafana, Trawl / DNS among them (ClickHouse %[9]s)
Ctrl-C stops everything.

`, trawl, s.ObserverAddr, burstEach, workDir, podName(s, "frontend"), s.RelayMetrics, s.AgentMetrics, promLine(s), s.ClickHouseDSN)

	if !follow {
		<-ctx.Done()
		return nil
	}
	// The observer shares our process group, so Ctrl-C reaches it too; it
	// exits 0 and we clean up after it. The conntrack burst's thousands of
	// connections would drown the story, so they are left out here:
	// `trawl conntrack` and `trawl observe --pod` show them.
	args := []string{"observe", "--server", s.ObserverAddr, "--follow", "--last", "20", "--print-policy-names"}
	if lg := s.PodByApp("loadgen"); lg != nil {
		args = append(args, "--not", "--pod", lg.Namespace+"/"+lg.Name)
	}
	cmd := exec.Command(trawl, args...)
	cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
	if err := cmd.Start(); err != nil {
		return err
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		if ctx.Err() == nil && err != nil {
			return fmt.Errorf("trawl observe: %w", err)
		}
	case <-ctx.Done():
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			_ = cmd.Process.Kill()
		}
	}
	return nil
}

func podName(s *demo.Stack, app string) string {
	if p := s.PodByApp(app); p != nil {
		return p.Name
	}
	return app
}

func promLine(s *demo.Stack) string {
	if s.Prom == nil {
		return ""
	}
	return "\nPrometheus with Trawl's alert rules: " + s.Prom.URL + "/alerts"
}
