package tail

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sidelog/sidelog/sidecar/checkpoint"
	"github.com/sidelog/sidelog/sidecar/config"
	"github.com/sidelog/sidelog/sidecar/fingerprint"
	"github.com/sidelog/sidelog/sidecar/metrics"
)

func TestLineContent(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "a.log")
	long := strings.Repeat("L", 100)
	writeFile(t, p, "plain\r\nnul\x00byte\n\xff\xfeinvalid\n"+long+"\n\nafter\nno newline yet")
	reg := metrics.NewRegistry()
	s := &sink{}
	in := newInput(t, Options{Paths: []string{dir + "/*.log"}, MaxLineBytes: 64, Metrics: reg, BufferSize: 16}, s)
	c := newClock()
	pollAll(t, in, c.now())
	want := []string{"plain", "nul\x00byte", "\xff\xfeinvalid", long[:64], "", "after"}
	equal(t, "before newline", s.texts(), want)

	// The partial line is held until its newline arrives...
	appendFile(t, p, ", now it has\nlast without newline")
	pollAll(t, in, c.advance(time.Second))
	want = append(want, "no newline yet, now it has")
	equal(t, "after newline", s.texts(), want)

	// ...or until Drain.
	if err := in.Drain(context.Background(), c.now()); err != nil {
		t.Fatal(err)
	}
	want = append(want, "last without newline")
	equal(t, "after Drain", s.texts(), want)

	if got := s.recs[len(s.recs)-1].end; got != fileSize(t, p) {
		t.Errorf("last record ends at %d, want the file size %d", got, fileSize(t, p))
	}
	for series, want := range map[string]string{
		`sidelog_dropped_total{container="app",reason="line_too_long"}`:       "1",
		`sidelog_dropped_bytes_total{container="app",reason="line_too_long"}`: "36",
		`sidelog_lines_read_total{container="app"}`:                           "8",
		`sidelog_records_emitted_total{container="app"}`:                      "8",
		`sidelog_bytes_read_total{container="app"}`:                           itoa(fileSize(t, p)),
	} {
		if got := metric(t, reg, series); got != want {
			t.Errorf("%s = %q, want %q", series, got, want)
		}
	}
}

func fileSize(t *testing.T, p string) int64 {
	t.Helper()
	fi, err := os.Stat(p)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Size()
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }

func TestEndOffsets(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "a.log")
	content := numbered("line", 0, 500)
	writeFile(t, p, content)
	s := &sink{}
	in := newInput(t, Options{Paths: []string{p}, BufferSize: 100}, s)
	pollAll(t, in, newClock().now())
	// Every end points just past the record's newline.
	for _, r := range s.recs {
		if r.end < 1 || content[r.end-1] != '\n' || !strings.HasSuffix(content[:r.end-1], r.text) {
			t.Fatalf("record %q ends at %d, which is not just past it", r.text, r.end)
		}
	}
	equal(t, "records", s.texts(), split(content))
}

func TestTinyFileGrows(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "a.log")
	writeFile(t, p, "a")
	s := &sink{}
	in := newInput(t, Options{Paths: []string{p}}, s)
	c := newClock()
	pollAll(t, in, c.now())
	equal(t, "no newline", s.texts(), nil)
	appendFile(t, p, "\n")
	pollAll(t, in, c.advance(time.Second))
	equal(t, "one line", s.texts(), []string{"a"})
	appendFile(t, p, "b\n")
	pollAll(t, in, c.advance(time.Second))
	pollAll(t, in, c.advance(time.Second))
	equal(t, "two lines", s.texts(), []string{"a", "b"})
	if fp := in.open[0].pos.Fingerprint; fp.Len != 4 {
		t.Errorf("fingerprint covers %d bytes, want the whole 4-byte file", fp.Len)
	}
}

func TestRenameAndCreate(t *testing.T) {
	for _, tt := range []struct {
		name string
		glob string // relative to the temporary directory
	}{
		{"renamed file not matched", "/*.log"},
		{"renamed file still matched", "/*.log*"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			p := filepath.Join(dir, "app.log")
			writeFile(t, p, numbered("old", 0, 100))
			s := &sink{}
			in := newInput(t, Options{Paths: []string{dir + tt.glob}, BufferSize: 256}, s)
			c := newClock()
			pollAll(t, in, c.now())

			// The writer keeps its descriptor across the rename, as an application does until
			// it reopens its log: lines written before and after the rename land in the old file.
			w, err := os.OpenFile(p, os.O_APPEND|os.O_WRONLY, 0)
			if err != nil {
				t.Fatal(err)
			}
			defer w.Close()
			w.WriteString(numbered("old", 100, 150))
			if err := os.Rename(p, p+".1"); err != nil {
				t.Fatal(err)
			}
			w.WriteString(numbered("old", 150, 200))
			writeFile(t, p, numbered("new", 0, 50))
			pollAll(t, in, c.advance(time.Second))
			w.WriteString(numbered("old", 200, 210)) // still writing to the renamed file
			appendFile(t, p, numbered("new", 50, 60))
			pollAll(t, in, c.advance(time.Second))

			// Long after the last write, the renamed file is closed (or stays open if matched).
			pollAll(t, in, c.advance(time.Minute))
			pollAll(t, in, c.advance(time.Minute))

			old, cur := s.byPrefix("old")
			equal(t, "old file", old, split(numbered("old", 0, 210)))
			equal(t, "new file", cur, split(numbered("new", 0, 60)))
			wantOpen := 1
			if strings.HasSuffix(tt.glob, "*") {
				wantOpen = 2
			}
			if len(in.open) != wantOpen {
				t.Errorf("%d files open, want %d", len(in.open), wantOpen)
			}
		})
	}
}

