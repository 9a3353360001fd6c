//go:build unix

package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/sidelog/sidelog/sidecar/config"
	"github.com/sidelog/sidelog/sidecar/forward/forwardtest"
)

// ceilingCommand is the first argument that makes this program the ceiling's sender.
const ceilingCommand = "ceiling-sender"

// flushInterval is the agent's limits.flushInterval in every run.
const flushInterval = 10 * time.Millisecond

// ioBuffer is the ceiling's read and write buffer size.
const ioBuffer = 64 << 10

// bench holds what the runs share.
type bench struct {
	opts *options
	cpus cpuPlan
	work string
	seq  int // numbers the runs' directories
	// input, when set, is the agent's input for a log directory (a workload's); else plain lines.
	input func(logDir string) config.Input
	// fluentBit is the Fluent Bit binary of the comparison, "" for none.
	fluentBit string
}

// mkdir makes a new directory for one run of kind.
func (b *bench) mkdir(kind string) (string, error) {
	b.seq++
	dir := filepath.Join(b.work, fmt.Sprintf("%s-%d", kind, b.seq))
	return dir, os.Mkdir(dir, 0o755)
}

// result is what one run measured of its child process.
type result struct {
	lines   int
	bytes   int64         // log bytes
	elapsed time.Duration // from the child's start until the receiver had every line
	cpu     time.Duration // the child's user and system time
	maxRSS  int64         // the child's peak resident set, bytes
	// recvCPU is this process's CPU time meanwhile: the receiver's, to tell whether it limited
	// the figure.
	recvCPU time.Duration
	// waited is how long the child was ready to run but another process had its CPU: a busy
	// machine, not the agent. Zero where it cannot be known.
	waited time.Duration
	// sent is how many bytes went over the connection (forward messages, or raw lines).
	sent int64
	// resent is how many records the receiver counted beyond the lines: sent again after a
	// connection failure or an acknowledgement timeout, which a healthy run does not need.
	resent int64
}

func (r result) linesPerSec() float64 { return float64(r.lines) / r.elapsed.Seconds() }
func (r result) mbPerSec() float64    { return float64(r.bytes) / 1e6 / r.elapsed.Seconds() }
func (r result) cpuPerGB() float64    { return r.cpu.Seconds() / (float64(r.bytes) / 1e9) }

// waitedShare is the share of the wall time the child waited for its CPU.
func (r result) waitedShare() float64 { return r.waited.Seconds() / r.elapsed.Seconds() }

// sentPerLine is the bytes sent per line of log.
func (r result) sentPerLine() float64 { return float64(r.sent) / float64(r.lines) }

// recvShare is the receiver's CPU time over the wall time.
func (r result) recvShare() float64 { return r.recvCPU.Seconds() / r.elapsed.Seconds() }

// cpuShare is the child's CPU time over its wall time: 1 is one core busy.
func (r result) cpuShare() float64 { return r.cpu.Seconds() / r.elapsed.Seconds() }

// deadline bounds a wait for lines: far beyond any sane speed, reached only by a malfunction.
func deadline(lines int) time.Duration {
	return 30*time.Second + time.Duration(lines)*20*time.Microsecond
}

// appendLines appends n log-like lines of lineBytes bytes, numbered from first, to b.
func appendLines(b []byte, first, n int) []byte {
	const filler = " user=4711 cart=3 items=[sku-1041 sku-2213 sku-7] region=eu-west-1 upstream=checkout-v2 cache=miss attempt=1 " +
		"trace=4bf92f3577b34da6a3ce929d0e0e4736 span=00f067aa0ba902b7 ............................................."
	for i := first; i < first+n; i++ {
		start := len(b)
		b = append(b, "2026-11-25T08:22:04."...)
		b = strconv.AppendInt(b, int64(100000+i%900000), 10)
		b = append(b, "Z INFO [com.example.shop.Checkout] request "...)
		b = strconv.AppendInt(b, int64(i), 10)
		b = append(b, " served in 3ms"...)
		b = append(b, filler[:lineBytes-1-(len(b)-start)]...)
		b = append(b, '\n')
	}
	return b
}

// writeFile writes the full-speed file of opts.lines lines.
func (b *bench) writeFile() (string, error) {
	dir, err := b.mkdir("full")
	if err != nil {
		return "", err
	}
	path := filepath.Join(dir, "app.log")
	f, err := os.Create(path)
	if err != nil {
		return "", err
	}
	const per = 20_000 // lines per write: 4 MB
	buf := make([]byte, 0, per*lineBytes)
	for i := 0; i < b.opts.lines; i += per {
		buf = appendLines(buf[:0], i, min(per, b.opts.lines-i))
		if _, err := f.Write(buf); err != nil {
			f.Close()
			return "", fmt.Errorf("writing %s: %w", path, err)
		}
	}
	if err := f.Close(); err != nil {
		return "", fmt.Errorf("writing %s: %w", path, err)
	}
	return path, nil
}

