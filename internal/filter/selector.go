package filter

import (
	"fmt"
	"slices"
	"strings"
)

// Selector is one label selector: every requirement must hold (AND).
type Selector struct {
	Text         string
	Requirements []Requirement
}

// Op is a label requirement operator.
type Op uint8

// Label requirement operators, as in Kubernetes label selectors.
const (
	OpExists    Op = iota // key
	OpNotExists           // !key
	OpIn                  // key=value, key==value, key in (a,b)
	OpNotIn               // key!=value, key notin (a,b)
)

// Requirement is one term of a selector. Source is the label source ("k8s",
// "reserved", ...) or empty for any source.
type Requirement struct {
	Source string
	Key    string
	Op     Op
	Values []string
}

// SplitLabel splits a flow label "source:key=value" into its parts. The
// source is what precedes the first ':' when that comes before any '='; the
// value follows the first '='. A label without '=' has an empty value.
// relay/store mirrors this exact rule in SQL.
func SplitLabel(l string) (source, key, value string) {
	i := strings.IndexAny(l, ":=")
	if i >= 0 && l[i] == ':' {
		source, l = l[:i], l[i+1:]
	}
	key, value, _ = strings.Cut(l, "=")
	return source, key, value
}

func compileSelectors(field string, vals []string) ([]Selector, error) {
	var out []Selector
	for _, v := range vals {
		s, err := parseSelector(v)
		if err != nil {
			return nil, fmt.Errorf("%s: bad selector %q: %w", field, v, err)
		}
		out = append(out, s)
	}
	return out, nil
}

func parseSelector(text string) (Selector, error) {
	sel := Selector{Text: text}
	var terms []string
	depth, start := 0, 0
	for i := 0; i < len(text); i++ {
		switch text[i] {
		case '(':
			depth++
		case ')':
			depth--
			if depth < 0 {
				return sel, fmt.Errorf("unbalanced ')'")
			}
		case ',':
			if depth == 0 {
				terms = append(terms, text[start:i])
				start = i + 1
			}
		}
	}
	if depth != 0 {
		return sel, fmt.Errorf("unbalanced '('")
	}
	terms = append(terms, text[start:])
	for _, t := range terms {
		r, err := parseRequirement(strings.TrimSpace(t))
		if err != nil {
			return sel, err
		}
		sel.Requirements = append(sel.Requirements, r)
	}
	return sel, nil
}

func parseRequirement(t string) (Requirement, error) {
	var r Requirement
	var key string
	switch {
	case t == "":
		return r, fmt.Errorf("empty requirement")
	case strings.Contains(t, "("):
		open := strings.IndexByte(t, '(')
		if !strings.HasSuffix(t, ")") {
			return r, fmt.Errorf("%q: want key in (a,b) or key notin (a,b)", t)
		}
		head := strings.Fields(t[:open])
		if len(head) != 2 || (head[1] != "in" && head[1] != "notin") {
			return r, fmt.Errorf("%q: want key in (a,b) or key notin (a,b)", t)
		}
		key = head[0]
		r.Op = OpIn
		if head[1] == "notin" {
			r.Op = OpNotIn
		}
		for _, v := range strings.Split(t[open+1:len(t)-1], ",") {
			v = strings.TrimSpace(v)
			if err := checkValue(v); err != nil {
				return r, err
			}
			r.Values = append(r.Values, v)
		}
	case strings.Contains(t, "!="):
		k, v, _ := strings.Cut(t, "!=")
		key, r.Op, r.Values = strings.TrimSpace(k), OpNotIn, []string{strings.TrimSpace(v)}
	case strings.Contains(t, "="):
		k, v, _ := strings.Cut(t, "=")
		v = strings.TrimPrefix(v, "=")
		key, r.Op, r.Values = strings.TrimSpace(k), OpIn, []string{strings.TrimSpace(v)}
	case strings.HasPrefix(t, "!"):
		key, r.Op = strings.TrimSpace(t[1:]), OpNotExists
	default:
		key, r.Op = t, OpExists
	}
	for _, v := range r.Values {
		if err := checkValue(v); err != nil {
			return r, err
		}
	}
	if src, k, ok := strings.Cut(key, ":"); ok {
		if src == "" {
			return r, fmt.Errorf("empty label source in %q", key)
		}
		if src != "any" {
			r.Source = src
		}
		key = k
	}
	if err := checkKey(key); err != nil {
		return r, err
	}
	r.Key = key
	return r, nil
}

// checkKey accepts Kubernetes label keys: [prefix/]name with letters,
// digits, '-', '_', '.'.
func checkKey(k string) error {
	if k == "" {
		return fmt.Errorf("empty label key")
	}
	for i := 0; i < len(k); i++ {
		c := k[i]
		if !(isAlnum(c) || c == '-' || c == '_' || c == '.' || c == '/') {
			return fmt.Errorf("label key %q: invalid character %q", k, c)
		}
	}
	return nil
}

func checkValue(v string) error {
	for i := 0; i < len(v); i++ {
		c := v[i]
		if !(isAlnum(c) || c == '-' || c == '_' || c == '.') {
			return fmt.Errorf("label value %q: invalid character %q", v, c)
		}
	}
	return nil
}

func isAlnum(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
}

// Match reports whether a set of flow labels satisfies every requirement.
func (s *Selector) Match(labels []string) bool {
	for i := range s.Requirements {
		if !s.Requirements[i].Match(labels) {
			return false
		}
	}
	return true
}

// Match reports whether the labels satisfy one requirement.
func (r *Requirement) Match(labels []string) bool {
	found := false
	for _, l := range labels {
		src, key, val := SplitLabel(l)
		if key != r.Key || (r.Source != "" && src != r.Source) {
			continue
		}
		if r.Op == OpExists || r.Op == OpNotExists || slices.Contains(r.Values, val) {
			found = true
			break
		}
	}
	if r.Op == OpNotExists || r.Op == OpNotIn {
		return !found
	}
	return found
}

func matchSelectors(ss []Selector, labels []string) bool {
	for i := range ss {
		if ss[i].Match(labels) {
			return true
		}
	}
	return false
}