func TestDelete(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "app.log")
	writeFile(t, p, numbered("a", 0, 10))
	reg := metrics.NewRegistry()
	s := &sink{}
	in := newInput(t, Options{Paths: []string{dir + "/*.log"}, Metrics: reg}, s)
	c := newClock()
	pollAll(t, in, c.now())
	// Lines and an unfinished line written just before the delete are still read.
	appendFile(t, p, numbered("a", 10, 20)+"partial")
	if err := os.Remove(p); err != nil {
		t.Fatal(err)
	}
	pollAll(t, in, c.advance(time.Second))
	equal(t, "before finishing", s.texts(), split(numbered("a", 0, 20)))
	if len(in.open) != 1 {
		t.Fatalf("deleted file closed before RotateWait")
	}
	pollAll(t, in, c.advance(DefaultRotateWait))
	pollAll(t, in, c.advance(time.Second))
	equal(t, "after finishing", s.texts(), append(split(numbered("a", 0, 20)), "partial"))
	if len(in.open) != 0 {
		t.Errorf("deleted file still open after RotateWait")
	}
	if got := metric(t, reg, `sidelog_files_open{container="app"}`); got != "0" {
		t.Errorf("files open gauge = %s, want 0", got)
	}
	if got := metric(t, reg, `sidelog_file_bytes_behind{container="app",path="`+p+`"}`); got != "" {
		t.Errorf("bytes-behind gauge of the closed file still registered (%s)", got)
	}
}

func TestDeletedBeforeRead(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, dir+"/a.log", numbered("a", 0, 10))
	writeFile(t, dir+"/b.log", numbered("b", 0, 10))
	reg := metrics.NewRegistry()
	s := &sink{}
	// One place: b.log waits while a.log is busy and is deleted before its turn.
	in := newInput(t, Options{Paths: []string{dir + "/*.log"}, Metrics: reg, MaxFiles: 1}, s)
	c := newClock()
	pollAll(t, in, c.now())
	if err := os.Remove(dir + "/b.log"); err != nil {
		t.Fatal(err)
	}
	pollAll(t, in, c.advance(time.Second))
	equal(t, "records", s.texts(), split(numbered("a", 0, 10)))
	size := int64(len(numbered("b", 0, 10)))
	if got := metric(t, reg, `sidelog_dropped_total{container="app",reason="deleted_before_read"}`); got != "1" {
		t.Errorf("dropped files = %s, want 1", got)
	}
	if got := metric(t, reg, `sidelog_dropped_bytes_total{container="app",reason="deleted_before_read"}`); got != itoa(size) {
		t.Errorf("dropped bytes = %s, want %d", got, size)
	}
}

func TestMaxFilesTakeTurns(t *testing.T) {
	dir := t.TempDir()
	names := []string{"a", "b", "c", "d", "e"}
	for _, n := range names {
		writeFile(t, dir+"/"+n+".log", numbered(n, 0, 20))
	}
	reg := metrics.NewRegistry()
	s := &sink{}
	in := newInput(t, Options{Paths: []string{dir + "/*.log"}, MaxFiles: 2, Metrics: reg}, s)
	c := newClock()
	for i := range 20 {
		pollAll(t, in, c.advance(DefaultRotateWait))
		if len(in.open) > 2 {
			t.Fatalf("%d files open, MaxFiles is 2", len(in.open))
		}
		if i == 10 {
			// A file closed to make room and reopened later resumes where it was.
			for _, n := range names {
				appendFile(t, dir+"/"+n+".log", numbered(n, 20, 30))
			}
		}
	}
	for _, n := range names {
		equal(t, n, s.byPath(dir+"/"+n+".log"), split(numbered(n, 0, 30)))
	}
	// Every file was read to its end: the three closed to make room wait for nothing.
	if got := metric(t, reg, `sidelog_files_waiting{container="app"}`); got != "0" {
		t.Errorf("files waiting = %s, want 0", got)
	}
}

