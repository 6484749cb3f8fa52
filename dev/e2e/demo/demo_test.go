package demo_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"

	promrules "github.com/trawl-dev/trawl/deploy/prometheus"
	"github.com/trawl-dev/trawl/dev/demo"
	"github.com/trawl-dev/trawl/internal/testbed/roottest"
)

// The end-to-end test: the `make run` stack, checked only through what a user
// sees — `trawl observe`, `trawl conntrack`, ClickHouse rows and Prometheus'
// alerts.

// record is the part of the JSON envelope the test reads.
type record struct {
	Flow *struct {
		Time             time.Time `json:"time"`
		Verdict          string    `json:"verdict"`
		EventKind        string    `json:"event_kind"`
		TrafficDirection string    `json:"traffic_direction"`
		DropReasonDesc   string    `json:"drop_reason_desc"`
		DropReasonKernel string    `json:"drop_reason_kernel"`
		DropClass        string    `json:"drop_class"`
		Packets          string    `json:"packets"`
		Source           endpoint  `json:"source"`
		Destination      endpoint  `json:"destination"`
		L4               struct {
			TCP *struct {
				DestinationPort int `json:"destination_port"`
			} `json:"TCP"`
		} `json:"l4"`
		IngressAllowedBy []policy `json:"ingress_allowed_by"`
		EgressAllowedBy  []policy `json:"egress_allowed_by"`
		IngressDeniedBy  []policy `json:"ingress_denied_by"`
		EgressDeniedBy   []policy `json:"egress_denied_by"`
	} `json:"flow"`
}

type endpoint struct {
	Namespace string `json:"namespace"`
	PodName   string `json:"pod_name"`
	Workloads []struct {
		Name string `json:"name"`
		Kind string `json:"kind"`
	} `json:"workloads"`
}

type policy struct {
	Name      string `json:"name"`
	Namespace string `json:"namespace"`
}

func (e endpoint) id() string { return e.Namespace + "/" + e.PodName }

func names(ps []policy) []string {
	var out []string
	for _, p := range ps {
		out = append(out, p.Namespace+"/"+p.Name)
	}
	return out
}

func contains(ss []string, s string) bool {
	for _, x := range ss {
		if x == s {
			return true
		}
	}
	return false
}

// buildBinaries builds the three binaries once for this test binary.
func buildBinaries(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	for _, b := range []string{"agent/cmd/trawl-agent", "relay/cmd/trawl-relay", "cli/cmd/trawl"} {
		cmd := exec.Command("go", "build", "-o", filepath.Join(dir, filepath.Base(b)), "./"+b)
		cmd.Dir = "../../.."
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("build %s: %v\n%s", b, err, out)
		}
	}
	return dir
}

