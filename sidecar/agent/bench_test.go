package agent

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sidelog/sidelog/sidecar/config"
	"github.com/sidelog/sidelog/sidecar/forward/forwardtest"
)

// BenchmarkAgent runs the whole agent in this process, with the default limits, on a file of
// 200-byte lines: from New until a CountOnly receiver has the last record (tail, encode, batch,
// forward with acknowledgements, and the drain). The file is in the page cache, so this measures
// the agent, not the disk; bench/ measures the binary on one core, this is for pprof:
//
//	go test -run '^$' -bench Agent -cpuprofile cpu.out ./sidecar/agent
func BenchmarkAgent(b *testing.B) {
	const lines = 500_000
	dir := b.TempDir()
	var buf bytes.Buffer
	buf.Grow(lines * 200)
	for i := range lines {
		head := fmt.Sprintf("2026-11-25T08:22:04.%06dZ INFO [com.example.shop.Checkout] request %d served in 3ms ", i%1000000, i)
		buf.WriteString(head)
		buf.WriteString(strings.Repeat(".", 199-len(head)))
		buf.WriteByte('\n')
	}
	if err := os.WriteFile(filepath.Join(dir, "app.log"), buf.Bytes(), 0o644); err != nil {
		b.Fatal(err)
	}
	srv, err := forwardtest.Start(forwardtest.Options{CountOnly: true})
	if err != nil {
		b.Fatal(err)
	}
	defer srv.Close()
	doc, err := (&config.Config{
		Version:  config.Version,
		Inputs:   []config.Input{{Container: "app", Paths: []string{dir + "/*.log"}}},
		Upstream: config.Upstream{Servers: []string{srv.Addr()}},
		// The last batch is not full: it would wait the default second.
		Limits: config.Limits{FlushInterval: config.Duration(time.Millisecond)},
	}).Encode()
	if err != nil {
		b.Fatal(err)
	}
	cfg, err := config.Parse(doc)
	if err != nil {
		b.Fatal(err)
	}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	b.SetBytes(int64(buf.Len()))
	b.ReportAllocs()
	for b.Loop() {
		// A fresh state directory: the agent must read the file from its start.
		state, err := os.MkdirTemp(b.TempDir(), "state")
		if err != nil {
			b.Fatal(err)
		}
		want := srv.Count() + lines
		a, err := New(cfg, Options{StateDir: state, Pod: testPod, Logger: log})
		if err != nil {
			b.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- a.Run(ctx) }()
		wctx, wcancel := context.WithTimeout(context.Background(), time.Minute)
		err = srv.Wait(wctx, want)
		wcancel()
		cancel()
		if rerr := <-done; err != nil || rerr != nil {
			b.Fatal(err, rerr)
		}
	}
	b.ReportMetric(float64(lines)*float64(b.N)/b.Elapsed().Seconds(), "lines/s")
}
