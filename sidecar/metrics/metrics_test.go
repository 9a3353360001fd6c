package metrics

import (
	"net/http/httptest"
	"strings"
	"testing"
)

func TestExposition(t *testing.T) {
	r := NewRegistry()
	r.Counter("sidelog_lines_read_total", "Lines read.", "container", "app").Add(3)
	r.Counter("sidelog_lines_read_total", "Lines read.", "container", "app").Inc()
	r.Counter("sidelog_lines_read_total", "Lines read.", "container", `we"ird`).Inc()
	r.Gauge("sidelog_files_open", "Files open.").Set(2)
	r.GaugeFunc("sidelog_bytes_behind", "Bytes not yet read.", func() float64 { return 1.5 }, "file", "/a.log")
	r.Gauge("sidelog_gone", "Removed.", "file", "/b").Set(1)
	r.Unregister("sidelog_gone", "file", "/b")

	rec := httptest.NewRecorder()
	r.ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	want := `# HELP sidelog_bytes_behind Bytes not yet read.
# TYPE sidelog_bytes_behind gauge
sidelog_bytes_behind{file="/a.log"} 1.5
# HELP sidelog_files_open Files open.
# TYPE sidelog_files_open gauge
sidelog_files_open 2
# HELP sidelog_gone Removed.
# TYPE sidelog_gone gauge
# HELP sidelog_lines_read_total Lines read.
# TYPE sidelog_lines_read_total counter
sidelog_lines_read_total{container="app"} 4
sidelog_lines_read_total{container="we\"ird"} 1
`
	if got := rec.Body.String(); got != want {
		t.Errorf("exposition:\n%s\nwant:\n%s", got, want)
	}
	if ct := rec.Header().Get("Content-Type"); !strings.HasPrefix(ct, "text/plain; version=0.0.4") {
		t.Errorf("Content-Type = %q", ct)
	}
}

func TestKindClashPanics(t *testing.T) {
	r := NewRegistry()
	r.Counter("x", "")
	defer func() {
		if recover() == nil {
			t.Error("registering a counter name as a gauge did not panic")
		}
	}()
	r.Gauge("x", "")
}
