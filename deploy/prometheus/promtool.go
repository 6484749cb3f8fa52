package prometheus

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"

	"sigs.k8s.io/yaml"
)

// ErrNoPromtool says promtool is not installed. The tests fail on it: promtool
// comes from Debian's prometheus package, which `make deps` installs.
var ErrNoPromtool = errors.New("promtool not found in PATH: install Debian's prometheus package (`make deps` does)")

// Promtool runs promtool with args and returns its combined output; a non-zero
// exit is an error carrying that output.
func Promtool(args ...string) (string, error) {
	bin, err := exec.LookPath("promtool")
	if err != nil {
		return "", ErrNoPromtool
	}
	out, err := exec.Command(bin, args...).CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("promtool %s: %w\n%s", strings.Join(args, " "), err, out)
	}
	return string(out), nil
}

// CheckExprs has promtool parse each PromQL expression by wrapping it in a
// recording rule of a temporary rules file and running `promtool check
// rules`. The map key names the expression in errors.
func CheckExprs(dir string, exprs map[string]string) error {
	type rule struct {
		Record string `json:"record"`
		Expr   string `json:"expr"`
	}
	var rules []rule
	var names []string
	for name := range exprs {
		names = append(names, name)
	}
	// Stable order so a failure points at the same rule every run.
	sort.Strings(names)
	for i, name := range names {
		rules = append(rules, rule{Record: fmt.Sprintf("trawl_check:expr_%d", i), Expr: exprs[name]})
	}
	doc := map[string]any{"groups": []any{map[string]any{"name": "exprs", "rules": rules}}}
	b, err := yaml.Marshal(doc)
	if err != nil {
		return fmt.Errorf("encode rules: %w", err)
	}
	path := filepath.Join(dir, "exprs.rules.yaml")
	if err := os.WriteFile(path, b, 0o644); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if _, err := Promtool("check", "rules", path); err != nil {
		var idx strings.Builder
		for i, name := range names {
			fmt.Fprintf(&idx, "  expr_%d = %s: %s\n", i, name, exprs[name])
		}
		return fmt.Errorf("%w\nexpressions:\n%s", err, idx.String())
	}
	return nil
}
