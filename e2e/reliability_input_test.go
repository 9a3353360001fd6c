package e2e

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/sidelog/sidelog/sidecar/checkpoint"
	"github.com/sidelog/sidelog/sidecar/config"
)

// appendLines appends numbered lines from to to-1 to the file at path.
func appendLines(tb testing.TB, path string, from, to int64) {
	tb.Helper()
	var b []byte
	for seq := from; seq < to; seq++ {
		b = appendLine(b, seq)
	}
	appendBytes(tb, path, b)
}

func appendBytes(tb testing.TB, path string, b []byte) {
	tb.Helper()
	f, err := os.OpenFile(path, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		tb.Fatal(err)
	}
	defer f.Close()
	if _, err := f.Write(b); err != nil {
		tb.Fatal(err)
	}
}

// hostile is one agent run against bad input.
type hostile struct {
	t        *testing.T
	dir      string
	state    string
	recv     *countingReceiver
	metrics  string
	agent    *runningAgent
	start    time.Time
	maxLine  int
	numbered int64 // numbered lines written
}

// startHostile starts a receiver and an agent tailing globs (default dir/*.log) with its
// configuration edited by edit; before runs before the agent starts.
func startHostile(t *testing.T, globs func(dir string) string, edit func(*config.Config), before func(h *hostile)) *hostile {
	t.Helper()
	h := &hostile{t: t, dir: t.TempDir(), state: t.TempDir(), recv: startCountingReceiver(t), maxLine: config.Defaults.MaxLineBytes}
	g := ""
	if globs != nil {
		g = globs(h.dir)
	}
	pod := agentPod(t, h.dir, g, h.recv.Addr, edit)
	h.metrics = agentMetricsURL(t, pod)
	if before != nil {
		before(h)
	}
	h.start = time.Now()
	h.agent = startAgent(t, pod, h.dir, h.state)
	return h
}

// dropped returns sidelog_dropped_total and sidelog_dropped_bytes_total for reason.
func (h *hostile) dropped(reason string) (drops, bytes int64) {
	return int64(scrape(h.t, h.metrics, "sidelog_dropped_total", "reason", reason)),
		int64(scrape(h.t, h.metrics, "sidelog_dropped_bytes_total", "reason", reason))
}

// logged fails the test if the agent did not log a warning with msg and reason.
func (h *hostile) logged(msg, reason string) {
	h.t.Helper()
	for _, rec := range logLines(h.agent.output.String(), msg) {
		if rec["level"] == "WARN" && (reason == "" || rec["reason"] == reason) {
			return
		}
	}
	h.t.Errorf("the agent did not log a warning %q with reason %q", msg, reason)
}

// finish waits for every numbered line, stops the agent (which must exit 0 unless exitErr says
// what it must say), checks that nothing numbered was lost and records the figures.
func (h *hostile) finish(exitErr string, notes string) {
	h.t.Helper()
	h.recv.tally.waitAll(h.t, h.numbered, 2*time.Minute)
	err := h.agent.stop(h.t)
	switch {
	case exitErr == "" && err != nil:
		h.t.Errorf("agent exit after SIGTERM = %v, want 0\n%s", err, exitMessage(h.agent.output.String()))
	case exitErr != "" && (err == nil || !strings.Contains(exitMessage(h.agent.output.String()), exitErr)):
		h.t.Errorf("agent exit after SIGTERM = %v, %q; want non-zero, saying %q", err, exitMessage(h.agent.output.String()), exitErr)
	}
	s := checkNothingLost(h.t, h.recv.tally, h.numbered)
	if s.Duplicates > 0 {
		h.t.Errorf("%d duplicates", s.Duplicates)
	}
	peak := h.agent.peakRSS()
	checkMemory(h.t, peak)
	figures.addAgent(h.t, agentFigures{
		Test: h.t.Name(), Written: h.numbered, Received: s.Received, Lost: s.Lost, Duplicates: s.Duplicates,
		PeakRSS: peak, Elapsed: time.Since(h.start), Notes: notes,
	})
}

