package tail

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sidelog/sidelog/sidecar/config"
	"github.com/sidelog/sidelog/sidecar/fingerprint"
	"github.com/sidelog/sidelog/sidecar/metrics"
)

// countSink counts records and bytes, as cheaply as a sink can.
type countSink struct{ n, bytes int }

func (s *countSink) Record(_ *File, rec []byte, _ int64) { s.n++; s.bytes += len(rec) }

// benchFile writes n 200-byte lines (199 bytes and a newline) that look like log lines.
func benchFile(b *testing.B, dir string, n int) string {
	b.Helper()
	p := filepath.Join(dir, "app.log")
	var buf bytes.Buffer
	for i := range n {
		head := fmt.Sprintf("2026-11-25 08:22:04.%06d INFO [com.example.shop.App] request %d served in 3ms ", i%1000000, i)
		buf.WriteString(head)
		buf.WriteString(strings.Repeat("x", 199-len(head)))
		buf.WriteByte('\n')
	}
	if err := os.WriteFile(p, buf.Bytes(), 0o644); err != nil {
		b.Fatal(err)
	}
	return p
}

// BenchmarkInput reads a 40 MB file of 200-byte lines from its start to its end per operation,
// through a new Input, with metrics registered: everything from the glob to the sink. The file
// is in the page cache after the first operation, so this measures the agent, not the disk.
func BenchmarkInput(b *testing.B) {
	const lines = 200_000
	for _, bc := range []struct {
		name string
		ml   *config.Multiline
	}{
		{"plain", nil},
		{"java", &config.Multiline{Preset: "java"}},
	} {
		b.Run(bc.name, func(b *testing.B) {
			dir := b.TempDir()
			benchFile(b, dir, lines)
			reg := metrics.NewRegistry()
			b.SetBytes(lines * 200)
			b.ReportAllocs()
			now := time.Unix(1_700_000_000, 0)
			for b.Loop() {
				s := &countSink{}
				in, err := New(Options{Paths: []string{dir + "/*.log"}, Multiline: bc.ml, Metrics: reg, Container: "app"}, s)
				if err != nil {
					b.Fatal(err)
				}
				for {
					n, err := in.Poll(now)
					if err != nil {
						b.Fatal(err)
					}
					if n == 0 {
						break
					}
				}
				if err := in.Drain(context.Background(), now); err != nil {
					b.Fatal(err)
				}
				in.Close()
				if s.n != lines {
					b.Fatalf("%d records, want %d", s.n, lines)
				}
			}
			b.ReportMetric(float64(lines)*float64(b.N)/b.Elapsed().Seconds(), "lines/s")
		})
	}
}

// BenchmarkPollIdle measures a Poll that finds nothing new among 100 open files: the price of
// polling every 250ms.
func BenchmarkPollIdle(b *testing.B) {
	dir := b.TempDir()
	for i := range 100 {
		if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("f%03d.log", i)), []byte("a line\n"), 0o644); err != nil {
			b.Fatal(err)
		}
	}
	in, err := New(Options{Paths: []string{dir + "/*.log"}, Container: "app"}, &countSink{})
	if err != nil {
		b.Fatal(err)
	}
	defer in.Close()
	now := time.Unix(1_700_000_000, 0)
	if _, err := in.Poll(now); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if n, err := in.Poll(now); err != nil || n != 0 {
			b.Fatal(n, err)
		}
	}
}

// BenchmarkPollGrowing measures a Poll between scans of a file that grew by one line since the
// last: the steady state of a busy file, where every growth check must confirm that the file's
// first bytes did not change (a truncation and rewrite past the old size).
func BenchmarkPollGrowing(b *testing.B) {
	dir := b.TempDir()
	p := filepath.Join(dir, "app.log")
	if err := os.WriteFile(p, []byte(strings.Repeat("h", 2048)+"\n"), 0o644); err != nil {
		b.Fatal(err)
	}
	w, err := os.OpenFile(p, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		b.Fatal(err)
	}
	defer w.Close()
	in, err := New(Options{Paths: []string{p}, Container: "app", ScanInterval: time.Hour}, &countSink{})
	if err != nil {
		b.Fatal(err)
	}
	defer in.Close()
	now := time.Unix(1_700_000_000, 0)
	if _, err := in.Poll(now); err != nil {
		b.Fatal(err)
	}
	line := []byte("2026-11-25 08:22:04.000000 INFO request served in 3ms\n")
	b.ReportAllocs()
	for b.Loop() {
		if _, err := w.Write(line); err != nil {
			b.Fatal(err)
		}
		if n, err := in.Poll(now); err != nil || n == 0 {
			b.Fatal(n, err)
		}
	}
}

// BenchmarkHeadCheck compares the two ways of telling, at a growth check, whether a file still
// starts with the bytes it started with: hashing its first KiB against the fingerprint (before)
// and comparing them with the bytes kept when it was opened (now). Both read the KiB.
func BenchmarkHeadCheck(b *testing.B) {
	p := filepath.Join(b.TempDir(), "app.log")
	content := []byte(strings.Repeat("2026-11-25 08:22:04.000000 INFO request served in 3ms\n", 40))
	if err := os.WriteFile(p, content, 0o644); err != nil {
		b.Fatal(err)
	}
	fd, err := os.Open(p)
	if err != nil {
		b.Fatal(err)
	}
	defer fd.Close()
	buf := make([]byte, fingerprint.Size)
	head, fp, err := readHead(fd, buf)
	if err != nil {
		b.Fatal(err)
	}
	b.Run("hash", func(b *testing.B) {
		for b.Loop() {
			if ok, err := fp.Match(fd, buf); !ok || err != nil {
				b.Fatal(ok, err)
			}
		}
	})
	b.Run("compare", func(b *testing.B) {
		r := &reader{fd: fd, head: head}
		for b.Loop() {
			if ok, err := r.sameHead(buf); !ok || err != nil {
				b.Fatal(ok, err)
			}
		}
	})
}