// ceiling sends file raw over loopback TCP from a pinned child process and times it until every
// byte arrived.
func (b *bench) ceiling(file string) (result, error) {
	fi, err := os.Stat(file)
	if err != nil {
		return result{}, err
	}
	size := fi.Size()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return result{}, err
	}
	defer ln.Close()
	type arrival struct {
		n    int64
		at   time.Time
		err  error
		done bool
	}
	got := make(chan arrival, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			got <- arrival{err: err}
			return
		}
		defer c.Close()
		buf := make([]byte, 256<<10)
		var n int64
		for {
			k, err := c.Read(buf)
			n += int64(k)
			if n >= size {
				got <- arrival{n: n, at: time.Now(), done: true}
				return
			}
			if err != nil {
				got <- arrival{n: n, err: err}
				return
			}
		}
	}()
	self, err := os.Executable()
	if err != nil {
		return result{}, err
	}
	cmd := exec.Command(self, ceilingCommand, file, ln.Addr().String())
	cmd.Env = append(os.Environ(), "GOMAXPROCS=1")
	cmd.Stderr = os.Stderr
	self0 := selfCPU()
	start, err := b.cpus.start(cmd)
	if err != nil {
		return result{}, fmt.Errorf("starting the sender: %w", err)
	}
	rss := watchRSS(cmd.Process.Pid)
	var a arrival
	select {
	case a = <-got:
	case <-time.After(deadline(b.opts.lines)):
		a.err = errors.New("timed out")
	}
	recv := selfCPU() - self0
	_, waited, _ := schedstat(cmd.Process.Pid)
	if !a.done {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		rss.end()
		return result{}, fmt.Errorf("%d of %d bytes arrived: %w", a.n, size, a.err)
	}
	err = cmd.Wait()
	peak := rss.end()
	if err != nil {
		return result{}, fmt.Errorf("sender: %w", err)
	}
	return usage(cmd.ProcessState, peak, result{lines: b.opts.lines, bytes: size, elapsed: a.at.Sub(start), recvCPU: recv, waited: waited, sent: a.n}), nil
}

// sendRaw is the ceiling's sender: args are the file and the address. It reads the file line by
// line and writes each line to the connection, buffered as any sensible program would.
func sendRaw(args []string) error {
	if len(args) != 2 {
		return fmt.Errorf("want FILE ADDR, got %q", args)
	}
	f, err := os.Open(args[0])
	if err != nil {
		return err
	}
	defer f.Close()
	c, err := net.Dial("tcp", args[1])
	if err != nil {
		return err
	}
	defer c.Close()
	r := bufio.NewReaderSize(f, ioBuffer)
	w := bufio.NewWriterSize(c, ioBuffer)
	for {
		line, err := r.ReadSlice('\n')
		if _, werr := w.Write(line); werr != nil {
			return werr
		}
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return err
		}
	}
	return w.Flush()
}

// sink is the receiver of a run: forwardtest's server, or otlpSink.
type sink interface {
	Wait(ctx context.Context, n int64) error
	Count() int64
	Bytes() int64
	Connections() int
	Close() error
}

// agent is one running agent and the receiver it sends to.
type agent struct {
	srv     sink
	cmd     *exec.Cmd
	started time.Time
	stderr  *os.File
	rss     *rssWatch
	// exited is closed when the process has exited; err is then what cmd.Wait returned.
	exited chan struct{}
	err    error
}

