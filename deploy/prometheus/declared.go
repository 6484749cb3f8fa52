package prometheus

import (
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
)

// Declared is a metric a Go package of Trawl declares with client_golang.
type Declared struct {
	Name   string
	Type   string // counter, gauge, histogram, summary
	Labels []string
	Pos    string
}

// DeclaredMetrics parses the non-test Go files under the given directories
// and returns the metrics they create with prometheus.NewCounter(Vec),
// NewGauge(Vec), NewHistogram(Vec) and NewSummary(Vec) whose Name starts
// with prefix: the names the binaries can export, with their labels.
func DeclaredMetrics(prefix string, dirs ...string) (map[string]Declared, error) {
	out := map[string]Declared{}
	fset := token.NewFileSet()
	for _, dir := range dirs {
		err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			if d.IsDir() || !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
				return nil
			}
			f, err := parser.ParseFile(fset, path, nil, 0)
			if err != nil {
				return fmt.Errorf("parse %s: %w", path, err)
			}
			ast.Inspect(f, func(n ast.Node) bool {
				call, ok := n.(*ast.CallExpr)
				if !ok {
					return true
				}
				sel, ok := call.Fun.(*ast.SelectorExpr)
				if !ok || !strings.HasPrefix(sel.Sel.Name, "New") || len(call.Args) == 0 {
					return true
				}
				kind := strings.TrimPrefix(sel.Sel.Name, "New")
				vec := strings.HasSuffix(kind, "Vec")
				kind = strings.ToLower(strings.TrimSuffix(kind, "Vec"))
				if kind != "counter" && kind != "gauge" && kind != "histogram" && kind != "summary" {
					return true
				}
				name := optsName(call.Args[0])
				if !strings.HasPrefix(name, prefix) {
					return true
				}
				m := Declared{Name: name, Type: kind, Pos: fset.Position(call.Pos()).String()}
				if vec && len(call.Args) > 1 {
					m.Labels = stringList(call.Args[1])
				}
				out[name] = m
				return true
			})
			return nil
		})
		if err != nil {
			return nil, err
		}
	}
	return out, nil
}

func optsName(e ast.Expr) string {
	lit, ok := e.(*ast.CompositeLit)
	if !ok {
		return ""
	}
	for _, el := range lit.Elts {
		kv, ok := el.(*ast.KeyValueExpr)
		if !ok {
			continue
		}
		if id, ok := kv.Key.(*ast.Ident); ok && id.Name == "Name" {
			if b, ok := kv.Value.(*ast.BasicLit); ok {
				s, _ := strconv.Unquote(b.Value)
				return s
			}
		}
	}
	return ""
}

func stringList(e ast.Expr) []string {
	lit, ok := e.(*ast.CompositeLit)
	if !ok {
		return nil
	}
	var out []string
	for _, el := range lit.Elts {
		if b, ok := el.(*ast.BasicLit); ok {
			s, _ := strconv.Unquote(b.Value)
			out = append(out, s)
		}
	}
	sort.Strings(out)
	return out
}