func TestDrainReadsWaitingFiles(t *testing.T) {
	for _, ack := range []bool{true, false} {
		t.Run(fmt.Sprintf("ack=%v", ack), func(t *testing.T) {
			dir := t.TempDir()
			names := []string{"a", "b", "c", "d", "e"}
			var total int64
			for _, n := range names {
				// Unfinished last lines: Drain must flush those of the waiting files too.
				writeFile(t, dir+"/"+n+".log", numbered(n, 0, 20)+n+" last")
				total += fileSize(t, dir+"/"+n+".log")
			}
			reg := metrics.NewRegistry()
			s := &sink{ack: ack}
			in := newInput(t, Options{Paths: []string{dir + "/*.log"}, MaxFiles: 2, Metrics: reg}, s)
			c := newClock()
			pollAll(t, in, c.now()) // two files open, none idle long enough to give way
			if got := len(s.byPath(dir + "/c.log")); got != 0 {
				t.Fatalf("c.log read before Drain (%d records): the test needs it waiting", got)
			}
			if err := in.Drain(context.Background(), c.now()); err != nil {
				t.Fatal(err)
			}
			for _, n := range names {
				equal(t, n, s.byPath(dir+"/"+n+".log"), append(split(numbered(n, 0, 20)), n+" last"))
			}
			if len(in.open) > 2 {
				t.Errorf("%d files open, MaxFiles is 2", len(in.open))
			}
			if got := metric(t, reg, `sidelog_files_waiting{container="app"}`); got != "0" {
				t.Errorf("files waiting = %s after Drain, want 0", got)
			}

			// What was acknowledged is reported for every file, open or closed to make room;
			// what was not is counted.
			positions := map[string]int64{}
			for _, e := range in.Positions() {
				positions[e.Path] = e.Offset
			}
			bytes, files := in.Unacknowledged()
			if ack {
				for _, n := range names {
					if p := dir + "/" + n + ".log"; positions[p] != fileSize(t, p) {
						t.Errorf("position of %s = %d, want %d", p, positions[p], fileSize(t, p))
					}
				}
				if bytes != 0 || files != 0 {
					t.Errorf("unacknowledged = %d bytes in %d files, want none", bytes, files)
				}
			} else {
				if len(positions) != 0 {
					t.Errorf("positions %v of unacknowledged files", positions)
				}
				if bytes != total || files != len(names) {
					t.Errorf("unacknowledged = %d bytes in %d files, want %d in %d", bytes, files, total, len(names))
				}
			}
		})
	}
}

