package tail

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/sidelog/sidelog/sidecar/config"
	"github.com/sidelog/sidelog/sidecar/metrics"
)

// lines100 returns n lines of 100 bytes each (newline included), numbered from 0.
func lines100(prefix string, n int) string {
	var b strings.Builder
	for i := range n {
		line := fmt.Sprintf("%s %04d ", prefix, i)
		b.WriteString(line + strings.Repeat("x", 99-len(line)) + "\n")
	}
	return b.String()
}

// TestRateLimitBytes: a file ten seconds of budget long is read a second's burst at once, then a
// tenth of the budget at every tenth of a second, and every line once, in order.
func TestRateLimitBytes(t *testing.T) {
	dir := t.TempDir()
	p := dir + "/app.log"
	content := lines100("line", 100) // 10,000 bytes
	writeFile(t, p, content)
	reg := metrics.NewRegistry()
	s := &sink{ack: true}
	in := newInput(t, Options{Paths: []string{p}, Metrics: reg, RateLimit: &config.RateLimit{BytesPerSecond: 1000}}, s)
	c := newClock()
	if n := pollAll(t, in, c.now()); n != 1000 {
		t.Fatalf("first pass read %d bytes, want the one-second burst 1000", n)
	}
	series := `sidelog_file_bytes_behind{container="app",path="` + p + `"}`
	if got := metric(t, reg, series); got != "9000" {
		t.Errorf("%s = %s, want 9000: the backlog stays in the file, visible", series, got)
	}
	limited := `sidelog_rate_limited{container="app"}`
	if got := metric(t, reg, limited); got != "1" {
		t.Errorf("%s = %s while the budget holds the file back, want 1", limited, got)
	}
	w, ok := in.Throttled(c.now())
	if !ok || w != 100*time.Millisecond {
		t.Fatalf("Throttled = %v, %v; want 100ms (a tenth of the budget), true", w, ok)
	}
	if n := pollAll(t, in, c.advance(w-time.Millisecond)); n != 0 {
		t.Errorf("read %d bytes before then, want none", n)
	}
	if n := pollAll(t, in, c.advance(time.Millisecond)); n != 100 {
		t.Fatalf("read %d bytes when ready, want 100", n)
	}
	for i := range 89 {
		if n := pollAll(t, in, c.advance(w)); n != 100 {
			t.Fatalf("step %d: read %d bytes in a tenth of a second, want 100", i, n)
		}
	}
	equal(t, "records", s.texts(), strings.Split(strings.TrimSuffix(content, "\n"), "\n"))
	if _, ok := in.Throttled(c.now()); ok {
		t.Error("Throttled still says so with the file read to its end")
	}
	if got := metric(t, reg, series); got != "0" {
		t.Errorf("%s = %s at the end, want 0", series, got)
	}
	if got := metric(t, reg, limited); got != "0" {
		t.Errorf("%s = %s with the file read to its end, want 0", limited, got)
	}
}

// TestRateLimitLines: the line budget stops a read at a line's end; the rest of the chunk is read
// again later, not lost or repeated.
func TestRateLimitLines(t *testing.T) {
	dir := t.TempDir()
	p := dir + "/app.log"
	content := numbered("l", 0, 200)
	writeFile(t, p, content)
	s := &sink{ack: true}
	in := newInput(t, Options{Paths: []string{p}, RateLimit: &config.RateLimit{LinesPerSecond: 50}}, s)
	c := newClock()
	pollAll(t, in, c.now())
	if got := len(s.texts()); got != 50 {
		t.Fatalf("first pass handed on %d lines, want the burst of 50", got)
	}
	if got, want := in.open[0].pos.Offset, int64(len(numbered("l", 0, 50))); got != want {
		t.Errorf("offset %d after 50 lines, want their end %d", got, want)
	}
	for range 40 {
		pollAll(t, in, c.advance(100*time.Millisecond))
	}
	equal(t, "records", s.texts(), strings.Split(strings.TrimSuffix(content, "\n"), "\n"))
}

// TestRateLimitLongLine: a line longer than a second's budget is read in pieces and passes
// whole: never stuck, never cut.
func TestRateLimitLongLine(t *testing.T) {
	dir := t.TempDir()
	p := dir + "/app.log"
	long := strings.Repeat("y", 5000)
	writeFile(t, p, "short\n"+long+"\nafter\n")
	s := &sink{ack: true}
	in := newInput(t, Options{Paths: []string{p}, RateLimit: &config.RateLimit{BytesPerSecond: 1000, LinesPerSecond: 1}}, s)
	c := newClock()
	for range 100 {
		pollAll(t, in, c.advance(100*time.Millisecond))
	}
	equal(t, "records", s.texts(), []string{"short", long, "after"})
}

// TestRateLimitFilesShare: the files of one input share its budget, each read in turn.
func TestRateLimitFilesShare(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, dir+"/a.log", lines100("a", 100))
	writeFile(t, dir+"/b.log", lines100("b", 100))
	s := &sink{ack: true}
	in := newInput(t, Options{Paths: []string{dir + "/*.log"}, RateLimit: &config.RateLimit{BytesPerSecond: 1000}}, s)
	c := newClock()
	pollAll(t, in, c.now())
	for range 20 {
		pollAll(t, in, c.advance(100*time.Millisecond))
	}
	a, b := s.byPrefix("a ")
	if len(a)+len(b) != 30 {
		t.Fatalf("read %d lines in 3 seconds of 10 lines a second, want 30", len(a)+len(b))
	}
	if len(a) < 10 || len(b) < 10 {
		t.Errorf("a.log had %d lines read, b.log %d: one file took the budget", len(a), len(b))
	}
}

