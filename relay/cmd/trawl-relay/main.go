// Command trawl-relay is the Trawl relay: stores flows in ClickHouse and serves the observer API.
package main

import (
	"fmt"
	"os"

	"github.com/spf13/cobra"

	"github.com/trawl-dev/trawl/internal/version"
)

func main() {
	cmd := &cobra.Command{
		Use:           "trawl-relay",
		Short:         "the Trawl relay: stores flows in ClickHouse and serves the observer API",
		Version:       version.Version,
		SilenceUsage:  true,
		SilenceErrors: true,
		RunE: func(cmd *cobra.Command, args []string) error {
			return fmt.Errorf("not implemented yet")
		},
	}
	if err := cmd.Execute(); err != nil {
		fmt.Fprintf(os.Stderr, "trawl-relay: %v\n", err)
		os.Exit(1)
	}
}
