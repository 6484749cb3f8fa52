// Command trawl-agent is the Trawl node agent: watches the kernel datapath with eBPF and streams flows to the relay.
package main

import (
	"fmt"
	"os"

	"github.com/spf13/cobra"

	"github.com/trawl-dev/trawl/internal/version"
)

func main() {
	cmd := &cobra.Command{
		Use:           "trawl-agent",
		Short:         "the Trawl node agent: watches the kernel datapath with eBPF and streams flows to the relay",
		Version:       version.Version,
		SilenceUsage:  true,
		SilenceErrors: true,
		RunE: func(cmd *cobra.Command, args []string) error {
			return fmt.Errorf("not implemented yet")
		},
	}
	if err := cmd.Execute(); err != nil {
		fmt.Fprintf(os.Stderr, "trawl-agent: %v\n", err)
		os.Exit(1)
	}
}
