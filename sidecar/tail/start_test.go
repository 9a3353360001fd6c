package tail

import (
	"os"
	"testing"
	"time"

	"github.com/sidelog/sidelog/sidecar/checkpoint"
	"github.com/sidelog/sidelog/sidecar/config"
)

// Start position (ReadFrom) and age limit (IgnoreOlder) on real files.

func TestReadFrom(t *testing.T) {
	for _, tt := range []struct {
		name     string
		readFrom string
		want     func(old, more string) string
	}{
		{"head: a file found at start is read whole", config.ReadFromHead, func(old, more string) string { return old + more }},
		{"default is head", "", func(old, more string) string { return old + more }},
		{"tail: a file found at start ships only what is written after", config.ReadFromTail, func(_, more string) string { return more }},
	} {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			p := dir + "/app.log"
			old, more := numbered("old", 0, 50), numbered("new", 0, 5)
			writeFile(t, p, old)
			s := &sink{ack: true}
			in := newInput(t, Options{Paths: []string{dir + "/*.log"}, ReadFrom: tt.readFrom}, s)
			c := newClock()
			pollAll(t, in, c.now())
			appendFile(t, p, more)
			pollAll(t, in, c.advance(time.Second))
			equal(t, "records", s.texts(), split(tt.want(old, more)))
		})
	}
}

func TestReadFromTailNewFilesFromHead(t *testing.T) {
	dir := t.TempDir()
	p := dir + "/app.log"
	writeFile(t, p, numbered("before start", 0, 20))
	s := &sink{ack: true}
	in := newInput(t, Options{Paths: []string{dir + "/*.log"}, ReadFrom: config.ReadFromTail, RotateWait: time.Second}, s)
	c := newClock()
	pollAll(t, in, c.now())

	// A file created while the agent runs is new: all of it is shipped.
	created := numbered("created", 0, 10)
	writeFile(t, dir+"/other.log", created)
	// Rotation by rename and create: the new file at the path is read from its start, and
	// what was written to the old one before the rename is read too.
	lastOld := numbered("last of old", 0, 3)
	appendFile(t, p, lastOld)
	if err := os.Rename(p, dir+"/app.log.1"); err != nil {
		t.Fatal(err)
	}
	rotated := numbered("rotated", 0, 10)
	writeFile(t, p, rotated)
	pollAll(t, in, c.advance(time.Second))
	equal(t, "created", s.byPath(dir+"/other.log"), split(created))
	equal(t, "old file after the rename", s.byPath(p)[:3], split(lastOld))
	equal(t, "new file at the path", s.byPath(p)[3:], split(rotated))
}

func TestReadFromTailCheckpointWins(t *testing.T) {
	dir, state := t.TempDir(), t.TempDir()
	p := dir + "/app.log"
	writeFile(t, p, numbered("line", 0, 100))
	s := &sink{}
	in := newInput(t, Options{Paths: []string{dir + "/*.log"}}, s)
	c := newClock()
	pollAll(t, in, c.now())
	r := s.recs[59]
	r.file.Ack(r.end)
	if err := checkpoint.Save(state, in.Positions()); err != nil {
		t.Fatal(err)
	}
	in.Close()
	appendFile(t, p, numbered("line", 100, 105))
	pos, err := checkpoint.Load(state)
	if err != nil {
		t.Fatal(err)
	}
	// A restarted agent resumes at its checkpoint: tail is only for files it knows nothing of.
	s2 := &sink{}
	in2 := newInput(t, Options{Paths: []string{dir + "/*.log"}, Positions: pos, ReadFrom: config.ReadFromTail}, s2)
	pollAll(t, in2, c.advance(time.Second))
	equal(t, "after restart", s2.texts(), split(numbered("line", 60, 105)))
}

func TestIgnoreOlder(t *testing.T) {
	for _, readFrom := range []string{config.ReadFromHead, config.ReadFromTail} {
		t.Run(readFrom, func(t *testing.T) {
			dir := t.TempDir()
			c := newClock()
			oldP, recentP := dir+"/old.log", dir+"/recent.log"
			oldContent, recent := numbered("old", 0, 30), numbered("recent", 0, 30)
			writeFile(t, oldP, oldContent)
			writeFile(t, recentP, recent)
			if err := os.Chtimes(oldP, c.now().Add(-72*time.Hour), c.now().Add(-72*time.Hour)); err != nil {
				t.Fatal(err)
			}
			if err := os.Chtimes(recentP, c.now().Add(-time.Hour), c.now().Add(-time.Hour)); err != nil {
				t.Fatal(err)
			}
			s := &sink{ack: true}
			in := newInput(t, Options{Paths: []string{dir + "/*.log"}, ReadFrom: readFrom, IgnoreOlder: 24 * time.Hour}, s)
			pollAll(t, in, c.now())
			if got := s.byPath(oldP); len(got) != 0 {
				t.Errorf("old file: %d records read, want none", len(got))
			}
			wantRecent := recent
			if readFrom == config.ReadFromTail {
				wantRecent = ""
			}
			equal(t, "recent file", s.byPath(recentP), split(wantRecent))

			// Written to again: its new lines are shipped, its old content stays ignored.
			more := numbered("more", 0, 4)
			appendFile(t, oldP, more)
			later := c.advance(time.Minute)
			if err := os.Chtimes(oldP, later, later); err != nil {
				t.Fatal(err)
			}
			pollAll(t, in, later)
			equal(t, "old file written again", s.byPath(oldP), split(more))
		})
	}
}

func TestIgnoreOlderNewFileStillNew(t *testing.T) {
	// A file that appears with an old modification time (moved in, unpacked) is ignored too.
	dir := t.TempDir()
	c := newClock()
	s := &sink{ack: true}
	in := newInput(t, Options{Paths: []string{dir + "/*.log"}, IgnoreOlder: time.Hour}, s)
	pollAll(t, in, c.now())
	p := dir + "/moved.log"
	writeFile(t, p, numbered("archived", 0, 10))
	if err := os.Chtimes(p, c.now().Add(-2*time.Hour), c.now().Add(-2*time.Hour)); err != nil {
		t.Fatal(err)
	}
	fresh := dir + "/fresh.log"
	writeFile(t, fresh, numbered("fresh", 0, 10))
	if err := os.Chtimes(fresh, c.now(), c.now()); err != nil {
		t.Fatal(err)
	}
	pollAll(t, in, c.advance(time.Second))
	if got := s.byPath(p); len(got) != 0 {
		t.Errorf("old file created after start: %d records, want none", len(got))
	}
	equal(t, "fresh file", s.byPath(fresh), split(numbered("fresh", 0, 10)))
}

func TestReadFromInvalid(t *testing.T) {
	if _, err := New(Options{Paths: []string{"/x/*.log"}, ReadFrom: "end"}, &sink{}); err == nil {
		t.Error("readFrom end accepted")
	}
	if _, err := New(Options{Paths: []string{"/x/*.log"}, IgnoreOlder: -time.Second}, &sink{}); err == nil {
		t.Error("negative ignoreOlder accepted")
	}
}
