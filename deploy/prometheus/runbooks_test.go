package prometheus_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// placeholders in the runbooks' commands and the values they are checked with.
var placeholders = strings.NewReplacer("NODE", "node-a", "NS", "shop", "REASON", "NO_SOCKET")

var (
	codeSpan   = regexp.MustCompile("`(trawl [^`]+)`")
	usageAlts  = regexp.MustCompile(`Usage:\s*\n\s*trawl \S+ \[([a-z|-]+)\]`)
	shellBlock = regexp.MustCompile("(?s)```sh\n(.*?)```")
)

// runbookCommands returns every `trawl ...` command of docs/runbooks.md, from
// shell blocks (one per line, comments dropped) and inline code.
func runbookCommands(t *testing.T) []string {
	t.Helper()
	b, err := os.ReadFile(runbooksDoc)
	if err != nil {
		t.Fatal(err)
	}
	var cmds []string
	for _, block := range shellBlock.FindAllStringSubmatch(string(b), -1) {
		for _, line := range strings.Split(block[1], "\n") {
			line, _, _ = strings.Cut(line, "#")
			if line = strings.TrimSpace(line); strings.HasPrefix(line, "trawl ") {
				cmds = append(cmds, line)
			}
		}
	}
	for _, m := range codeSpan.FindAllStringSubmatch(string(b), -1) {
		cmds = append(cmds, m[1])
	}
	return cmds
}

// The runbooks tell an on-call engineer what to type: every trawl command in
// them must be accepted by the real CLI (command, flags and flag values; the
// CLI parses and validates flags before --help stops it), and a positional
// argument must be one the command lists.
func TestEveryTrawlCommandInTheRunbooksIsAcceptedByTheCLI(t *testing.T) {
	cmds := runbookCommands(t)
	if len(cmds) < 10 {
		t.Fatalf("found only %d trawl commands in %s", len(cmds), runbooksDoc)
	}
	bin := filepath.Join(t.TempDir(), "trawl")
	build := exec.Command("go", "build", "-o", bin, "github.com/trawl-dev/trawl/cli/cmd/trawl")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build the trawl CLI: %v\n%s", err, out)
	}
	for _, c := range cmds {
		t.Run(c, func(t *testing.T) {
			args := strings.Fields(placeholders.Replace(c))[1:]
			out, err := exec.Command(bin, append(args, "--help")...).CombinedOutput()
			if err != nil {
				t.Fatalf("trawl %s --help: %v\n%s", strings.Join(args, " "), err, out)
			}
			// A subcommand that lists its positional choices in its usage line.
			if m := usageAlts.FindSubmatch(out); m != nil && len(args) > 1 && !strings.HasPrefix(args[1], "-") {
				if !strings.Contains("|"+string(m[1])+"|", "|"+args[1]+"|") {
					t.Errorf("trawl %s: %q is not one of [%s]", args[0], args[1], m[1])
				}
			}
			if !strings.Contains(string(out), "Usage:") {
				t.Errorf("no usage printed; is %q a command?\n%s", args[0], out)
			}
		})
	}
}
