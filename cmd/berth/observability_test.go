package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"
	"text/template"

	"github.com/berthhq/berth/gc"
	"github.com/berthhq/berth/notify"
	"github.com/berthhq/berth/registry"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/promql/parser"
	"go.yaml.in/yaml/v3"
)

// metric is one metric Berth serves at /metrics: its kind and its labels,
// each with the values it takes where they are a fixed set (nil: any).
type metric struct {
	histogram bool
	labels    map[string][]string
}

var routes = []string{"base", "catalog", "manifest", "blob", "uploads", "upload", "tags", "referrers",
	"tag-history", "admin", "token", "health", "other"}

// knownMetrics are the metrics of Berth's own, the one list the Grafana
// dashboard (deploy/grafana) and the alert rules (deploy/prometheus) are
// checked against. A metric renamed in code must be renamed here too, and
// then this test shows every query that still uses the old name. The Go and
// process collectors' metrics are not listed: the test asks those
// collectors for their names.
//
// TestKnownMetricsMatchCode checks the metrics of the packages in
// metricOwners against their code; metadata's and storage/s3's are listed
// by hand, since their metrics are made only with an open database or an
// S3 client.
var knownMetrics = map[string]metric{
	// registry: HTTP
	"berth_http_requests_total":             {labels: map[string][]string{"route": routes, "method": nil, "code": nil}},
	"berth_http_request_duration_seconds":   {histogram: true, labels: map[string][]string{"route": routes, "method": nil}},
	"berth_http_request_bytes_total":        {labels: map[string][]string{"route": routes}},
	"berth_http_response_bytes_total":       {labels: map[string][]string{"route": routes}},
	"berth_http_uploads_in_flight":          {},
	"berth_uploads_deduplicated_total":      {},
	"berth_blob_mounts_total":               {},
	"berth_storage_physical_bytes":          {},
	"berth_storage_logical_bytes":           {},
	"berth_storage_blobs":                   {},
	"berth_storage_dedup_ratio":             {},
	"berth_metadata_query_duration_seconds": {histogram: true, labels: map[string][]string{"op": nil}},
	"berth_metadata_connections":            {labels: map[string][]string{"state": {"in_use", "idle", "open"}}},
	"berth_metadata_wait_seconds_total":     {},
	"berth_s3_requests_total":               {labels: map[string][]string{"operation": nil, "code": nil}},
	"berth_s3_request_duration_seconds":     {histogram: true, labels: map[string][]string{"operation": nil}},
	"berth_s3_retries_total":                {labels: map[string][]string{"operation": nil}},
	// gc
	"berth_gc_runs_total":          {labels: map[string][]string{"result": {"ok", "error", "busy"}}},
	"berth_gc_duration_seconds":    {histogram: true},
	"berth_gc_deleted_total":       {labels: map[string][]string{"kind": {"manifests", "links", "blobs"}}},
	"berth_gc_deleted_bytes_total": {},
	"berth_gc_candidates":          {},
	"berth_gc_errors_total":        {},
	// notify
	"berth_webhook_attempts_total": {labels: map[string][]string{"webhook": nil,
		"outcome": {"delivered", "retry", "dead", "disabled"}}},
	"berth_webhook_attempt_duration_seconds": {histogram: true, labels: map[string][]string{"webhook": nil}},
	"berth_webhook_pauses_total":             {labels: map[string][]string{"webhook": nil}},
	"berth_webhook_pending_deliveries":       {},
	"berth_webhook_dead_deliveries":          {},
}

// metricOwners are the packages whose metrics TestKnownMetricsMatchCode
// reads from the code: every metric of theirs is under one of their
// prefixes and in knownMetrics, and every one of knownMetrics under their
// prefixes is theirs.
var metricOwners = []struct {
	prefixes []string
	register func(prometheus.Registerer)
}{
	{[]string{"berth_gc_"}, func(r prometheus.Registerer) { gc.New(gc.Options{Metrics: r}) }},
	{[]string{"berth_webhook_"}, func(r prometheus.Registerer) { notify.New(notify.Options{Metrics: r}) }},
	{[]string{"berth_storage_"}, func(r prometheus.Registerer) { r.MustRegister(registry.NewStatsCollector(nil)) }},
	{[]string{"berth_http_", "berth_uploads_", "berth_blob_"}, func(r prometheus.Registerer) { registry.New(registry.Options{Metrics: r}) }},
}

