//go:build unix

package main

import (
	"fmt"
	"io"
	"slices"
	"text/tabwriter"
)

// The targets of the issue, for one core with acknowledgements on.
const (
	targetLinesPerSec = 2.7e6
	targetCPUPerGB    = 1.8
	targetRSSFull     = 32 << 20
	targetRSSSteady   = 16 << 20
	targetRSSIdle     = 8 << 20
	targetBinary      = 10e6
)

// figure is one measured quantity over the runs.
type figure struct {
	vals       []float64
	higherWins bool
}

// best is the highest or the lowest value, whichever wins.
func (f figure) best() float64 {
	if f.higherWins {
		return slices.Max(f.vals)
	}
	return slices.Min(f.vals)
}

// meets says whether the best value reaches target.
func (f figure) meets(target float64) string {
	if b := f.best(); f.higherWins && b >= target || !f.higherWins && b <= target {
		return "yes"
	}
	return "NO"
}

// collect takes one figure from each run.
func collect(rs []result, v func(result) float64, higherWins bool) figure {
	f := figure{higherWins: higherWins}
	for _, r := range rs {
		f.vals = append(f.vals, v(r))
	}
	return f
}

// unit says how a figure is printed: value/scale with digits decimals, then suffix.
type unit struct {
	scale  float64
	digits int
	suffix string
}

var (
	millions  = unit{1e6, 2, "M"}
	whole     = unit{1, 0, ""}
	twoDigits = unit{1, 2, ""}
	mib       = unit{1 << 20, 1, " MiB"}
	percent   = unit{0.01, 0, "%"}
	tenths    = unit{0.01, 1, "%"}
)

func (u unit) number(v float64) string { return fmt.Sprintf("%.*f", u.digits, v/u.scale) }
func (u unit) format(v float64) string { return u.number(v) + u.suffix }

// show renders the best value and, with several runs, the spread.
func (f figure) show(u unit) string {
	s := u.format(f.best())
	if len(f.vals) > 1 {
		s += fmt.Sprintf(" (%s–%s)", u.number(slices.Min(f.vals)), u.number(slices.Max(f.vals)))
	}
	return s
}

func printTable(w io.Writer, o *options, cpus cpuPlan, binary int64, ceil, full, steady, idle []result) {
	lps := func(r result) float64 { return r.linesPerSec() }
	mbps := func(r result) float64 { return r.mbPerSec() }
	cpg := func(r result) float64 { return r.cpuPerGB() }
	rss := func(r result) float64 { return float64(r.maxRSS) }
	share := func(r result) float64 { return r.cpuShare() }
	recv := func(r result) float64 { return r.recvShare() }
	waited := func(r result) float64 { return r.waitedShare() }
	sent := func(r result) float64 { return r.sentPerLine() }

	fullLPS := collect(full, lps, true)
	// Each run's agent against the ceiling of the same run, so that a busy moment of the
	// machine does not flatter either side.
	ratio := figure{higherWins: true}
	for i := range full {
		ratio.vals = append(ratio.vals, full[i].linesPerSec()/ceil[i].linesPerSec())
	}
	fullCPU := collect(full, cpg, false)
	fullRSS := collect(full, rss, false)
	steadyRSS := collect(steady, rss, false)
	idleRSS := collect(idle, rss, false)
	bin := figure{vals: []float64{float64(binary)}}

	fmt.Fprintf(w, "sidelog-agent: %d lines of %d bytes (%.0f MB), acks on, GOMAXPROCS=1, %s\n",
		o.lines, lineBytes, float64(o.lines)*lineBytes/1e6, cpus)
	fmt.Fprintf(w, "best of %d run(s) for each figure (spread min–max); MB and GB are 10^6 and 10^9 bytes of log\n\n", o.runs)
	tw := tabwriter.NewWriter(w, 0, 0, 3, ' ', 0)
	row := func(name, agent, target, met, ceiling string) {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", name, agent, target, met, ceiling)
	}
	row("", "agent", "target", "met", "ceiling: raw lines over TCP")
	row("lines/s", fullLPS.show(millions), "≥ "+millions.format(targetLinesPerSec), fullLPS.meets(targetLinesPerSec), collect(ceil, lps, true).show(millions))
	row("MB/s of log", collect(full, mbps, true).show(whole), "≥ "+whole.format(targetLinesPerSec*lineBytes/1e6), "", collect(ceil, mbps, true).show(whole))
	row("share of the ceiling", ratio.show(percent), "≈ 40%", "", "")
	row("CPU-seconds per GB of log", fullCPU.show(twoDigits), "≤ "+twoDigits.format(targetCPUPerGB), fullCPU.meets(targetCPUPerGB), collect(ceil, cpg, false).show(twoDigits))
	row("bytes sent per line", collect(full, sent, false).show(whole), "", "", collect(ceil, sent, false).show(whole))
	row("peak RSS, full speed", fullRSS.show(mib), "≤ "+mib.format(targetRSSFull), fullRSS.meets(targetRSSFull), "")
	row(fmt.Sprintf("peak RSS, %g MB/s", o.rate), steadyRSS.show(mib), "≤ "+mib.format(targetRSSSteady), steadyRSS.meets(targetRSSSteady), "")
	row(fmt.Sprintf("peak RSS, idle %s", o.idleFor), idleRSS.show(mib), "≤ "+mib.format(targetRSSIdle), idleRSS.meets(targetRSSIdle), "")
	row("binary size", fmt.Sprintf("%.1f MB", float64(binary)/1e6), fmt.Sprintf("≤ %.0f MB", targetBinary/1e6), bin.meets(targetBinary), "")
	row(fmt.Sprintf("CPU at %g MB/s (100%% = a core)", o.rate), collect(steady, share, false).show(percent), "", "", "")
	row("CPU idle (100% = a core)", collect(idle, share, false).show(tenths), "", "", "")
	row("full speed: receiver CPU", collect(full, recv, false).show(percent), "", "", collect(ceil, recv, false).show(percent))
	row("full speed: waited for its core", collect(full, waited, false).show(percent), "", "", collect(ceil, waited, false).show(percent))
	tw.Flush()
	var resent int64
	for _, r := range slices.Concat(full, steady) {
		resent += r.resent
	}
	if resent > 0 {
		fmt.Fprintf(w, "\n%d records arrived twice: the agent sent batches again (see the agent logs with --keep)\n", resent)
	}
	fmt.Fprintln(w, "\n(receiver CPU: the harness's own, to show that it did not limit the figure; waited for its core:\n"+
		"time the measured process was ready but other processes had its CPU, a busy machine, not the agent)")
}

