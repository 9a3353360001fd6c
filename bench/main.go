//go:build unix

// Command bench is the agent's throughput harness, run by `make bench`:
//
//	go run ./bench --agent bin/sidelog-agent [--lines 5000000] [--runs 3] [--rate 10] [--rate-for 10s] [--idle-for 5s]
//	    [--workloads single,java,json] [--mixed-lines 2000000] [--fluent-bit PATH] [--skip-single]
//
// It writes a file of 200-byte log lines and measures, in the same run:
//
//   - the ceiling: the file read line by line (bufio, one goroutine) and each line written raw to a
//     TCP connection on loopback whose other end discards, in a child process on one core;
//   - full speed: the real agent binary, on one core (GOMAXPROCS=1, pinned to the first CPU this
//     process may use), reading the file from its start and forwarding it to a forward-protocol
//     receiver in this process (on the other CPUs) that acknowledges every chunk, until the
//     receiver counted every line: lines/s, MB/s, CPU-seconds per GB of log and peak RSS;
//   - 10 MB/s: a writer appends at that rate while the agent ships: peak RSS and CPU;
//   - idle: the agent with an empty file: peak RSS and CPU;
//   - OTLP: the agent at full speed again, sending OTLP/HTTP to a receiver in this process, and
//     beside it, with --otelcol, the OpenTelemetry Collector as the Operator's sidecar runs it
//     (filelog receiver → memory limiter → batch → otlphttp exporter, compression off as the
//     agent's) on the same file, pinned to the same core, to the same receiver.
//
// It prints one table, each figure next to its target and the ceiling.
//
// Then it compares the agent with Fluent Bit on three workloads (compare.go, peer.go): single
// lines, Java stack traces of realistic depth between plain lines (the java multiline preset,
// Fluent Bit's multiline.parser java), and JSON objects of 15 fields, three nested (the json
// parser with the time from a field, Fluent Bit's json parser with time_key). Each file is read
// from its start by the agent and then by Fluent Bit (in_tail, file_cache_advise off, out_forward
// with require_ack_response), each pinned to the same core, to a counting receiver of this
// process; the table gives lines/s, CPU-seconds per GB and peak RSS of both and the targets
// against Fluent Bit. Fluent Bit is --fluent-bit, else $FLUENT_BIT, else fluent-bit on PATH;
// without one the harness says so and measures the agent alone. Targets are reported, not
// asserted: it exits non-zero only when something malfunctioned (records missing, a process
// failed). MB and GB are decimal (10^6, 10^9 bytes); RSS is in MiB.
//
// The agent runs with the configuration the injector writes (labels file, metrics port), so the
// records it sends are the ones a pod sends: each 200-byte line becomes an entry of about 510
// bytes with its file and pod identity. The one change is limits.flushInterval, 10ms instead of
// 1s, so that the last, partial batch of a run is not held back for a second.
//
// Peak RSS is the kernel's high-water mark of the process (VmHWM), sampled while it runs: the
// rusage of an exited child would include this harness's own size, which Linux carries over into
// a child forked with vfork.
package main

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"time"
)

// lineBytes is the length of every line, newline included.
const lineBytes = 200

type options struct {
	agent   string
	lines   int
	runs    int
	rate    float64 // MB/s of the steady run
	rateFor time.Duration
	idleFor time.Duration
	keep    bool
	otelcol string
	// The three-workload comparison with Fluent Bit.
	workloads  string // comma-separated workload names; "" for none
	mixedLines int    // lines of the java and json files
	fluentBit  string
	skipSingle bool // skip the single-line table (ceiling, 10 MB/s, idle)
}

