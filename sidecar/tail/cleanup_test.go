package tail

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sidelog/sidelog/sidecar/metrics"
)

func TestMayRemove(t *testing.T) {
	now := time.Unix(1_700_000_000, 0)
	settle := time.Minute
	old := now.Add(-2 * time.Minute)
	newer := now.Add(-time.Second)
	done := func(change func(h *holding)) *holding {
		h := &holding{offset: 100, acked: 100, size: 100, modTime: old, lastData: old}
		if change != nil {
			change(h)
		}
		return h
	}
	for _, tt := range []struct {
		name    string
		h       *holding
		size    int64
		modTime time.Time
		newest  time.Time
		want    keep
	}{
		{"delivered, left, a newer file: removed", done(nil), 100, old, newer, removeIt},
		{"newer file modified at the same time: removed", done(nil), 100, old, old, removeIt},
		{"never opened (waiting, excluded, a deferred copy)", nil, 100, old, newer, keepUnknown},
		{"started at its end (readFrom tail, ignoreOlder)", done(func(h *holding) { h.skipped = true }), 100, old, newer, keepSkipped},
		{"grew since the last check", done(nil), 120, old, newer, keepChanged},
		{"shrank since the last check (truncated)", done(nil), 50, old, newer, keepChanged},
		{"modified since the last check, same size", done(nil), 100, old.Add(time.Second), newer, keepChanged},
		{"unfinished last line not read as a record", done(func(h *holding) { h.offset, h.acked = 90, 90 }), 100, old, newer, keepUnread},
		{"read, upstream down: nothing acknowledged", done(func(h *holding) { h.acked = 0 }), 100, old, newer, keepUnacked},
		{"read, last batch not acknowledged", done(func(h *holding) { h.acked = 99 }), 100, old, newer, keepUnacked},
		{"modified within the settle period", done(func(h *holding) { h.modTime = newer }), 100, newer, newer, keepRecent},
		{"seen growing within the settle period (mtime set back)", done(func(h *holding) { h.lastData = newer }), 100, old, newer, keepRecent},
		{"no other file: it may be the live one", done(nil), 100, old, time.Time{}, keepNewest},
		{"every other file older: it may be the live one", done(nil), 100, old, old.Add(-time.Hour), keepNewest},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if got := mayRemove(tt.h, tt.size, tt.modTime, tt.newest, now, settle); got != tt.want {
				t.Errorf("mayRemove = %q, want %q", got, tt.want)
			}
		})
	}
}

// cleanupClock is a fake clock from the real time, for the modification times of real files.
func cleanupClock() *clock { return &clock{time.Now()} }

const testSettle = 10 * time.Second

// ackAll acknowledges every record the sink saw, as the upstream does when it comes back.
func (s *sink) ackAll() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, r := range s.recs {
		r.file.Ack(r.end)
	}
}

func exists(t *testing.T, p string) bool {
	t.Helper()
	_, err := os.Stat(p)
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	return err == nil
}

// settleAndPoll lets the settle period pass and polls until the cleanup ran twice.
func settleAndPoll(t *testing.T, in *Tailer, c *clock) {
	t.Helper()
	for range 3 {
		pollAll(t, in, c.advance(testSettle))
	}
}

