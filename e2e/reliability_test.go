package e2e

// The reliability suite (TestReliability*): faults, load and bad input on real files, real
// processes and a real receiver, each test printing its figures and adding them to the table
// that TestMain prints at the end (and writes, as markdown, to $SIDELOG_RELIABILITY_REPORT).
//
// SIDELOG_RELIABILITY=full runs the durations and volumes of the README's table (make
// reliability); unset, every test runs for a few seconds with the same assertions (make e2e).
//
// Every line the tests write carries a unique sequence number, so losses and duplicates are
// counted exactly, not estimated.

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/open-telemetry/opentelemetry-collector-contrib/receiver/fluentforwardreceiver"
	"go.opentelemetry.io/collector/component/componenttest"
	"go.opentelemetry.io/collector/consumer"
	"go.opentelemetry.io/collector/pdata/plog"
	"go.opentelemetry.io/collector/receiver"
	"go.opentelemetry.io/collector/receiver/receivertest"
	corev1 "k8s.io/api/core/v1"

	"github.com/sidelog/sidelog/injector"
	"github.com/sidelog/sidelog/internal/localpod"
	"github.com/sidelog/sidelog/sidecar/config"
	"github.com/sidelog/sidelog/sidecar/forward/forwardtest"
)

// fullRun is true for the durations and volumes the README reports.
var fullRun = os.Getenv("SIDELOG_RELIABILITY") == "full"

// span returns full in a full run and short otherwise.
func span[T any](full, short T) T {
	if fullRun {
		return full
	}
	return short
}

// agentMemoryBound is the resident memory the agent must stay under whatever happens upstream,
// in the tests that tail a few files. What it holds by design, with the default limits:
// MaxInflightBatches (4) batches waiting for their acknowledgement and the batch being filled,
// each BatchBytes (1 MiB) plus an eighth; one 256 KiB read buffer; per open file at most an
// unfinished line and a pending multiline record; and the Go runtime, whose heap may reach twice
// what is live (GOGC=100): about 25 MiB with a few files. The bound asserted is generous, half
// the injector's default memory limit (128Mi), so that a leak or an unbounded queue fails and
// ordinary GC timing does not. TestReliabilityMemoryBound fills 1,024 files' buffers on purpose
// and asserts three quarters of the limit instead (README, "Memory", has the arithmetic).
const agentMemoryBound = 64 << 20

func TestMain(m *testing.M) {
	code := m.Run()
	if report := figures.markdown(); report != "" {
		fmt.Print("\n" + report)
		if path := os.Getenv("SIDELOG_RELIABILITY_REPORT"); path != "" {
			if err := os.WriteFile(path, []byte(report), 0o644); err != nil {
				fmt.Fprintln(os.Stderr, "writing the reliability report:", err)
				code = 1
			}
		}
	}
	os.Exit(code)
}

// agentFigures is one row of the agent's table.
type agentFigures struct {
	Test                                string
	Written, Received, Lost, Duplicates int64
	PeakRSS                             int64 // bytes; 0 if not measured
	Elapsed                             time.Duration
	Notes                               string
}

// webhookFigures is one row of the webhook's table.
type webhookFigures struct {
	Test             string
	Requests, Errors int
	P50, P99         time.Duration
	PeakRSS          int64 // bytes, of the webhook process
	Elapsed          time.Duration
	Notes            string
}

type figureTable struct {
	mu      sync.Mutex
	agent   []agentFigures
	webhook []webhookFigures
}

var figures figureTable

func (ft *figureTable) addAgent(t testing.TB, f agentFigures) {
	t.Helper()
	f.Test = strings.TrimPrefix(f.Test, "TestReliability")
	t.Logf("figures: written %d, received %d, lost %d, duplicates %d, agent peak RSS %s, %s; %s",
		f.Written, f.Received, f.Lost, f.Duplicates, mib(f.PeakRSS), f.Elapsed.Round(100*time.Millisecond), f.Notes)
	ft.mu.Lock()
	defer ft.mu.Unlock()
	ft.agent = append(ft.agent, f)
}

