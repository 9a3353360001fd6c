package tail

import (
	"bytes"
	"log/slog"
	"os"
	"testing"
	"time"

	"github.com/sidelog/sidelog/sidecar/checkpoint"
	"github.com/sidelog/sidelog/sidecar/metrics"
)

// Regression tests for the defects of issue #9 (item 4). Each failed on the tailer before the
// fix that came with it.

// TestCopytruncateWhileDown: logrotate copied and truncated the file while the agent was down,
// and the glob matches the copy. The copy is the remembered content (its inode is new, the
// original's inode now holds other bytes): it resumes at the saved position instead of being
// sent again whole.
func TestCopytruncateWhileDown(t *testing.T) {
	for _, tt := range []struct {
		name  string
		acked int // of 100 old lines
	}{
		{"everything acknowledged", 100},
		{"part acknowledged", 60},
	} {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			p := dir + "/app.log"
			writeFile(t, p, numbered("old", 0, 100))
			s := &sink{}
			in := newInput(t, Options{Paths: []string{dir + "/app.log*"}}, s)
			c := newClock()
			pollAll(t, in, c.now())
			r := s.recs[tt.acked-1]
			r.file.Ack(r.end)
			pos := in.Positions()
			in.Close()

			copyFile(t, p, p+".1")
			writeFile(t, p, numbered("new", 0, 5)) // truncates in place: same inode

			s2 := &sink{}
			in2 := newInput(t, Options{Paths: []string{dir + "/app.log*"}, Positions: pos}, s2)
			for range 3 {
				pollAll(t, in2, c.advance(DefaultRotateWait))
			}
			old, cur := s2.byPrefix("old")
			equal(t, "old lines", old, split(numbered("old", tt.acked, 100)))
			equal(t, "new lines", cur, split(numbered("new", 0, 5)))
		})
	}
}

// TestIdleParkedFilesStayParked: files beyond MaxFiles that were read to their end and did not
// change are not reopened at every RotateWait, and nothing is logged at Info for them.
func TestIdleParkedFilesStayParked(t *testing.T) {
	dir := t.TempDir()
	names := []string{"a", "b", "c"}
	for _, n := range names {
		writeFile(t, dir+"/"+n+".log", numbered(n, 0, 10))
	}
	var logBuf bytes.Buffer
	reg := metrics.NewRegistry()
	s := &sink{ack: true}
	in := newInput(t, Options{Paths: []string{dir + "/*.log"}, MaxFiles: 1, Metrics: reg,
		Logger: slog.New(slog.NewTextHandler(&logBuf, nil))}, s)
	c := newClock()
	for range 6 {
		pollAll(t, in, c.advance(DefaultRotateWait))
	}
	for _, n := range names {
		equal(t, n, s.byPath(dir+"/"+n+".log"), split(numbered(n, 0, 10)))
	}
	logBuf.Reset()
	for range 20 {
		pollAll(t, in, c.advance(DefaultRotateWait))
	}
	if logBuf.Len() > 0 {
		t.Errorf("idle files logged at Info or above:\n%s", logBuf.String())
	}
	if got := metric(t, reg, `sidelog_files_waiting{container="app"}`); got != "0" {
		t.Errorf("files waiting = %s, want 0: idle files read to their end wait for nothing", got)
	}
	// A parked file that changes gets its turn again.
	for _, n := range names {
		appendFile(t, dir+"/"+n+".log", numbered(n, 10, 12))
	}
	for range 6 {
		pollAll(t, in, c.advance(DefaultRotateWait))
	}
	for _, n := range names {
		equal(t, n+" after it grew", s.byPath(dir+"/"+n+".log"), split(numbered(n, 0, 12)))
	}
}

