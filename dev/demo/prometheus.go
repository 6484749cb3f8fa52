package demo

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// Prometheus is a real Prometheus server (Debian's package) scraping the
// demo's agent and relay with Trawl's alert rules loaded.
type Prometheus struct {
	URL  string
	cmd  *exec.Cmd
	done chan struct{}
	dir  string
}

// PrometheusConfig says what to scrape and which rules to load.
type PrometheusConfig struct {
	// Agents and Relays are host:port metrics addresses.
	Agents, Relays []string
	RuleFiles      []string
	// Interval is the scrape and rule evaluation interval (default 2 s).
	Interval time.Duration
	Log      io.Writer
}

// StartPrometheus starts `prometheus` on a free loopback port with its own
// temporary storage.
func StartPrometheus(ctx context.Context, cfg PrometheusConfig) (*Prometheus, error) {
	bin, err := exec.LookPath("prometheus")
	if err != nil {
		return nil, fmt.Errorf("prometheus not installed (apt-get install prometheus): %w", err)
	}
	if cfg.Interval == 0 {
		cfg.Interval = 2 * time.Second
	}
	dir, err := os.MkdirTemp("", "trawl-prometheus-")
	if err != nil {
		return nil, err
	}
	var rules []string
	for _, r := range cfg.RuleFiles {
		abs, err := filepath.Abs(r)
		if err != nil {
			return nil, err
		}
		rules = append(rules, fmt.Sprintf("%q", abs))
	}
	conf := fmt.Sprintf(`global:
  scrape_interval: %[1]s
  evaluation_interval: %[1]s
rule_files: [%[2]s]
scrape_configs:
  - job_name: trawl-agent
    static_configs: [{targets: [%[3]s]}]
  - job_name: trawl-relay
    static_configs: [{targets: [%[4]s]}]
`, cfg.Interval, strings.Join(rules, ", "), quoteAll(cfg.Agents), quoteAll(cfg.Relays))
	confPath := filepath.Join(dir, "prometheus.yml")
	if err := os.WriteFile(confPath, []byte(conf), 0o644); err != nil {
		return nil, err
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	addr := l.Addr().String()
	l.Close()
	p := &Prometheus{URL: "http://" + addr, done: make(chan struct{}), dir: dir}
	p.cmd = exec.Command(bin, "--config.file="+confPath, "--storage.tsdb.path="+filepath.Join(dir, "data"),
		"--web.listen-address="+addr)
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGTERM}
	if cfg.Log != nil {
		p.cmd.Stdout, p.cmd.Stderr = cfg.Log, cfg.Log
	}
	if err := p.cmd.Start(); err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("start prometheus: %w", err)
	}
	go func() { p.cmd.Wait(); close(p.done) }()
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := http.Get(p.URL + "/-/ready")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return p, nil
			}
		}
		select {
		case <-p.done:
			os.RemoveAll(dir)
			return nil, fmt.Errorf("prometheus exited at start (config %s)", confPath)
		case <-ctx.Done():
			p.Stop()
			return nil, ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			p.Stop()
			return nil, fmt.Errorf("prometheus not ready on %s within 30s", addr)
		}
	}
}

// Alert is one entry of Prometheus' /api/v1/alerts.
type Alert struct {
	Labels map[string]string `json:"labels"`
	State  string            `json:"state"` // "pending" or "firing"
}

// ActiveAlerts returns the alerts that are pending or firing.
func (p *Prometheus) ActiveAlerts(ctx context.Context) ([]Alert, error) {
	var body struct {
		Data struct {
			Alerts []Alert `json:"alerts"`
		} `json:"data"`
	}
	if err := p.get(ctx, "/api/v1/alerts", &body); err != nil {
		return nil, err
	}
	return body.Data.Alerts, nil
}

// TargetsUp reports, per job, how many targets are up.
func (p *Prometheus) TargetsUp(ctx context.Context) (map[string]int, error) {
	var body struct {
		Data struct {
			Active []struct {
				Labels map[string]string `json:"labels"`
				Health string            `json:"health"`
			} `json:"activeTargets"`
		} `json:"data"`
	}
	if err := p.get(ctx, "/api/v1/targets", &body); err != nil {
		return nil, err
	}
	up := map[string]int{}
	for _, t := range body.Data.Active {
		if t.Health == "up" {
			up[t.Labels["job"]]++
		}
	}
	return up, nil
}

func (p *Prometheus) get(ctx context.Context, path string, v any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, p.URL+path, nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("prometheus %s: %w", path, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("prometheus %s: %s", path, resp.Status)
	}
	return json.NewDecoder(resp.Body).Decode(v)
}

// Stop ends Prometheus and removes its storage.
func (p *Prometheus) Stop() {
	select {
	case <-p.done:
	default:
		_ = p.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-p.done:
		case <-time.After(10 * time.Second):
			_ = p.cmd.Process.Kill()
			<-p.done
		}
	}
	os.RemoveAll(p.dir)
}

func quoteAll(ss []string) string {
	q := make([]string, len(ss))
	for i, s := range ss {
		q[i] = fmt.Sprintf("%q", s)
	}
	return strings.Join(q, ", ")
}