func (ft *figureTable) addWebhook(t testing.TB, f webhookFigures) {
	t.Helper()
	f.Test = strings.TrimPrefix(f.Test, "TestReliability")
	t.Logf("figures: %d requests, %d errors, p50 %s, p99 %s, webhook peak RSS %s, %s; %s",
		f.Requests, f.Errors, msec(f.P50), msec(f.P99), mib(f.PeakRSS), f.Elapsed.Round(100*time.Millisecond), f.Notes)
	ft.mu.Lock()
	defer ft.mu.Unlock()
	ft.webhook = append(ft.webhook, f)
}

// markdown renders the tables, or "" if no reliability test ran.
func (ft *figureTable) markdown() string {
	ft.mu.Lock()
	defer ft.mu.Unlock()
	if len(ft.agent) == 0 && len(ft.webhook) == 0 {
		return ""
	}
	var b strings.Builder
	mode := "short (CI)"
	if fullRun {
		mode = "full (make reliability)"
	}
	fmt.Fprintf(&b, "Reliability figures, %s run, %s\n\n", mode, time.Now().UTC().Format(time.DateOnly))
	if len(ft.agent) > 0 {
		b.WriteString("| agent test | lines written | received | lost | duplicates | agent peak RSS | time | notes |\n")
		b.WriteString("| --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |\n")
		for _, f := range ft.agent {
			fmt.Fprintf(&b, "| %s | %d | %d | %d | %d | %s | %s | %s |\n", f.Test, f.Written, f.Received, f.Lost,
				f.Duplicates, mib(f.PeakRSS), f.Elapsed.Round(100*time.Millisecond), f.Notes)
		}
		b.WriteString("\n")
	}
	if len(ft.webhook) > 0 {
		b.WriteString("| webhook test | requests | errors | p50 | p99 | webhook peak RSS | time | notes |\n")
		b.WriteString("| --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |\n")
		for _, f := range ft.webhook {
			fmt.Fprintf(&b, "| %s | %d | %d | %s | %s | %s | %s | %s |\n", f.Test, f.Requests, f.Errors,
				msec(f.P50), msec(f.P99), mib(f.PeakRSS), f.Elapsed.Round(100*time.Millisecond), f.Notes)
		}
		b.WriteString("\n")
	}
	return b.String()
}

func mib(b int64) string {
	if b <= 0 {
		return "n/a"
	}
	return fmt.Sprintf("%.1f MiB", float64(b)/(1<<20))
}

func msec(d time.Duration) string { return fmt.Sprintf("%.1f ms", float64(d.Microseconds())/1000) }

// lineBytes is the length of every numbered line, newline included, so that line n of a file
// that was never truncated ends at byte (n+1)*lineBytes.
const lineBytes = 128

const seqPrefix = "seq="

// appendLine appends numbered line seq: "seq=000000000042 " and filler, lineBytes in all.
func appendLine(b []byte, seq int64) []byte {
	start := len(b)
	b = fmt.Appendf(b, "%s%012d ", seqPrefix, seq)
	for len(b)-start < lineBytes-1 {
		b = append(b, byte('a'+(len(b)-start+int(seq))%26))
	}
	return append(b, '\n')
}

// seqOf returns the sequence number of a numbered line.
func seqOf(line string) (int64, bool) {
	if len(line) < len(seqPrefix)+12 || !strings.HasPrefix(line, seqPrefix) {
		return 0, false
	}
	n, err := strconv.ParseInt(line[len(seqPrefix):len(seqPrefix)+12], 10, 64)
	return n, err == nil
}

// tally counts the numbered lines received, by sequence number, and keeps the other records.
type tally struct {
	mu     sync.Mutex
	counts []uint8 // by sequence number, saturating
	unique int64
	others []string
}

