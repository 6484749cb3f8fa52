// Command trawl observes network flows, drops and policy verdicts recorded by Trawl.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/trawl-dev/trawl/cli/app"
)

func main() {
	// Ctrl-C or SIGTERM stops a --follow cleanly (exit 0).
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	// Asking for SIGPIPE turns a write to a closed pipe into an EPIPE error
	// that Run reports quietly, instead of the runtime killing the process.
	signal.Notify(make(chan os.Signal, 1), syscall.SIGPIPE)
	code := app.Run(ctx, os.Args[1:], app.IO{In: os.Stdin, Out: os.Stdout, Err: os.Stderr})
	stop()
	os.Exit(code)
}