// startAgent starts the agent binary, pinned, on the files of logDir, with a fresh receiver and
// state directory: a forward-protocol receiver, or with otlp an OTLP/HTTP one.
func (b *bench) startAgent(logDir string, otlp bool) (*agent, error) {
	dir, err := b.mkdir("agent")
	if err != nil {
		return nil, err
	}
	state := filepath.Join(dir, "state")
	if err := os.Mkdir(state, 0o755); err != nil {
		return nil, err
	}
	// A downward-API labels file as the injector mounts it.
	labels := filepath.Join(dir, "labels")
	if err := os.WriteFile(labels, []byte("app=\"shop\"\npod-template-hash=\"7d4b9c8f6\"\nteam=\"checkout\"\n"), 0o644); err != nil {
		return nil, err
	}
	var srv sink
	upstream := config.Upstream{}
	if otlp {
		s, err := startOTLPSink()
		if err != nil {
			return nil, err
		}
		srv, upstream.Protocol, upstream.Servers = s, config.ProtocolOTLP, []string{s.URL()}
	} else {
		s, err := forwardtest.Start(forwardtest.Options{CountOnly: true})
		if err != nil {
			return nil, err
		}
		srv, upstream.Servers = s, []string{s.Addr()}
	}
	in := config.Input{Container: "app", Paths: []string{logDir + "/*.log"}}
	if b.input != nil {
		in = b.input(logDir)
	}
	doc, err := (&config.Config{
		Version:    config.Version,
		Inputs:     []config.Input{in},
		Upstream:   upstream,
		LabelsFile: labels,
		// The run's last batch is not full: with the default flush interval it would wait a
		// second, a latency that has nothing to do with throughput. Full batches, which are all
		// the others, are sent when full either way.
		Limits:      config.Limits{FlushInterval: config.Duration(flushInterval)},
		MetricsAddr: "127.0.0.1:0",
	}).Encode()
	if err != nil {
		srv.Close()
		return nil, err
	}
	stderr, err := os.Create(filepath.Join(dir, "agent.log"))
	if err != nil {
		srv.Close()
		return nil, err
	}
	cmd := exec.Command(b.opts.agent, "--state-dir", state)
	cmd.Env = append(os.Environ(),
		"GOMAXPROCS=1",
		config.Env+"="+string(doc),
		config.EnvPodNamespace+"=shop",
		config.EnvPodName+"=checkout-7d4b9c8f6-x2x9q",
		config.EnvPodUID+"=9c1b6a4e-2f0d-4d7e-9a51-3c2f1e8b7d10",
		config.EnvNodeName+"=fargate-ip-10-0-12-34.eu-west-1.compute.internal",
	)
	cmd.Stdout, cmd.Stderr = stderr, stderr
	started, err := b.cpus.start(cmd)
	if err != nil {
		srv.Close()
		stderr.Close()
		return nil, fmt.Errorf("starting %s: %w", b.opts.agent, err)
	}
	a := &agent{srv: srv, cmd: cmd, started: started, stderr: stderr, rss: watchRSS(cmd.Process.Pid), exited: make(chan struct{})}
	go func() {
		a.err = cmd.Wait()
		close(a.exited)
	}()
	return a, nil
}

// wait waits until the receiver counted n records. An agent that exits ends the wait at once.
func (a *agent) wait(n int) error {
	ctx, cancel := context.WithTimeout(context.Background(), deadline(n))
	defer cancel()
	go func() {
		select {
		case <-a.exited:
			cancel()
		case <-ctx.Done():
		}
	}()
	err := a.srv.Wait(ctx, int64(n))
	select {
	case <-a.exited:
		if err != nil {
			return fmt.Errorf("the agent exited (%v) before the receiver had every record: %w", a.err, err)
		}
	default:
	}
	return err
}

// stop sends SIGTERM, waits for the agent to drain and exit, and returns its resource use and
// the records the receiver counted beyond lines. An exit status other than 0 is an error that
// quotes the agent's log.
func (a *agent) stop(lines int) (result, error) {
	defer a.srv.Close()
	defer a.stderr.Close()
	a.rss.sample()
	_, waited, _ := schedstat(a.cmd.Process.Pid)
	sent := a.srv.Bytes()
	_ = a.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-a.exited:
	case <-time.After(time.Minute):
		_ = a.cmd.Process.Kill()
		<-a.exited
		a.rss.end()
		return result{}, fmt.Errorf("agent did not exit within a minute of SIGTERM\nagent log:\n%s", a.log())
	}
	peak := a.rss.end()
	if a.err != nil {
		return result{}, fmt.Errorf("agent: %w\nagent log:\n%s", a.err, a.log())
	}
	return usage(a.cmd.ProcessState, peak, result{waited: waited, sent: sent, resent: a.srv.Count() - int64(lines)}), nil
}

// fail kills the agent and returns err with the agent's log.
func (a *agent) fail(err error) error {
	_ = a.cmd.Process.Kill()
	<-a.exited
	a.rss.end()
	a.srv.Close()
	a.stderr.Close()
	return fmt.Errorf("%w\nagent log:\n%s", err, a.log())
}

// log returns the end of the agent's log.
func (a *agent) log() string {
	b, _ := os.ReadFile(a.stderr.Name())
	const tail = 4 << 10
	if len(b) > tail {
		b = b[len(b)-tail:]
	}
	return string(b)
}

// fullSpeed runs the agent on file from its start until the receiver has every line, over the
// forward protocol or OTLP.
func (b *bench) fullSpeed(file string, otlp bool) (result, error) {
	fi, err := os.Stat(file)
	if err != nil {
		return result{}, err
	}
	self0 := selfCPU()
	a, err := b.startAgent(filepath.Dir(file), otlp)
	if err != nil {
		return result{}, err
	}
	if err := a.wait(b.opts.lines); err != nil {
		return result{}, a.fail(err)
	}
	elapsed := time.Since(a.started)
	recv := selfCPU() - self0
	r, err := a.stop(b.opts.lines)
	r.lines, r.bytes, r.elapsed, r.recvCPU = b.opts.lines, fi.Size(), elapsed, recv
	return r, err
}