// TestRateLimitMultilineWaits: a pending multiline record whose continuation is still unread
// behind the budget is not sent alone when its flush timeout passes.
func TestRateLimitMultilineWaits(t *testing.T) {
	dir := t.TempDir()
	p := dir + "/app.log"
	cont := "\tat " + strings.Repeat("z", 3000)
	writeFile(t, p, "START a\n"+cont+"\nSTART b\n")
	s := &sink{ack: true}
	in := newInput(t, Options{Paths: []string{p}, RateLimit: &config.RateLimit{BytesPerSecond: 1000},
		Multiline: &config.Multiline{FirstLine: "^START", FlushTimeout: config.Duration(time.Second)}}, s)
	c := newClock()
	for range 50 { // five seconds: the continuation takes three to read
		pollAll(t, in, c.advance(100*time.Millisecond))
	}
	pollAll(t, in, c.advance(2*time.Second))
	equal(t, "records", s.texts(), []string{"START a\n" + cont, "START b"})
}

// TestRateLimitDrainIsNotLimited: at SIGTERM the files are read to their end whatever the
// budget: the pod's files go with it.
func TestRateLimitDrainIsNotLimited(t *testing.T) {
	dir := t.TempDir()
	p := dir + "/app.log"
	content := lines100("line", 1000)
	writeFile(t, p, content)
	s := &sink{ack: true}
	in := newInput(t, Options{Paths: []string{p}, RateLimit: &config.RateLimit{BytesPerSecond: 100, LinesPerSecond: 1}}, s)
	c := newClock()
	pollAll(t, in, c.now())
	if err := in.Drain(context.Background(), c.advance(time.Millisecond)); err != nil {
		t.Fatal(err)
	}
	if got := len(s.texts()); got != 1000 {
		t.Errorf("drain handed on %d lines, want all 1000", got)
	}
}

// TestRateLimitBoundaries: whatever the budgets, buffer size and line limit, and however the
// writes and the polls fall, every record is handed on once, whole (or cut to MaxLineBytes as
// without a budget), in order: no line is lost or repeated where a budget stops a read, a
// partial line waits in the splitter, or a multiline record spans reads. Seeded, so a failure
// names its case.
func TestRateLimitBoundaries(t *testing.T) {
	for seed := range uint64(150) {
		r := rand.New(rand.NewPCG(seed, 1))
		maxLine := 60 + r.IntN(300)
		multi := r.IntN(2) == 0
		eol := "\n"
		if r.IntN(3) == 0 {
			eol = "\r\n"
		}
		var content strings.Builder
		var want []string
		for i := range 20 + r.IntN(100) {
			rec := fmt.Sprintf("L%d %s", i, strings.Repeat("x", r.IntN(400)))
			content.WriteString(rec + eol)
			rec = rec[:min(len(rec), maxLine)]
			if multi {
				for range r.IntN(3) {
					more := "\tat " + strings.Repeat("y", r.IntN(60))
					content.WriteString(more + eol)
					rec += "\n" + more
				}
				rec = rec[:min(len(rec), maxLine)]
			}
			want = append(want, rec)
		}
		rl := &config.RateLimit{}
		if r.IntN(3) != 0 {
			rl.BytesPerSecond = int64(1 + r.IntN(3000))
		}
		if rl.BytesPerSecond == 0 || r.IntN(2) == 0 {
			rl.LinesPerSecond = int64(1 + r.IntN(30))
		}
		opts := Options{Paths: []string{t.TempDir() + "/a.log"}, MaxLineBytes: maxLine, BufferSize: 64 + r.IntN(500), RateLimit: rl}
		if multi {
			opts.Multiline = &config.Multiline{FirstLine: "^L", FlushTimeout: config.Duration(time.Hour)}
		}
		writeFile(t, opts.Paths[0], "")
		s := &sink{ack: true}
		in := newInput(t, opts, s)
		c := newClock()
		all := content.String()
		for written := 0; written < len(all) || r.IntN(5) != 0; {
			n := min(len(all)-written, r.IntN(400))
			appendFile(t, opts.Paths[0], all[written:written+n])
			written += n
			pollAll(t, in, c.advance(time.Duration(r.IntN(300))*time.Millisecond))
		}
		if err := in.Drain(context.Background(), c.advance(time.Millisecond)); err != nil {
			t.Fatal(err)
		}
		if got := s.texts(); !slices.Equal(got, want) {
			t.Logf("seed %d: %+v, maxLineBytes %d, buffer %d, multiline %v, eol %q", seed, *rl, maxLine, opts.BufferSize, multi, eol)
			equal(t, "records", got, want)
			return
		}
	}
}

// TestRateLimitCopytruncateBehind: a file behind its budget is checked before each read, as a
// file being read is: truncated in place (copytruncate) and written again past the offset the
// budget left it at, between two scans, its new lines are read from their start, once, and
// never taken for the rest of the old content.
func TestRateLimitCopytruncateBehind(t *testing.T) {
	dir := t.TempDir()
	p := dir + "/app.log"
	writeFile(t, p, lines100("old", 100))
	s := &sink{ack: true}
	in := newInput(t, Options{Paths: []string{p}, ScanInterval: time.Hour, RateLimit: &config.RateLimit{BytesPerSecond: 1000}}, s)
	c := newClock()
	pollAll(t, in, c.now())                        // the burst: 10 lines
	pollAll(t, in, c.advance(50*time.Millisecond)) // not ready yet
	writeFile(t, p, lines100("new", 50))           // truncated, and written past the old offset
	for range 100 {
		pollAll(t, in, c.advance(100*time.Millisecond))
	}
	old, cur := s.byPrefix("old ")
	equal(t, "old lines", old, split(lines100("old", 10)))
	equal(t, "new lines", cur, split(lines100("new", 50)))
}