func (t *tally) add(line string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	seq, ok := seqOf(line)
	if !ok || seq > 1<<28 { // no test writes that many; a garbled number must not allocate it
		t.others = append(t.others, line)
		return
	}
	for int64(len(t.counts)) <= seq {
		t.counts = append(t.counts, make([]uint8, max(len(t.counts), 1<<16))...)
	}
	if t.counts[seq] == 0 {
		t.unique++
	}
	if t.counts[seq] < 255 {
		t.counts[seq]++
	}
}

// summary says what became of lines 0 to written-1: how many arrived, how many did not, and
// how many arrived more than once (extra copies), and the first few that are missing.
type summary struct {
	Received, Lost, Duplicates int64
	Missing                    []int64 // the first missing sequence numbers, at most 10
	Unexpected                 int64   // numbered lines received that were never written
}

func (t *tally) summary(written int64) summary {
	t.mu.Lock()
	defer t.mu.Unlock()
	var s summary
	for seq, c := range t.counts {
		switch {
		case int64(seq) >= written:
			if c > 0 {
				s.Unexpected++
			}
		case c == 0:
			s.Lost++
			if len(s.Missing) < 10 {
				s.Missing = append(s.Missing, int64(seq))
			}
		default:
			s.Received++
			s.Duplicates += int64(c) - 1
		}
	}
	for seq := int64(len(t.counts)); seq < written; seq++ {
		s.Lost++
		if len(s.Missing) < 10 {
			s.Missing = append(s.Missing, seq)
		}
	}
	return s
}

// count returns how many times seq arrived.
func (t *tally) count(seq int64) int {
	t.mu.Lock()
	defer t.mu.Unlock()
	if seq < 0 || seq >= int64(len(t.counts)) {
		return 0
	}
	return int(t.counts[seq])
}

func (t *tally) uniqueCount() int64 {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.unique
}

func (t *tally) otherRecords() []string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return append([]string(nil), t.others...)
}

// waitAll waits until lines 0 to written-1 have all arrived.
func (t *tally) waitAll(tb testing.TB, written int64, timeout time.Duration) {
	tb.Helper()
	eventually(tb, timeout, fmt.Sprintf("all %d lines at the receiver", written), func() error {
		if t.uniqueCount() >= written {
			if s := t.summary(written); s.Lost == 0 {
				return nil
			}
		}
		s := t.summary(written)
		return fmt.Errorf("%d received, %d missing (first %v)", s.Received, s.Lost, s.Missing)
	})
}

// checkNothingLost fails the test if a line of 0 to written-1 is missing or a line that was
// never written arrived, and returns the summary.
func checkNothingLost(tb testing.TB, tl *tally, written int64) summary {
	tb.Helper()
	s := tl.summary(written)
	if s.Lost > 0 {
		tb.Errorf("%d of %d lines lost; first missing: %v", s.Lost, written, s.Missing)
	}
	if s.Unexpected > 0 {
		tb.Errorf("%d numbered lines arrived that were never written", s.Unexpected)
	}
	return s
}

// countingReceiver is the OpenTelemetry Collector's fluentforwardreceiver, in this process,
// feeding a tally instead of keeping the records: it acknowledges a chunk once the tally has
// counted it. It can go down and come back on the same address.
type countingReceiver struct {
	Addr  string
	tally *tally

	mu  sync.Mutex
	rcv receiver.Logs // nil while down
}

// startCountingReceiver starts a receiver on a free local address.
func startCountingReceiver(tb testing.TB) *countingReceiver {
	tb.Helper()
	r := &countingReceiver{Addr: freeAddr(tb), tally: &tally{}}
	r.up(tb)
	tb.Cleanup(func() { r.down(tb) })
	return r
}