// TestVanishedCopyOfAnOpenFileIsNoDrop: a copy that starts like an open file waits for the
// original's truncation; if it disappears first (logrotate compressed it), its content was read
// through the original, and nothing was lost.
func TestVanishedCopyOfAnOpenFileIsNoDrop(t *testing.T) {
	dir := t.TempDir()
	p := dir + "/app.log"
	writeFile(t, p, numbered("old", 0, 100))
	reg := metrics.NewRegistry()
	s := &sink{}
	in := newInput(t, Options{Paths: []string{dir + "/app.log*"}, Metrics: reg}, s)
	c := newClock()
	pollAll(t, in, c.now())
	copyFile(t, p, p+".1")
	pollAll(t, in, c.advance(time.Second)) // the copy waits for a truncation
	if err := os.Remove(p + ".1"); err != nil {
		t.Fatal(err)
	}
	pollAll(t, in, c.advance(time.Second))
	equal(t, "records", s.texts(), split(numbered("old", 0, 100)))
	if got := metric(t, reg, `sidelog_dropped_total{container="app",reason="deleted_before_read"}`); got != "0" {
		t.Errorf("dropped = %s, want 0: the copy's content was read through the original", got)
	}
}

// TestParkedFileRewritten: a file closed to make room whose content is then replaced in place
// (truncated and written again) is read again from its start, and the position of its old
// content does not stay behind (in Positions, files_waiting and Unacknowledged) for ever.
func TestParkedFileRewritten(t *testing.T) {
	dir := t.TempDir()
	a, b := dir+"/a.log", dir+"/b.log"
	writeFile(t, a, numbered("a", 0, 100))
	writeFile(t, b, numbered("b", 0, 100))
	reg := metrics.NewRegistry()
	s := &sink{ack: true}
	in := newInput(t, Options{Paths: []string{dir + "/*.log"}, MaxFiles: 1, Metrics: reg}, s)
	c := newClock()
	pollAll(t, in, c.now())                      // a.log open, b.log waiting
	pollAll(t, in, c.advance(DefaultRotateWait)) // a.log idle: parked, b.log read
	writeFile(t, a, numbered("rewritten", 0, 100))
	for range 6 {
		pollAll(t, in, c.advance(DefaultRotateWait))
	}
	equal(t, "a.log", s.byPath(a), split(numbered("a", 0, 100)+numbered("rewritten", 0, 100)))
	var entries []checkpoint.Entry
	for _, e := range in.Positions() {
		if e.Path == a {
			entries = append(entries, e)
		}
	}
	if len(entries) != 1 || entries[0].Offset != fileSize(t, a) {
		t.Errorf("positions of a.log = %+v, want one at its size %d", entries, fileSize(t, a))
	}
	if got := metric(t, reg, `sidelog_files_waiting{container="app"}`); got != "0" {
		t.Errorf("files waiting = %s, want 0", got)
	}
	if bytes, files := in.Unacknowledged(); bytes != 0 || files != 0 {
		t.Errorf("unacknowledged = %d bytes in %d files, want none: everything was acknowledged", bytes, files)
	}
}

// TestParkedFileVanishesWithUnfinishedLine: a parked file keeps only its position, at the start
// of its unfinished last line. If the file is deleted while parked, that line cannot be read
// any more: it is counted and logged as a drop, not lost silently.
func TestParkedFileVanishesWithUnfinishedLine(t *testing.T) {
	dir := t.TempDir()
	a := dir + "/a.log"
	writeFile(t, a, "a1\npartial")
	writeFile(t, dir+"/b.log", "b1\n")
	reg := metrics.NewRegistry()
	var logBuf bytes.Buffer
	s := &sink{ack: true}
	// One scan per pollAll: a.log is deleted before a scan sees it parked.
	in := newInput(t, Options{Paths: []string{dir + "/*.log"}, MaxFiles: 1, Metrics: reg, ScanInterval: time.Second,
		Logger: slog.New(slog.NewTextHandler(&logBuf, nil))}, s)
	c := newClock()
	pollAll(t, in, c.now())
	pollAll(t, in, c.advance(DefaultRotateWait)) // a.log parked at "partial"
	if err := os.Remove(a); err != nil {
		t.Fatal(err)
	}
	for range 3 {
		pollAll(t, in, c.advance(DefaultRotateWait))
	}
	equal(t, "a.log", s.byPath(a), []string{"a1"})
	if got := metric(t, reg, `sidelog_dropped_bytes_total{container="app",reason="deleted_before_read"}`); got != "7" {
		t.Errorf("dropped bytes = %s, want 7 (the unfinished line)\nlog:\n%s", got, logBuf.String())
	}
	if !bytes.Contains(logBuf.Bytes(), []byte("reason=deleted_before_read")) {
		t.Errorf("the drop was not logged:\n%s", logBuf.String())
	}
}