func TestCopytruncate(t *testing.T) {
	t.Run("shorter than read", func(t *testing.T) {
		dir := t.TempDir()
		p := dir + "/app.log"
		writeFile(t, p, numbered("old", 0, 100))
		reg := metrics.NewRegistry()
		s := &sink{}
		in := newInput(t, Options{Paths: []string{dir + "/*.log"}, Metrics: reg}, s)
		c := newClock()
		pollAll(t, in, c.now())
		copyFile(t, p, dir+"/app.log.1")
		writeFile(t, p, numbered("new", 0, 5)) // truncate and write, as the application goes on
		pollAll(t, in, c.advance(time.Second))
		equal(t, "records", s.texts(), split(numbered("old", 0, 100)+numbered("new", 0, 5)))
		if got := metric(t, reg, `sidelog_rotations_total{container="app",kind="truncated"}`); got != "1" {
			t.Errorf("truncations = %s, want 1", got)
		}
		if got := metric(t, reg, `sidelog_dropped_total{container="app",reason="truncated_before_read"}`); got != "0" {
			t.Errorf("drops = %s, want 0: everything was read before the truncation", got)
		}
	})

	t.Run("rewritten past the old offset", func(t *testing.T) {
		dir := t.TempDir()
		p := dir + "/app.log"
		writeFile(t, p, numbered("old", 0, 50))
		s := &sink{}
		in := newInput(t, Options{Paths: []string{dir + "/*.log"}}, s)
		c := newClock()
		pollAll(t, in, c.now())
		// Between two polls the file is truncated and grows beyond the old size: only its
		// first bytes tell.
		writeFile(t, p, numbered("new", 0, 200))
		pollAll(t, in, c.advance(time.Second))
		equal(t, "records", s.texts(), split(numbered("old", 0, 50)+numbered("new", 0, 200)))
	})

	t.Run("copy matched by the glob", func(t *testing.T) {
		dir := t.TempDir()
		p := dir + "/app.log"
		writeFile(t, p, numbered("old", 0, 300))
		reg := metrics.NewRegistry()
		s := &sink{}
		// A small buffer and so a small budget per poll: part of the file is still unread
		// when it is copied and truncated.
		in := newInput(t, Options{Paths: []string{dir + "/app.log*"}, Metrics: reg, BufferSize: 512}, s)
		c := newClock()
		if _, err := in.Poll(c.now()); err != nil {
			t.Fatal(err)
		}
		appendFile(t, p, numbered("old", 300, 320))
		copyFile(t, p, dir+"/app.log.1")
		// logrotate's two steps land in different polls: first the copy...
		if _, err := in.Poll(c.advance(time.Second)); err != nil {
			t.Fatal(err)
		}
		// ...then the truncation, and the application goes on.
		writeFile(t, p, numbered("new", 0, 5))
		for range 3 {
			pollAll(t, in, c.advance(time.Second))
		}
		old, cur := s.byPrefix("old")
		equal(t, "old lines from the file and its copy", old, split(numbered("old", 0, 320)))
		equal(t, "new lines", cur, split(numbered("new", 0, 5)))
		if n := len(s.byPath(dir + "/app.log.1")); n == 0 {
			t.Error("nothing was read from the copy: the test did not exercise it")
		}
		if got := metric(t, reg, `sidelog_dropped_bytes_total{container="app",reason="truncated_before_read"}`); got != "0" {
			t.Errorf("dropped bytes = %s, want 0: the copy had them", got)
		}

		// Nothing was acknowledged: the copy's position must not start where the original was
		// read to, or a checkpoint would skip the original's records still in flight.
		positions := func() map[string]int64 {
			m := map[string]int64{}
			for _, e := range in.Positions() {
				m[e.Path] = e.Offset
			}
			return m
		}
		if got := positions(); len(got) != 0 {
			t.Errorf("positions %v before any acknowledgement, want none", got)
		}
		// Acknowledgements of the original's records move the copy's position, in order.
		var firstCopyRec int
		var originalEnd int64
		for i, r := range s.recs {
			if r.path == dir+"/app.log.1" {
				firstCopyRec = i
				break
			}
			r.file.Ack(r.end)
			if strings.HasPrefix(r.text, "old") {
				originalEnd = r.end
			}
		}
		if got, want := positions()[dir+"/app.log.1"], originalEnd; got != want {
			t.Errorf("copy's position %d once the original's records were acknowledged, want %d", got, want)
		}
		for _, r := range s.recs[firstCopyRec:] {
			r.file.Ack(r.end)
		}
		if got, want := positions()[dir+"/app.log.1"], fileSize(t, dir+"/app.log.1"); got != want {
			t.Errorf("copy's position %d once everything was acknowledged, want its size %d", got, want)
		}
	})

	t.Run("unread bytes counted", func(t *testing.T) {
		dir := t.TempDir()
		p := dir + "/app.log"
		content := numbered("old", 0, 100)
		writeFile(t, p, content)
		reg := metrics.NewRegistry()
		s := &sink{}
		in := newInput(t, Options{Paths: []string{dir + "/*.log"}, Metrics: reg, BufferSize: 512}, s)
		c := newClock()
		if _, err := in.Poll(c.now()); err != nil { // reads 4*512 bytes of it
			t.Fatal(err)
		}
		copyFile(t, p, dir+"/app.log.1") // not matched
		writeFile(t, p, numbered("new", 0, 5))
		pollAll(t, in, c.advance(time.Second))
		read := int64(budgetBuffers * 512)
		want := int64(len(content)) - read
		if got := metric(t, reg, `sidelog_dropped_bytes_total{container="app",reason="truncated_before_read"}`); got != itoa(want) {
			t.Errorf("dropped bytes = %s, want %d", got, want)
		}
		// What was read before, and the new content, arrived; the partial line at the cut
		// was handed on as it was.
		texts := s.texts()
		equal(t, "new content", texts[len(texts)-5:], split(numbered("new", 0, 5)))
	})
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	b, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, to, string(b))
}

func TestRestartResume(t *testing.T) {
	for _, tt := range []struct {
		name   string
		lines  int // total lines; 10 make a file shorter than a fingerprint, 100 longer
		acked  int // lines acknowledged before the restart
		rename bool
	}{
		{"short file", 10, 6, false},
		{"short file renamed", 10, 6, true},
		{"long file", 100, 60, false},
		{"long file renamed", 100, 60, true},
		{"nothing acknowledged", 100, 0, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			dir, state := t.TempDir(), t.TempDir()
			p := dir + "/app.log"
			content := numbered("line", 0, tt.lines)
			writeFile(t, p, content)
			s := &sink{}
			in := newInput(t, Options{Paths: []string{dir + "/app.log*"}}, s)
			c := newClock()
			pollAll(t, in, c.now())
			if tt.acked > 0 {
				r := s.recs[tt.acked-1]
				r.file.Ack(r.end)
			}
			if err := checkpoint.Save(state, in.Positions()); err != nil {
				t.Fatal(err)
			}
			in.Close()

			if tt.rename {
				if err := os.Rename(p, p+".1"); err != nil {
					t.Fatal(err)
				}
				p += ".1"
			}
			appendFile(t, p, numbered("line", tt.lines, tt.lines+5))
			pos, err := checkpoint.Load(state)
			if err != nil {
				t.Fatal(err)
			}
			s2 := &sink{}
			in2 := newInput(t, Options{Paths: []string{dir + "/app.log*"}, Positions: pos}, s2)
			pollAll(t, in2, c.advance(time.Second))
			equal(t, "after restart", s2.texts(), split(numbered("line", tt.acked, tt.lines+5)))
		})
	}
}