// up starts the receiver on r.Addr, waiting for the port if the last one has not released it.
func (r *countingReceiver) up(tb testing.TB) {
	tb.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.rcv != nil {
		return
	}
	f := fluentforwardreceiver.NewFactory()
	cfg := f.CreateDefaultConfig().(*fluentforwardreceiver.Config)
	cfg.ListenAddress = r.Addr
	sink, err := consumer.NewLogs(func(_ context.Context, ld plog.Logs) error {
		rls := ld.ResourceLogs()
		for i := range rls.Len() {
			sls := rls.At(i).ScopeLogs()
			for j := range sls.Len() {
				lrs := sls.At(j).LogRecords()
				for k := range lrs.Len() {
					r.tally.add(lrs.At(k).Body().AsString())
				}
			}
		}
		return nil
	})
	if err != nil {
		tb.Fatal(err)
	}
	eventually(tb, 30*time.Second, "the receiver listening on "+r.Addr, func() error {
		rcv, err := f.CreateLogs(context.Background(), receivertest.NewNopSettings(f.Type()), cfg, sink)
		if err != nil {
			return err
		}
		if err := rcv.Start(context.Background(), componenttest.NewNopHost()); err != nil {
			return err
		}
		r.rcv = rcv
		return nil
	})
}

// down stops the receiver: it stops listening and closes every connection.
func (r *countingReceiver) down(tb testing.TB) {
	tb.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.rcv == nil {
		return
	}
	if err := r.rcv.Shutdown(context.Background()); err != nil {
		tb.Errorf("stopping the receiver: %v", err)
	}
	r.rcv = nil
}

// tallyEvents counts the records a forwardtest server received.
func tallyEvents(srv *forwardtest.Server) *tally {
	tl := &tally{}
	for _, e := range srv.Events() {
		switch v := e.Record["log"].(type) {
		case string:
			tl.add(v)
		case []byte:
			tl.add(string(v))
		}
	}
	return tl
}

// waitEvents waits until a forwardtest server holds every line of 0 to written-1 and returns
// its tally.
func waitEvents(tb testing.TB, srv *forwardtest.Server, written int64, timeout time.Duration) *tally {
	tb.Helper()
	var tl *tally
	eventually(tb, timeout, fmt.Sprintf("all %d lines at the receiver", written), func() error {
		if n := srv.Count(); n < written {
			return fmt.Errorf("%d records", n)
		}
		tl = tallyEvents(srv)
		if s := tl.summary(written); s.Lost > 0 {
			return fmt.Errorf("%d missing (first %v)", s.Lost, s.Missing)
		}
		return nil
	})
	return tl
}

// app writes numbered lines to a log file as an application would, through one O_APPEND
// descriptor that it reopens when told to.
type app struct {
	tb   testing.TB
	path string
	f    *os.File
	next atomic.Int64 // sequence number of the next line
	buf  []byte
}

func newApp(tb testing.TB, path string) *app {
	tb.Helper()
	a := &app{tb: tb, path: path}
	a.reopen()
	tb.Cleanup(func() { a.f.Close() })
	return a
}

// reopen opens (creating) the file at the path, as an application does after a rotation.
func (a *app) reopen() {
	if a.f != nil {
		a.f.Close()
	}
	f, err := os.OpenFile(a.path, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		a.tb.Fatal(err)
	}
	a.f = f
}

// write writes the next n lines in one write call.
func (a *app) write(n int) {
	a.buf = a.buf[:0]
	seq := a.next.Load()
	for i := range n {
		a.buf = appendLine(a.buf, seq+int64(i))
	}
	if _, err := a.f.Write(a.buf); err != nil {
		a.tb.Errorf("writing %s: %v", a.path, err)
		return
	}
	a.next.Add(int64(n))
}

// written is the number of lines written so far.
func (a *app) written() int64 { return a.next.Load() }

