package e2e

import (
	"fmt"
	"math"
	"path/filepath"
	"slices"
	"strconv"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"

	"github.com/sidelog/sidelog/injector"
	"github.com/sidelog/sidelog/internal/localpod"
	"github.com/sidelog/sidelog/sidecar/checkpoint"
	"github.com/sidelog/sidelog/sidecar/config"
	"github.com/sidelog/sidelog/sidecar/forward/forwardtest"
)

// TestReliabilityMemoryBound runs the agent as the injector configures it by default (128 Mi
// limit, which the agent turns into its Go memory limit) on config.Defaults.MaxFiles files at
// once, each receiving records near the line limit, while the upstream is slow and then stopped,
// so that every file holds what it may hold: the agent's peak resident memory must stay under
// three quarters of its limit (issue #9: 1,024 files of 60 KiB JSON lines took it to 1,357 MiB).
//
//   - json: 60 KiB JSON lines of numbers, the parser's worst case (its scratch grows about 12
//     bytes per byte of such a line).
//   - multiline: Java stack traces of 48 KiB, each pending in its file until the next one starts.
func TestReliabilityMemoryBound(t *testing.T) {
	for _, tc := range []struct {
		name        string
		annotations map[string]string
		record      func(seq int64) []byte // one record, newline-terminated
		notes       string
	}{
		{"json", map[string]string{injector.AnnotationParser + ".app": config.ParserJSON}, jsonNumbersLine,
			"parser json, 60 KiB lines of numbers"},
		{"multiline", map[string]string{injector.AnnotationMultiline + ".app": "java"}, longJavaTrace,
			"multiline java, 48 KiB stack traces"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			memoryBoundRun(t, tc.annotations, tc.record, tc.notes)
		})
	}
}