func main() {
	// The ceiling's sender is this program again, started pinned like the agent.
	if len(os.Args) > 1 && os.Args[1] == ceilingCommand {
		if err := sendRaw(os.Args[2:]); err != nil {
			fmt.Fprintln(os.Stderr, "bench ceiling:", err)
			os.Exit(1)
		}
		return
	}
	var o options
	flag.StringVar(&o.agent, "agent", "", "the sidelog-agent binary to measure (required)")
	flag.IntVar(&o.lines, "lines", 5_000_000, "lines of 200 bytes in the full-speed file")
	flag.IntVar(&o.runs, "runs", 3, "runs of each measurement; the table shows the best and the spread")
	flag.Float64Var(&o.rate, "rate", 10, "MB/s written during the steady run")
	flag.DurationVar(&o.rateFor, "rate-for", 10*time.Second, "length of the steady run")
	flag.DurationVar(&o.idleFor, "idle-for", 5*time.Second, "length of the idle run")
	flag.BoolVar(&o.keep, "keep", false, "keep the work directory (files, agent logs) and print its path")
	flag.StringVar(&o.otelcol, "otelcol", "", "an OpenTelemetry Collector binary with file_log and otlp_http (../shared/tools/otelcol/install.sh) to measure beside the agent; empty skips it")
	flag.StringVar(&o.workloads, "workloads", "single,java,json", "workloads of the comparison with Fluent Bit (single, java, json); empty for none")
	flag.IntVar(&o.mixedLines, "mixed-lines", 2_000_000, "lines of the java and json files of the comparison")
	flag.StringVar(&o.fluentBit, "fluent-bit", "", "the Fluent Bit binary of the comparison (default $FLUENT_BIT, else fluent-bit on PATH)")
	flag.BoolVar(&o.skipSingle, "skip-single", false, "skip the single-line table (ceiling, steady rate, idle) and run only the comparison")
	flag.Parse()
	if err := run(&o); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

func run(o *options) error {
	switch {
	case o.agent == "":
		return errors.New("--agent: the sidelog-agent binary is required (make build puts it in bin/)")
	case o.lines <= 0 || o.runs <= 0 || o.rate <= 0 || o.rateFor <= 0 || o.idleFor <= 0 || o.mixedLines <= 0:
		return errors.New("--lines, --runs, --rate, --rate-for, --idle-for and --mixed-lines must be positive")
	}
	agent, err := filepath.Abs(o.agent)
	if err != nil {
		return fmt.Errorf("--agent: %w", err)
	}
	fi, err := os.Stat(agent)
	if err != nil {
		return fmt.Errorf("--agent: %w", err)
	}
	o.agent = agent
	cpus, err := placeCPUs()
	if err != nil {
		return err
	}

	work, err := os.MkdirTemp("", "sidelog-bench-")
	if err != nil {
		return err
	}
	if o.keep {
		fmt.Fprintln(os.Stderr, "work directory:", work)
	} else {
		defer os.RemoveAll(work)
	}
	b := &bench{opts: o, cpus: cpus, work: work}
	var ws []workload
	if o.workloads != "" {
		if ws, err = workloadsNamed(o.workloads); err != nil {
			return err
		}
	}
	var note string
	if len(ws) > 0 {
		b.fluentBit, note = fluentBitPath(o.fluentBit)
		if note != "" {
			fmt.Fprintln(os.Stderr, "bench:", note)
		}
	}
	if !o.skipSingle {
		if err := b.single(fi.Size()); err != nil {
			return err
		}
	}
	if len(ws) > 0 {
		cs, err := b.compare(ws)
		if err != nil {
			return err
		}
		printComparison(os.Stdout, o, cpus, b.fluentBit, note, cs)
	}
	return nil
}

// single measures the single-line table: the ceiling, full speed, a steady rate and idle.
func (b *bench) single(binary int64) error {
	o := b.opts
	fmt.Fprintf(os.Stderr, "writing %d lines of %d bytes...\n", o.lines, lineBytes)
	file, err := b.writeFile()
	if err != nil {
		return err
	}
	if o.otelcol != "" {
		if _, err := os.Stat(o.otelcol); err != nil {
			fmt.Fprintf(os.Stderr, "--otelcol: %v: the Collector is skipped\n", err)
			o.otelcol = ""
		}
	}
	var ceil, full, steady, idle, otlpFull, coll []result
	for i := range o.runs {
		fmt.Fprintf(os.Stderr, "run %d of %d: ceiling", i+1, o.runs)
		r, err := b.ceiling(file)
		if err != nil {
			return fmt.Errorf("ceiling: %w", err)
		}
		ceil = append(ceil, r)
		fmt.Fprint(os.Stderr, ", full speed")
		if r, err = b.fullSpeed(file, false); err != nil {
			return fmt.Errorf("full speed: %w", err)
		}
		full = append(full, r)
		fmt.Fprint(os.Stderr, ", OTLP")
		if r, err = b.fullSpeed(file, true); err != nil {
			return fmt.Errorf("full speed over OTLP: %w", err)
		}
		otlpFull = append(otlpFull, r)
		if o.otelcol != "" {
			fmt.Fprint(os.Stderr, ", Collector")
			if r, err = b.collector(file); err != nil {
				return fmt.Errorf("the Collector: %w", err)
			}
			coll = append(coll, r)
		}
		fmt.Fprintf(os.Stderr, ", %g MB/s", o.rate)
		if r, err = b.steady(); err != nil {
			return fmt.Errorf("%g MB/s: %w", o.rate, err)
		}
		steady = append(steady, r)
		fmt.Fprint(os.Stderr, ", idle\n")
		if r, err = b.idle(); err != nil {
			return fmt.Errorf("idle: %w", err)
		}
		idle = append(idle, r)
	}
	printTable(os.Stdout, o, b.cpus, binary, ceil, full, steady, idle)
	printOTLPTable(os.Stdout, o, otlpFull, coll)
	return nil
}
