package app

import "github.com/spf13/cobra"

// extraCommands are commands that live in other packages of cli/ and are
// added when they exist in the tree.
func extraCommands() []*cobra.Command { return nil }
