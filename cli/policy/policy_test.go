package policy

import (
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"testing"

	"github.com/trawl-dev/trawl/cli/usage"
)

const (
	demo = "../../deploy/demo"
	xyz  = "testdata/xyz.yaml"
)

func run(t *testing.T, args ...string) (string, error) {
	t.Helper()
	cmd := NewCommand()
	var out bytes.Buffer
	cmd.SetOut(&out)
	cmd.SetErr(&out)
	cmd.SetArgs(args)
	cmd.SilenceUsage, cmd.SilenceErrors = true, true
	err := cmd.ExecuteContext(context.Background())
	return out.String(), err
}

func TestCheckPrintsTheVerdictAndTheDecidingPolicies(t *testing.T) {
	cases := []struct {
		name string
		args []string
		want []string
	}{
		{"a denied connection names the isolating policy",
			[]string{"--from", "frontend/frontend-85b6f9d7c4-h8n3w", "--to", "databases/postgres-0", "--port", "5432/TCP"},
			[]string{"DENIED frontend/frontend-85b6f9d7c4-h8n3w -> databases/postgres-0 5432/TCP",
				"egress:  allowed (no policy selects frontend/frontend-85b6f9d7c4-h8n3w)",
				"ingress: denied: databases/postgres-0 is isolated by databases/postgres-ingress and none allows this"}},
		{"an allowed connection names the allowing policies in both directions",
			[]string{"--from", "payments/payment-service-7d9f8b6c5-m2v8r", "--to", "databases/postgres-0", "--port", "5432"},
			[]string{"ALLOWED payments/payment-service-7d9f8b6c5-m2v8r -> databases/postgres-0 5432/TCP",
				"egress:  allowed by payments/payment-service-egress",
				"ingress: allowed by databases/postgres-ingress"}},
		{"egress denial lists every egress-isolating policy",
			[]string{"--from", "payments/payment-service-7d9f8b6c5-m2v8r", "--to", "frontend/frontend-85b6f9d7c4-h8n3w", "--port", "80/tcp"},
			[]string{"DENIED ", "egress:  denied: payments/payment-service-7d9f8b6c5-m2v8r is isolated by payments/default-deny, payments/payment-service-egress"}},
		{"an IP address outside the cluster is accepted as a peer",
			[]string{"--from", "203.0.113.7", "--to", "payments/payment-service-7d9f8b6c5-m2v8r", "--port", "8080/TCP"},
			[]string{"DENIED 203.0.113.7 -> payments/payment-service-7d9f8b6c5-m2v8r", "egress:  allowed (203.0.113.7 is not a pod"}},
		{"UDP DNS from payment-service is allowed",
			[]string{"--from", "payments/payment-service-7d9f8b6c5-m2v8r", "--to", "10.244.1.10", "--port", "53/UDP"},
			[]string{"ALLOWED payments/payment-service-7d9f8b6c5-m2v8r -> kube-system/coredns-5d78c9869d-x7k2p 53/UDP"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			out, err := run(t, append([]string{"check", "--manifests", demo}, tc.args...)...)
			if err != nil {
				t.Fatal(err)
			}
			for _, w := range tc.want {
				if !strings.Contains(out, w) {
					t.Errorf("output lacks %q:\n%s", w, out)
				}
			}
		})
	}
}

func TestCheckJSONIsOneObjectWithFourLists(t *testing.T) {
	out, err := run(t, "check", "--manifests", demo, "--from", "api-gateway/api-gateway-6c8d7f5b9-q4x9z",
		"--to", "payments/payment-service-7d9f8b6c5-m2v8r", "--port", "8080/TCP", "-o", "json")
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal([]byte(out), &m); err != nil {
		t.Fatalf("not one JSON object: %v\n%s", err, out)
	}
	for _, k := range []string{"from", "to", "port", "protocol", "allowed", "ingress_allowed_by", "ingress_denied_by", "egress_allowed_by", "egress_denied_by"} {
		if _, ok := m[k]; !ok {
			t.Errorf("key %q missing in %s", k, out)
		}
	}
	if m["allowed"] != true || !strings.Contains(out, `"ingress_allowed_by":[{"namespace":"payments","name":"payment-service-ingress","kind":"NetworkPolicy"}]`) {
		t.Errorf("unexpected result %s", out)
	}
	if !strings.Contains(out, `"egress_denied_by":[]`) {
		t.Errorf("empty lists must be [] not null: %s", out)
	}
}

