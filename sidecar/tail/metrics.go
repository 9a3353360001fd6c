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
	reasonDeleted       = "deleted_before_read"   // a file gone before it was read: not opened, or closed to make room with bytes unread
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
	// Registered only for an input with cleanup globs (addCleanup); private counters otherwise.
	removed, removedBytes, removeErrors *metrics.Counter
	kept                                [numKeeps]*metrics.Gauge // by keep reason; nil for removeIt
	// Registered only for an input with a rate limit (addRateLimit).
	throttled *metrics.Gauge
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
		waiting:      reg.Gauge("sidelog_files_waiting", "Files found with bytes to read but not open: no place under maxFiles, or a copy waiting for its original's truncation. Files closed to make room at their end that did not change since are not counted.", c...),
		dropped:      map[string]*metrics.Counter{},
		droppedBytes: map[string]*metrics.Counter{},
		rotated:      map[string]*metrics.Counter{},
	}
	for _, r := range reasons {
		m.dropped[r] = reg.Counter("sidelog_dropped_total", metrics.DroppedHelp, "container", container, "reason", r)
		m.droppedBytes[r] = reg.Counter("sidelog_dropped_bytes_total", "Bytes lost, by reason (see sidelog_dropped_total).", "container", container, "reason", r)
	}
	for _, k := range []string{"moved", "truncated"} {
		m.rotated[k] = reg.Counter("sidelog_rotations_total", "Files renamed away or deleted (moved) and truncated in place (truncated).", "container", container, "kind", k)
	}
	return m
}

// addCleanup registers the metrics of removing delivered files (Options.Cleanup).
func (m *instruments) addCleanup() {
	c := []string{"container", m.container}
	m.removed = m.reg.Counter("sidelog_files_removed_total", "Rotated files removed (cleanup) once every byte was acknowledged and their writer had left them.", c...)
	m.removedBytes = m.reg.Counter("sidelog_removed_bytes_total", "Bytes of the rotated files removed (cleanup).", c...)
	for k := keepUnknown; k < numKeeps; k++ {
		m.kept[k] = m.reg.Gauge("sidelog_cleanup_kept_files", "Files the cleanup globs matched at the last pass that were kept, by reason: not_read (never opened), not_read_from_start (readFrom tail, ignoreOlder), changed, unread, unacknowledged, recently_written (within cleanupSettle), newest (no newer file: it may be the live one), not_tailed (excluded or not matched by the tail globs), tailed_elsewhere (another container tails it).", "container", m.container, "reason", keepLabels[k])
	}
	m.removeErrors = m.reg.Counter("sidelog_remove_errors_total", "Attempts to remove a delivered rotated file (cleanup) that failed: no permission, a read-only volume, the file changed under its name.", c...)
}

// addRateLimit registers the gauge that says whether the rate limit holds the input back.
func (m *instruments) addRateLimit() {
	m.throttled = m.reg.Gauge("sidelog_rate_limited", "1 while the container's rate limit (sidelog.io/rate-limit) leaves bytes of its files unread at the last read, else 0; the backlog is in sidelog_file_bytes_behind.", "container", m.container)
}

// b2i is 1 for true.
func b2i(b bool) int64 {
	if b {
		return 1
	}
	return 0
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
func (t *Tailer) gaugeAdd(f *File) {
	g := t.gauges[f.Path]
	if g == nil {
		g = &pathGauge{}
		t.gauges[f.Path] = g
		t.m.reg.GaugeFunc(behindName, "Bytes written to a file but not read yet (file size minus read offset).",
			g.value, "container", t.m.container, "path", f.Path)
	}
	g.mu.Lock()
	g.files = append(g.files, f)
	g.mu.Unlock()
}

// gaugeRemove takes f out of its path's gauge, unregistering the gauge with the last file.
func (t *Tailer) gaugeRemove(f *File) {
	g := t.gauges[f.Path]
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
		delete(t.gauges, f.Path)
		t.m.reg.Unregister(behindName, "container", t.m.container, "path", f.Path)
	}
}

// gaugeSwap replaces f by g (same path) in the gauge.
func (t *Tailer) gaugeSwap(f, g *File) {
	pg := t.gauges[f.Path]
	if pg == nil {
		t.gaugeAdd(g)
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

func (t *Tailer) readError(f *File, err error) {
	if err.Error() != f.readErr {
		t.log.Warn("file error", "path", f.Path, "err", err)
		f.readErr = err.Error()
	}
}

// report adds this pass's counts to the metrics and logs its truncations, one log line per file
// and pass: a file of over-long lines must not flood the log, and no drop goes unlogged.
func (t *Tailer) report() {
	m := t.m
	m.lines.Add(t.nLines)
	m.records.Add(t.nRecords)
	m.bytes.Add(t.nBytes)
	t.nLines, t.nRecords, t.nBytes = 0, 0, 0
	for _, f := range t.noisy {
		if f.truncLines > 0 {
			m.dropped[reasonLineTooLong].Add(uint64(f.truncLines))
			m.droppedBytes[reasonLineTooLong].Add(uint64(f.truncBytes))
			t.log.Warn("lines longer than maxLineBytes truncated", "path", f.Path, "lines", f.truncLines,
				"reason", reasonLineTooLong, "dropped_bytes", f.truncBytes, "max_line_bytes", t.opts.MaxLineBytes)
		}
		if f.truncRecords > 0 {
			m.dropped[reasonRecordTooLong].Add(uint64(f.truncRecords))
			m.droppedBytes[reasonRecordTooLong].Add(uint64(f.truncRecordBytes))
			t.log.Warn("multiline records longer than maxLineBytes truncated", "path", f.Path, "records", f.truncRecords,
				"reason", reasonRecordTooLong, "dropped_bytes", f.truncRecordBytes, "max_line_bytes", t.opts.MaxLineBytes)
		}
		f.truncLines, f.truncBytes, f.truncRecords, f.truncRecordBytes = 0, 0, 0, 0
	}
	t.noisy = t.noisy[:0]
}

// drop counts and logs an unavoidable loss of n bytes.
func (t *Tailer) drop(reason string, n int64, msg string, args ...any) {
	t.m.dropped[reason].Inc()
	t.m.droppedBytes[reason].Add(uint64(n))
	t.log.Warn(msg, append(args, "reason", reason, "dropped_bytes", n)...)
}
