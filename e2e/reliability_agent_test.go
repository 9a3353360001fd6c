package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sidelog/sidelog/sidecar/checkpoint"
	"github.com/sidelog/sidelog/sidecar/config"
	"github.com/sidelog/sidelog/sidecar/forward/forwardtest"
)

// TestReliabilityReceiverDown stops the receiver for a minute while the app writes 5000 lines a
// second, then starts it again: every line arrives, and the agent's memory stays within the
// bound the whole time (the files are the buffer).
func TestReliabilityReceiverDown(t *testing.T) {
	const rate = 5000
	before, down, after := span(10*time.Second, 2*time.Second), span(60*time.Second, 4*time.Second), span(10*time.Second, 2*time.Second)
	dir, state := t.TempDir(), t.TempDir()
	recv := startCountingReceiver(t)
	pod := agentPod(t, dir, "", recv.Addr, nil)
	lg := newApp(t, filepath.Join(dir, "app.log"))
	agent := startAgent(t, pod, dir, state)
	start := time.Now()

	var wg sync.WaitGroup
	wg.Go(func() { lg.run(rate, before+down+after, 0, nil) })
	time.Sleep(before)
	recv.down(t)
	downAt := lg.written()
	time.Sleep(down)
	recv.up(t)
	upAt, back := lg.written(), time.Now()
	recv.tally.waitAll(t, upAt, 3*time.Minute) // the backlog
	caughtUp := time.Since(back)
	wg.Wait()
	written := lg.written()
	recv.tally.waitAll(t, written, 3*time.Minute)
	if err := agent.stop(t); err != nil {
		t.Errorf("agent exit after SIGTERM = %v, want 0", err)
	}
	s := checkNothingLost(t, recv.tally, written)
	peak := agent.peakRSS()
	checkMemory(t, peak)
	figures.addAgent(t, agentFigures{
		Test: t.Name(), Written: written, Received: s.Received, Lost: s.Lost, Duplicates: s.Duplicates,
		PeakRSS: peak, Elapsed: time.Since(start),
		Notes: fmt.Sprintf("receiver down %s at %d lines/s (%.0f MB written meanwhile); the backlog delivered %s after it came back",
			down, rate, float64((upAt-downAt)*lineBytes)/1e6, caughtUp.Round(100*time.Millisecond)),
	})
}