func TestAllPairsJSONIsTheTruthTable(t *testing.T) {
	out, err := run(t, "check", "--manifests", xyz, "--all-pairs", "--ports", "80/TCP,81/TCP", "-o", "json")
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 9*8*2 {
		t.Fatalf("%d lines, want 144 (9 pods × 8 others × 2 ports)", len(lines))
	}
	// Written by hand: only x/a is isolated; it admits namespace y on 81.
	denied := map[string]bool{}
	for _, from := range []string{"x/b", "x/c", "y/a", "y/b", "y/c", "z/a", "z/b", "z/c"} {
		denied[from+" 80"] = true
		if !strings.HasPrefix(from, "y/") {
			denied[from+" 81"] = true
		}
	}
	seen := map[string]bool{}
	for _, l := range lines {
		var r Result
		if err := json.Unmarshal([]byte(l), &r); err != nil {
			t.Fatalf("line %q: %v", l, err)
		}
		key := r.From + "->" + r.To + " " + string(rune('0'+r.Port/10)) + string(rune('0'+r.Port%10))
		if seen[key] || r.From == r.To || r.Protocol != "TCP" {
			t.Errorf("bad or repeated pair %s", l)
		}
		seen[key] = true
		want := true
		if r.To == "x/a" && denied[r.From+" "+key[len(key)-2:]] {
			want = false
		}
		if r.Allowed != want {
			t.Errorf("%s -> %s %d: allowed %v, want %v", r.From, r.To, r.Port, r.Allowed, want)
		}
		if r.To == "x/a" && !r.Allowed && (len(r.IngressDeniedBy) != 1 || r.IngressDeniedBy[0].Name != "allow-81-from-y") {
			t.Errorf("%s -> x/a: ingress_denied_by %+v", r.From, r.IngressDeniedBy)
		}
	}
}

func TestAllPairsTableIsAMatrix(t *testing.T) {
	out, err := run(t, "check", "--manifests", xyz, "--all-pairs", "--ports", "81/TCP", "-o", "table")
	if err != nil {
		t.Fatal(err)
	}
	want := `81/TCP (rows: from, columns: to; . allowed, X denied)
   1 2 3 4 5 6 7 8 9
1  - . . . . . . . .  x/a
2  X - . . . . . . .  x/b
3  X . - . . . . . .  x/c
4  . . . - . . . . .  y/a
5  . . . . - . . . .  y/b
6  . . . . . - . . .  y/c
7  X . . . . . - . .  z/a
8  X . . . . . . - .  z/b
9  X . . . . . . . -  z/c
`
	if strings.TrimSpace(out) != strings.TrimSpace(want) {
		t.Errorf("table:\n%s\nwant:\n%s", out, want)
	}
}

func TestBadInputIsOneClearUsageError(t *testing.T) {
	cases := []struct {
		name string
		args []string
		want string
	}{
		{"no source", []string{"check", "--from", "a/b", "--to", "c/d", "--port", "80"}, "exactly one of --manifests"},
		{"two sources", []string{"check", "--manifests", demo, "--kubeconfig", "/x", "--all-pairs", "--ports", "80"}, "exactly one of"},
		{"missing --to", []string{"check", "--manifests", demo, "--from", "a/b", "--port", "80"}, "give --from"},
		{"bad port number", []string{"check", "--manifests", demo, "--from", "a/b", "--to", "c/d", "--port", "70000/TCP"}, `bad port "70000/TCP"`},
		{"bad protocol", []string{"check", "--manifests", demo, "--all-pairs", "--ports", "80/ICMP"}, "unknown protocol"},
		{"all-pairs with --from", []string{"check", "--manifests", demo, "--all-pairs", "--ports", "80", "--from", "a/b"}, "--all-pairs takes --ports"},
		{"all-pairs without ports", []string{"check", "--manifests", demo, "--all-pairs"}, "needs --ports"},
		{"bad output", []string{"check", "--manifests", demo, "--all-pairs", "--ports", "80", "-o", "yaml"}, "bad --output"},
		{"unknown pod", []string{"check", "--manifests", demo, "--from", "frontend/nope", "--to", "databases/postgres-0", "--port", "5432"}, "pod frontend/nope not found"},
		{"endpoint without namespace", []string{"check", "--manifests", demo, "--from", "postgres-0", "--to", "databases/postgres-0", "--port", "5432"}, "want NAMESPACE/POD"},
		{"missing manifests", []string{"check", "--manifests", "/nonexistent/trawl", "--all-pairs", "--ports", "80"}, "/nonexistent/trawl"},
		{"no subcommand", []string{}, "missing subcommand"},
		{"a policy in the manifests that does not parse", []string{"check", "--manifests", "testdata/broken.yaml", "--all-pairs", "--ports", "80"}, "x/bad-port"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := run(t, tc.args...)
			if err == nil {
				t.Fatal("accepted")
			}
			if !usage.Is(err) {
				t.Errorf("error %q is not a usage error (exit 2)", err)
			}
			if !strings.Contains(err.Error(), tc.want) || strings.Contains(err.Error(), "\n") {
				t.Errorf("error %q: want one line containing %q", err, tc.want)
			}
		})
	}
}
