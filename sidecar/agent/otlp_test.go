package agent

import (
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	collogspb "go.opentelemetry.io/proto/otlp/collector/logs/v1"
	"google.golang.org/protobuf/proto"

	"github.com/sidelog/sidelog/sidecar/config"
)

// otlpSink is an OTLP/HTTP receiver that answers 503 to every third request and keeps the lines
// of the others, with each request's k8s.container.name.
type otlpSink struct {
	mu         sync.Mutex
	lines      []string
	containers map[string]bool
	n          int
}

func (s *otlpSink) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	s.mu.Lock()
	defer s.mu.Unlock()
	s.n++
	if s.n%3 == 0 {
		w.WriteHeader(http.StatusServiceUnavailable)
		return
	}
	var req collogspb.ExportLogsServiceRequest
	if err := proto.Unmarshal(body, &req); err != nil {
		w.WriteHeader(http.StatusBadRequest)
		return
	}
	for _, rl := range req.ResourceLogs {
		for _, a := range rl.Resource.Attributes {
			if a.Key == "k8s.container.name" {
				s.containers[a.Value.GetStringValue()] = true
			}
		}
		for _, sl := range rl.ScopeLogs {
			for _, lr := range sl.LogRecords {
				s.lines = append(s.lines, lr.Body.GetStringValue())
			}
		}
	}
}

func (s *otlpSink) count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.lines)
}

// TestOTLPEveryLineOnceAndResume: with protocol otlp, every line arrives once and in order
// although the receiver answers 503 to every third request, the checkpoint follows the 2xx
// answers, and a restart sends only the lines written after.
func TestOTLPEveryLineOnceAndResume(t *testing.T) {
	sink := &otlpSink{containers: map[string]bool{}}
	srv := httptest.NewServer(sink)
	defer srv.Close()
	dir, state := t.TempDir(), t.TempDir()
	log := filepath.Join(dir, "app.log")
	cfg := newConfig("x:1", config.Input{Container: "app", Paths: []string{filepath.Join(dir, "*.log")}})
	cfg.Upstream = config.Upstream{Protocol: config.ProtocolOTLP, Servers: []string{srv.URL}, AckTimeout: config.Duration(2 * time.Second)}
	first := numbered("line", 0, 3000)
	appendLines(t, log, first...)
	r := start(t, cfg, state)
	waitFor(t, func() bool { return sink.count() >= len(first) })
	if err := r.stop(t); err != nil {
		t.Fatalf("drain: %v", err)
	}
	second := numbered("line", 3000, 3100)
	appendLines(t, log, second...)
	r = start(t, cfg, state)
	waitFor(t, func() bool { return sink.count() >= len(first)+len(second) })
	if err := r.stop(t); err != nil {
		t.Fatalf("drain: %v", err)
	}
	sink.mu.Lock()
	defer sink.mu.Unlock()
	if diff := cmp.Diff(append(first, second...), sink.lines); diff != "" {
		t.Errorf("lines (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(map[string]bool{"app": true}, sink.containers); diff != "" {
		t.Errorf("containers (-want +got):\n%s", diff)
	}
}

func waitFor(t *testing.T, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatal("timed out")
		}
		time.Sleep(10 * time.Millisecond)
	}
}