// scrapeLabels are the labels Prometheus adds to every scraped series.
var scrapeLabels = []string{"job", "instance"}

// otherMetrics are the names beside Berth's and the Go and process
// collectors' that the rules may use.
var otherMetrics = []string{"up"}

func TestKnownMetricsMatchCode(t *testing.T) {
	for _, owner := range metricOwners {
		rec := &recordingRegisterer{}
		owner.register(rec)
		owned := func(name string) bool {
			return slices.ContainsFunc(owner.prefixes, func(p string) bool { return strings.HasPrefix(name, p) })
		}
		described := map[string]bool{}
		for _, d := range rec.metrics {
			described[d.name] = true
			if !owned(d.name) {
				t.Errorf("%s is not under %v", d.name, owner.prefixes)
			}
			known, ok := knownMetrics[d.name]
			if !ok {
				t.Errorf("the code has %s, which knownMetrics lacks", d.name)
				continue
			}
			if d.kind != "" && (d.kind == "histogram") != known.histogram {
				t.Errorf("%s is a %s in the code; knownMetrics says histogram=%v", d.name, d.kind, known.histogram)
			}
			var labels []string
			for l := range known.labels {
				labels = append(labels, l)
			}
			slices.Sort(labels)
			slices.Sort(d.labels)
			if !slices.Equal(labels, d.labels) {
				t.Errorf("%s has labels %v in the code, %v in knownMetrics", d.name, d.labels, labels)
			}
		}
		for name := range knownMetrics {
			if owned(name) && !described[name] {
				t.Errorf("knownMetrics has %s, which the code does not", name)
			}
		}
	}
}

// alertRules is deploy/prometheus/alerts.yaml, as Prometheus reads it.
type alertRules struct {
	Groups []struct {
		Name  string `yaml:"name"`
		Rules []struct {
			Alert       string            `yaml:"alert"`
			Expr        string            `yaml:"expr"`
			For         string            `yaml:"for"`
			Labels      map[string]string `yaml:"labels"`
			Annotations map[string]string `yaml:"annotations"`
		} `yaml:"rules"`
	} `yaml:"groups"`
}

func TestAlertRules(t *testing.T) {
	b, err := os.ReadFile("../../deploy/prometheus/alerts.yaml")
	if err != nil {
		t.Fatal(err)
	}
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	var rules alertRules
	if err := dec.Decode(&rules); err != nil {
		t.Fatalf("alerts.yaml: %v", err)
	}
	check := newQueryChecker(t)
	names := map[string]bool{}
	for _, g := range rules.Groups {
		if g.Name == "" || len(g.Rules) == 0 {
			t.Errorf("group %q: a group needs a name and rules", g.Name)
		}
		for _, r := range g.Rules {
			if r.Alert == "" || names[r.Alert] {
				t.Errorf("group %s: alert %q is empty or not unique", g.Name, r.Alert)
			}
			names[r.Alert] = true
			if _, err := model.ParseDuration(r.For); err != nil {
				t.Errorf("%s: for: %v", r.Alert, err)
			}
			if s := r.Labels["severity"]; s != "critical" && s != "warning" {
				t.Errorf("%s: severity %q is neither critical nor warning", r.Alert, s)
			}
			for _, a := range []string{"summary", "description"} {
				if r.Annotations[a] == "" {
					t.Errorf("%s: no %s annotation", r.Alert, a)
				}
			}
			for k, v := range r.Annotations {
				// Prometheus defines $labels and $value before the text.
				text := "{{$labels := .Labels}}{{$value := .Value}}" + v
				funcs := template.FuncMap{"humanize": fmt.Sprint, "humanizePercentage": fmt.Sprint}
				if _, err := template.New(k).Funcs(funcs).Parse(text); err != nil {
					t.Errorf("%s: annotation %s: %v", r.Alert, k, err)
				}
			}
			check.query(r.Alert, r.Expr)
		}
	}
}

// dashboard is the part of deploy/grafana/berth.json the test reads.
type dashboard struct {
	SchemaVersion int `json:"schemaVersion"`
	Templating    struct {
		List []struct {
			Name  string `json:"name"`
			Type  string `json:"type"`
			Query any    `json:"query"`
		} `json:"list"`
	} `json:"templating"`
	Panels []panel `json:"panels"`
}