// TestReliabilityHostileInput feeds the agent what applications and volumes do to log files:
// for each, the agent keeps going, counts and logs what it had to skip, and loses nothing else.
func TestReliabilityHostileInput(t *testing.T) {
	t.Run("10MB-line", func(t *testing.T) {
		h := startHostile(t, nil, nil, nil)
		path := filepath.Join(h.dir, "app.log")
		const huge = 10_000_000
		appendLines(t, path, 0, 1000)
		appendBytes(t, path, append(bytes.Repeat([]byte("x"), huge), '\n'))
		appendLines(t, path, 1000, 2000)
		h.numbered = 2000
		h.recv.tally.waitAll(t, h.numbered, 2*time.Minute)
		eventually(t, time.Minute, "the truncated line", func() error {
			if n := len(h.recv.tally.otherRecords()); n != 1 {
				return fmt.Errorf("%d other records", n)
			}
			return nil
		})
		if got := h.recv.tally.otherRecords()[0]; got != strings.Repeat("x", h.maxLine) {
			t.Errorf("the 10 MB line arrived as %d bytes, want its first %d", len(got), h.maxLine)
		}
		drops, dropped := h.dropped("line_too_long")
		if drops != 1 || dropped != huge-int64(h.maxLine) {
			t.Errorf("dropped line_too_long = %d lines, %d bytes; want 1, %d", drops, dropped, huge-h.maxLine)
		}
		h.logged("lines longer than maxLineBytes truncated", "line_too_long")
		h.finish("", fmt.Sprintf("a 10 MB line between numbered lines: sent cut to %d bytes, %d bytes counted as dropped (line_too_long)", h.maxLine, dropped))
	})

	t.Run("NUL-bytes", func(t *testing.T) {
		h := startHostile(t, nil, nil, nil)
		const nuls, hole = 1 << 20, 64 << 20
		nul := filepath.Join(h.dir, "nul.log")
		appendBytes(t, nul, append(make([]byte, nuls), '\n'))
		appendLines(t, nul, 0, 1000)
		// A sparse file: what a writer without O_APPEND leaves after a truncation, or a
		// preallocated log. All NULs, no newline, until the app writes again.
		sparse := filepath.Join(h.dir, "sparse.log")
		if err := os.WriteFile(sparse, nil, 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Truncate(sparse, hole); err != nil {
			t.Fatal(err)
		}
		appendBytes(t, sparse, []byte("\n"))
		appendLines(t, sparse, 1000, 2000)
		h.numbered = 2000
		h.recv.tally.waitAll(t, h.numbered, 2*time.Minute)
		eventually(t, time.Minute, "the two NUL records", func() error {
			if n := len(h.recv.tally.otherRecords()); n != 2 {
				return fmt.Errorf("%d other records", n)
			}
			return nil
		})
		for _, rec := range h.recv.tally.otherRecords() {
			if rec != string(make([]byte, h.maxLine)) {
				t.Errorf("a NUL line arrived as %d bytes (%q...), want %d NUL bytes", len(rec), rec[:min(len(rec), 16)], h.maxLine)
			}
		}
		drops, dropped := h.dropped("line_too_long")
		if want := int64(nuls + hole - 2*h.maxLine); drops != 2 || dropped != want {
			t.Errorf("dropped line_too_long = %d lines, %d bytes; want 2, %d", drops, dropped, want)
		}
		h.logged("lines longer than maxLineBytes truncated", "line_too_long")
		h.finish("", fmt.Sprintf("1 MiB of NULs and a 64 MiB sparse file before numbered lines: 2 records of %d NULs sent, %d bytes counted as dropped", h.maxLine, dropped))
	})

	t.Run("invalid-UTF-8", func(t *testing.T) {
		h := startHostile(t, nil, nil, nil)
		path := filepath.Join(h.dir, "app.log")
		var want []string
		var b []byte
		for i := range 1000 {
			// A lone continuation byte, a truncated sequence, an overlong encoding, a surrogate,
			// a code point above U+10FFFF, and a NUL.
			bad := fmt.Sprintf("bad %04d \x80 \xc3 \xc0\xaf \xed\xa0\x80 \xf4\x90\x80\x80 \x00 \xff\xfe end", i)
			want = append(want, bad)
			b = appendLine(b, int64(i))
			b = append(append(b, bad...), '\n')
		}
		appendBytes(t, path, b)
		h.numbered = 1000
		h.recv.tally.waitAll(t, h.numbered, 2*time.Minute)
		eventually(t, time.Minute, "the invalid UTF-8 lines", func() error {
			if n := len(h.recv.tally.otherRecords()); n < len(want) {
				return fmt.Errorf("%d of %d", n, len(want))
			}
			return nil
		})
		got := h.recv.tally.otherRecords()
		slices.Sort(got)
		if !slices.Equal(got, want) {
			t.Errorf("invalid UTF-8 lines did not arrive byte for byte; first sent %q, first received %q", want[0], got[0])
		}
		h.finish("", "1000 lines of invalid UTF-8 (and NULs) between numbered lines: all arrived byte for byte")
	})

	t.Run("1000-files", func(t *testing.T) {
		const files, each = 1000, 100
		h := startHostile(t, nil, nil, func(h *hostile) {
			for i := range files {
				appendLines(t, filepath.Join(h.dir, fmt.Sprintf("f%04d.log", i)), int64(i*each), int64(i*each+each))
			}
		})
		h.numbered = files * each
		h.recv.tally.waitAll(t, h.numbered, 2*time.Minute)
		if open := scrape(t, h.metrics, "sidelog_files_open"); open != files {
			t.Errorf("sidelog_files_open = %v, want %d", open, files)
		}
		// And they are all still tailed.
		for i := range files {
			appendLines(t, filepath.Join(h.dir, fmt.Sprintf("f%04d.log", i)), int64(files*each+i*10), int64(files*each+i*10+10))
		}
		h.numbered = files*each + files*10
		h.finish("", fmt.Sprintf("%d files matched at start, %d lines each, then 10 more each", files, each))
	})

	t.Run("file-deleted-before-read", func(t *testing.T) {
		// With one file open at a time, a second file waits for its turn; deleted meanwhile, it
		// is never read.
		h := startHostile(t, nil, func(c *config.Config) { c.Limits.MaxFiles = 1 }, nil)
		lg := newApp(t, filepath.Join(h.dir, "busy.log"))
		var wg sync.WaitGroup
		stop := make(chan struct{})
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				case <-time.After(10 * time.Millisecond):
					lg.write(10)
				}
			}
		})
		defer func() {
			select {
			case <-stop:
			default:
				close(stop)
			}
			wg.Wait()
		}()
		eventually(t, time.Minute, "busy.log being read", func() error {
			if h.recv.tally.uniqueCount() == 0 {
				return errors.New("nothing received")
			}
			return nil
		})
		gone := filepath.Join(h.dir, "gone.log")
		content := []byte(strings.Repeat("never read\n", 1000))
		if err := os.WriteFile(gone, content, 0o644); err != nil {
			t.Fatal(err)
		}
		eventually(t, time.Minute, "gone.log waiting for a place", func() error {
			if n := scrape(t, h.metrics, "sidelog_files_waiting"); n != 1 {
				return fmt.Errorf("%v files waiting", n)
			}
			return nil
		})
		if err := os.Remove(gone); err != nil {
			t.Fatal(err)
		}
		var drops, dropped int64
		eventually(t, time.Minute, "the deleted file counted as dropped", func() error {
			if drops, dropped = h.dropped("deleted_before_read"); drops != 1 {
				return fmt.Errorf("%d drops", drops)
			}
			return nil
		})
		if dropped != int64(len(content)) {
			t.Errorf("dropped deleted_before_read = %d bytes, want %d", dropped, len(content))
		}
		h.logged("file deleted or renamed away before it could be read", "deleted_before_read")
		close(stop)
		wg.Wait()
		h.numbered = lg.written()
		if n := len(h.recv.tally.otherRecords()); n > 0 {
			t.Errorf("%d records of the deleted file arrived", n)
		}
		h.finish("", fmt.Sprintf("maxFiles 1, a second file deleted while it waited: %d bytes counted as dropped (deleted_before_read)", dropped))
	})

	t.Run("state-dir-full", func(t *testing.T) {
		var filler string
		h := startHostile(t, nil, nil, func(h *hostile) {
			mountTmpfs(t, h.state, false)
			filler = filepath.Join(h.state, "filler")
			fillDisk(t, filler)
		})
		path := filepath.Join(h.dir, "app.log")
		appendLines(t, path, 0, 5000)
		h.numbered = 5000
		h.recv.tally.waitAll(t, h.numbered, 2*time.Minute)
		eventually(t, time.Minute, "a failed checkpoint save counted", func() error {
			if n := scrape(t, h.metrics, "sidelog_checkpoint_errors_total"); n < 1 {
				return fmt.Errorf("%v errors", n)
			}
			return nil
		})
		h.logged("saving checkpoint", "")
		saveErrors := scrape(t, h.metrics, "sidelog_checkpoint_errors_total")
		// Room again: the next save goes through.
		if err := os.Remove(filler); err != nil {
			t.Fatal(err)
		}
		eventually(t, time.Minute, "the checkpoint saved once there is room", func() error {
			entries, err := checkpoint.Load(h.state)
			if err != nil || len(entries) != 1 || entries[0].Offset != 5000*lineBytes {
				return fmt.Errorf("checkpoint %+v, %v; want one entry at offset %d", entries, err, 5000*lineBytes)
			}
			return nil
		})
		appendLines(t, path, 5000, 6000)
		h.numbered = 6000
		h.finish("", fmt.Sprintf("state dir a full 64 KiB tmpfs: %.0f checkpoint saves failed (counted, logged), delivery went on; saved once there was room", saveErrors))
	})

	t.Run("state-dir-read-only", func(t *testing.T) {
		h := startHostile(t, nil, nil, func(h *hostile) { mountTmpfs(t, h.state, true) })
		appendLines(t, filepath.Join(h.dir, "app.log"), 0, 5000)
		h.numbered = 5000
		h.recv.tally.waitAll(t, h.numbered, 2*time.Minute)
		eventually(t, time.Minute, "a failed checkpoint save counted", func() error {
			if n := scrape(t, h.metrics, "sidelog_checkpoint_errors_total"); n < 1 {
				return fmt.Errorf("%v errors", n)
			}
			return nil
		})
		h.logged("saving checkpoint", "")
		saveErrors := scrape(t, h.metrics, "sidelog_checkpoint_errors_total")
		h.finish("saving checkpoint", fmt.Sprintf("state dir a read-only tmpfs: %.0f checkpoint saves failed (counted, logged), delivery went on; exit 1 at SIGTERM naming the checkpoint", saveErrors))
	})

	t.Run("nested-doublestar", func(t *testing.T) {
		const stars = 30
		deep := func(dir string) string { return filepath.Join(dir, "a", "b", "c", "d", "e", "f", "g", "h") }
		h := startHostile(t, func(dir string) string { return dir + strings.Repeat("/**", stars) + "/*.log" }, nil, func(h *hostile) {
			if err := os.MkdirAll(deep(h.dir), 0o755); err != nil {
				t.Fatal(err)
			}
		})
		appendLines(t, filepath.Join(h.dir, "top.log"), 0, 1000)
		appendLines(t, filepath.Join(deep(h.dir), "deep.log"), 1000, 2000)
		h.numbered = 2000
		h.finish("", fmt.Sprintf("glob with %d consecutive ** over a tree 8 directories deep", stars))
	})
}

