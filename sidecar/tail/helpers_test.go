package tail

import (
	"bytes"
	"fmt"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sidelog/sidelog/sidecar/metrics"
)

// record is what the test sink saw.
type record struct {
	file *File
	path string
	text string
	end  int64
}

// sink collects records; with ack set it acknowledges each at once.
type sink struct {
	mu   sync.Mutex
	recs []record
	ack  bool
}

func (s *sink) Record(f *File, rec []byte, end int64) {
	s.mu.Lock()
	s.recs = append(s.recs, record{f, f.Path, string(rec), end})
	s.mu.Unlock()
	if s.ack {
		f.Ack(end)
	}
}

func (s *sink) texts() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []string
	for _, r := range s.recs {
		out = append(out, r.text)
	}
	return out
}

// byPrefix splits the texts of the records into those that start with prefix and the others.
func (s *sink) byPrefix(prefix string) (match, rest []string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, r := range s.recs {
		if strings.HasPrefix(r.text, prefix) {
			match = append(match, r.text)
		} else {
			rest = append(rest, r.text)
		}
	}
	return match, rest
}

// byPath returns the texts of the records of files found at path.
func (s *sink) byPath(path string) []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []string
	for _, r := range s.recs {
		if r.path == path {
			out = append(out, r.text)
		}
	}
	return out
}

// clock is a fake time for Poll: tests never sleep.
type clock struct{ t time.Time }

func newClock() *clock { return &clock{time.Unix(1_700_000_000, 0)} }

func (c *clock) now() time.Time                    { return c.t }
func (c *clock) advance(d time.Duration) time.Time { c.t = c.t.Add(d); return c.t }

// pollAll polls until a pass reads nothing, and returns the bytes read.
func pollAll(t *testing.T, in *Tailer, now time.Time) int64 {
	t.Helper()
	var total int64
	for range 10_000 {
		n, err := in.Poll(now)
		if err != nil {
			t.Fatal(err)
		}
		if n == 0 {
			return total
		}
		total += n
	}
	t.Fatal("Poll never went idle")
	return 0
}

func newInput(t *testing.T, opts Options, s Sink) *Tailer {
	t.Helper()
	if opts.Container == "" {
		opts.Container = "app"
	}
	in, err := New(opts, s)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { in.Close() })
	return in
}

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

// appendFile appends to path, as a writer with O_APPEND does.
func appendFile(t *testing.T, path, content string) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_APPEND|os.O_WRONLY|os.O_CREATE, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteString(content); err != nil {
		t.Fatal(err)
	}
}

// numbered returns lines "<prefix> <i>" for i in [from, to), each ending in "\n", padded so
// that their length varies.
func numbered(prefix string, from, to int) string {
	var b strings.Builder
	for i := from; i < to; i++ {
		fmt.Fprintf(&b, "%s %d %s\n", prefix, i, strings.Repeat("x", i%37))
	}
	return b.String()
}

// split turns numbered output into the records expected for it.
func split(s string) []string {
	if s == "" {
		return nil
	}
	return strings.Split(strings.TrimSuffix(s, "\n"), "\n")
}

func equal(t *testing.T, what string, got, want []string) {
	t.Helper()
	if strings.Join(got, "\n") == strings.Join(want, "\n") && len(got) == len(want) {
		return
	}
	// Show the first difference; whole lists of hundreds of lines are unreadable.
	for i := 0; i < max(len(got), len(want)); i++ {
		var g, w string
		if i < len(got) {
			g = got[i]
		}
		if i < len(want) {
			w = want[i]
		}
		if g != w || i >= len(got) || i >= len(want) {
			t.Errorf("%s: %d records, want %d; first difference at %d: got %q, want %q", what, len(got), len(want), i, g, w)
			return
		}
	}
}

// metric returns the value of one series in reg's exposition, or "" if it is absent.
func metric(t *testing.T, reg *metrics.Registry, series string) string {
	t.Helper()
	var b bytes.Buffer
	if _, err := reg.WriteTo(&b); err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(b.String(), "\n") {
		if v, ok := strings.CutPrefix(l, series+" "); ok {
			return v
		}
	}
	return ""
}
