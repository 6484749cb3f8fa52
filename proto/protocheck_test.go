package proto_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// make proto-check must notice a generated file edited by hand. The check
// runs on a copy of the contract so the work tree is never touched.
func TestProtoCheckDetectsAHandEditedGeneratedFile(t *testing.T) {
	root, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	for _, p := range []string{"buf.yaml", "buf.gen.yaml", "go.mod", "go.sum", "proto", "scripts/proto-check.sh"} {
		if err := os.MkdirAll(filepath.Dir(filepath.Join(dir, p)), 0o755); err != nil {
			t.Fatal(err)
		}
		if out, err := exec.Command("cp", "-r", filepath.Join(root, p), filepath.Join(dir, p)).CombinedOutput(); err != nil {
			t.Fatalf("copy %s: %v: %s", p, err, out)
		}
	}
	check := func() (string, error) {
		cmd := exec.Command("bash", "scripts/proto-check.sh", ".")
		cmd.Dir = dir
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	if out, err := check(); err != nil {
		t.Fatalf("proto-check fails on the committed contract: %v\n%s", err, out)
	}
	gen := filepath.Join(dir, "proto/trawl/flow/v1/flow.pb.go")
	b, err := os.ReadFile(gen)
	if err != nil {
		t.Fatal(err)
	}
	edited := strings.Replace(string(b), "FORWARDED", "FORWARDED_BY_HAND", 1)
	if err := os.WriteFile(gen, []byte(edited), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := check()
	if err == nil {
		t.Fatalf("proto-check passed with a hand-edited flow.pb.go:\n%s", out)
	}
	if !strings.Contains(out, "flow.pb.go") {
		t.Errorf("proto-check failed without naming the edited file:\n%s", out)
	}
}