func memoryBoundRun(t *testing.T, annotations map[string]string, record func(int64) []byte, notes string) {
	files := config.Defaults.MaxFiles
	// Records per file: written in rounds, one record to every file per round, half of them while
	// the upstream is slow and half while it is stopped.
	rounds := span(12, 4)
	slow, stopped := span(20*time.Second, 3*time.Second), span(20*time.Second, 4*time.Second)
	dir, state := t.TempDir(), t.TempDir()
	// Acknowledgements a quarter of a second late: at 4 batches in flight, 16 MiB/s.
	srv, err := forwardtest.Start(forwardtest.Options{CountOnly: true, AckDelay: 250 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	annotations["sidelog.io/tail.app"] = dir + "/*.log"
	annotations["sidelog.io/upstream"] = srv.Addr()
	pod := inject(t, logPod(dir, annotations))
	limit := agentMemoryLimit(t, pod)
	bound := limit * 3 / 4

	paths := make([]string, files)
	for i := range paths {
		paths[i] = filepath.Join(dir, fmt.Sprintf("f%04d.log", i))
	}
	var seq, bytes int64
	writeRound := func() {
		for _, p := range paths {
			b := record(seq)
			appendBytes(t, p, b)
			seq++
			bytes += int64(len(b))
		}
	}
	// The files exist before the agent starts, as an app's logs may.
	writeRound()
	agent := startAgent(t, pod, dir, state)
	start := time.Now()

	// Slow upstream: acknowledgements late, so reading is held back by the in-flight limit.
	for range rounds/2 - 1 {
		writeRound()
	}
	time.Sleep(slow)
	// Stopped upstream: nothing is acknowledged, the files are the buffer, and every file keeps
	// what it holds between reads.
	srv.Down()
	for range rounds - rounds/2 {
		writeRound()
	}
	time.Sleep(stopped)
	whileStopped := agent.mem.peak()
	if err := srv.Up(); err != nil {
		t.Fatal(err)
	}
	// Every byte acknowledged: the checkpoint, which moves only on acknowledgements, is at the end
	// of every file. (The receiver's count includes the batches sent again after the stop.)
	eventually(t, span(10*time.Minute, 5*time.Minute), fmt.Sprintf("all %d bytes of %d files acknowledged", bytes, files), func() error {
		entries, err := checkpoint.Load(state)
		if err != nil {
			return err
		}
		var acked int64
		for _, e := range entries {
			acked += e.Offset
		}
		if len(entries) != files || acked != bytes {
			return fmt.Errorf("%d files, %d bytes in the checkpoint", len(entries), acked)
		}
		return nil
	})
	received := srv.Count()
	// A trace cut by the multiline budget arrives as one more record per cut.
	cuts := int64(scrape(t, agentMetricsURL(t, pod), "sidelog_multiline_budget_flushes_total"))
	if received < seq {
		t.Errorf("the receiver counted %d records, fewer than the %d written, all acknowledged", received, seq)
	}
	if err := agent.stop(t); err != nil {
		t.Errorf("agent exit after SIGTERM = %v, want 0\n%s", err, exitMessage(agent.output.String()))
	}
	peak := agent.peakRSS()
	if peak == 0 {
		t.Error("the agent's memory was never sampled")
	}
	if peak > bound {
		t.Errorf("agent peak RSS %s, above three quarters of its %s limit (%s)", mib(peak), mib(limit), mib(bound))
	}
	goLimit := "no Go memory limit logged"
	if recs := logLines(agent.output.String(), "Go memory limit set"); len(recs) > 0 {
		v, _ := recs[0]["go_memory_limit_bytes"].(float64)
		goLimit = "Go memory limit " + mib(int64(v))
		if want := float64(limit) * config.MemoryLimitShare; math.Abs(v-want) > 1 {
			t.Errorf("the agent set a Go memory limit of %.0f bytes, want %.0f (%v of %d)", v, want, config.MemoryLimitShare, limit)
		}
	}
	figures.addAgent(t, agentFigures{
		Test: t.Name(), Written: seq, Received: min(received, seq), Duplicates: max(received-seq-cuts, 0), PeakRSS: peak, Elapsed: time.Since(start),
		Notes: fmt.Sprintf("%d files, %s; %.0f MB in %d records per file, upstream slow (acks 250 ms late) then stopped %s; peak RSS while stopped %s, bound %s (3/4 of the %s limit; %s); %d records cut by the multiline budget; delivery checked by the checkpoint, records counted not sequenced, duplicates are what the receiver counted beyond the records and cuts (batches sent again after the stop)",
			files, notes, float64(bytes)/1e6, rounds, stopped, mib(whileStopped), mib(bound), mib(limit), goLimit, cuts),
	})
}

// agentMemoryLimit is the memory limit of the pod's agent container, in bytes, which must be
// the value the injector hands the agent through the downward API.
func agentMemoryLimit(tb testing.TB, pod *corev1.Pod) int64 {
	tb.Helper()
	c, err := localpod.Container(pod, injector.AgentContainer)
	if err != nil {
		tb.Fatal(err)
	}
	q, ok := c.Resources.Limits[corev1.ResourceMemory]
	if !ok {
		tb.Fatal("the agent container has no memory limit")
	}
	// What the process gets, resolved as the kubelet resolves the downward API.
	cmd, err := localpod.Command(pod, injector.AgentContainer, localpod.Options{
		Binaries: map[string]string{"/sidelog-agent": "/bin/true"}, ScratchDir: tb.TempDir()})
	if err != nil {
		tb.Fatal(err)
	}
	if want := config.EnvMemoryLimit + "=" + strconv.FormatInt(q.Value(), 10); !slices.Contains(cmd.Env, want) {
		tb.Errorf("the agent's environment has no %s", want)
	}
	return q.Value()
}

// jsonNumbersLine is a 60 KiB JSON object whose bulk is small numbers, with the sequence number
// in a field.
func jsonNumbersLine(seq int64) []byte {
	b := fmt.Appendf(nil, `{"seq":"%s%012d","level":"info","n":[`, seqPrefix, seq)
	for len(b) < 60<<10-4 {
		b = append(b, "1,"...)
	}
	return append(b, "1]}\n"...)
}

// longJavaTrace is a Java stack trace of 48 KiB: a numbered log line, an exception and frames.
func longJavaTrace(seq int64) []byte {
	b := fmt.Appendf(nil, "%s%012d ERROR request failed\njava.lang.IllegalStateException: boom\n", seqPrefix, seq)
	for i := 0; len(b) < 48<<10; i++ {
		b = fmt.Appendf(b, "\tat com.example.shop.checkout.Service%04d.handle(Service%04d.java:%d)\n", i, i, 100+i)
	}
	return b
}