func TestInodeReuse(t *testing.T) {
	// The new file gets the inode of a file the checkpoint remembers (filesystems hand out
	// freed inodes again): the entry is built from the new file's dev+inode and the old
	// content's fingerprint, which is what a real reuse looks like to the agent.
	for _, tt := range []struct {
		name string
		old  string // the content the checkpoint's fingerprint was taken from
	}{
		{"short fingerprint", "old content\n"},
		{"full fingerprint", numbered("old", 0, 100)},
	} {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			p := dir + "/app.log"
			content := numbered("new", 0, 100)
			writeFile(t, p, content)
			fi, err := os.Stat(p)
			if err != nil {
				t.Fatal(err)
			}
			id, _ := fingerprint.IDOf(fi)
			old := tt.old[:min(len(tt.old), fingerprint.Size)]
			pos := []checkpoint.Entry{{Container: "app", Path: p, Offset: int64(len(old)),
				Identity: fingerprint.Identity{ID: id, Fingerprint: fingerprint.Of([]byte(old))}}}
			s := &sink{}
			in := newInput(t, Options{Paths: []string{p}, Positions: pos}, s)
			pollAll(t, in, newClock().now())
			equal(t, "records", s.texts(), split(content))
		})
	}
}

func TestPositionsOfOtherContainersIgnored(t *testing.T) {
	dir := t.TempDir()
	p := dir + "/app.log"
	content := numbered("line", 0, 10)
	writeFile(t, p, content)
	fi, _ := os.Stat(p)
	id, _ := fingerprint.IDOf(fi)
	pos := []checkpoint.Entry{{Container: "other", Path: p, Offset: int64(len(content)),
		Identity: fingerprint.Identity{ID: id, Fingerprint: fingerprint.Of([]byte(content))}}}
	s := &sink{}
	in := newInput(t, Options{Paths: []string{p}, Positions: pos}, s)
	pollAll(t, in, newClock().now())
	equal(t, "records", s.texts(), split(content))
}

func TestPositions(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, dir+"/a.log", numbered("a", 0, 10))
	writeFile(t, dir+"/b.log", numbered("b", 0, 10))
	s := &sink{}
	in := newInput(t, Options{Paths: []string{dir + "/*.log"}, Container: "web"}, s)
	pollAll(t, in, newClock().now())
	if got := in.Positions(); len(got) != 0 {
		t.Fatalf("positions before any ack: %+v", got)
	}
	r := s.recs[3]
	r.file.Ack(r.end)
	got := in.Positions()
	if len(got) != 1 || got[0].Container != "web" || got[0].Path != dir+"/a.log" || got[0].Offset != r.end {
		t.Fatalf("positions = %+v, want a.log at %d", got, r.end)
	}
	if got[0].Fingerprint.Len != len(numbered("a", 0, 10)) {
		t.Errorf("fingerprint covers %d bytes, want the whole short file", got[0].Fingerprint.Len)
	}
}

func TestMultiline(t *testing.T) {
	dir := t.TempDir()
	p := dir + "/app.log"
	writeFile(t, p, "ERROR boom\njava.lang.IllegalStateException: x\n\tat a.B.c(B.java:1)\nINFO next\n\tat orphan.D(D.java:2)\n")
	s := &sink{ack: true}
	in := newInput(t, Options{Paths: []string{p}, Multiline: &config.Multiline{Preset: "java", FlushTimeout: config.Duration(time.Second)}, BufferSize: 16}, s)
	c := newClock()
	pollAll(t, in, c.now())
	equal(t, "before the timeout", s.texts(), []string{"ERROR boom\njava.lang.IllegalStateException: x\n\tat a.B.c(B.java:1)"})

	// The pending record leaves once the file was quiet for FlushTimeout.
	pollAll(t, in, c.advance(999*time.Millisecond))
	if len(s.recs) != 1 {
		t.Fatalf("record flushed before its timeout")
	}
	pollAll(t, in, c.advance(time.Millisecond))
	equal(t, "after the timeout", s.texts(), []string{
		"ERROR boom\njava.lang.IllegalStateException: x\n\tat a.B.c(B.java:1)",
		"INFO next\n\tat orphan.D(D.java:2)",
	})
	if got, want := in.Positions()[0].Offset, fileSize(t, p); got != want {
		t.Errorf("acknowledged position %d, want the end of the file %d", got, want)
	}

	appendFile(t, p, "WARN last\n\tat x.Y(Y.java:3)")
	pollAll(t, in, c.advance(time.Millisecond))
	if err := in.Drain(context.Background(), c.now()); err != nil {
		t.Fatal(err)
	}
	if got := s.texts()[2]; got != "WARN last\n\tat x.Y(Y.java:3)" {
		t.Errorf("Drain flushed %q", got)
	}
}

