package prometheus_test

import (
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/trawl-dev/trawl/internal/dropclass"
)

const dropClassesDoc = "../../docs/drop-classes.md"

var docName = regexp.MustCompile("`([^`]+)`")

// docs/drop-classes.md lists every class of internal/dropclass, in its
// order, with exactly the table's reasons, shown by default and alerted on
// exactly when the class is actionable; and the drop alert leaves out
// exactly the classes that are not.
func TestTheDropClassesDocIsTheCodesTable(t *testing.T) {
	raw, err := os.ReadFile(dropClassesDoc)
	if err != nil {
		t.Fatal(err)
	}
	type row struct {
		shown, alerted bool
		reasons        []string
	}
	var order []dropclass.Class
	rows := map[dropclass.Class]row{}
	for _, line := range strings.Split(string(raw), "\n") {
		if !strings.HasPrefix(line, "| `") {
			continue
		}
		cells := strings.Split(strings.Trim(line, "|"), " | ")
		if len(cells) != 5 {
			t.Fatalf("row with %d cells, want class, meaning, shown, alerted, reasons: %s", len(cells), line)
		}
		name := strings.Trim(strings.TrimSpace(cells[0]), "`")
		c, err := dropclass.Parse(name)
		if err != nil || string(c) != name {
			t.Errorf("%q is not a class of internal/dropclass (%v)", name, err)
			continue
		}
		r := row{
			shown:   strings.HasPrefix(strings.TrimSpace(cells[2]), "yes"),
			alerted: strings.HasPrefix(strings.TrimSpace(cells[3]), "yes"),
		}
		for _, m := range docName.FindAllStringSubmatch(cells[4], -1) {
			r.reasons = append(r.reasons, m[1])
		}
		order = append(order, c)
		rows[c] = r
	}
	if !slices.Equal(order, dropclass.All) {
		t.Errorf("the doc lists the classes %v, internal/dropclass %v", order, dropclass.All)
	}
	for _, c := range dropclass.All {
		r, ok := rows[c]
		if !ok {
			continue
		}
		if want := dropclass.Reasons(c); !slices.Equal(r.reasons, want) {
			t.Errorf("%s: the doc lists the reasons\n %v\ninternal/dropclass\n %v", c, r.reasons, want)
		}
		for _, reason := range r.reasons {
			if got := dropclass.Of(reason); got != c {
				t.Errorf("%s is listed under %s, dropclass.Of says %s", reason, c, got)
			}
		}
		if r.shown != c.Actionable() || r.alerted != c.Actionable() {
			t.Errorf("%s: the doc says shown %v, alerted %v; Actionable() is %v", c, r.shown, r.alerted, c.Actionable())
		}
	}

	// The alert on unexplained drops leaves out exactly the classes that
	// are not actionable.
	var expr string
	for _, a := range readRules(t).Alerts() {
		if a.Alert == "TrawlPacketDropsHigh" {
			expr = a.Expr
		}
	}
	if expr == "" {
		t.Fatal("no TrawlPacketDropsHigh alert")
	}
	for _, c := range dropclass.All {
		excluded := strings.Contains(expr, `drop_class!="`+string(c)+`"`)
		if excluded == c.Actionable() {
			t.Errorf("TrawlPacketDropsHigh excludes %s: %v, but Actionable() is %v: %s", c, excluded, c.Actionable(), expr)
		}
	}
}
