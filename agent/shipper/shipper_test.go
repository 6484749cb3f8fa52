package shipper_test

import (
	"regexp"
	"testing"

	"github.com/spf13/pflag"

	"github.com/trawl-dev/trawl/agent/shipper"
	"github.com/trawl-dev/trawl/internal/tlsconfig"
)

func TestFlowUUIDIsStableUniqueAndWellFormed(t *testing.T) {
	re := regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-8[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$`)
	seen := map[string]string{}
	for _, node := range []string{"node-a", "node-b"} {
		for _, boot := range []string{"boot1", "boot2"} {
			for seq := uint64(1); seq <= 50; seq++ {
				for idx := range 50 {
					id := shipper.FlowUUID(node, boot, seq, idx)
					if !re.MatchString(id) {
						t.Fatalf("FlowUUID(%s, %s, %d, %d) = %q, not a version-8 UUID", node, boot, seq, idx, id)
					}
					if id != shipper.FlowUUID(node, boot, seq, idx) {
						t.Fatal("FlowUUID is not deterministic")
					}
					where := node + "/" + boot
					if prev, dup := seen[id]; dup {
						t.Fatalf("FlowUUID collision between %s and %s/%d/%d", prev, where, seq, idx)
					}
					seen[id] = where
				}
			}
		}
	}
	if a, b := shipper.FlowUUID("n", "b", 1, 0), shipper.FlowUUID("n", "b", 1, 1); a[:18] != b[:18] {
		t.Errorf("ids of one boot should share their prefix (they compress): %s vs %s", a, b)
	}
}

func TestNewRefusesUnclearTransportChoices(t *testing.T) {
	tests := []struct {
		name string
		cfg  shipper.Config
		ok   bool
	}{
		{"no node name", shipper.Config{Insecure: true}, false},
		{"plaintext and TLS files together", shipper.Config{NodeName: "n", Insecure: true, TLS: tlsconfig.Files{CA: "/ca.pem"}}, false},
		{"a certificate without its key", shipper.Config{NodeName: "n", TLS: tlsconfig.Files{Cert: "/c.pem"}}, false},
		{"plaintext when asked for", shipper.Config{NodeName: "n", Insecure: true}, true},
		{"TLS with the system roots by default", shipper.Config{NodeName: "n"}, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := shipper.New(tc.cfg, nil)
			if (err == nil) != tc.ok {
				t.Fatalf("New: %v, want success %v", err, tc.ok)
			}
		})
	}
}

func TestFlagsFillTheConfig(t *testing.T) {
	var cfg shipper.Config
	fs := pflag.NewFlagSet("agent", pflag.ContinueOnError)
	shipper.RegisterFlags(fs, &cfg)
	if cfg.Addr != shipper.DefaultAddr || cfg.BufferBytes != shipper.DefaultBufferBytes || cfg.Insecure {
		t.Fatalf("defaults %+v", cfg)
	}
	err := fs.Parse([]string{"--relay", "relay:4246", "--buffer-size", "1024", "--tls-ca", "ca.pem", "--tls-cert", "c.pem", "--tls-key", "k.pem", "--tls-server-name", "trawl-relay"})
	if err != nil {
		t.Fatal(err)
	}
	want := tlsconfig.Files{Cert: "c.pem", Key: "k.pem", CA: "ca.pem", ServerName: "trawl-relay"}
	if cfg.Addr != "relay:4246" || cfg.BufferBytes != 1024 || cfg.TLS != want {
		t.Fatalf("parsed %+v", cfg)
	}
}