// TestReliabilityReceiverDropsBatchBeforeAck makes the receiver drop its connection in the
// middle of a batch, after it took the entries and before it acknowledged them (a receiver
// restart), several times under load: nothing is lost, and only the batch that was in the
// middle arrives twice, once per fault.
func TestReliabilityReceiverDropsBatchBeforeAck(t *testing.T) {
	const rate = 5000
	d, faults := span(30*time.Second, 6*time.Second), span(10, 3)
	dir, state := t.TempDir(), t.TempDir()
	srv, err := forwardtest.Start(forwardtest.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	pod := agentPod(t, dir, "", srv.Addr(), nil)
	lg := newApp(t, filepath.Join(dir, "app.log"))
	agent := startAgent(t, pod, dir, state)
	start := time.Now()

	var wg sync.WaitGroup
	wg.Go(func() { lg.run(rate, d, 0, nil) })
	for i := range faults {
		time.Sleep(d / time.Duration(faults+1))
		before := resentChunks(srv.Chunks())
		srv.DropNext()
		eventually(t, time.Minute, fmt.Sprintf("fault %d: a batch dropped before its ack and sent again", i+1), func() error {
			if n := resentChunks(srv.Chunks()); n <= before {
				return fmt.Errorf("%d batches sent twice so far", n)
			}
			return nil
		})
	}
	wg.Wait()
	written := lg.written()
	tl := waitEvents(t, srv, written, 2*time.Minute)
	if err := agent.stop(t); err != nil {
		t.Errorf("agent exit after SIGTERM = %v, want 0", err)
	}
	s := checkNothingLost(t, tl, written)

	// The duplicates must be exactly the entries of the dropped batches: a resent batch keeps
	// its chunk id.
	chunks := srv.Chunks()
	sent := map[string]int{}
	for _, c := range chunks {
		sent[c]++
	}
	entries := map[string]int{}
	for _, e := range srv.Events() {
		entries[e.Chunk]++
	}
	var resent, expected int64
	for c, n := range sent {
		if n > 1 {
			resent++
			expected += int64(entries[c] / n * (n - 1))
		}
	}
	if resent != int64(faults) {
		t.Errorf("%d batches sent more than once, want %d (one per fault)", resent, faults)
	}
	if s.Duplicates != expected {
		t.Errorf("%d duplicate lines, want %d: the entries of the dropped batches and nothing else", s.Duplicates, expected)
	}
	peak := agent.peakRSS()
	checkMemory(t, peak)
	figures.addAgent(t, agentFigures{
		Test: t.Name(), Written: written, Received: s.Received, Lost: s.Lost, Duplicates: s.Duplicates,
		PeakRSS: peak, Elapsed: time.Since(start),
		Notes: fmt.Sprintf("%d connections dropped mid-batch before the ack at %d lines/s; duplicates = the %d dropped batches, %.0f lines each on average",
			faults, rate, resent, float64(expected)/float64(max(resent, 1))),
	})
}

// resentChunks counts the chunk ids that were received more than once.
func resentChunks(chunks []string) int {
	seen := map[string]int{}
	n := 0
	for _, c := range chunks {
		seen[c]++
		if seen[c] == 2 {
			n++
		}
	}
	return n
}

// TestReliabilitySIGKILL kills the agent with SIGKILL under load, several times, and starts it
// again on the same state directory: nothing is lost, and the only duplicates are lines that
// were past the checkpoint when it died (acknowledged after the last save, or in flight).
func TestReliabilitySIGKILL(t *testing.T) {
	const rate = 5000
	d, kills := span(40*time.Second, 6*time.Second), span(5, 2)
	dir, state := t.TempDir(), t.TempDir()
	recv := startCountingReceiver(t)
	pod := agentPod(t, dir, "", recv.Addr, nil)
	lg := newApp(t, filepath.Join(dir, "app.log"))
	agent := startAgent(t, pod, dir, state)
	start := time.Now()

	var wg sync.WaitGroup
	wg.Go(func() { lg.run(rate, d, 0, nil) })
	type death struct{ checkpointed, written int64 } // in lines
	var deaths []death
	var peak int64
	for range kills {
		time.Sleep(d / time.Duration(kills+1))
		agent.kill(t)
		written := lg.written()
		peak = max(peak, agent.peakRSS())
		entries, err := checkpoint.Load(state)
		if err != nil {
			t.Fatalf("checkpoint after SIGKILL: %v", err)
		}
		var offset int64
		for _, e := range entries {
			offset = max(offset, e.Offset)
		}
		if offset%lineBytes != 0 {
			t.Errorf("checkpoint offset %d is not at the end of a line", offset)
		}
		deaths = append(deaths, death{offset / lineBytes, written})
		agent = startAgent(t, pod, dir, state)
	}
	wg.Wait()
	written := lg.written()
	recv.tally.waitAll(t, written, 2*time.Minute)
	if err := agent.stop(t); err != nil {
		t.Errorf("agent exit after SIGTERM = %v, want 0", err)
	}
	peak = max(peak, agent.peakRSS())
	s := checkNothingLost(t, recv.tally, written)

	// A line may arrive twice only if it was past the checkpoint of a death and written before
	// it; and no more often than the deaths that could have sent it again, plus one.
	var inFlight int64
	for _, dd := range deaths {
		inFlight += dd.written - dd.checkpointed
	}
	for seq := range written {
		n := recv.tally.count(seq)
		if n <= 1 {
			continue
		}
		could := 1
		for _, dd := range deaths {
			if seq >= dd.checkpointed && seq < dd.written {
				could++
			}
		}
		if n > could {
			t.Errorf("line %d arrived %d times, but was past the checkpoint at only %d of the %d deaths", seq, n, could-1, len(deaths))
			break
		}
	}
	if s.Duplicates > inFlight {
		t.Errorf("%d duplicates, more than the %d lines past the checkpoints when the agent died", s.Duplicates, inFlight)
	}
	checkMemory(t, peak)
	var behind []string
	for _, dd := range deaths {
		behind = append(behind, fmt.Sprint(dd.written-dd.checkpointed))
	}
	figures.addAgent(t, agentFigures{
		Test: t.Name(), Written: written, Received: s.Received, Lost: s.Lost, Duplicates: s.Duplicates,
		PeakRSS: peak, Elapsed: time.Since(start),
		Notes: fmt.Sprintf("%d SIGKILLs at %d lines/s, restarted on the same state dir; lines past the checkpoint at each death: %s",
			kills, rate, strings.Join(behind, ", ")),
	})
}

// rotation is one way of rotating a log file, done by the app's writer between two writes.
type rotation struct {
	name  string
	globs func(dir string) string
	// rotate rotates a's file and returns the sequence number of the first line that is not in
	// the rotated file.
	rotate func(t *testing.T, a *app) int64
}

// TestReliabilityRotation writes 10 000 lines a second for 30 s and rotates the file every 2 s,
// in each of the ways logrotate does, and checks that every line that reached the disk before a
// rotation arrives. For copytruncate without a glob matching the copy, the lines that no tailer
// can see (written after its last read and before the truncation) are measured instead.
func TestReliabilityRotation(t *testing.T) {
	const rate = 10000
	d, period := span(30*time.Second, 4*time.Second), span(2*time.Second, 500*time.Millisecond)
	appLog := func(dir string) string { return dir + "/app.log" }
	rotations := []rotation{
		{"rename-and-create", appLog, func(t *testing.T, a *app) int64 {
			if err := os.Rename(a.path, a.path+".1"); err != nil {
				t.Fatal(err)
			}
			// The app writes on through its old descriptor until it reopens its log.
			a.write(100)
			a.reopen()
			return a.written()
		}},
		{"delete-and-create", appLog, func(t *testing.T, a *app) int64 {
			if err := os.Remove(a.path); err != nil {
				t.Fatal(err)
			}
			a.write(100)
			a.reopen()
			return a.written()
		}},
		{"copytruncate-copy-matched", func(dir string) string { return dir + "/app.log*" }, func(t *testing.T, a *app) int64 {
			// logrotate with "rotate 2": app.log.1 becomes app.log.2, a copy becomes app.log.1.
			if err := os.Rename(a.path+".1", a.path+".2"); err != nil && !os.IsNotExist(err) {
				t.Fatal(err)
			}
			copyFile(t, a.path, a.path+".1")
			if err := os.Truncate(a.path, 0); err != nil {
				t.Fatal(err)
			}
			return a.written()
		}},
		{"copytruncate-copy-not-matched", appLog, func(t *testing.T, a *app) int64 {
			copyFile(t, a.path, a.path+".1")
			if err := os.Truncate(a.path, 0); err != nil {
				t.Fatal(err)
			}
			return a.written()
		}},
	}
	for _, rot := range rotations {
		t.Run(rot.name, func(t *testing.T) {
			dir, state := t.TempDir(), t.TempDir()
			recv := startCountingReceiver(t)
			pod := agentPod(t, dir, rot.globs(dir), recv.Addr, nil)
			metrics := agentMetricsURL(t, pod)
			lg := newApp(t, filepath.Join(dir, "app.log"))
			agent := startAgent(t, pod, dir, state)
			start := time.Now()
			var cuts []int64 // first line after each rotation
			lg.run(rate, d, period, func(a *app) { cuts = append(cuts, rot.rotate(t, a)) })
			written := lg.written()

			window := rot.name == "copytruncate-copy-not-matched"
			if !window {
				recv.tally.waitAll(t, written, 2*time.Minute)
			} else {
				// The last line is after the last truncation, so once it is in, everything
				// that will ever arrive is.
				eventually(t, 2*time.Minute, "the last line at the receiver", func() error {
					if recv.tally.count(written-1) == 0 {
						return fmt.Errorf("line %d not received", written-1)
					}
					return nil
				})
			}
			droppedBytes := scrape(t, metrics, "sidelog_dropped_bytes_total", "reason", "truncated_before_read")
			drops := scrape(t, metrics, "sidelog_dropped_total", "reason", "truncated_before_read")
			truncations := scrape(t, metrics, "sidelog_rotations_total", "kind", "truncated")
			if err := agent.stop(t); err != nil {
				t.Errorf("agent exit after SIGTERM = %v, want 0", err)
			}
			peak := agent.peakRSS()
			checkMemory(t, peak)
			s := recv.tally.summary(written)
			notes := fmt.Sprintf("%d rotations at %d lines/s", len(cuts), rate)
			if !window {
				checkNothingLost(t, recv.tally, written)
				if s.Duplicates > 0 {
					t.Errorf("%d duplicates", s.Duplicates)
				}
			} else {
				notes += "; " + checkTruncationWindow(t, recv.tally, written, rate, cuts, int64(droppedBytes), int64(drops), int64(truncations))
			}
			figures.addAgent(t, agentFigures{
				Test: t.Name(), Written: written, Received: s.Received, Lost: s.Lost, Duplicates: s.Duplicates,
				PeakRSS: peak, Elapsed: time.Since(start), Notes: notes,
			})
		})
	}
}

// checkTruncationWindow checks that every line lost to copytruncate (no glob matches the copy)
// was written in the window just before a truncation -- after the agent's last read, which a
// poller cannot close -- and returns a description of the windows and of what the agent counted.
func checkTruncationWindow(t *testing.T, tl *tally, written int64, rate int, cuts []int64, droppedBytes, drops, truncations int64) string {
	t.Helper()
	var windows []int64 // lines lost before each cut
	next := int64(0)    // the first line not yet accounted for
	for _, cut := range cuts {
		lost := int64(0)
		// Walk back from the cut over the lost lines: they must form one run ending at it.
		for seq := cut - 1; seq >= next && tl.count(seq) == 0; seq-- {
			lost++
		}
		for seq := next; seq < cut-lost; seq++ {
			if tl.count(seq) == 0 {
				t.Errorf("line %d lost, but it was not in the window before the truncation at line %d", seq, cut)
				break
			}
		}
		windows = append(windows, lost)
		next = cut
	}
	for seq := next; seq < written; seq++ {
		if tl.count(seq) == 0 {
			t.Errorf("line %d, written after the last truncation, lost", seq)
			break
		}
	}
	if truncations != int64(len(cuts)) {
		t.Errorf("the agent saw %d truncations, want %d", truncations, len(cuts))
	}
	var total, most int64
	for _, w := range windows {
		total += w
		most = max(most, w)
	}
	if droppedBytes > total*lineBytes {
		t.Errorf("the agent counted %d bytes truncated before they were read, more than the %d lost", droppedBytes, total*lineBytes)
	}
	return fmt.Sprintf("copy not matched by a glob: %d lines lost in %d truncation windows (at most %d, %.0f ms of writing); the agent counted %d drops, %d bytes (%d lines) of them",
		total, len(cuts), most, float64(most)*1000/float64(rate), drops, droppedBytes, droppedBytes/lineBytes)
}

// TestReliabilitySIGTERM sends SIGTERM to an agent that has 100 MB left to read: with a live
// receiver it drains everything within its deadline and exits 0; with the receiver down it
// exits non-zero at the deadline, saying how much was left, and the next start sends it.
func TestReliabilitySIGTERM(t *testing.T) {
	volume := span(int64(100e6), int64(10e6)) / lineBytes // lines

	t.Run("receiver up", func(t *testing.T) {
		dir, state := t.TempDir(), t.TempDir()
		recv := startCountingReceiver(t)
		pod := agentPod(t, dir, "", recv.Addr, nil)
		lg := newApp(t, filepath.Join(dir, "app.log"))
		lg.fill(volume)
		start := time.Now()
		agent := startAgent(t, pod, dir, state)
		term := time.Now()
		err := agent.stop(t)
		drained := time.Since(term)
		if err != nil {
			t.Errorf("agent exit after SIGTERM = %v, want 0: drained within %s\n%s", err, config.DefaultDrainTimeout, agent.output)
		}
		s := checkNothingLost(t, recv.tally, volume)
		peak := agent.peakRSS()
		checkMemory(t, peak)
		figures.addAgent(t, agentFigures{
			Test: t.Name(), Written: volume, Received: s.Received, Lost: s.Lost, Duplicates: s.Duplicates,
			PeakRSS: peak, Elapsed: time.Since(start),
			Notes: fmt.Sprintf("SIGTERM with %d MB unread; drained and exited 0 in %s (deadline %s)",
				volume*lineBytes/1e6, drained.Round(100*time.Millisecond), config.DefaultDrainTimeout),
		})
	})

	t.Run("receiver down", func(t *testing.T) {
		deadline := span(config.DefaultDrainTimeout, 3*time.Second)
		dir, state := t.TempDir(), t.TempDir()
		addr := freeAddr(t) // nothing listens there until the restart
		pod := agentPod(t, dir, "", addr, func(c *config.Config) { c.DrainTimeout = config.Duration(deadline) })
		lg := newApp(t, filepath.Join(dir, "app.log"))
		lg.fill(volume)
		start := time.Now()
		agent := startAgent(t, pod, dir, state)
		term := time.Now()
		err := agent.stop(t)
		stopped := time.Since(term)
		peak := agent.peakRSS()
		if err == nil {
			t.Fatalf("agent exit after SIGTERM with the receiver down = 0, want non-zero\n%s", agent.output)
		}
		if stopped < deadline || stopped > deadline+15*time.Second {
			t.Errorf("agent exited %s after SIGTERM, want at its drain deadline of %s", stopped, deadline)
		}
		last := exitMessage(agent.output.String())
		if !strings.Contains(last, "drain deadline of "+deadline.String()+" passed with") || !strings.Contains(last, "unacknowledged") {
			t.Errorf("exit message = %q, want the deadline and how much was left unacknowledged", last)
		}

		recv := &countingReceiver{Addr: addr, tally: &tally{}}
		recv.up(t)
		t.Cleanup(func() { recv.down(t) })
		agent = startAgent(t, pod, dir, state)
		recv.tally.waitAll(t, volume, 2*time.Minute)
		if err := agent.stop(t); err != nil {
			t.Errorf("restarted agent exit after SIGTERM = %v, want 0", err)
		}
		peak = max(peak, agent.peakRSS())
		s := checkNothingLost(t, recv.tally, volume)
		checkMemory(t, peak)
		figures.addAgent(t, agentFigures{
			Test: t.Name(), Written: volume, Received: s.Received, Lost: s.Lost, Duplicates: s.Duplicates,
			PeakRSS: peak, Elapsed: time.Since(start),
			Notes: fmt.Sprintf("SIGTERM with %d MB unread and no receiver: exited 1 after %s (deadline %s) saying %q, while all %d lines were unacknowledged; the next start sent them",
				volume*lineBytes/1e6, stopped.Round(100*time.Millisecond), deadline, firstLine(last), volume),
		})
	})
}

// firstLine is s up to its first newline.
func firstLine(s string) string {
	line, _, _ := strings.Cut(s, "\n")
	return line
}

// exitMessage is what sidelog-agent printed when it exited with an error: its output from the
// line that starts with "sidelog-agent: " on.
func exitMessage(output string) string {
	i := strings.LastIndex(output, "sidelog-agent: ")
	if i < 0 {
		return ""
	}
	return strings.TrimSpace(output[i:])
}

// TestReliabilitySlowAcks acknowledges every batch seconds after it arrives: the agent's
// throughput falls to what the acknowledgements allow, its memory does not grow, and nothing
// is lost.
func TestReliabilitySlowAcks(t *testing.T) {
	const rate = 5000
	d, delay := span(30*time.Second, 5*time.Second), span(5*time.Second, 2*time.Second)
	dir, state := t.TempDir(), t.TempDir()
	srv, err := forwardtest.Start(forwardtest.Options{AckDelay: delay})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	pod := agentPod(t, dir, "", srv.Addr(), nil)
	metrics := agentMetricsURL(t, pod)
	lg := newApp(t, filepath.Join(dir, "app.log"))
	agent := startAgent(t, pod, dir, state)
	start := time.Now()

	var wg sync.WaitGroup
	wg.Go(func() { lg.run(rate, d, 0, nil) })
	var inflight []float64
	for time.Since(start) < d {
		inflight = append(inflight, scrape(t, metrics, "sidelog_forward_inflight_batches"))
		time.Sleep(250 * time.Millisecond)
	}
	wg.Wait()
	written := lg.written()
	during := srv.Count()
	rss := agent.mem.peak()
	tl := waitEvents(t, srv, written, 5*time.Minute)
	if err := agent.stop(t); err != nil {
		t.Errorf("agent exit after SIGTERM = %v, want 0", err)
	}
	s := checkNothingLost(t, tl, written)
	if most := slices.Max(inflight); most > float64(config.Defaults.MaxInflightBatches) {
		t.Errorf("%v batches in flight, more than the limit of %d", most, config.Defaults.MaxInflightBatches)
	}
	peak := agent.peakRSS()
	checkMemory(t, peak)
	figures.addAgent(t, agentFigures{
		Test: t.Name(), Written: written, Received: s.Received, Lost: s.Lost, Duplicates: s.Duplicates,
		PeakRSS: peak, Elapsed: time.Since(start),
		Notes: fmt.Sprintf("acks %s late; written at %d lines/s, delivered at %.0f lines/s meanwhile, at most %.0f batches in flight; RSS peak while writing %s",
			delay, rate, float64(during)/d.Seconds(), slices.Max(inflight), mib(rss)),
	})
}