// mountTmpfs mounts a 64 KiB tmpfs on dir, read-only if ro, until the test ends. It skips the
// test where mounting is not allowed (it needs CAP_SYS_ADMIN).
func mountTmpfs(t *testing.T, dir string, ro bool) {
	t.Helper()
	if err := syscall.Mount("tmpfs", dir, "tmpfs", 0, "size=64k"); err != nil {
		t.Skipf("mounting a tmpfs on the state dir (needs CAP_SYS_ADMIN): %v", err)
	}
	t.Cleanup(func() {
		if err := syscall.Unmount(dir, syscall.MNT_DETACH); err != nil {
			t.Errorf("unmounting %s: %v", dir, err)
		}
	})
	if ro {
		if err := syscall.Mount("", dir, "", syscall.MS_REMOUNT|syscall.MS_RDONLY, ""); err != nil {
			t.Fatalf("remounting %s read-only: %v", dir, err)
		}
	}
}

// fillDisk writes path until the file system is full.
func fillDisk(t *testing.T, path string) {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	page := make([]byte, 4096)
	for range 1 << 12 {
		if _, err := f.Write(page); err != nil {
			if errors.Is(err, syscall.ENOSPC) {
				return
			}
			t.Fatal(err)
		}
	}
	t.Fatalf("%s: the file system never filled up", path)
}
