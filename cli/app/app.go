// Package app assembles the `trawl` command tree and maps what happened to
// an exit code: 0 success (also Ctrl-C while following, and a closed pipe
// such as `| head`), 1 failure (e.g. the relay cannot be reached), 2 a
// command-line mistake (unknown flag, bad value, conflicting flags).
package app

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/trawl-dev/trawl/cli/client"
	"github.com/trawl-dev/trawl/cli/cluster"
	"github.com/trawl-dev/trawl/cli/observe"
	"github.com/trawl-dev/trawl/cli/usage"
	"github.com/trawl-dev/trawl/internal/version"
)

// Exit codes.
const (
	ExitOK      = 0
	ExitFailure = 1
	ExitUsage   = 2
)

// IO is where the commands read and write.
type IO struct {
	In       io.Reader
	Out, Err io.Writer
}

// NewRoot returns the `trawl` command with every subcommand.
func NewRoot(streams IO) *cobra.Command {
	conn := client.DefaultOptions()
	deps := cluster.Deps{Conn: &conn, Now: time.Now}
	root := &cobra.Command{
		Use:           "trawl",
		Short:         "Observe network flows, drops and policy verdicts recorded by Trawl",
		Version:       version.Version,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.SetIn(streams.In)
	root.SetOut(streams.Out)
	root.SetErr(streams.Err)
	conn.AddFlags(root.PersistentFlags())
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return usage.Error(err) })

	obs := observe.NewCommand(&conn)
	root.AddCommand(
		obs,
		cluster.NewStatusCommand(deps),
		cluster.NewNodesCommand(deps),
		cluster.NewConntrackCommand(deps),
		cluster.NewTopCommand(deps),
		newVersionCommand(),
	)
	for _, extra := range extraCommands() {
		root.AddCommand(extra)
	}
	// Subcommands inherit the flag error handler only if set on each.
	for _, c := range root.Commands() {
		c.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return usage.Error(err) })
	}
	return root
}

func newVersionCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print the version of this trawl binary",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			_, err := fmt.Fprintf(cmd.OutOrStdout(), "trawl %s\n", version.Version)
			return err
		},
	}
}

// Run executes args and returns the exit code; errors are printed on
// streams.Err as one line naming the problem, plus a usage hint for
// command-line mistakes.
func Run(ctx context.Context, args []string, streams IO) int {
	root := NewRoot(streams)
	root.SetArgs(args)
	ran := false
	root.PersistentPreRun = func(*cobra.Command, []string) { ran = true }
	cmd, err := root.ExecuteContextC(ctx)
	if err == nil {
		return ExitOK
	}
	switch {
	case errors.Is(err, syscall.EPIPE):
		// The reader went away (`| head`): nothing more to say.
		return ExitOK
	case errors.Is(err, context.Canceled) && ctx.Err() != nil:
		// Ctrl-C.
		return ExitOK
	}
	name := "trawl"
	if cmd != nil {
		name = cmd.CommandPath()
	}
	// Errors before the command ran (unknown command, bad arguments, bad
	// flags) are command-line mistakes as much as the ones marked so.
	if usage.Is(err) || !ran {
		fmt.Fprintf(streams.Err, "%s: %s\n", name, oneLine(err))
		fmt.Fprintf(streams.Err, "Run '%s --help' for usage.\n", name)
		return ExitUsage
	}
	fmt.Fprintf(streams.Err, "%s: %s\n", name, oneLine(err))
	return ExitFailure
}

func oneLine(err error) string {
	return strings.ReplaceAll(strings.TrimSpace(err.Error()), "\n", "; ")
}
