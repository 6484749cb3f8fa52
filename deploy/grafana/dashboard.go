package grafana

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sort"
)

// Datasource types and the uids the provisioning gives them.
const (
	ClickHouseType = "grafana-clickhouse-datasource"
	PrometheusType = "prometheus"
	ClickHouseUID  = "trawl-clickhouse"
	PrometheusUID  = "trawl-prometheus"
)

// Dashboard is the part of a Grafana dashboard JSON the checks read.
type Dashboard struct {
	UID        string  `json:"uid"`
	Title      string  `json:"title"`
	Panels     []Panel `json:"panels"`
	Templating struct {
		List []Variable `json:"list"`
	} `json:"templating"`
	File string `json:"-"`
}

// DatasourceRef names a datasource by type and uid.
type DatasourceRef struct {
	Type string `json:"type"`
	UID  string `json:"uid"`
}

// Panel is one panel; rows nest panels.
type Panel struct {
	ID          int             `json:"id"`
	Type        string          `json:"type"`
	Title       string          `json:"title"`
	Interval    string          `json:"interval"`
	Datasource  *DatasourceRef  `json:"datasource"`
	Targets     []Target        `json:"targets"`
	Panels      []Panel         `json:"panels"`
	FieldConfig json.RawMessage `json:"fieldConfig"`
}

// Target is one query of a panel: rawSql for ClickHouse, expr for Prometheus.
type Target struct {
	RefID      string         `json:"refId"`
	Datasource *DatasourceRef `json:"datasource"`
	RawSQL     string         `json:"rawSql"`
	Format     *int           `json:"format"`
	Expr       string         `json:"expr"`
}

// Variable is a templating variable. Query is a string for ClickHouse and
// an object ({query: ...}) for Prometheus.
type Variable struct {
	Name       string          `json:"name"`
	Type       string          `json:"type"`
	Datasource *DatasourceRef  `json:"datasource"`
	Query      json.RawMessage `json:"query"`
	Multi      bool            `json:"multi"`
	IncludeAll bool            `json:"includeAll"`
	AllValue   string          `json:"allValue"`
}

// QueryText returns the variable's query whichever form it takes.
func (v Variable) QueryText() string {
	var s string
	if json.Unmarshal(v.Query, &s) == nil {
		return s
	}
	var o struct {
		Query string `json:"query"`
	}
	_ = json.Unmarshal(v.Query, &o)
	return o.Query
}

// AllPanels flattens rows.
func (d *Dashboard) AllPanels() []Panel {
	var out []Panel
	var walk func([]Panel)
	walk = func(ps []Panel) {
		for _, p := range ps {
			out = append(out, p)
			walk(p.Panels)
		}
	}
	walk(d.Panels)
	return out
}

// ReadDashboards reads every *.json under dir.
func ReadDashboards(dir string) ([]*Dashboard, error) {
	files, err := filepath.Glob(filepath.Join(dir, "*.json"))
	if err != nil {
		return nil, err
	}
	sort.Strings(files)
	var out []*Dashboard
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			return nil, fmt.Errorf("read dashboard: %w", err)
		}
		var d Dashboard
		if err := json.Unmarshal(b, &d); err != nil {
			return nil, fmt.Errorf("decode dashboard %s: %w", f, err)
		}
		d.File = f
		out = append(out, &d)
	}
	return out, nil
}