type panel struct {
	ID         int    `json:"id"`
	Type       string `json:"type"`
	Title      string `json:"title"`
	Datasource *struct {
		UID string `json:"uid"`
	} `json:"datasource"`
	Targets []struct {
		Expr string `json:"expr"`
	} `json:"targets"`
	Panels []panel `json:"panels"` // of a collapsed row
}

// grafanaVariables stand for the dashboard's variables in its queries, so
// that they parse as PromQL.
var grafanaVariables = strings.NewReplacer("$__rate_interval", "5m", "$__interval", "1m", "$job", ".*", "$instance", ".*")

func TestGrafanaDashboard(t *testing.T) {
	b, err := os.ReadFile("../../deploy/grafana/berth.json")
	if err != nil {
		t.Fatal(err)
	}
	var d dashboard
	if err := json.Unmarshal(b, &d); err != nil {
		t.Fatalf("berth.json: %v", err)
	}
	if d.SchemaVersion < 36 {
		t.Errorf("schemaVersion %d: the dashboard needs Grafana's datasource variables (36 and later)", d.SchemaVersion)
	}
	check := newQueryChecker(t)
	vars := map[string]bool{}
	labelValues := regexp.MustCompile(`^label_values\((.+), *\w+\)$`)
	for _, v := range d.Templating.List {
		vars[v.Name] = true
		q, ok := v.Query.(map[string]any)
		if v.Type != "query" {
			continue
		}
		m := labelValues.FindStringSubmatch(fmt.Sprint(q["query"]))
		if !ok || m == nil {
			t.Errorf("variable %s: query %v is not label_values(selector, label)", v.Name, v.Query)
			continue
		}
		check.query("variable "+v.Name, grafanaVariables.Replace(m[1]))
	}
	for _, v := range []string{"datasource", "job", "instance"} {
		if !vars[v] {
			t.Errorf("the dashboard has no %s variable", v)
		}
	}
	ids := map[int]bool{}
	var walk func([]panel)
	walk = func(panels []panel) {
		for _, p := range panels {
			if ids[p.ID] {
				t.Errorf("panel %q: id %d is not unique", p.Title, p.ID)
			}
			ids[p.ID] = true
			walk(p.Panels)
			if p.Type == "row" {
				continue
			}
			if p.Datasource == nil || p.Datasource.UID != "${datasource}" {
				t.Errorf("panel %q: its datasource is not ${datasource}", p.Title)
			}
			if len(p.Targets) == 0 {
				t.Errorf("panel %q has no queries", p.Title)
			}
			for _, target := range p.Targets {
				if !strings.Contains(target.Expr, `job=~"$job", instance=~"$instance"`) {
					t.Errorf("panel %q: %s does not select $job and $instance", p.Title, target.Expr)
				}
				check.query("panel "+p.Title, grafanaVariables.Replace(target.Expr))
			}
		}
	}
	walk(d.Panels)
	for name := range knownMetrics {
		if !check.used[name] {
			t.Errorf("the dashboard shows nothing of %s", name)
		}
	}
}

// queryChecker parses PromQL and checks the metrics, labels and label
// values it names against knownMetrics and the Go and process collectors.
type queryChecker struct {
	t       *testing.T
	runtime map[string]bool // the Go and process collectors' metric names
	used    map[string]bool // the known metrics the queries have named
}

func newQueryChecker(t *testing.T) *queryChecker {
	r := prometheus.NewRegistry()
	r.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	families, err := r.Gather()
	if err != nil {
		t.Fatal(err)
	}
	c := &queryChecker{t: t, runtime: map[string]bool{}, used: map[string]bool{}}
	for _, f := range families {
		c.runtime[f.GetName()] = true
	}
	for _, name := range otherMetrics {
		c.runtime[name] = true
	}
	return c
}

func (c *queryChecker) query(where, expr string) {
	c.t.Helper()
	e, err := parser.ParseExpr(expr)
	if err != nil {
		c.t.Errorf("%s: %v", where, err)
		return
	}
	parser.Inspect(e, func(n parser.Node, _ []parser.Node) error {
		switch n := n.(type) {
		case *parser.VectorSelector:
			c.selector(where, n)
		case *parser.AggregateExpr:
			// Grouping by a label the metrics inside do not have yields one
			// series where many were meant.
			parser.Inspect(n.Expr, func(m parser.Node, _ []parser.Node) error {
				if vs, ok := m.(*parser.VectorSelector); ok {
					for _, l := range n.Grouping {
						if labels, ok := c.labels(vs.Name); ok && !slices.Contains(labels, l) {
							c.t.Errorf("%s: grouping by %s, which %s does not have", where, l, vs.Name)
						}
					}
				}
				return nil
			})
		}
		return nil
	})
}