// run writes rate lines per second for d, in a write every 10 ms, calling every(a) once every
// period (if period > 0) between two writes: the rotations of these tests happen there, so
// that each one falls between two whole lines.
func (a *app) run(rate int, d, period time.Duration, every func(*app)) {
	const tick = 10 * time.Millisecond
	start := time.Now()
	next := start.Add(period)
	t := time.NewTicker(tick)
	defer t.Stop()
	var due int64
	for now := range t.C {
		elapsed := min(now.Sub(start), d)
		target := int64(elapsed.Seconds() * float64(rate))
		if n := target - due; n > 0 {
			a.write(int(n))
			due = target
		}
		if elapsed >= d {
			return
		}
		if period > 0 && !now.Before(next) {
			every(a)
			next = next.Add(period)
		}
	}
}

// fill writes n lines as fast as the disk takes them.
func (a *app) fill(n int64) {
	const chunk = 8192
	for n > 0 {
		k := min(n, chunk)
		a.write(int(k))
		n -= k
	}
}

// agentPod injects a pod whose app container logs to dir and that tails globs (default
// dir/*.log) to upstream, and applies edit to the agent's configuration.
func agentPod(tb testing.TB, dir, globs, upstream string, edit func(*config.Config)) *corev1.Pod {
	tb.Helper()
	if globs == "" {
		globs = dir + "/*.log"
	}
	pod := inject(tb, logPod(dir, map[string]string{
		"sidelog.io/tail.app": globs,
		"sidelog.io/upstream": upstream,
	}))
	if edit == nil {
		return pod
	}
	c, err := localpod.Container(pod, injector.AgentContainer)
	if err != nil {
		tb.Fatal(err)
	}
	for i := range c.Env {
		if c.Env[i].Name != config.Env {
			continue
		}
		cfg, err := config.Parse([]byte(c.Env[i].Value))
		if err != nil {
			tb.Fatalf("the injected agent config: %v", err)
		}
		edit(cfg)
		b, err := json.Marshal(cfg)
		if err != nil {
			tb.Fatal(err)
		}
		c.Env[i].Value = string(b)
		return pod
	}
	tb.Fatalf("the agent container has no %s", config.Env)
	return nil
}

// agentMetricsURL is the /metrics of the pod's agent, on its metrics port.
func agentMetricsURL(tb testing.TB, pod *corev1.Pod) string {
	tb.Helper()
	c, err := localpod.Container(pod, injector.AgentContainer)
	if err != nil {
		tb.Fatal(err)
	}
	if len(c.Ports) == 0 {
		tb.Fatal("the agent container has no port")
	}
	return fmt.Sprintf("http://127.0.0.1:%d/metrics", c.Ports[0].ContainerPort)
}

// runningAgent is an injected agent process, its memory watched from its start.
type runningAgent struct {
	*agentProcess
	mem *memoryWatch
}

// startAgent runs the pod's agent with its log volume at dir and its state volume at stateDir
// (so that a restart resumes from the checkpoint) and watches its memory.
func startAgent(tb testing.TB, pod *corev1.Pod, dir, stateDir string) *runningAgent {
	tb.Helper()
	p := runInjectedAgent(tb, pod, map[string]string{"logs": dir, injector.StateVolume: stateDir})
	a := &runningAgent{agentProcess: p, mem: watchMemory(p.cmd.Process.Pid)}
	tb.Cleanup(a.mem.stop)
	return a
}

// kill sends SIGKILL and waits for the process to end.
func (a *runningAgent) kill(tb testing.TB) {
	tb.Helper()
	if err := a.cmd.Process.Kill(); err != nil {
		tb.Fatal(err)
	}
	a.wait(tb, time.Minute)
}

// wait waits for the process to end and returns its exit error.
func (a *runningAgent) wait(tb testing.TB, timeout time.Duration) error {
	tb.Helper()
	select {
	case err := <-a.done:
		a.done <- err
		a.mem.stop()
		return err
	case <-time.After(timeout):
		tb.Fatalf("agent still running after %s\n%s", timeout, a.output)
		return nil
	}
}

