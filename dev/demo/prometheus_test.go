package demo

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// The runner must really scrape and evaluate rules: an alert whose
// expression holds becomes active (pending), one whose does not stays away.
func TestPrometheusScrapesTargetsAndReportsActiveAlerts(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintln(w, "# TYPE demo_gauge gauge\ndemo_gauge 7")
	})}
	go srv.Serve(l)
	defer srv.Close()

	rules := filepath.Join(t.TempDir(), "rules.yaml")
	if err := os.WriteFile(rules, []byte(`groups:
- name: demo
  rules:
  - alert: DemoHigh
    expr: demo_gauge > 5
    for: 10m
  - alert: DemoHuge
    expr: demo_gauge > 100
`), 0o644); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	p, err := StartPrometheus(ctx, PrometheusConfig{Agents: []string{l.Addr().String()}, RuleFiles: []string{rules}, Interval: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Stop()
	for {
		alerts, err := p.ActiveAlerts(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for _, a := range alerts {
			if a.Labels["alertname"] == "DemoHuge" {
				t.Fatalf("DemoHuge is %s although its expression is false", a.State)
			}
			if a.Labels["alertname"] == "DemoHigh" && a.State == "pending" {
				up, err := p.TargetsUp(ctx)
				if err != nil || up["trawl-agent"] != 1 {
					t.Errorf("targets up = %v, %v; want the agent job up", up, err)
				}
				return
			}
		}
		select {
		case <-ctx.Done():
			t.Fatalf("DemoHigh never became pending; alerts: %+v", alerts)
		case <-time.After(500 * time.Millisecond):
		}
	}
}
