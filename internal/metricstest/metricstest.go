// Package metricstest reads Prometheus metrics in tests.
package metricstest

import (
	"slices"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

// Sample returns the value of the series of family name whose labels
// include labels (name, value, …) as it is gathered from g: a histogram's
// observation count, or a counter's or gauge's value; 0 if there is none.
func Sample(t testing.TB, g prometheus.Gatherer, name string, labels ...string) float64 {
	t.Helper()
	families, err := g.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range families {
		if f.GetName() != name {
			continue
		}
		for _, m := range f.GetMetric() {
			if hasLabels(m.GetLabel(), labels) {
				return float64(m.GetHistogram().GetSampleCount()) + m.GetCounter().GetValue() + m.GetGauge().GetValue()
			}
		}
	}
	return 0
}

// hasLabels reports whether pairs include every name and value of want.
func hasLabels[P interface {
	GetName() string
	GetValue() string
}](pairs []P, want []string) bool {
	for i := 0; i+1 < len(want); i += 2 {
		if !slices.ContainsFunc(pairs, func(p P) bool { return p.GetName() == want[i] && p.GetValue() == want[i+1] }) {
			return false
		}
	}
	return true
}
