package tail

import (
	"slices"
	"sync"

	"github.com/sidelog/sidelog/sidecar/metrics"
)

// Reasons for sidelog_dropped_total and sidelog_dropped_bytes_total.
const (
	reasonLineTooLong   = "line_too_long"         // a line longer than MaxLineBytes: its rest
	reasonRecordTooLong = "record_too_long"       // a multiline record longer than MaxLineBytes: its rest
	reasonDeleted       = "deleted_before_read"   // a file gone before it could be opened
	reasonTruncated     = "truncated_before_read" // bytes of a truncated file that were not read
)

var reasons = []string{reasonLineTooLong, reasonRecordTooLong, reasonDeleted, reasonTruncated}

// instruments are the input's metrics, labelled container=<Container>.
type instruments struct {
	reg       *metrics.Registry
	container string

	lines, bytes, records *metrics.Counter
	dropped, droppedBytes map[string]*metrics.Counter
	rotated               map[string]*metrics.Counter
	open, waiting         *metrics.Gauge
}

func newInstruments(reg *metrics.Registry, container string) *instruments {
	if reg == nil {
		reg = metrics.NewRegistry() // private: the code counts the same way, nobody reads it
	}
	c := []string{"container", container}
	m := &instruments{
		reg:          reg,
		container:    container,
		lines:        reg.Counter("sidelog_lines_read_total", "Lines read from files.", c...),
		bytes:        reg.Counter("sidelog_bytes_read_total", "Bytes read from files.", c...),
		records:      reg.Counter("sidelog_records_emitted_total", "Records handed on for sending (a multiline record counts once).", c...),
		open:         reg.Gauge("sidelog_files_open", "Files open for reading.", c...),
		waiting:      reg.Gauge("sidelog_files_waiting", "Files found but not open: no place under maxFiles, or a copy waiting for its original's truncation.", c...),
		dropped:      map[string]*metrics.Counter{},
		droppedBytes: map[string]*metrics.Counter{},
		rotated:      map[string]*metrics.Counter{},
	}
	for _, r := range reasons {
		m.dropped[r] = reg.Counter("sidelog_dropped_total", "Unavoidable losses, by reason: lines or records cut to maxLineBytes, files deleted before they were read, bytes truncated before they were read.", "container", container, "reason", r)
		m.droppedBytes[r] = reg.Counter("sidelog_dropped_bytes_total", "Bytes lost, by reason (see sidelog_dropped_total).", "container", container, "reason", r)
	}
	for _, k := range []string{"moved", "truncated"} {
		m.rotated[k] = reg.Counter("sidelog_rotations_total", "Files renamed away or deleted (moved) and truncated in place (truncated).", "container", container, "kind", k)
	}
	return m
}

func (m *instruments) rotations(kind string) *metrics.Counter { return m.rotated[kind] }

const behindName = "sidelog_file_bytes_behind"

// pathGauge is the bytes-behind gauge of one path: the sum over the open files found at it (a
// rotated file and its successor share a path for RotateWait).
type pathGauge struct {
	mu    sync.Mutex
	files []*File
}

func (g *pathGauge) value() float64 {
	g.mu.Lock()
	defer g.mu.Unlock()
	var n int64
	for _, f := range g.files {
		n += f.behind.Load()
	}
	return float64(n)
}

// gaugeAdd counts f in its path's gauge, registering the gauge for the first file. The registry
// is never called with a lock of ours held: a scrape holds the registry's lock while it calls
// value.
func (in *Input) gaugeAdd(f *File) {
	g := in.gauges[f.Path]
	if g == nil {
		g = &pathGauge{}
		in.gauges[f.Path] = g
		in.m.reg.GaugeFunc(behindName, "Bytes written to a file but not read yet (file size minus read offset).",
			g.value, "container", in.m.container, "path", f.Path)
	}
	g.mu.Lock()
	g.files = append(g.files, f)
	g.mu.Unlock()
}

// gaugeRemove takes f out of its path's gauge, unregistering the gauge with the last file.
func (in *Input) gaugeRemove(f *File) {
	g := in.gauges[f.Path]
	if g == nil {
		return
	}
	g.mu.Lock()
	if i := slices.Index(g.files, f); i >= 0 {
		g.files = append(g.files[:i], g.files[i+1:]...)
	}
	empty := len(g.files) == 0
	g.mu.Unlock()
	if empty {
		delete(in.gauges, f.Path)
		in.m.reg.Unregister(behindName, "container", in.m.container, "path", f.Path)
	}
}

// gaugeSwap replaces f by g (same path) in the gauge.
func (in *Input) gaugeSwap(f, g *File) {
	pg := in.gauges[f.Path]
	if pg == nil {
		in.gaugeAdd(g)
		return
	}
	pg.mu.Lock()
	if i := slices.Index(pg.files, f); i >= 0 {
		pg.files[i] = g
	} else {
		pg.files = append(pg.files, g)
	}
	pg.mu.Unlock()
}
