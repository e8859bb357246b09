package main

import (
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"strings"
)

// report holds every measurement of a run: one row per metric, one column per target.
type report struct {
	Command string    `json:"command"`
	Notes   []string  `json:"notes,omitempty"`
	Targets []string  `json:"targets"`
	Rows    []*metric `json:"metrics"`
	index   map[string]*metric
}

// metric is one row of the report.
type metric struct {
	Key    string             `json:"key"`
	Label  string             `json:"label"`
	Prec   int                `json:"-"`
	Values map[string]float64 `json:"values,omitempty"`
	Errors map[string]string  `json:"errors,omitempty"`
}

func newReport(command string, targets []string) *report {
	return &report{Command: command, Targets: targets, index: map[string]*metric{}}
}

// row returns the metric key, adding it (with its label and decimals) on first use.
func (r *report) row(key, label string, prec int) *metric {
	m := r.index[key]
	if m == nil {
		m = &metric{Key: key, Label: label, Prec: prec, Values: map[string]float64{}, Errors: map[string]string{}}
		r.index[key] = m
		r.Rows = append(r.Rows, m)
	}
	return m
}

// set records a value of target.
func (r *report) set(target, key, label string, prec int, v float64) {
	r.row(key, label, prec).Values[target] = v
}

// fail records that target could not produce key.
func (r *report) fail(target, key, label string, err error) {
	r.row(key, label, 0).Errors[target] = err.Error()
}

// markdown writes the report as a Markdown table preceded by the command line and notes.
func (r *report) markdown(w io.Writer) {
	fmt.Fprintf(w, "```\n%s\n```\n\n", r.Command)
	for _, n := range r.Notes {
		fmt.Fprintf(w, "- %s\n", n)
	}
	if len(r.Notes) > 0 {
		fmt.Fprintln(w)
	}
	head := append([]string{"metric"}, r.Targets...)
	align := []string{"---"}
	for range r.Targets {
		align = append(align, "---:")
	}
	writeRow(w, head)
	writeRow(w, align)
	for _, m := range r.Rows {
		cells := []string{m.Label}
		for _, t := range r.Targets {
			cells = append(cells, m.cell(t))
		}
		writeRow(w, cells)
	}
}

// cell formats the value of target, "error" if it failed, "–" if it was not measured.
func (m *metric) cell(target string) string {
	if _, ok := m.Errors[target]; ok {
		return "error"
	}
	v, ok := m.Values[target]
	if !ok {
		return "–"
	}
	return strconv.FormatFloat(v, 'f', m.Prec, 64)
}

func writeRow(w io.Writer, cells []string) {
	for i, c := range cells {
		cells[i] = strings.ReplaceAll(c, "|", `\|`)
	}
	fmt.Fprintf(w, "| %s |\n", strings.Join(cells, " | "))
}

// writeJSON writes the report as indented JSON.
func (r *report) writeJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(r)
}
