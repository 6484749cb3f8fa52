package main

import (
	"bytes"
	"strings"
	"testing"
)

// --metrics-address is the name, as the relay's; the old --metrics-addr
// still sets it and says on stderr that it is deprecated.
func TestMetricsAddressFlagAndItsDeprecatedOldName(t *testing.T) {
	for _, tt := range []struct {
		args       []string
		want       string
		deprecated bool
	}{
		{nil, ":9965", false},
		{[]string{"--metrics-address", "127.0.0.1:1"}, "127.0.0.1:1", false},
		{[]string{"--metrics-addr", "127.0.0.1:2"}, "127.0.0.1:2", true},
		{[]string{"--metrics-addr="}, "", true},
	} {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			cmd, o := newCommand()
			var stderr bytes.Buffer
			cmd.SetOut(&stderr)
			cmd.SetErr(&stderr)
			if err := cmd.ParseFlags(tt.args); err != nil {
				t.Fatal(err)
			}
			if o.metricsAddr != tt.want {
				t.Errorf("metrics address %q, want %q", o.metricsAddr, tt.want)
			}
			notice := strings.Contains(stderr.String(), "--metrics-addr has been deprecated, use --metrics-address")
			if notice != tt.deprecated {
				t.Errorf("deprecation notice %v, want %v; stderr %q", notice, tt.deprecated, stderr.String())
			}
		})
	}
	cmd, _ := newCommand()
	var help bytes.Buffer
	cmd.SetOut(&help)
	if err := cmd.Usage(); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(help.String(), "--metrics-address") || strings.Contains(help.String(), "--metrics-addr ") {
		t.Errorf("help lists the new name only:\n%s", help.String())
	}
}