func TestEndToEndTheDemoClusterTellsItsStoryThroughTheUserInterfaces(t *testing.T) {
	roottest.Require(t, "the end-to-end test loads eBPF, builds network namespaces, writes nftables rules")
	bin := buildBinaries(t)
	ctx, cancel := context.WithTimeout(context.Background(), 12*time.Minute)
	defer cancel()
	s, err := demo.Start(ctx, demo.Config{
		BinDir:       bin,
		Manifests:    "../../../deploy/demo",
		Rules:        []string{"../../../deploy/prometheus/trawl-rules.yaml"},
		ObserverAddr: "127.0.0.1:0",
		ConntrackMax: 1024,
		Log:          testWriter{t},
	})
	if err != nil {
		t.Fatalf("start the demo stack: %v", err)
	}
	defer func() {
		if t.Failed() {
			for _, f := range []string{"relay.log", "agent.log"} {
				t.Logf("--- %s (tail)\n%s", f, s.LogTail(f, 25))
			}
		}
		if err := s.Close(); err != nil {
			t.Errorf("close the stack: %v", err)
		}
	}()
	if err := s.StartServers(ctx); err != nil {
		t.Fatal(err)
	}
	trawl := func(args ...string) (string, error) {
		cctx, ccancel := context.WithTimeout(ctx, 30*time.Second)
		defer ccancel()
		out, err := exec.CommandContext(cctx, filepath.Join(bin, "trawl"), append(args, "--server", s.ObserverAddr)...).Output()
		if ee, ok := err.(*exec.ExitError); ok {
			err = fmt.Errorf("%v: %s", err, ee.Stderr)
		}
		return string(out), err
	}
	gw, pay, pg, fe, lg := s.PodByApp(demo.AppGateway), s.PodByApp(demo.AppPayments), s.PodByApp(demo.AppPostgres), s.PodByApp(demo.AppFrontend), s.PodByApp(demo.AppLoadgen)

	t.Run("the story's calls succeed or fail as the policies say", func(t *testing.T) {
		for _, c := range s.Round(ctx) {
			denied := (c.From == demo.ID(fe) && c.To == demo.ID(pg)) || (c.From == demo.ID(pay) && c.To == demo.ID(fe)) || c.Port == demo.ClosedPort ||
				c.To == demo.DarkAddr.String()
			if denied && c.Err == nil {
				t.Errorf("%s -> %s:%d succeeded; the policies (or the closed port, or the black hole) should stop it", c.From, c.To, c.Port)
			}
			if !denied && c.Err != nil {
				t.Errorf("%s -> %s:%d failed: %v", c.From, c.To, c.Port, c.Err)
			}
		}
	})

	// History: poll `observe --last N -o json` until the story is there.
	var printed []record
	var allowed, denied, refused *record
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) && (allowed == nil || denied == nil || refused == nil) {
		s.Round(ctx)
		time.Sleep(2 * time.Second)
		out, err := trawl("observe", "--last", "1000", "-o", "json")
		if err != nil {
			t.Fatalf("trawl observe: %v", err)
		}
		printed = printed[:0]
		for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
			var r record
			if err := json.Unmarshal([]byte(line), &r); err != nil {
				t.Fatalf("observe -o json printed a line that is not JSON: %q: %v", line, err)
			}
			if r.Flow != nil {
				printed = append(printed, r)
			}
		}
		for i := range printed {
			f := printed[i].Flow
			switch {
			case f.Source.id() == demo.ID(gw) && f.Destination.id() == demo.ID(pay) && f.Verdict == "FORWARDED" && f.EventKind == "AGGREGATE":
				allowed = &printed[i]
			case f.Source.id() == demo.ID(fe) && f.Destination.id() == demo.ID(pg) && f.Verdict == "DROPPED":
				denied = &printed[i]
			case f.Destination.id() == demo.ID(fe) && f.L4.TCP != nil && f.L4.TCP.DestinationPort == demo.ClosedPort && f.Verdict == "DROPPED":
				refused = &printed[i]
			}
		}
	}
	t.Run("allowed calls are FORWARDED with pods, workloads and the allowing policy", func(t *testing.T) {
		if allowed == nil {
			t.Fatalf("no FORWARDED api-gateway -> payment-service aggregate in %d printed flows", len(printed))
		}
		f := allowed.Flow
		if len(f.Source.Workloads) == 0 || f.Source.Workloads[0].Name != "api-gateway" || f.Source.Workloads[0].Kind != "Deployment" {
			t.Errorf("source workloads = %+v, want Deployment api-gateway", f.Source.Workloads)
		}
		if got := names(f.IngressAllowedBy); !contains(got, "payments/payment-service-ingress") {
			t.Errorf("ingress_allowed_by = %v, want payments/payment-service-ingress", got)
		}
	})
	t.Run("frontend to postgres is DROPPED as POLICY_DENIED by the denying policy", func(t *testing.T) {
		if denied == nil {
			t.Fatalf("no DROPPED frontend -> postgres flow in %d printed flows", len(printed))
		}
		f := denied.Flow
		if f.DropReasonDesc != "POLICY_DENIED" || f.DropReasonKernel != "NETFILTER_DROP" {
			t.Errorf("drop_reason_desc, drop_reason_kernel = %q, %q; want POLICY_DENIED, NETFILTER_DROP", f.DropReasonDesc, f.DropReasonKernel)
		}
		if got := names(f.IngressDeniedBy); !contains(got, "databases/postgres-ingress") {
			t.Errorf("ingress_denied_by = %v, want databases/postgres-ingress", got)
		}
	})
	t.Run("a connection to a closed port is DROPPED with NO_SOCKET and no policy blamed", func(t *testing.T) {
		if refused == nil {
			t.Fatalf("no DROPPED flow to frontend:%d in %d printed flows", demo.ClosedPort, len(printed))
		}
		f := refused.Flow
		if f.DropReasonDesc != "NO_SOCKET" || len(f.IngressDeniedBy)+len(f.EgressDeniedBy) != 0 {
			t.Errorf("drop_reason_desc = %q, denied_by = %v %v; want NO_SOCKET and no policy", f.DropReasonDesc, f.IngressDeniedBy, f.EgressDeniedBy)
		}
	})

	t.Run("a denied connection is in no FORWARDED record: its new-flow event is DROPPED too", func(t *testing.T) {
		var news int
		for _, r := range printed {
			f := r.Flow
			if f.Source.id() != demo.ID(fe) || f.Destination.id() != demo.ID(pg) {
				continue
			}
			if f.Verdict == "FORWARDED" && f.EventKind != "POLICY_VERDICT" {
				t.Errorf("frontend -> postgres printed as %s %s; every packet was dropped", f.EventKind, f.Verdict)
			}
			if f.EventKind == "FLOW_NEW" {
				news++
			}
		}
		if news == 0 {
			t.Errorf("no new-flow event for frontend -> postgres in %d printed flows", len(printed))
		}
	})
	t.Run("the default view shows no teardown drop and every drop has its class", func(t *testing.T) {
		want := map[string]string{"NETFILTER_DROP": "policy", "NO_SOCKET": "no-socket"}
		for _, args := range [][]string{{"observe", "--last", "1000", "-o", "json"}, {"observe", "--verdict", "DROPPED", "--last", "1000", "-o", "json"}} {
			out, err := trawl(args...)
			if err != nil {
				t.Fatal(err)
			}
			drops := 0
			for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
				var r record
				if err := json.Unmarshal([]byte(line), &r); err != nil || r.Flow == nil || r.Flow.Verdict != "DROPPED" || r.Flow.EventKind != "DROP" {
					continue
				}
				drops++
				f := r.Flow
				if f.DropClass == "teardown" {
					t.Errorf("%v printed a teardown drop: %s", args, line)
				}
				if c, ok := want[f.DropReasonKernel]; ok && f.DropClass != c {
					t.Errorf("%s drop of class %q, want %q", f.DropReasonKernel, f.DropClass, c)
				}
				if f.DropClass == "" {
					t.Errorf("a drop without a class: %s", line)
				}
			}
			if drops == 0 {
				t.Errorf("%v printed no drop at all", args)
			}
		}
	})

	t.Run("observe --type policy-verdict selects the verdicts of the policies", func(t *testing.T) {
		out, err := trawl("observe", "--type", "policy-verdict", "--last", "200", "-o", "json")
		if err != nil {
			t.Fatal(err)
		}
		var allowedBy, deniedBy bool
		for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
			var r record
			if err := json.Unmarshal([]byte(line), &r); err != nil || r.Flow == nil {
				t.Fatalf("not a flow line: %q", line)
			}
			if r.Flow.EventKind != "POLICY_VERDICT" {
				t.Errorf("--type policy-verdict printed a %s record", r.Flow.EventKind)
			}
			// A verdict speaks for one side: ingress policies on INGRESS records.
			if contains(names(r.Flow.IngressAllowedBy), "payments/payment-service-ingress") && r.Flow.TrafficDirection == "INGRESS" {
				allowedBy = true
			}
			if contains(names(r.Flow.IngressDeniedBy), "databases/postgres-ingress") && r.Flow.TrafficDirection == "INGRESS" {
				deniedBy = true
			}
			if r.Flow.TrafficDirection == "EGRESS" && len(r.Flow.IngressAllowedBy)+len(r.Flow.IngressDeniedBy) > 0 {
				t.Errorf("an EGRESS policy verdict names ingress policies: %s", line)
			}
		}
		if !allowedBy || !deniedBy {
			t.Errorf("policy verdicts: allowed by payment-service-ingress %v, denied by postgres-ingress %v; want both\n%s", allowedBy, deniedBy, out)
		}
	})

	t.Run("Hubble's API and metrics answer from the same history", func(t *testing.T) { checkHubble(t, ctx, s, demo.ID(fe), demo.ID(pg)) })

	t.Run("DNS: names answered, the NXDOMAIN storm per client workload, the slow upstream at the client's latency, the alert", func(t *testing.T) {
		checkDNS(t, ctx, s, trawl)
	})

	t.Run("ClickHouse rows agree with what observe printed", func(t *testing.T) {
		if denied == nil || allowed == nil {
			t.Skip("nothing to compare: the history checks above failed")
		}
		conn, err := clickhouse.Open(&clickhouse.Options{Addr: []string{s.CH.Addr}})
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		for _, r := range []*record{allowed, denied, refused} {
			if r == nil {
				continue
			}
			f := r.Flow
			var n uint64
			err := conn.QueryRow(ctx, `SELECT count() FROM trawl.flows
				WHERE time = toDateTime64(?, 9, 'UTC') AND src_namespace = ? AND src_pod = ? AND dst_namespace = ? AND dst_pod = ?
				  AND toString(verdict) = ? AND toString(event_kind) = ? AND drop_reason_desc = ? AND toString(packets) = ?`,
				f.Time.UTC().Format("2006-01-02 15:04:05.000000000"), f.Source.Namespace, f.Source.PodName, f.Destination.Namespace, f.Destination.PodName,
				f.Verdict, f.EventKind, f.DropReasonDesc, f.Packets).Scan(&n)
			if err != nil {
				t.Fatalf("query flows: %v", err)
			}
			if n != 1 {
				t.Errorf("%d ClickHouse rows match the printed %s %s -> %s at %s (want exactly 1)", n, f.Verdict, f.Source.id(), f.Destination.id(), f.Time)
			}
		}
	})

	t.Run("observe --follow prints a new flow within 2 s of the traffic", func(t *testing.T) {
		fctx, fcancel := context.WithTimeout(ctx, 30*time.Second)
		defer fcancel()
		cmd := exec.CommandContext(fctx, filepath.Join(bin, "trawl"), "observe", "--server", s.ObserverAddr, "--follow", "--last", "0",
			"-o", "json", "--from-pod", demo.ID(gw), "--to-pod", demo.ID(pay))
		stdout, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		defer cmd.Process.Kill()
		lines := make(chan time.Time, 100)
		go func() {
			sc := bufio.NewScanner(stdout)
			for sc.Scan() {
				lines <- time.Now()
			}
			close(lines)
		}()
		time.Sleep(1500 * time.Millisecond) // let the subscription settle
		sent := time.Now()
		if err := demo.RequestTCP(ctx, gw.Netns, pay.IP, 8080, 2*time.Second); err != nil {
			t.Fatalf("request: %v", err)
		}
		for {
			select {
			case at, ok := <-lines:
				if !ok {
					t.Fatal("observe --follow ended without printing the flow")
				}
				if at.Before(sent) {
					continue // something from before the request
				}
				if d := at.Sub(sent); d > 2*time.Second {
					t.Errorf("first line %s after the request; want within 2 s", d)
				}
				return
			case <-time.After(10 * time.Second):
				t.Fatal("observe --follow printed nothing within 10 s of the request")
			}
		}
	})

	t.Run("a conntrack burst shows in trawl conntrack and makes the alert active", func(t *testing.T) {
		bctx, bcancel := context.WithCancel(ctx)
		defer bcancel()
		burst := make(chan error, 1)
		go func() { _, err := s.Burst(bctx, 90*time.Second); burst <- err }()

		var sawUtil, sawCreator, sawAlert bool
		var lastOut string
		var lastAlerts []demo.Alert
		deadline := time.Now().Add(100 * time.Second)
		for time.Now().Before(deadline) && !(sawUtil && sawCreator && sawAlert) {
			select {
			case err := <-burst:
				t.Fatalf("burst ended early: %v", err)
			case <-time.After(2 * time.Second):
			}
			out, err := trawl("conntrack", "-o", "json")
			if err != nil {
				t.Fatalf("trawl conntrack: %v", err)
			}
			lastOut = out
			for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
				var sample struct {
					Utilization float64 `json:"utilization"`
					TopCreators []struct {
						IP       string   `json:"ip"`
						Endpoint endpoint `json:"endpoint"`
					} `json:"top_creators"`
				}
				if json.Unmarshal([]byte(line), &sample) != nil {
					var wrapped struct {
						Conntrack json.RawMessage `json:"conntrack"`
						Sample    json.RawMessage `json:"sample"`
					}
					if json.Unmarshal([]byte(line), &wrapped) == nil {
						raw := wrapped.Conntrack
						if raw == nil {
							raw = wrapped.Sample
						}
						_ = json.Unmarshal(raw, &sample)
					}
				}
				if sample.Utilization > 0.9 {
					sawUtil = true
					if len(sample.TopCreators) > 0 && (sample.TopCreators[0].IP == lg.IP.String() || sample.TopCreators[0].Endpoint.PodName == lg.Name) {
						sawCreator = true
					}
				}
			}
			if s.Prom != nil {
				alerts, err := s.Prom.ActiveAlerts(ctx)
				if err != nil {
					t.Fatalf("prometheus alerts: %v", err)
				}
				lastAlerts = alerts
				for _, a := range alerts {
					if strings.Contains(strings.ToLower(a.Labels["alertname"]), "conntrack") && (a.State == "pending" || a.State == "firing") {
						sawAlert = true
					}
				}
			}
		}
		bcancel()
		<-burst
		if !sawUtil {
			t.Errorf("trawl conntrack never showed utilization above 0.9; last output:\n%s", lastOut)
		}
		if !sawCreator {
			t.Errorf("trawl conntrack never showed the loadgen pod (%s) as top creator; last output:\n%s", lg.IP, lastOut)
		}
		if !sawAlert {
			t.Errorf("no conntrack alert became active in Prometheus; active alerts: %+v", lastAlerts)
		}
	})

	t.Run("every metric the agent and relay really export is documented, and the alerts' inputs are there", func(t *testing.T) {
		contract, err := promrules.ReadMetricsDoc("../../../docs/metrics.md")
		if err != nil {
			t.Fatal(err)
		}
		exported := map[string]bool{}
		for _, addr := range []string{s.AgentMetrics, s.RelayMetrics} {
			for name := range scrapeFamilies(t, ctx, addr) {
				exported[name] = true
				if strings.HasPrefix(name, "trawl_") {
					if _, ok := contract.Series[name]; !ok {
						t.Errorf("%s exports %s, which docs/metrics.md does not document", addr, name)
					}
				}
			}
		}
		// After the story and the burst these must have samples: the
		// conntrack and drop alerts read them.
		for _, name := range []string{"trawl_conntrack_utilization", "trawl_conntrack_stat_total", "trawl_agent_drops_total",
			"trawl_relay_policy_drops_total", "trawl_relay_agent_last_seen_timestamp_seconds", "trawl_relay_queue_rows"} {
			if !exported[name] {
				t.Errorf("%s is not exported after the demo's traffic; the alert rules depend on it", name)
			}
		}
		rules, err := promrules.ReadRules("../../../deploy/prometheus/trawl-rules.yaml")
		if err != nil {
			t.Fatal(err)
		}
		var unseen []string
		for _, g := range rules.Groups {
			for _, r := range g.Rules {
				for _, sel := range promrules.Selectors(r.Expr) {
					if !exported[sel.Metric] && sel.Metric != "up" {
						unseen = append(unseen, r.Alert+":"+sel.Metric)
					}
				}
			}
		}
		// Metrics of failures that did not happen (insert errors, lost
		// events) have no samples yet; list them for the reader.
		t.Logf("rule inputs without samples in this run: %v", unseen)
	})

	t.Run("Prometheus scrapes the agent and the relay", func(t *testing.T) {
		up, err := s.Prom.TargetsUp(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if up["trawl-agent"] != 1 || up["trawl-relay"] != 1 {
			t.Errorf("targets up = %v, want the agent and the relay", up)
		}
	})

	// Last: its lossy period makes the node drop packets.
	t.Run("TCP health: the slow link at the client's RTT, the closed port reset by the server, the blackholed partner's timeouts and alert, retransmits under loss", func(t *testing.T) {
		checkTCP(t, ctx, s, trawl)
	})
}

// scrapeFamilies returns the metric family names a /metrics endpoint exposes.
func scrapeFamilies(t *testing.T, ctx context.Context, addr string) map[string]bool {
	t.Helper()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+"/metrics", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("scrape %s: %v", addr, err)
	}
	defer resp.Body.Close()
	names := map[string]bool{}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		name := line
		if i := strings.IndexAny(line, "{ "); i > 0 {
			name = line[:i]
		}
		names[name] = true
	}
	return names
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// observeJSON runs `trawl observe -o json` with args and decodes each line
// into an R, keeping those keep accepts (the flow records).
func observeJSON[R any](t *testing.T, trawl func(args ...string) (string, error), keep func(R) bool, args ...string) []R {
	t.Helper()
	out, err := trawl(append([]string{"observe", "-o", "json"}, args...)...)
	if err != nil {
		t.Fatalf("trawl observe %v: %v", args, err)
	}
	var recs []R
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		if line == "" {
			continue
		}
		var r R
		if err := json.Unmarshal([]byte(line), &r); err != nil {
			t.Fatalf("observe -o json printed a line that is not JSON: %q: %v", line, err)
		}
		if keep(r) {
			recs = append(recs, r)
		}
	}
	return recs
}