// Targets of issue 13 against the OpenTelemetry Collector on the same file and core.
const (
	targetTimesCollectorLines = 3.0
	targetShareCollectorRSS   = 0.2
)

// printOTLPTable prints the agent over OTLP and, when it ran, the Collector.
func printOTLPTable(w io.Writer, o *options, agent, coll []result) {
	lps := func(r result) float64 { return r.linesPerSec() }
	cpg := func(r result) float64 { return r.cpuPerGB() }
	rss := func(r result) float64 { return float64(r.maxRSS) }
	sent := func(r result) float64 { return r.sentPerLine() }
	waited := func(r result) float64 { return r.waitedShare() }
	fmt.Fprintf(w, "\nOTLP/HTTP, same file, one core each, to a receiver in this process that answers every request:\n\n")
	tw := tabwriter.NewWriter(w, 0, 0, 3, ' ', 0)
	row := func(cells ...string) {
		for i, c := range cells {
			if i > 0 {
				fmt.Fprint(tw, "\t")
			}
			fmt.Fprint(tw, c)
		}
		fmt.Fprintln(tw)
	}
	if len(coll) == 0 {
		row("", "agent (otlp)")
		row("lines/s", collect(agent, lps, true).show(millions))
		row("CPU-seconds per GB of log", collect(agent, cpg, false).show(twoDigits))
		row("bytes sent per line", collect(agent, sent, false).show(whole))
		row("peak RSS", collect(agent, rss, false).show(mib))
		tw.Flush()
		fmt.Fprintln(w, "\nthe OpenTelemetry Collector was not measured: no --otelcol (make bench builds one with ../shared/tools/otelcol/install.sh)")
		return
	}
	// Each run's agent against the Collector of the same run.
	speed, mem := figure{higherWins: true}, figure{}
	for i := range agent {
		speed.vals = append(speed.vals, agent[i].linesPerSec()/coll[i].linesPerSec())
		mem.vals = append(mem.vals, float64(agent[i].maxRSS)/float64(coll[i].maxRSS))
	}
	times := unit{1, 1, "×"}
	row("", "agent (otlp)", "Collector (filelog → otlphttp)", "agent / Collector", "target", "met")
	row("lines/s", collect(agent, lps, true).show(millions), collect(coll, lps, true).show(millions), speed.show(times),
		"≥ "+times.format(targetTimesCollectorLines), speed.meets(targetTimesCollectorLines))
	row("CPU-seconds per GB of log", collect(agent, cpg, false).show(twoDigits), collect(coll, cpg, false).show(twoDigits), "", "", "")
	row("bytes sent per line", collect(agent, sent, false).show(whole), collect(coll, sent, false).show(whole), "", "", "")
	row("peak RSS", collect(agent, rss, false).show(mib), collect(coll, rss, false).show(mib), mem.show(percent),
		"≤ "+percent.format(targetShareCollectorRSS), mem.meets(targetShareCollectorRSS))
	row("waited for its core", collect(agent, waited, false).show(percent), collect(coll, waited, false).show(percent), "", "", "")
	tw.Flush()
	_ = o
}
