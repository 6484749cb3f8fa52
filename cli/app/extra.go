package app

import (
	"github.com/spf13/cobra"

	"github.com/trawl-dev/trawl/cli/policy"
)

// extraCommands are the commands other packages of cli/ provide whole.
func extraCommands() []*cobra.Command {
	return []*cobra.Command{policy.NewCommand()}
}
