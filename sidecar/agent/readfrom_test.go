package agent

import (
	"path/filepath"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/sidelog/sidelog/sidecar/config"
)

// TestReadFromTailRestartLosesNothing: with readFrom tail (logs on a persistent volume), a file
// the pod wrote while the upstream was down has no checkpoint entry (nothing of it was
// acknowledged). The restarted agent must not take it for an old file and start at its end.
func TestReadFromTailRestartLosesNothing(t *testing.T) {
	dir, state := t.TempDir(), t.TempDir()
	s := receiver(t)
	s.Down()
	cfg := newConfig(s.Addr(), config.Input{Container: "app", Paths: []string{dir + "/*.log"}, ReadFrom: config.ReadFromTail})
	cfg.DrainTimeout = config.Duration(300 * time.Millisecond)
	appendLines(t, filepath.Join(dir, "old.log"), numbered("shipped by an earlier pod", 0, 50)...)

	r := start(t, cfg, state)
	time.Sleep(200 * time.Millisecond) // the first scan has seen old.log
	appendLines(t, filepath.Join(dir, "new.log"), numbered("written during the outage", 0, 100)...)
	time.Sleep(200 * time.Millisecond)
	if err := r.stop(t); err == nil {
		t.Fatal("Run with the upstream down returned nil")
	}

	if err := s.Up(); err != nil {
		t.Fatal(err)
	}
	r = start(t, cfg, state)
	wait(t, s, 100)
	if err := r.stop(t); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(numbered("written during the outage", 0, 100), logs(s, "app")); diff != "" {
		t.Errorf("records after the restart (-want +got):\n%s", diff)
	}
}

// TestReadFromTailRestartSendsNoOldFile: the old files a first run started at their end are
// not sent again by a restarted agent.
func TestReadFromTailRestartSendsNoOldFile(t *testing.T) {
	dir, state := t.TempDir(), t.TempDir()
	s := receiver(t)
	cfg := newConfig(s.Addr(), config.Input{Container: "app", Paths: []string{dir + "/*.log"}, ReadFrom: config.ReadFromTail})
	path := filepath.Join(dir, "app.log")
	appendLines(t, path, numbered("shipped by an earlier pod", 0, 50)...)

	r := start(t, cfg, state)
	time.Sleep(200 * time.Millisecond)
	appendLines(t, path, numbered("first run", 0, 10)...)
	wait(t, s, 10)
	if err := r.stop(t); err != nil {
		t.Fatal(err)
	}
	appendLines(t, path, numbered("second run", 0, 10)...)
	r = start(t, cfg, state)
	wait(t, s, 20)
	time.Sleep(200 * time.Millisecond)
	if err := r.stop(t); err != nil {
		t.Fatal(err)
	}
	want := append(numbered("first run", 0, 10), numbered("second run", 0, 10)...)
	if diff := cmp.Diff(want, logs(s, "app")); diff != "" {
		t.Errorf("records (-want +got):\n%s", diff)
	}
}
