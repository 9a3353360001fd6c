//go:build unix

package main

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/sidelog/sidelog/sidecar/forward/forwardtest"
)

// The three-workload comparison: the agent and Fluent Bit, each pinned to the same one core in
// turn, read the same file of each workload from its start and forward it, acknowledgements on,
// to a receiver of this process that only counts.
//
// Both are measured the same way. The receiver's count is sampled every countEvery; a run ends
// when the count has not moved for quiet. Its time is from the start of the process to the
// arrival of the last record but one: a multiline reader cannot know that the file's last
// record is complete, so both hold it for their flush timeout (1s for the agent, Fluent Bit's
// multiline flush for it), a latency that is not throughput. Its CPU time is the process's
// run time (all threads, /proc/<pid>/task/*/schedstat) at that moment; its peak RSS, VmHWM.
// Lines per second are the file's lines, so that records joined differently count the same.

const (
	countEvery = 5 * time.Millisecond
	quiet      = 2500 * time.Millisecond
)

// fluentBitPath finds Fluent Bit: --fluent-bit, else $FLUENT_BIT, else fluent-bit on PATH.
func fluentBitPath(flagValue string) (string, string) {
	if flagValue != "" {
		return flagValue, ""
	}
	if p := os.Getenv("FLUENT_BIT"); p != "" {
		return p, ""
	}
	if p, err := exec.LookPath("fluent-bit"); err == nil {
		return p, ""
	}
	return "", "Fluent Bit not found (neither --fluent-bit, $FLUENT_BIT nor fluent-bit on PATH): measuring the agent alone"
}

// peerRun is what one run of one process on one workload measured.
type peerRun struct {
	result
	records int64 // records the receiver counted
}

// untilQuiet samples srv's count until it has not moved for quiet (or the process exited, or
// limit passed). It returns when the count first reached the final count less one, that count,
// and the process's CPU time then.
func untilQuiet(srv interface{ Count() int64 }, pid int, exited <-chan struct{}, limit time.Duration) (at time.Time, count int64, cpu time.Duration, err error) {
	type step struct {
		at    time.Time
		count int64
		cpu   time.Duration
	}
	var steps []step
	changed := time.Now()
	end := changed.Add(limit)
	for {
		select {
		case <-exited:
			return at, count, cpu, errors.New("the process exited during the run")
		case <-time.After(countEvery):
		}
		now := time.Now()
		if c := srv.Count(); c != count {
			run, _, _ := schedstat(pid)
			steps = append(steps, step{now, c, run})
			count, changed = c, now
		}
		if count > 0 && now.Sub(changed) >= quiet {
			break
		}
		if now.After(end) {
			return at, count, cpu, fmt.Errorf("timed out after %s with %d records", limit, count)
		}
	}
	for _, s := range steps {
		if s.count >= count-1 {
			return s.at, count, s.cpu, nil
		}
	}
	return at, count, cpu, errors.New("no records")
}

// agentOn runs the agent on file with workload w's input.
func (b *bench) agentOn(w workload, file string, lines, records int) (peerRun, error) {
	fi, err := os.Stat(file)
	if err != nil {
		return peerRun{}, err
	}
	b.input = w.input
	defer func() { b.input = nil }()
	a, err := b.startAgent(filepath.Dir(file), false)
	if err != nil {
		return peerRun{}, err
	}
	at, count, cpu, err := untilQuiet(a.srv, a.cmd.Process.Pid, a.exited, deadline(lines))
	if err != nil {
		return peerRun{}, a.fail(err)
	}
	a.rss.sample()
	_, waited, _ := schedstat(a.cmd.Process.Pid)
	r, err := a.stop(int(count))
	if err != nil {
		return peerRun{}, err
	}
	if count != int64(records) {
		return peerRun{}, fmt.Errorf("agent, %s: the receiver counted %d records, want %d", w.name, count, records)
	}
	r.lines, r.bytes, r.elapsed, r.cpu, r.waited = lines, fi.Size(), at.Sub(a.started), cpu, waited
	return peerRun{result: r, records: count}, nil
}

// fluentBitOn runs Fluent Bit on file with workload w's parser, in_tail to out_forward with
// require_ack_response, as the shared tools' README sets it up for a benchmark.
func (b *bench) fluentBitOn(w workload, file string, lines int) (peerRun, error) {
	fi, err := os.Stat(file)
	if err != nil {
		return peerRun{}, err
	}
	dir, err := b.mkdir("fluent-bit-" + w.name)
	if err != nil {
		return peerRun{}, err
	}
	srv, err := forwardtest.Start(forwardtest.Options{CountOnly: true})
	if err != nil {
		return peerRun{}, err
	}
	defer srv.Close()
	_, port, _ := splitAddr(srv.Addr())
	conf := fmt.Sprintf(`[SERVICE]
    flush 1
    grace 1
    log_level warn
    storage.path %s
[INPUT]
    name tail
    path %s
    read_from_head true
    file_cache_advise off
    db %s
%s[OUTPUT]
    name forward
    match *
    host 127.0.0.1
    port %s
    require_ack_response true
`, filepath.Join(dir, "storage"), file, filepath.Join(dir, "tail.db"), indent(w.fluentBit), port)
	confPath := filepath.Join(dir, "fluent-bit.conf")
	if err := os.WriteFile(confPath, []byte(conf), 0o644); err != nil {
		return peerRun{}, err
	}
	args := []string{"-c", confPath}
	if w.parsers != "" {
		p := filepath.Join(dir, "parsers.conf")
		if err := os.WriteFile(p, []byte(w.parsers), 0o644); err != nil {
			return peerRun{}, err
		}
		args = append(args, "-R", p)
	}
	logFile, err := os.Create(filepath.Join(dir, "fluent-bit.log"))
	if err != nil {
		return peerRun{}, err
	}
	defer logFile.Close()
	cmd := exec.Command(b.fluentBit, args...)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	started, err := b.cpus.start(cmd)
	if err != nil {
		return peerRun{}, fmt.Errorf("starting %s: %w", b.fluentBit, err)
	}
	rss := watchRSS(cmd.Process.Pid)
	exited := make(chan struct{})
	var waitErr error
	go func() { waitErr = cmd.Wait(); close(exited) }()
	at, count, cpu, err := untilQuiet(srv, cmd.Process.Pid, exited, deadline(lines)*4)
	rss.sample()
	_, waited, _ := schedstat(cmd.Process.Pid)
	_ = cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-exited:
	case <-time.After(30 * time.Second):
		_ = cmd.Process.Kill()
		<-exited
	}
	peak := rss.end()
	if err != nil {
		log, _ := os.ReadFile(logFile.Name())
		return peerRun{}, fmt.Errorf("fluent-bit, %s: %w (exit: %v)\nits log:\n%s", w.name, err, waitErr, log)
	}
	r := result{lines: lines, bytes: fi.Size(), elapsed: at.Sub(started), cpu: cpu, maxRSS: peak, waited: waited, sent: srv.Bytes()}
	return peerRun{result: r, records: count}, nil
}

func splitAddr(addr string) (string, string, error) {
	for i := len(addr) - 1; i >= 0; i-- {
		if addr[i] == ':' {
			if _, err := strconv.Atoi(addr[i+1:]); err != nil {
				return "", "", err
			}
			return addr[:i], addr[i+1:], nil
		}
	}
	return "", "", fmt.Errorf("%q has no port", addr)
}

// indent indents each line of s as a setting of a section.
func indent(s string) string {
	var b strings.Builder
	for line := range strings.Lines(s) {
		b.WriteString("    " + line)
	}
	return b.String()
}
