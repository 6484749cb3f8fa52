// Command trawl is observe network flows, drops and policy verdicts recorded by Trawl.
package main

import (
	"fmt"
	"os"

	"github.com/spf13/cobra"

	"github.com/trawl-dev/trawl/internal/version"
)

func main() {
	cmd := &cobra.Command{
		Use:           "trawl",
		Short:         "observe network flows, drops and policy verdicts recorded by Trawl",
		Version:       version.Version,
		SilenceUsage:  true,
		SilenceErrors: true,
		RunE: func(cmd *cobra.Command, args []string) error {
			return fmt.Errorf("not implemented yet")
		},
	}
	if err := cmd.Execute(); err != nil {
		fmt.Fprintf(os.Stderr, "trawl: %v\n", err)
		os.Exit(1)
	}
}