// labels returns the labels a known metric's series carry once scraped;
// false for names not of Berth's.
func (c *queryChecker) labels(name string) ([]string, bool) {
	base, suffix := knownName(name)
	m, ok := knownMetrics[base]
	if !ok {
		return nil, false
	}
	labels := slices.Clone(scrapeLabels)
	for l := range m.labels {
		labels = append(labels, l)
	}
	if suffix == "_bucket" {
		labels = append(labels, "le")
	}
	return labels, true
}

// knownName splits a histogram's series name into its metric and suffix.
func knownName(name string) (base, suffix string) {
	for _, s := range []string{"_bucket", "_sum", "_count"} {
		if b, ok := strings.CutSuffix(name, s); ok && knownMetrics[b].histogram {
			return b, s
		}
	}
	return name, ""
}

func (c *queryChecker) selector(where string, vs *parser.VectorSelector) {
	name := vs.Name
	if name == "" {
		c.t.Errorf("%s: a selector without a metric name: %s", where, vs)
		return
	}
	if !strings.HasPrefix(name, "berth_") {
		if !c.runtime[name] {
			c.t.Errorf("%s: %s is neither Berth's nor the Go and process collectors'", where, name)
		}
		return
	}
	base, _ := knownName(name)
	m, ok := knownMetrics[base]
	if !ok {
		c.t.Errorf("%s: %s is not in knownMetrics", where, name)
		return
	}
	if m.histogram && base == name {
		c.t.Errorf("%s: %s is a histogram: query its _bucket, _sum or _count", where, name)
	}
	c.used[base] = true
	labels, _ := c.labels(name)
	for _, lm := range vs.LabelMatchers {
		if lm.Name == "__name__" {
			continue
		}
		if !slices.Contains(labels, lm.Name) {
			c.t.Errorf("%s: %s has no label %s", where, name, lm.Name)
			continue
		}
		values := m.labels[lm.Name]
		if values == nil {
			continue
		}
		if lm.Type.String() == "=" || lm.Type.String() == "!=" {
			if !slices.Contains(values, lm.Value) {
				c.t.Errorf("%s: %s{%s} is never %q (it is one of %v)", where, name, lm.Name, lm.Value, values)
			}
			continue
		}
		// A regular expression must match at least one value.
		if !slices.ContainsFunc(values, lm.Matches) {
			c.t.Errorf("%s: %s{%s%s%q} matches none of %v", where, name, lm.Name, lm.Type, lm.Value, values)
		}
	}
}

// recordingRegisterer is a prometheus.Registerer that records the metrics
// it is given.
type recordingRegisterer struct {
	metrics []describedMetric
}

type describedMetric struct {
	name   string
	kind   string // histogram, other, or "" when the collector does not say
	labels []string
}

var descString = regexp.MustCompile(`fqName: "([^"]*)".*variableLabels: \{([^}]*)\}`)

func (r *recordingRegisterer) Register(c prometheus.Collector) error {
	kind := ""
	switch c.(type) {
	case prometheus.Histogram, *prometheus.HistogramVec:
		kind = "histogram"
	case prometheus.Counter, *prometheus.CounterVec, prometheus.Gauge, *prometheus.GaugeVec, prometheus.GaugeFunc:
		kind = "other"
	}
	ch := make(chan *prometheus.Desc)
	go func() { c.Describe(ch); close(ch) }()
	for d := range ch {
		// A Desc tells its name and labels only in its String.
		m := descString.FindStringSubmatch(d.String())
		if m == nil {
			return fmt.Errorf("cannot read %s", d)
		}
		var labels []string
		if m[2] != "" {
			labels = strings.Split(m[2], ",")
		}
		r.metrics = append(r.metrics, describedMetric{name: m[1], kind: kind, labels: labels})
	}
	return nil
}

func (r *recordingRegisterer) MustRegister(cs ...prometheus.Collector) {
	for _, c := range cs {
		if err := r.Register(c); err != nil {
			panic(err)
		}
	}
}

func (r *recordingRegisterer) Unregister(prometheus.Collector) bool { return false }
