// Package metrics is the agent's Prometheus exposition: counters and gauges that the stages
// update with one atomic add, rendered in the Prometheus text format (version 0.0.4) on /metrics.
//
// It exists instead of prometheus/client_golang because the agent runs in every pod and must stay
// small: this is all the agent needs (no histograms, no summaries, labels fixed at registration).
package metrics

import (
	"fmt"
	"io"
	"math"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
)

// Counter is a monotonically increasing count.
type Counter struct{ v atomic.Uint64 }

// Add adds n.
func (c *Counter) Add(n uint64) { c.v.Add(n) }

// Inc adds one.
func (c *Counter) Inc() { c.v.Add(1) }

// Value returns the current count.
func (c *Counter) Value() uint64 { return c.v.Load() }

// Gauge is a value that goes up and down.
type Gauge struct{ v atomic.Int64 }

// Set sets the gauge.
func (g *Gauge) Set(n int64) { g.v.Store(n) }

// Add adds n (negative to subtract).
func (g *Gauge) Add(n int64) { g.v.Add(n) }

// Value returns the current value.
func (g *Gauge) Value() int64 { return g.v.Load() }

type kind string

const (
	kindCounter kind = "counter"
	kindGauge   kind = "gauge"
)

type family struct {
	name, help string
	kind       kind
	series     map[string]any // rendered labels → *Counter | *Gauge | func() float64
}

// Registry holds metric families. The zero value is not usable; use NewRegistry.
type Registry struct {
	mu       sync.Mutex
	families map[string]*family
}

// NewRegistry returns an empty registry.
func NewRegistry() *Registry { return &Registry{families: map[string]*family{}} }

// Counter returns the counter name{labels}, creating it on first use. labels are name, value pairs.
func (r *Registry) Counter(name, help string, labels ...string) *Counter {
	return r.series(name, help, kindCounter, labels, func() any { return new(Counter) }).(*Counter)
}

// Gauge returns the gauge name{labels}, creating it on first use.
func (r *Registry) Gauge(name, help string, labels ...string) *Gauge {
	return r.series(name, help, kindGauge, labels, func() any { return new(Gauge) }).(*Gauge)
}

// GaugeFunc registers a gauge whose value is read from f at each scrape (f must be safe to call
// from another goroutine).
func (r *Registry) GaugeFunc(name, help string, f func() float64, labels ...string) {
	r.series(name, help, kindGauge, labels, func() any { return f })
}

// CounterFunc registers a counter whose value is read from f at each scrape (f must be safe to
// call from another goroutine, and never decrease).
func (r *Registry) CounterFunc(name, help string, f func() float64, labels ...string) {
	r.series(name, help, kindCounter, labels, func() any { return f })
}

// Unregister removes the series name{labels}, for per-file gauges of files that are gone.
func (r *Registry) Unregister(name string, labels ...string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if f, ok := r.families[name]; ok {
		delete(f.series, renderLabels(labels))
	}
}

func (r *Registry) series(name, help string, k kind, labels []string, mk func() any) any {
	if len(labels)%2 != 0 {
		panic(fmt.Sprintf("metrics: %s: odd number of label arguments", name))
	}
	key := renderLabels(labels)
	r.mu.Lock()
	defer r.mu.Unlock()
	f, ok := r.families[name]
	if !ok {
		f = &family{name: name, help: help, kind: k, series: map[string]any{}}
		r.families[name] = f
	} else if f.kind != k {
		panic(fmt.Sprintf("metrics: %s registered as %s and %s", name, f.kind, k))
	}
	s, ok := f.series[key]
	if !ok {
		s = mk()
		f.series[key] = s
	}
	return s
}

func renderLabels(labels []string) string {
	if len(labels) == 0 {
		return ""
	}
	var b strings.Builder
	b.WriteByte('{')
	for i := 0; i < len(labels); i += 2 {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(labels[i])
		b.WriteString(`="`)
		b.WriteString(escape(labels[i+1]))
		b.WriteByte('"')
	}
	b.WriteByte('}')
	return b.String()
}

var labelEscaper = strings.NewReplacer(`\`, `\\`, `"`, `\"`, "\n", `\n`)

func escape(s string) string { return labelEscaper.Replace(s) }

// WriteTo writes every family in the Prometheus text format, sorted by name and labels.
func (r *Registry) WriteTo(w io.Writer) (int64, error) {
	r.mu.Lock()
	names := make([]string, 0, len(r.families))
	for n := range r.families {
		names = append(names, n)
	}
	sort.Strings(names)
	var b strings.Builder
	for _, n := range names {
		f := r.families[n]
		fmt.Fprintf(&b, "# HELP %s %s\n# TYPE %s %s\n", f.name, strings.ReplaceAll(f.help, "\n", " "), f.name, f.kind)
		keys := make([]string, 0, len(f.series))
		for k := range f.series {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			b.WriteString(f.name)
			b.WriteString(k)
			b.WriteByte(' ')
			switch s := f.series[k].(type) {
			case *Counter:
				b.WriteString(strconv.FormatUint(s.Value(), 10))
			case *Gauge:
				b.WriteString(strconv.FormatInt(s.Value(), 10))
			case func() float64:
				b.WriteString(formatFloat(s()))
			}
			b.WriteByte('\n')
		}
	}
	r.mu.Unlock()
	n, err := io.WriteString(w, b.String())
	return int64(n), err
}

func formatFloat(v float64) string {
	switch {
	case math.IsInf(v, 1):
		return "+Inf"
	case math.IsInf(v, -1):
		return "-Inf"
	case math.IsNaN(v):
		return "NaN"
	}
	return strconv.FormatFloat(v, 'g', -1, 64)
}

// ServeHTTP serves the registry as /metrics.
func (r *Registry) ServeHTTP(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
	_, _ = r.WriteTo(w)
}

// DroppedHelp is the help of sidelog_dropped_total, a series that two stages count (the tail
// stage its drops, the OTLP client the records the upstream refused): one text, so that the
// series has one help whichever stage registers it first.
const DroppedHelp = "Unavoidable losses, by reason: lines or records cut to maxLineBytes, files deleted before they were read (or, closed to make room, before they were read to their end), bytes truncated before they were read, records the upstream refused (OTLP)."
