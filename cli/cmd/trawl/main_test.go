package main

import (
	"bufio"
	"bytes"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/trawl-dev/trawl/cli/internal/fakerelay"
)

// These tests run the real binary: exit codes, signals and pipes are the
// process's business, not the command tree's.

func build(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "trawl")
	out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput()
	if err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

func exitCode(err error) int {
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return ee.ExitCode()
	}
	if err != nil {
		return -1
	}
	return 0
}

func TestBinary(t *testing.T) {
	bin := build(t)

	t.Run("a usage mistake exits 2 with one line and a hint", func(t *testing.T) {
		var stderr bytes.Buffer
		cmd := exec.Command(bin, "observe", "--verdict", "MAYBE")
		cmd.Stderr = &stderr
		if code := exitCode(cmd.Run()); code != 2 {
			t.Fatalf("exit %d, want 2", code)
		}
		if lines := strings.Split(strings.TrimSpace(stderr.String()), "\n"); len(lines) != 2 {
			t.Fatalf("stderr %q", stderr.String())
		}
	})

	t.Run("a closed pipe ends output quietly with exit 0", func(t *testing.T) {
		// A big input so the writer is still writing when the reader leaves.
		in := filepath.Join(t.TempDir(), "in.jsonl")
		line, err := os.ReadFile("../../observe/testdata/trawl.jsonl")
		if err != nil {
			t.Fatal(err)
		}
		first := bytes.SplitN(line, []byte("\n"), 2)[0]
		if err := os.WriteFile(in, bytes.Repeat(append(first, '\n'), 50000), 0o644); err != nil {
			t.Fatal(err)
		}
		var stderr bytes.Buffer
		cmd := exec.Command(bin, "observe", "--input-file", in, "--color", "never")
		cmd.Stderr = &stderr
		stdout, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		// Read one line, then go away like `| head -1`.
		if _, err := bufio.NewReader(stdout).ReadString('\n'); err != nil {
			t.Fatal(err)
		}
		stdout.Close()
		if code := exitCode(cmd.Wait()); code != 0 {
			t.Fatalf("exit %d after the reader left, want 0 (stderr %q)", code, stderr.String())
		}
		if stderr.Len() != 0 {
			t.Fatalf("stderr not quiet: %q", stderr.String())
		}
	})

	t.Run("SIGINT during --follow exits 0", func(t *testing.T) {
		s := &fakerelay.Server{}
		addr := fakerelay.Start(t, s)
		var stderr bytes.Buffer
		cmd := exec.Command(bin, "observe", "--server", addr, "--follow")
		cmd.Stderr = &stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		select {
		case <-s.Following:
		case <-time.After(20 * time.Second):
			cmd.Process.Kill()
			t.Fatal("follow stream never started")
		}
		if err := cmd.Process.Signal(syscall.SIGINT); err != nil {
			t.Fatal(err)
		}
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		select {
		case err := <-done:
			if code := exitCode(err); code != 0 {
				t.Fatalf("exit %d after SIGINT, want 0 (stderr %q)", code, stderr.String())
			}
		case <-time.After(20 * time.Second):
			cmd.Process.Kill()
			t.Fatal("did not stop on SIGINT")
		}
	})
}
