package agent

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sidelog/sidelog/sidecar/config"
	"github.com/sidelog/sidelog/sidecar/receipt"
)

// TestReceiptOfOTLPRejected: records an OTLP upstream refused for good (a 400) are done with, so
// reading goes on, but the receipt counts them as dropped, not delivered: "did every line
// arrive?" must not be answered yes.
func TestReceiptOfOTLPRejected(t *testing.T) {
	var seen atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		seen.Add(int64(bytes.Count(body, []byte("rejected "))))
		http.Error(w, "bad tenant", http.StatusBadRequest)
	}))
	t.Cleanup(srv.Close)
	dir := t.TempDir()
	cfg := newConfig("127.0.0.1:1", config.Input{Container: "app", Paths: []string{dir + "/*.log"}})
	cfg.Upstream.Protocol, cfg.Upstream.Servers, cfg.Upstream.Mode = config.ProtocolOTLP, []string{srv.URL}, ""
	appendLines(t, filepath.Join(dir, "app.log"), numbered("rejected", 0, 100)...)

	file := filepath.Join(t.TempDir(), "termination-log")
	a, err := New(cfg, Options{StateDir: t.TempDir(), Pod: testPod, Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
		ReceiptFile: file, Version: "v9.9.9-test"})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	for deadline := time.Now().Add(30 * time.Second); seen.Load() < 100; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("the upstream saw %d of 100 records", seen.Load())
		}
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Run: %v", err)
	}
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	r, err := receipt.Parse(string(b))
	if err != nil {
		t.Fatalf("%v: %s", err, b)
	}
	if len(r.Containers) != 1 {
		t.Fatalf("containers: %+v", r.Containers)
	}
	c := r.Containers[0].Counts
	if c.Lines != 0 || c.Bytes != 0 || c.Dropped != 100 || c.DroppedBy["otlp_rejected"] != 100 {
		t.Errorf("receipt counts %+v: want 0 lines and 0 bytes delivered, 100 dropped as otlp_rejected", c)
	}
}