// cancelSink cancels its context at the nth record, as the agent's drain deadline ends a Send.
type cancelSink struct {
	sink
	n      int
	cancel context.CancelFunc
}

func (s *cancelSink) Record(f *File, rec []byte, end int64) {
	s.sink.Record(f, rec, end)
	if len(s.recs) == s.n {
		s.cancel()
	}
}

func TestDrainStopsAtDeadline(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, dir+"/a.log", numbered("a", 0, 1000))
	writeFile(t, dir+"/b.log", numbered("b", 0, 1000))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	s := &cancelSink{n: 10, cancel: cancel}
	in := newInput(t, Options{Paths: []string{dir + "/*.log"}, BufferSize: 64}, s)
	err := in.Drain(ctx, newClock().now())
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("Drain = %v, want the context's error", err)
	}
	// What is read after the deadline could not be sent: at most the buffer being handed on
	// when it passed is read (a line is 5-6 bytes, the buffer 64).
	if n := len(s.texts()); n > 10+64/5 {
		t.Errorf("%d records read after the deadline passed at the 10th", n-10)
	}
	if err := in.Drain(ctx, newClock().now()); err != nil {
		t.Errorf("second Drain = %v, want nil: draining happens once", err)
	}
}

func TestMultilineRecordLimit(t *testing.T) {
	dir := t.TempDir()
	p := dir + "/app.log"
	writeFile(t, p, "ERROR boom\n\tat 1\n\tat 2\n\tat 3\nnext\n")
	reg := metrics.NewRegistry()
	s := &sink{}
	in := newInput(t, Options{Paths: []string{p}, Multiline: &config.Multiline{Preset: "java"}, MaxLineBytes: 16, Metrics: reg}, s)
	pollAll(t, in, newClock().now())
	in.Drain(context.Background(), newClock().now())
	equal(t, "records", s.texts(), []string{"ERROR boom\n\tat 1", "next"})
	if got := metric(t, reg, `sidelog_dropped_total{container="app",reason="record_too_long"}`); got != "1" {
		t.Errorf("record drops = %s, want 1", got)
	}
}

// TestConcurrentAckAndPositions runs Ack and Positions on other goroutines while Poll reads,
// for the race detector.
func TestConcurrentAckAndPositions(t *testing.T) {
	dir := t.TempDir()
	for _, n := range []string{"a", "b", "c"} {
		writeFile(t, dir+"/"+n+".log", numbered(n, 0, 2000))
	}
	acks := make(chan record, 100)
	s := &chanSink{acks}
	in := newInput(t, Options{Paths: []string{dir + "/*.log"}, BufferSize: 1024}, s)
	var wg sync.WaitGroup
	wg.Add(2)
	go func() {
		defer wg.Done()
		for r := range acks {
			r.file.Ack(r.end)
		}
	}()
	stop := make(chan struct{})
	go func() {
		defer wg.Done()
		for {
			select {
			case <-stop:
				return
			default:
				for _, e := range in.Positions() {
					if e.Offset <= 0 {
						t.Errorf("position %+v", e)
					}
				}
			}
		}
	}()
	c := newClock()
	for range 50 {
		for _, n := range []string{"a", "b", "c"} {
			appendFile(t, dir+"/"+n+".log", numbered(n, 0, 10))
		}
		pollAll(t, in, c.advance(time.Second))
	}
	close(acks)
	close(stop)
	wg.Wait()
	for _, e := range in.Positions() {
		if e.Offset != fileSize(t, e.Path) {
			t.Errorf("%s acknowledged to %d, want %d", e.Path, e.Offset, fileSize(t, e.Path))
		}
	}
}

type chanSink struct{ c chan record }

func (s *chanSink) Record(f *File, rec []byte, end int64) { s.c <- record{file: f, end: end} }

func TestNewErrors(t *testing.T) {
	for _, tt := range []struct {
		opts Options
		want string
	}{
		{Options{}, "no paths"},
		{Options{Paths: []string{"relative.log"}}, "paths[0]"},
		{Options{Paths: []string{"/a.log"}, Multiline: &config.Multiline{Preset: "cobol"}}, "cobol"},
		{Options{Paths: []string{"/a.log"}, MaxFiles: -1}, "negative"},
	} {
		if _, err := New(tt.opts, &sink{}); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("New(%+v) = %v, want error containing %q", tt.opts, err, tt.want)
		}
	}
}