// steady runs the agent while a writer appends to its file at opts.rate MB/s for opts.rateFor,
// until the receiver has every line. Its elapsed time is the writer's.
func (b *bench) steady() (result, error) {
	dir, err := b.mkdir("steady")
	if err != nil {
		return result{}, err
	}
	f, err := os.OpenFile(filepath.Join(dir, "app.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return result{}, err
	}
	defer f.Close()
	a, err := b.startAgent(dir, false)
	if err != nil {
		return result{}, err
	}
	// Lines are written every tick, as many as the rate allows by then: an application that logs
	// steadily, not in bursts.
	const tick = 10 * time.Millisecond
	perSec := b.opts.rate * 1e6 / lineBytes
	t := time.NewTicker(tick)
	defer t.Stop()
	begin := time.Now()
	var buf []byte
	written := 0
	for {
		now := <-t.C
		el := min(now.Sub(begin), b.opts.rateFor)
		want := int(perSec * el.Seconds())
		if want > written {
			buf = appendLines(buf[:0], written, want-written)
			if _, err := f.Write(buf); err != nil {
				return result{}, a.fail(fmt.Errorf("appending: %w", err))
			}
			written = want
		}
		if el >= b.opts.rateFor {
			break
		}
	}
	elapsed := time.Since(begin)
	if err := a.wait(written); err != nil {
		return result{}, a.fail(err)
	}
	r, err := a.stop(written)
	r.lines, r.bytes, r.elapsed = written, int64(written)*lineBytes, elapsed
	return r, err
}

// idleSettle is how long the idle run lets the agent start before its CPU time counts.
const idleSettle = time.Second

// idle runs the agent with an empty file for opts.idleFor. Its CPU time is what it used after
// idleSettle, when it had started and connected: the cost of waiting for lines.
func (b *bench) idle() (result, error) {
	dir, err := b.mkdir("idle")
	if err != nil {
		return result{}, err
	}
	if err := os.WriteFile(filepath.Join(dir, "app.log"), nil, 0o644); err != nil {
		return result{}, err
	}
	a, err := b.startAgent(dir, false)
	if err != nil {
		return result{}, err
	}
	settle := min(idleSettle, b.opts.idleFor/2)
	time.Sleep(settle)
	run0, _, err0 := schedstat(a.cmd.Process.Pid)
	time.Sleep(b.opts.idleFor - settle)
	run1, _, err1 := schedstat(a.cmd.Process.Pid)
	if a.srv.Connections() == 0 {
		return result{}, a.fail(errors.New("the agent never connected to the receiver"))
	}
	r, err := a.stop(0)
	r.elapsed = b.opts.idleFor
	if err0 == nil && err1 == nil {
		r.cpu, r.elapsed = run1-run0, b.opts.idleFor-settle
	}
	return r, err
}

// usage adds the CPU time of the exited process ps to r, and its peak RSS: peak if it was
// sampled, else what rusage says.
func usage(ps *os.ProcessState, peak int64, r result) result {
	r.cpu = ps.UserTime() + ps.SystemTime()
	r.maxRSS = peak
	if ru, ok := ps.SysUsage().(*syscall.Rusage); ok && peak == 0 {
		r.maxRSS = int64(ru.Maxrss)
		if runtime.GOOS != "darwin" {
			r.maxRSS *= 1024 // KiB everywhere else
		}
	}
	return r
}

// selfCPU returns the CPU time this process used so far.
func selfCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// rssWatch samples the peak RSS of a running process, which cannot be read once it exited.
type rssWatch struct {
	pid  int
	peak atomic.Int64
	stop chan struct{}
	done chan struct{}
}

// rssEvery is how often a watched process is sampled. The peak is the kernel's high-water mark,
// so a sample misses only what grew after the last one.
const rssEvery = 20 * time.Millisecond

func watchRSS(pid int) *rssWatch {
	w := &rssWatch{pid: pid, stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(w.done)
		t := time.NewTicker(rssEvery)
		defer t.Stop()
		for {
			w.sample()
			select {
			case <-w.stop:
				return
			case <-t.C:
			}
		}
	}()
	return w
}

// sample reads the peak; it is called by the watch and by stop, just before SIGTERM.
func (w *rssWatch) sample() {
	v, err := peakRSS(w.pid)
	if err != nil {
		return // exited meanwhile: the last sample stands
	}
	for old := w.peak.Load(); v > old && !w.peak.CompareAndSwap(old, v); old = w.peak.Load() {
	}
}

// end stops sampling and returns the peak seen, 0 if none was.
func (w *rssWatch) end() int64 {
	close(w.stop)
	<-w.done
	return w.peak.Load()
}