func TestCleanupRenameRotation(t *testing.T) {
	for _, tt := range []struct {
		name, rotated string
	}{
		{"logrotate and RotatingFileHandler", "app.log.1"},
		{"logrotate dateext", "app.log-20240501"},
		{"logback time-based", "app.2024-05-01.0.log"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			p := filepath.Join(dir, "app.log")
			writeFile(t, p, numbered("old", 0, 100))
			reg := metrics.NewRegistry()
			s := &sink{} // the upstream is down: nothing is acknowledged
			in := newInput(t, Options{
				Paths:   []string{dir + "/*.log", dir + "/app.log*"},
				Cleanup: []string{dir + "/app.log.*", dir + "/app.log-*", dir + "/app.*.log"}, CleanupSettle: testSettle, Metrics: reg,
			}, s)
			c := cleanupClock()
			pollAll(t, in, c.now())

			// Rename and create, the writer reopening at once.
			appendFile(t, p, numbered("old", 100, 120))
			rotated := filepath.Join(dir, tt.rotated)
			if err := os.Rename(p, rotated); err != nil {
				t.Fatal(err)
			}
			writeFile(t, p, numbered("new", 0, 10))
			pollAll(t, in, c.advance(time.Second))
			settleAndPoll(t, in, c)
			if !exists(t, rotated) {
				t.Fatal("rotated file removed while none of its records was acknowledged")
			}
			if got := metric(t, reg, `sidelog_cleanup_kept_files{container="app",reason="unacknowledged"}`); got != "1" {
				t.Errorf("files kept as unacknowledged = %s, want 1 (the rotated file)", got)
			}

			// The upstream comes back: everything is acknowledged, and only the rotated file goes.
			s.ackAll()
			settleAndPoll(t, in, c)
			if exists(t, rotated) {
				t.Error("rotated file not removed once every byte of it was acknowledged")
			}
			if !exists(t, p) {
				t.Fatal("the live file was removed")
			}
			old, cur := s.byPrefix("old")
			equal(t, "rotated file's lines", old, split(numbered("old", 0, 120)))
			equal(t, "live file's lines", cur, split(numbered("new", 0, 10)))
			if got := metric(t, reg, `sidelog_files_removed_total{container="app"}`); got != "1" {
				t.Errorf("files removed = %s, want 1", got)
			}
			if got := metric(t, reg, `sidelog_removed_bytes_total{container="app"}`); got != itoa(int64(len(numbered("old", 0, 120)))) {
				t.Errorf("bytes removed = %s, want the rotated file's size", got)
			}
			if files, bytes := in.Removed(); files != 1 || bytes != uint64(len(numbered("old", 0, 120))) {
				t.Errorf("Removed() = %d files, %d bytes; want 1 and the rotated file's size, for the receipt", files, bytes)
			}

			// The live file, rotated in its turn, goes as well; nothing of it is lost.
			appendFile(t, p, numbered("new", 10, 20))
			if err := os.Rename(p, rotated); err != nil {
				t.Fatal(err)
			}
			writeFile(t, p, numbered("newer", 0, 5))
			pollAll(t, in, c.advance(time.Second))
			s.ackAll()
			settleAndPoll(t, in, c)
			if exists(t, rotated) || !exists(t, p) {
				t.Errorf("second rotation: rotated file there %v, live file there %v; want false, true", exists(t, rotated), exists(t, p))
			}
			_, cur = s.byPrefix("old")
			equal(t, "every line", cur, append(split(numbered("new", 0, 20)), split(numbered("newer", 0, 5))...))
			if got := metric(t, reg, `sidelog_remove_errors_total{container="app"}`); got != "0" {
				t.Errorf("remove errors = %s, want 0", got)
			}
		})
	}
}

func TestCleanupCopytruncate(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "app.log")
	writeFile(t, p, numbered("old", 0, 300))
	reg := metrics.NewRegistry()
	s := &sink{}
	// A small budget per poll: part of the file is unread when it is copied and truncated, and
	// is read from the copy.
	in := newInput(t, Options{Paths: []string{dir + "/app.log*"}, Cleanup: []string{dir + "/app.log.*"},
		CleanupSettle: testSettle, Metrics: reg, BufferSize: 512}, s)
	c := cleanupClock()
	if _, err := in.Poll(c.now()); err != nil {
		t.Fatal(err)
	}
	copyFile(t, p, p+".1")
	writeFile(t, p, numbered("new", 0, 5)) // truncated in place, and the app goes on
	for range 3 {
		pollAll(t, in, c.advance(time.Second))
	}
	if len(s.byPath(p+".1")) == 0 {
		t.Fatal("nothing was read from the copy: the test did not exercise it")
	}
	settleAndPoll(t, in, c)
	if !exists(t, p+".1") {
		t.Fatal("copy removed while none of its records was acknowledged")
	}

	s.ackAll()
	settleAndPoll(t, in, c)
	if exists(t, p+".1") {
		t.Error("copy not removed once every byte of it was acknowledged")
	}
	if !exists(t, p) {
		t.Fatal("the live (truncated) file was removed")
	}
	old, cur := s.byPrefix("old")
	equal(t, "old lines", old, split(numbered("old", 0, 300)))
	equal(t, "new lines", cur, split(numbered("new", 0, 5)))
	if got := metric(t, reg, `sidelog_files_removed_total{container="app"}`); got != "1" {
		t.Errorf("files removed = %s, want 1", got)
	}
}