// peakRSS is the most resident memory the process used: the kernel's high-water mark of its
// address space (VmHWM), as last sampled. Its rusage maximum is no use here: the kernel carries
// the ru_maxrss of the address space an exec replaces over to the new program, and os/exec forks
// with the test process's address space, so every child would report this process's peak.
func (a *runningAgent) peakRSS() int64 { return a.mem.peak() }

// memoryWatch samples a process's VmRSS and VmHWM every 100 ms.
type memoryWatch struct {
	pid      int
	hwm, rss atomic.Int64 // highest seen, bytes
	once     sync.Once
	quit     chan struct{}
	done     chan struct{}
}

func watchMemory(pid int) *memoryWatch {
	m := &memoryWatch{pid: pid, quit: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(m.done)
		t := time.NewTicker(100 * time.Millisecond)
		defer t.Stop()
		for {
			m.sample()
			select {
			case <-m.quit:
				return
			case <-t.C:
			}
		}
	}()
	return m
}

func (m *memoryWatch) sample() {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", m.pid))
	if err != nil {
		return
	}
	defer f.Close()
	s := bufio.NewScanner(f)
	for s.Scan() {
		name, value, ok := strings.Cut(s.Text(), ":")
		if !ok || (name != "VmRSS" && name != "VmHWM") {
			continue
		}
		kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(value), " kB"), 10, 64)
		if err != nil {
			continue
		}
		dst := &m.rss
		if name == "VmHWM" {
			dst = &m.hwm
		}
		for v := dst.Load(); kb<<10 > v && !dst.CompareAndSwap(v, kb<<10); v = dst.Load() {
		}
	}
}

func (m *memoryWatch) stop() {
	m.once.Do(func() { close(m.quit) })
	<-m.done
}

// peak is the highest resident memory seen so far.
func (m *memoryWatch) peak() int64 { return max(m.hwm.Load(), m.rss.Load()) }

// checkMemory fails the test if the agent's peak resident memory passed the bound.
func checkMemory(tb testing.TB, peak int64) {
	tb.Helper()
	if peak > agentMemoryBound {
		tb.Errorf("agent peak RSS %s, above the bound of %s", mib(peak), mib(agentMemoryBound))
	}
	if peak == 0 {
		tb.Error("the agent's memory was never sampled")
	}
}

// scrape returns the sum of the values of the series of name whose labels include every
// key="value" pair of labels, from a Prometheus text exposition.
func scrape(tb testing.TB, url, name string, labels ...string) float64 {
	tb.Helper()
	resp, err := http.Get(url)
	if err != nil {
		tb.Fatalf("scraping %s: %v", url, err)
	}
	defer resp.Body.Close()
	var sum float64
	s := bufio.NewScanner(resp.Body)
	s.Buffer(nil, 1<<20)
	for s.Scan() {
		line := s.Text()
		if !strings.HasPrefix(line, name) || len(line) == len(name) || (line[len(name)] != '{' && line[len(name)] != ' ') {
			continue
		}
		series, value, ok := strings.Cut(line[len(name):], " ")
		if !ok {
			continue
		}
		match := true
		for i := 0; i+1 < len(labels); i += 2 {
			match = match && strings.Contains(series, labels[i]+`="`+labels[i+1]+`"`)
		}
		if !match {
			continue
		}
		v, err := strconv.ParseFloat(strings.TrimSpace(value), 64)
		if err != nil {
			tb.Fatalf("%s: %q: %v", url, line, err)
		}
		sum += v
	}
	return sum
}

// logLines returns the agent's JSON log records whose msg contains msg.
func logLines(output, msg string) []map[string]any {
	var out []map[string]any
	for _, line := range strings.Split(output, "\n") {
		var rec map[string]any
		if json.Unmarshal([]byte(line), &rec) != nil {
			continue
		}
		if m, _ := rec["msg"].(string); strings.Contains(m, msg) {
			out = append(out, rec)
		}
	}
	return out
}