func TestClosed(t *testing.T) {
	in := newInput(t, Options{Paths: []string{t.TempDir() + "/*.log"}}, &sink{})
	in.Close()
	if _, err := in.Poll(time.Now()); err != ErrClosed {
		t.Errorf("Poll after Close: %v", err)
	}
}

func TestScanInterval(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, dir+"/a.log", "a\n")
	s := &sink{}
	in := newInput(t, Options{Paths: []string{dir + "/*.log"}, ScanInterval: time.Second}, s)
	c := newClock()
	pollAll(t, in, c.now())
	writeFile(t, dir+"/b.log", "b\n")
	appendFile(t, dir+"/a.log", "a2\n")
	pollAll(t, in, c.advance(500*time.Millisecond))
	equal(t, "before the interval", s.texts(), []string{"a"})
	pollAll(t, in, c.advance(500*time.Millisecond))
	equal(t, "after the interval", s.texts(), []string{"a", "a2", "b"})
}

// TestSameFirstBytes: two different files that start with the same FingerprintSize bytes look
// like a file and its copy; the second waits RotateWait for a truncation that never comes and
// is then read whole.
// TestSameFirstBytesAsAParkedFile: a new file that starts like one closed to make room (a common
// header longer than the fingerprint) is another file, read from its start, not the parked one
// resumed at its offset.
func TestSameFirstBytesAsAParkedFile(t *testing.T) {
	dir := t.TempDir()
	header := strings.Repeat("#", 100) + "\n"
	writeFile(t, dir+"/a.log", header+numbered("a", 0, 20))
	writeFile(t, dir+"/b.log", numbered("b", 0, 20))
	s := &sink{}
	in := newInput(t, Options{Paths: []string{dir + "/*.log"}, MaxFiles: 2, FingerprintSize: 64}, s)
	c := newClock()
	pollAll(t, in, c.now())
	appendFile(t, dir+"/b.log", numbered("b", 20, 30)) // b.log stays busy: a.log makes room
	writeFile(t, dir+"/c.log", header+numbered("c", 0, 5))
	for range 3 {
		pollAll(t, in, c.advance(DefaultRotateWait))
	}
	equal(t, "c.log", s.byPath(dir+"/c.log"), append([]string{header[:100]}, split(numbered("c", 0, 5))...))
	equal(t, "a.log", s.byPath(dir+"/a.log"), append([]string{header[:100]}, split(numbered("a", 0, 20))...))
}

func TestSameFirstBytes(t *testing.T) {
	dir := t.TempDir()
	header := strings.Repeat("#", 100) + "\n"
	writeFile(t, dir+"/a.log", header+"a\n")
	writeFile(t, dir+"/b.log", header+"b\n")
	s := &sink{}
	in := newInput(t, Options{Paths: []string{dir + "/*.log"}, FingerprintSize: 64}, s)
	c := newClock()
	pollAll(t, in, c.now())
	equal(t, "first", s.byPath(dir+"/b.log"), nil)
	pollAll(t, in, c.advance(DefaultRotateWait))
	equal(t, "a.log", s.byPath(dir+"/a.log"), []string{header[:100], "a"})
	equal(t, "b.log", s.byPath(dir+"/b.log"), []string{header[:100], "b"})
}

func TestBytesBehindGauge(t *testing.T) {
	dir := t.TempDir()
	p := dir + "/app.log"
	content := numbered("line", 0, 400)
	writeFile(t, p, content)
	reg := metrics.NewRegistry()
	in := newInput(t, Options{Paths: []string{p}, Metrics: reg, BufferSize: 512}, &sink{})
	c := newClock()
	if _, err := in.Poll(c.now()); err != nil { // one budget: 4 buffers
		t.Fatal(err)
	}
	series := `sidelog_file_bytes_behind{container="app",path="` + p + `"}`
	if got, want := metric(t, reg, series), itoa(int64(len(content)-budgetBuffers*512)); got != want {
		t.Errorf("%s = %s, want %s", series, got, want)
	}
	pollAll(t, in, c.advance(time.Second))
	if got := metric(t, reg, series); got != "0" {
		t.Errorf("%s = %s after reading everything, want 0", series, got)
	}
}