// TestCleanupKeeps: files that must never be removed.
func TestCleanupKeeps(t *testing.T) {
	t.Run("last batch unacknowledged", func(t *testing.T) {
		dir := t.TempDir()
		p := filepath.Join(dir, "app.log")
		writeFile(t, p, numbered("old", 0, 100))
		s := &sink{}
		in := newInput(t, Options{Paths: []string{dir + "/app.log*"}, Cleanup: []string{dir + "/app.log.*"}, CleanupSettle: testSettle}, s)
		c := cleanupClock()
		pollAll(t, in, c.now())
		s.ackAll()
		appendFile(t, p, numbered("old", 100, 101)) // read, never acknowledged
		os.Rename(p, p+".1")
		writeFile(t, p, "new\n")
		pollAll(t, in, c.advance(time.Second))
		settleAndPoll(t, in, c)
		if !exists(t, p+".1") {
			t.Error("rotated file removed with its last line unacknowledged")
		}
	})

	t.Run("still written after the rotation", func(t *testing.T) {
		dir := t.TempDir()
		p := filepath.Join(dir, "app.log")
		writeFile(t, p, numbered("old", 0, 100))
		s := &sink{ack: true}
		in := newInput(t, Options{Paths: []string{dir + "/app.log*"}, Cleanup: []string{dir + "/app.log.*"}, CleanupSettle: testSettle}, s)
		c := cleanupClock()
		pollAll(t, in, c.now())
		os.Rename(p, p+".1")
		writeFile(t, p, "new\n")
		// The app has not reopened its log: it goes on writing to the rotated file, which so
		// stays newer than its successor and keeps growing.
		for i := range 5 {
			time.Sleep(5 * time.Millisecond) // a later modification time than the live file's
			appendFile(t, p+".1", numbered("late", i, i+1))
			pollAll(t, in, c.advance(testSettle/2))
			if !exists(t, p+".1") {
				t.Fatalf("rotated file removed while its writer still wrote to it (write %d)", i)
			}
		}
	})

	t.Run("the live file matched by mistake", func(t *testing.T) {
		dir := t.TempDir()
		p := filepath.Join(dir, "app.log")
		writeFile(t, p, numbered("old", 0, 100))
		s := &sink{ack: true}
		// A cleanup glob that the injector would refuse: it matches the file being written.
		in := newInput(t, Options{Paths: []string{dir + "/*.log"}, Cleanup: []string{dir + "/*.log"}, CleanupSettle: testSettle}, s)
		c := cleanupClock()
		pollAll(t, in, c.now())
		settleAndPoll(t, in, c)
		if !exists(t, p) {
			t.Error("the only file, idle and delivered, was removed: no newer file says its writer left it")
		}
	})

	t.Run("started at its end", func(t *testing.T) {
		dir := t.TempDir()
		p := filepath.Join(dir, "app.log")
		writeFile(t, p+".1", numbered("before the agent", 0, 10))
		s := &sink{ack: true}
		in := newInput(t, Options{Paths: []string{dir + "/app.log*"}, Cleanup: []string{dir + "/app.log.*"}, CleanupSettle: testSettle,
			ReadFrom: "tail"}, s)
		c := cleanupClock()
		pollAll(t, in, c.now())
		time.Sleep(5 * time.Millisecond)
		writeFile(t, p, "new\n")
		pollAll(t, in, c.advance(time.Second))
		settleAndPoll(t, in, c)
		if !exists(t, p+".1") {
			t.Error("a file whose first bytes were never shipped (readFrom tail) was removed")
		}
	})

	t.Run("started at its end, then restarted", func(t *testing.T) {
		dir := t.TempDir()
		p := filepath.Join(dir, "app.log")
		writeFile(t, p+".1", numbered("before the agent", 0, 10))
		opts := Options{Paths: []string{dir + "/app.log*"}, Cleanup: []string{dir + "/app.log.*"}, CleanupSettle: testSettle, ReadFrom: "tail"}
		first := newInput(t, opts, &sink{ack: true})
		c := cleanupClock()
		pollAll(t, first, c.now())
		saved := first.Positions()
		first.Close()
		if len(saved) != 1 || !saved[0].Skipped {
			t.Fatalf("checkpoint %+v: want the file, marked as started past its head", saved)
		}
		time.Sleep(5 * time.Millisecond)
		writeFile(t, p, "new\n")
		// The restarted agent reads from its checkpoint, as any restarted agent does.
		opts.Positions, opts.ReadFrom = saved, ""
		second := newInput(t, opts, &sink{ack: true})
		pollAll(t, second, c.advance(time.Second))
		settleAndPoll(t, second, c)
		if !exists(t, p+".1") {
			t.Error("a file whose first bytes were never shipped was removed after a restart")
		}
	})

	t.Run("excluded", func(t *testing.T) {
		dir := t.TempDir()
		p := filepath.Join(dir, "app.log")
		writeFile(t, p+".1.gz", "\x1f\x8b compressed")
		time.Sleep(5 * time.Millisecond)
		writeFile(t, p, "new\n")
		s := &sink{ack: true}
		in := newInput(t, Options{Paths: []string{dir + "/app.log*"}, Exclude: []string{dir + "/*.gz"}, Cleanup: []string{dir + "/app.log.*"},
			CleanupSettle: testSettle}, s)
		c := cleanupClock()
		pollAll(t, in, c.now())
		settleAndPoll(t, in, c)
		if !exists(t, p+".1.gz") {
			t.Error("a file the agent never read (excluded) was removed")
		}
	})

	// The file the agent holds (read, acknowledged) renamed to a name an exclude glob matches: it
	// is not one the tail globs find any more, so it is not removed, as the rule says.
	t.Run("read, then renamed to an excluded name", func(t *testing.T) {
		dir := t.TempDir()
		p := filepath.Join(dir, "app.log")
		writeFile(t, p, numbered("old", 0, 10))
		s := &sink{ack: true}
		in := newInput(t, Options{Paths: []string{dir + "/app.log*"}, Exclude: []string{dir + "/app.log.keep*"}, Cleanup: []string{dir + "/app.log.*"},
			CleanupSettle: testSettle, RotateWait: time.Hour}, s) // held open all along
		c := cleanupClock()
		pollAll(t, in, c.now())
		if err := os.Rename(p, p+".keep1"); err != nil {
			t.Fatal(err)
		}
		time.Sleep(5 * time.Millisecond)
		writeFile(t, p, "new\n")
		pollAll(t, in, c.advance(time.Second))
		settleAndPoll(t, in, c)
		if !exists(t, p+".keep1") {
			t.Error("a file renamed to a name an exclude glob matches was removed")
		}
	})
}

