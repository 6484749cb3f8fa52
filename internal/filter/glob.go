package filter

import (
	"fmt"
	"strings"
)

// Glob is a pattern where '*' matches any run of characters (possibly
// empty), as Hubble's node-name filter; every other character is literal.
type Glob struct {
	Pattern string
	parts   []string // Pattern split at '*'
}

func compileGlobs(field string, vals []string) ([]Glob, error) {
	var out []Glob
	for _, v := range vals {
		if v == "" {
			return nil, fmt.Errorf("%s: empty pattern", field)
		}
		out = append(out, Glob{Pattern: v, parts: strings.Split(v, "*")})
	}
	return out, nil
}

// compileFQDNs compiles Hubble's FQDN patterns ("*.example.com",
// "example.com."): canonicalised as Hubble does (spaces trimmed, one
// trailing dot dropped, lower case), '*' any run of characters.
func compileFQDNs(field string, vals []string) ([]Glob, error) {
	var out []Glob
	for _, v := range vals {
		p := strings.ToLower(strings.TrimSuffix(strings.TrimSpace(v), "."))
		if p == "" {
			return nil, fmt.Errorf("%s: empty pattern %q", field, v)
		}
		if strings.HasSuffix(p, ".") {
			return nil, fmt.Errorf("%s: %q ends in two dots", field, v)
		}
		out = append(out, Glob{Pattern: p, parts: strings.Split(p, "*")})
	}
	return out, nil
}

// Literal reports whether the pattern has no wildcard.
func (g *Glob) Literal() bool { return len(g.parts) == 1 }

// Match reports whether s matches the pattern. It does not allocate.
func (g *Glob) Match(s string) bool {
	p := g.parts
	if len(p) == 1 {
		return s == p[0]
	}
	if !strings.HasPrefix(s, p[0]) {
		return false
	}
	s = s[len(p[0]):]
	last := p[len(p)-1]
	for _, mid := range p[1 : len(p)-1] {
		i := strings.Index(s, mid)
		if i < 0 {
			return false
		}
		s = s[i+len(mid):]
	}
	return len(s) >= len(last) && strings.HasSuffix(s, last)
}

// LikePattern is the pattern for SQL LIKE: literal parts escaped ('\', '%',
// '_'), '*' as '%'. Bind it as a parameter; it is never spliced into SQL.
func (g *Glob) LikePattern() string {
	var b strings.Builder
	for i, part := range g.parts {
		if i > 0 {
			b.WriteByte('%')
		}
		b.WriteString(EscapeLike(part))
	}
	return b.String()
}

// EscapeLike escapes the LIKE metacharacters of a literal string.
func EscapeLike(s string) string {
	r := strings.NewReplacer(`\`, `\\`, `%`, `\%`, `_`, `\_`)
	return r.Replace(s)
}
