//go:build unix

package main

import (
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"text/tabwriter"
)

// The targets of the three-workload comparison (issue #12), each against Fluent Bit in the same
// run: at least 5× its lines per second, at most an eighth of its CPU per line, and a peak RSS
// at or under 24 MiB.
const (
	targetTimesFluentBit = 5
	targetCPUFraction    = 8
	targetRSSCompare     = 24 << 20
)

// comparison is what the runs of one workload measured.
type comparison struct {
	w         workload
	lines     int
	records   int
	bytes     int64
	agent, fb []peerRun
}

// compare writes each workload's file and runs the agent and Fluent Bit on it, runs times.
func (b *bench) compare(ws []workload) ([]comparison, error) {
	var out []comparison
	for _, w := range ws {
		dir, err := b.mkdir("workload-" + w.name)
		if err != nil {
			return nil, err
		}
		file := filepath.Join(dir, "app.log")
		n := b.opts.mixedLines
		if w.name == "single" {
			n = b.opts.lines
		}
		fmt.Fprintf(os.Stderr, "%s: writing about %d lines...\n", w.name, n)
		lines, records, err := w.write(file, n)
		if err != nil {
			return nil, err
		}
		fi, err := os.Stat(file)
		if err != nil {
			return nil, err
		}
		c := comparison{w: w, lines: lines, records: records, bytes: fi.Size()}
		for i := range b.opts.runs {
			fmt.Fprintf(os.Stderr, "%s, run %d of %d: agent", w.name, i+1, b.opts.runs)
			r, err := b.agentOn(w, file, lines, records)
			if err != nil {
				return nil, err
			}
			c.agent = append(c.agent, r)
			if b.fluentBit != "" {
				fmt.Fprint(os.Stderr, ", fluent-bit")
				r, err := b.fluentBitOn(w, file, lines)
				if err != nil {
					return nil, err
				}
				c.fb = append(c.fb, r)
			}
			fmt.Fprintln(os.Stderr)
		}
		out = append(out, c)
		if !b.opts.keep {
			os.Remove(file) // a GB or more each: keep the disk for the next
		}
	}
	return out, nil
}

// fluentBitVersion returns the first line of `fluent-bit --version`.
func fluentBitVersion(path string) string {
	out, err := exec.Command(path, "--version").Output()
	if err != nil {
		return filepath.Base(path)
	}
	first, _, _ := strings.Cut(strings.TrimSpace(string(out)), "\n")
	return first
}

func results(rs []peerRun) []result {
	out := make([]result, len(rs))
	for i, r := range rs {
		out[i] = r.result
	}
	return out
}

// printComparison prints the three-workload table.
func printComparison(w io.Writer, o *options, cpus cpuPlan, fluentBit, note string, cs []comparison) {
	lps := func(r result) float64 { return r.linesPerSec() }
	mbps := func(r result) float64 { return r.mbPerSec() }
	cpg := func(r result) float64 { return r.cpuPerGB() }
	rss := func(r result) float64 { return float64(r.maxRSS) }
	waited := func(r result) float64 { return r.waitedShare() }

	peer := "Fluent Bit: not run"
	if fluentBit != "" {
		peer = fluentBitVersion(fluentBit) + " (in_tail, file_cache_advise off, out_forward require_ack_response)"
	}
	fmt.Fprintf(w, "\nthree workloads, each file read from its start by the agent and by the peer in turn, on the same core, acks on\n")
	fmt.Fprintf(w, "peer: %s; %s; best of %d run(s) (spread min–max)\n", peer, cpus, o.runs)
	if note != "" {
		fmt.Fprintln(w, note)
	}
	fmt.Fprintln(w)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "workload\tmeasure\tagent\tfluent-bit\tagent vs fluent-bit\ttarget\tmet")
	for _, c := range cs {
		a, f := results(c.agent), results(c.fb)
		name := fmt.Sprintf("%s: %d lines, %.0f MB", c.w.title, c.lines, float64(c.bytes)/1e6)
		show := func(rs []result, v func(result) float64, higher bool, u unit) string {
			if len(rs) == 0 {
				return "-"
			}
			return collect(rs, v, higher).show(u)
		}
		// Ratios per run, agent and peer of the same run side by side, so that a busy moment of
		// the machine flatters neither.
		speed, cpuLess := figure{higherWins: true}, figure{higherWins: true}
		for i := range min(len(a), len(f)) {
			speed.vals = append(speed.vals, a[i].linesPerSec()/f[i].linesPerSec())
			cpuLess.vals = append(cpuLess.vals, f[i].cpuPerGB()/a[i].cpuPerGB())
		}
		ratio := func(f figure, target float64) (string, string) {
			if len(f.vals) == 0 {
				return "-", ""
			}
			return f.show(unit{1, 1, "×"}), f.meets(target)
		}
		sr, sm := ratio(speed, targetTimesFluentBit)
		cr, cm := ratio(cpuLess, targetCPUFraction)
		agentRSS := collect(a, rss, false)
		fmt.Fprintf(tw, "%s\tlines/s\t%s\t%s\t%s\t≥ %d×\t%s\n", name, show(a, lps, true, millions), show(f, lps, true, millions), sr, targetTimesFluentBit, sm)
		fmt.Fprintf(tw, "\tMB/s of log\t%s\t%s\t\t\t\n", show(a, mbps, true, whole), show(f, mbps, true, whole))
		fmt.Fprintf(tw, "\tCPU-seconds per GB\t%s\t%s\t%s less\t≥ %d× less\t%s\n", show(a, cpg, false, twoDigits), show(f, cpg, false, twoDigits), cr, targetCPUFraction, cm)
		fmt.Fprintf(tw, "\tpeak RSS\t%s\t%s\t\t≤ %s\t%s\n", show(a, rss, false, mib), show(f, rss, false, mib), mib.format(targetRSSCompare), agentRSS.meets(targetRSSCompare))
		var fbRecords string = "-"
		if len(c.fb) > 0 {
			fbRecords = fmt.Sprint(c.fb[len(c.fb)-1].records)
		}
		fmt.Fprintf(tw, "\trecords\t%d\t%s\t\t\t\n", c.records, fbRecords)
		fmt.Fprintf(tw, "\twaited for its core\t%s\t%s\t\t\t\n", show(a, waited, false, percent), show(f, waited, false, percent))
	}
	tw.Flush()
	fmt.Fprintln(w, "\n(records: how many the receiver counted; a stack trace is one record for the agent, which joins the ERROR\n"+
		"line with its trace, and two for Fluent Bit's java parser, which starts a record at the exception line)")
}