// TestCleanupIdentityChanged: a file rewritten in place under its name, keeping its size and
// modification time, is not the content that was delivered: kept, and counted as an error.
func TestCleanupIdentityChanged(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "app.log")
	content := numbered("old", 0, 100)
	writeFile(t, p+".1", content)
	time.Sleep(5 * time.Millisecond)
	writeFile(t, p, "new\n")
	reg := metrics.NewRegistry()
	s := &sink{ack: true}
	in := newInput(t, Options{Paths: []string{dir + "/app.log*"}, Cleanup: []string{dir + "/app.log.*"}, CleanupSettle: testSettle, Metrics: reg}, s)
	c := cleanupClock()
	pollAll(t, in, c.now())
	fi, err := os.Stat(p + ".1")
	if err != nil {
		t.Fatal(err)
	}
	f, err := os.OpenFile(p+".1", os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteAt([]byte(strings.ToUpper(content[:10])), 0)
	f.Close()
	if err := os.Chtimes(p+".1", fi.ModTime(), fi.ModTime()); err != nil {
		t.Fatal(err)
	}
	c.advance(time.Second)
	if _, err := in.Poll(c.now()); err != nil { // one pass: no check sees the change before the cleanup
		t.Fatal(err)
	}
	settleAndPoll(t, in, c)
	if !exists(t, p+".1") {
		t.Error("a file whose first bytes changed was removed")
	}
	if got := metric(t, reg, `sidelog_remove_errors_total{container="app"}`); got == "0" || got == "" {
		t.Errorf("remove errors = %q, want at least 1", got)
	}
}