func TestParkedFileHoldsNoLine(t *testing.T) {
	dir := t.TempDir()
	long := strings.Repeat("x", 10_000)
	writeFile(t, dir+"/a.log", "a1\n"+long) // its last line is unfinished
	writeFile(t, dir+"/b.log", "b1\n")
	s := &sink{}
	in := newInput(t, Options{Paths: []string{dir + "/*.log"}, MaxFiles: 1}, s)
	c := newClock()
	pollAll(t, in, c.now())
	pollAll(t, in, c.advance(DefaultRotateWait)) // a.log is idle: it makes room for b.log
	i := slices.IndexFunc(in.tr.parked, func(f *File) bool { return f.Path == dir+"/a.log" })
	if i < 0 {
		t.Fatal("a.log was not closed to make room")
	}
	if f := in.tr.parked[i]; f.rd != nil || f.pos.Offset != 3 {
		t.Errorf("parked a.log keeps a reader (%v) or is at offset %d; want none, offset 3 (its unfinished line's start)", f.rd != nil, f.pos.Offset)
	}
	appendFile(t, dir+"/a.log", "\na3\n")
	for range 3 {
		pollAll(t, in, c.advance(DefaultRotateWait))
	}
	equal(t, "a.log", s.byPath(dir+"/a.log"), []string{"a1", long, "a3"})
}

func TestRetiredFilesCountUntilAcknowledged(t *testing.T) {
	dir := t.TempDir()
	p := dir + "/app.log"
	writeFile(t, p, numbered("a", 0, 10))
	s := &sink{}
	in := newInput(t, Options{Paths: []string{p}}, s)
	c := newClock()
	pollAll(t, in, c.now())
	if err := os.Rename(p, dir+"/app.log.1"); err != nil {
		t.Fatal(err)
	}
	for range 3 {
		pollAll(t, in, c.advance(DefaultRotateWait))
	}
	if len(in.open) != 0 {
		t.Fatalf("%d files open, want the renamed one finished", len(in.open))
	}
	size := fileSize(t, dir+"/app.log.1")
	if bytes, files := in.Unacknowledged(); bytes != size || files != 1 {
		t.Errorf("unacknowledged = %d bytes in %d files, want the finished file's %d in 1", bytes, files, size)
	}
	for _, r := range s.recs {
		r.file.Ack(r.end)
	}
	pollAll(t, in, c.advance(time.Second))
	if bytes, files := in.Unacknowledged(); bytes != 0 || files != 0 || len(in.retired) != 0 {
		t.Errorf("unacknowledged = %d bytes in %d files (%d retired) once acknowledged, want none", bytes, files, len(in.retired))
	}
}

func TestPositionsIncludeFilesClosedToMakeRoom(t *testing.T) {
	dir := t.TempDir()
	for _, n := range []string{"a", "b", "c"} {
		writeFile(t, dir+"/"+n+".log", numbered(n, 0, 10))
	}
	in := newInput(t, Options{Paths: []string{dir + "/*.log"}, MaxFiles: 1}, &sink{ack: true})
	c := newClock()
	for range 5 {
		pollAll(t, in, c.advance(DefaultRotateWait))
	}
	got := map[string]int64{}
	for _, e := range in.Positions() {
		got[e.Path] = e.Offset
	}
	for _, n := range []string{"a", "b", "c"} {
		p := dir + "/" + n + ".log"
		if got[p] != fileSize(t, p) {
			t.Errorf("position of %s = %d, want %d (positions %v)", p, got[p], fileSize(t, p), got)
		}
	}
	if len(in.open) != 1 {
		t.Errorf("%d files open, MaxFiles is 1", len(in.open))
	}
}

// TestDrainReadsParkedUnfinishedLine: a file closed to make room keeps only its position, at
// the start of its unfinished last line, and is not reopened while it does not change; Drain
// reopens it for that line, which is the file's last record.
func TestDrainReadsParkedUnfinishedLine(t *testing.T) {
	dir := t.TempDir()
	a := dir + "/a.log"
	writeFile(t, a, "a1\nlast without newline")
	writeFile(t, dir+"/b.log", "b1\n")
	s := &sink{ack: true}
	in := newInput(t, Options{Paths: []string{dir + "/*.log"}, MaxFiles: 1}, s)
	c := newClock()
	pollAll(t, in, c.now())
	for range 3 {
		pollAll(t, in, c.advance(DefaultRotateWait)) // a.log parked, and left so: it does not change
	}
	equal(t, "a.log before Drain", s.byPath(a), []string{"a1"})
	if !slices.ContainsFunc(in.tr.parked, func(f *File) bool { return f.Path == a }) {
		t.Fatal("a.log is not parked: the test does not exercise what it is about")
	}
	if err := in.Drain(context.Background(), c.now()); err != nil {
		t.Fatal(err)
	}
	equal(t, "a.log after Drain", s.byPath(a), []string{"a1", "last without newline"})
	for _, e := range in.Positions() {
		if e.Path == a && e.Offset != fileSize(t, a) {
			t.Errorf("a.log acknowledged to %d, want its size %d", e.Offset, fileSize(t, a))
		}
	}
}