// TestCleanupAfterRestart: a rotated file acknowledged in full by the last run is removed by the
// next one, which resumes it from its checkpoint; the checkpoint then forgets it.
func TestCleanupAfterRestart(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "app.log")
	writeFile(t, p+".1", numbered("old", 0, 100))
	time.Sleep(5 * time.Millisecond)
	writeFile(t, p, "new\n")
	opts := Options{Paths: []string{dir + "/app.log*"}, Cleanup: []string{dir + "/app.log.*"}, CleanupSettle: time.Hour}
	s := &sink{ack: true}
	first := newInput(t, opts, s)
	c := cleanupClock()
	pollAll(t, first, c.now())
	saved := first.Positions()
	if len(saved) != 2 {
		t.Fatalf("%d positions saved, want 2", len(saved))
	}
	first.Close()

	opts.Positions, opts.CleanupSettle = saved, testSettle
	s2 := &sink{ack: true}
	second := newInput(t, opts, s2)
	pollAll(t, second, c.advance(time.Second))
	settleAndPoll(t, second, c)
	if exists(t, p+".1") {
		t.Error("rotated file acknowledged in full by the last run not removed")
	}
	if got := s2.texts(); len(got) != 0 {
		t.Errorf("the restarted tailer read %d records again, want none", len(got))
	}
	pollAll(t, second, c.advance(DefaultRotateWait+time.Second))
	pollAll(t, second, c.advance(time.Second))
	for _, e := range second.Positions() {
		if e.Path != p {
			t.Errorf("checkpoint still names %s after it was removed", e.Path)
		}
	}
}

// TestCleanupKeepsLiveFileSeenThroughALink: the file being written, found by the tail globs
// under a second name as well (cronolog's --symlink, a hard link), is not newer than itself.
// A cleanup glob that matches the dated live file (access-*.log, the rotations of a daily log)
// must not remove it when its app is idle: its symlink is the only "other" file.
func TestCleanupKeepsLiveFileSeenThroughALink(t *testing.T) {
	for _, tt := range []struct {
		name string
		link func(old, new string) error
	}{
		{"symlink", func(old, new string) error { return os.Symlink(filepath.Base(old), new) }},
		{"hard link", os.Link},
	} {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			live := filepath.Join(dir, "access-20241130.log")
			writeFile(t, live, numbered("today", 0, 10))
			if err := tt.link(live, filepath.Join(dir, "access.log")); err != nil {
				t.Fatal(err)
			}
			s := &sink{ack: true}
			in := newInput(t, Options{Paths: []string{dir + "/*.log"}, Cleanup: []string{dir + "/access-*.log"}, CleanupSettle: testSettle}, s)
			c := cleanupClock()
			pollAll(t, in, c.now())
			settleAndPoll(t, in, c)
			if !exists(t, live) {
				t.Error("the live file was removed: its other name was taken for a newer file")
			}
		})
	}
}

// TestCleanupKeepsFileTailedElsewhere: a rotated file that another container's input tails too
// is kept, delivered here or not: that one may not have read it. Without the other input it
// goes, which shows the file was otherwise done with.
func TestCleanupKeepsFileTailedElsewhere(t *testing.T) {
	for _, shared := range []bool{true, false} {
		dir := t.TempDir()
		p := filepath.Join(dir, "app.log")
		writeFile(t, p, numbered("old", 0, 50))
		s := &sink{}
		reg := metrics.NewRegistry()
		in := newInput(t, Options{
			Paths: []string{dir + "/app.log*"}, Cleanup: []string{dir + "/app.log.*"}, CleanupSettle: testSettle, Metrics: reg,
			TailedElsewhere: func(path string) bool { return shared && strings.HasSuffix(path, ".log.1") },
		}, s)
		c := cleanupClock()
		pollAll(t, in, c.now())
		rotated := p + ".1"
		if err := os.Rename(p, rotated); err != nil {
			t.Fatal(err)
		}
		writeFile(t, p, numbered("new", 0, 5))
		pollAll(t, in, c.advance(time.Second))
		s.ackAll()
		settleAndPoll(t, in, c)
		settleAndPoll(t, in, c)
		if exists(t, rotated) != shared {
			t.Errorf("tailed by another input %v: rotated file there %v, want %v", shared, exists(t, rotated), shared)
		}
		want := "0"
		if shared {
			want = "1"
		}
		if got := metric(t, reg, `sidelog_cleanup_kept_files{container="app",reason="tailed_elsewhere"}`); got != want {
			t.Errorf("tailed by another input %v: files kept as tailed_elsewhere = %s, want %s", shared, got, want)
		}
	}
}
