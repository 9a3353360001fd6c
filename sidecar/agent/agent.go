// Package agent wires the stages of sidelog-agent together: tail (find, identify, read, join)
// → record (parse, enrich, encode) → batch → forward (send, acknowledge) → checkpoint.
//
// One goroutine reads every input in turn and encodes records straight into the current batch of
// their input; a full batch goes to the forward client, whose Send blocks while the in-flight limit
// is reached, so a slow or absent aggregator stops reading instead of filling memory: the files
// are the buffer. Positions are acknowledged per file only when the batch that carried them is,
// and another goroutine saves them to the state directory.
package agent

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sidelog/sidelog/sidecar/checkpoint"
	"github.com/sidelog/sidelog/sidecar/config"
	"github.com/sidelog/sidelog/sidecar/find"
	"github.com/sidelog/sidelog/sidecar/forward"
	"github.com/sidelog/sidelog/sidecar/metrics"
	"github.com/sidelog/sidelog/sidecar/multiline"
	"github.com/sidelog/sidelog/sidecar/otlp"
	"github.com/sidelog/sidelog/sidecar/parse"
	"github.com/sidelog/sidelog/sidecar/record"
	"github.com/sidelog/sidelog/sidecar/tail"
)

// labelsInterval is how often the labels file is read again. The kubelet rewrites it when the
// pod's labels change (a rollout tool relabelling pods, kubectl label); records read after that
// carry the new labels.
var labelsInterval = 5 * time.Second

// checkpointInterval is how often acknowledged positions are written to the state directory. A
// crash loses at most this much of acknowledged progress, which at-least-once turns into
// duplicates, never into loss.
var checkpointInterval = time.Second

// Options are what the agent needs besides its configuration.
type Options struct {
	// StateDir holds the checkpoint (an emptyDir in the pod).
	StateDir string
	// Pod is the identity every record carries. Its Owners and NamespaceLabels, when nil, are
	// the configuration's.
	Pod record.Pod
	// Logger receives the agent's own log; nil for slog.Default().
	Logger *slog.Logger
	// Registry receives the metrics; nil for a new one.
	Registry *metrics.Registry
	// ReceiptFile is where Run writes the delivery receipt (the container's termination message
	// file), in at most ReceiptMaxBytes (zero: receipt.MaxBytes); empty for none. Version is the
	// agent's version, which the receipt and the OTLP scope carry.
	ReceiptFile, Version string
	ReceiptMaxBytes      int
}

// upstream is what the agent needs of a protocol's client besides Send.
type upstream interface {
	Run(ctx context.Context) error
	Drain(ctx context.Context) (batches, records int, err error)
}

// encoder appends one record of a file to a batch in the upstream's protocol.
type encoder interface {
	Append(dst []byte, t time.Time, line []byte) (out []byte, parsed bool)
	// SetEventTime makes the encoder read a parsed line's time from it (parse.TimeFormat).
	SetEventTime(f *parse.TimeFormat, miss func())
}

// newEncoder returns the encoder of a file of container for the upstream's protocol, with the
// json parser's scratch tr that the container's files share.
func (a *Agent) newEncoder(container, file, parser string, tr *parse.Transcoder) encoder {
	if a.otl != nil {
		return otlp.NewEncoderWith(file, parser, tr)
	}
	return record.NewEncoderWith(a.pod, container, file, parser, tr)
}

// send hands a batch of in's records to the upstream client; Send blocks while the in-flight
// limit is reached.
func (a *Agent) send(in *stream, records []byte, count int, acked func(rejected int)) error {
	if a.otl == nil {
		return a.fwd.Send(in.ctx, &forward.Batch{Tag: in.tag, Entries: records, Count: count, Acked: func() { acked(0) }})
	}
	// The resource carries the pod's identity: built again once after the labels changed.
	if in.resource == nil || in.resourceGen != a.podGen {
		in.resource, in.resourceGen = otlp.AppendResource(nil, a.pod, in.cfg.Container), a.podGen
	}
	b := &otlp.Batch{Resource: in.resource, Records: records, Count: count, Container: in.cfg.Container}
	b.Acked = func() { acked(b.Rejected) }
	return a.otl.Send(in.ctx, b)
}

// Agent tails the configured files and forwards their records.
type Agent struct {
	cfg  *config.Config
	opts Options
	log  *slog.Logger
	reg  *metrics.Registry
	// client is fwd or otl, whichever the upstream's protocol asks for.
	client upstream
	fwd    *forward.Client
	otl    *otlp.Client
	inputs []*stream
	// free holds batch buffers whose batch was acknowledged, so that steady state allocates none.
	free chan []byte

	parseErrors *metrics.Counter
	saveErrors  *metrics.Counter

	// pod is the identity records carry; podGen counts its changes, so that each file's
	// encoder (which holds the identity pre-encoded) is rebuilt once after one. Both belong to
	// the tail loop's goroutine, like labels and labelsRead.
	pod        record.Pod
	podGen     int
	labels     []byte // the labels file as last read
	labelsRead time.Time

	// saved is what the last successful checkpoint save wrote, so that an agent with nothing new
	// acknowledged does not rewrite and sync the same file every second. Used by one goroutine at
	// a time: the checkpoint loop, then Run once the loop ended.
	saved     []checkpoint.Entry
	savedOnce bool

	// draining is set once the stop signal came. From then on every acknowledged batch is saved
	// at once (ackedWhileDraining wakes the checkpoint loop): a native sidecar is signalled only
	// after the app containers exited, inside the same grace period, so it may be killed before
	// its own drain deadline, and what was acknowledged by then must not be sent again.
	draining           atomic.Bool
	ackedWhileDraining chan struct{}
	// drained is set when the drain finished with every record acknowledged (drainEnded).
	drained atomic.Bool
}

// New builds an agent from a validated configuration and resumes from the checkpoint in
// opts.StateDir, if there is one.
func New(cfg *config.Config, opts Options) (*Agent, error) {
	a := &Agent{cfg: cfg, opts: opts, log: opts.Logger, reg: opts.Registry, pod: opts.Pod,
		ackedWhileDraining: make(chan struct{}, 1)}
	if a.log == nil {
		a.log = slog.Default()
	}
	// What the downward API cannot give, the injector and the webhook put in the configuration.
	if a.pod.Owners == nil {
		a.pod.Owners = cfg.Owners
	}
	if a.pod.NamespaceLabels == nil {
		a.pod.NamespaceLabels = cfg.NamespaceLabels
	}
	if a.reg == nil {
		a.reg = metrics.NewRegistry()
	}
	a.parseErrors = a.reg.Counter("sidelog_parse_errors_total", "Lines that the json parser could not parse and sent as a plain log string.")
	a.reg.CounterFunc("sidelog_multiline_budget_flushes_total",
		"Multiline records sent before their end because pending records held their whole memory budget; the next line started a new record.",
		func() float64 { return float64(multiline.Shared.Flushes()) })
	a.reg.GaugeFunc("sidelog_multiline_budget_held_bytes", "Bytes of pending multiline records charged to their memory budget.",
		func() float64 { return float64(multiline.Shared.Held()) })
	a.saveErrors = a.reg.Counter("sidelog_checkpoint_errors_total", "Checkpoint saves that failed (the agent keeps going; a restart may resend more).")
	inflight := cfg.Limits.MaxInflightBatches
	a.free = make(chan []byte, inflight+len(cfg.Inputs))

	if cfg.Upstream.Protocol == config.ProtocolOTLP {
		client, err := otlp.New(cfg.Upstream, inflight, a.reg, a.log, otlp.WithVersion(opts.Version))
		if err != nil {
			return nil, fmt.Errorf("upstream: %w", err)
		}
		a.client, a.otl = client, client
	} else {
		client, err := forward.New(cfg.Upstream, inflight, a.reg, a.log)
		if err != nil {
			return nil, fmt.Errorf("upstream: %w", err)
		}
		a.client, a.fwd = client, client
	}

	saved, err := checkpoint.Load(opts.StateDir)
	if err != nil {
		// At-least-once: a checkpoint we cannot read means resending, never skipping.
		a.log.Error("checkpoint unreadable, reading every file from its start", "dir", opts.StateDir, "err", err)
		saved = nil
	}
	restarted := a.markStarted()
	for _, ic := range cfg.Inputs {
		in := &stream{
			agent:     a,
			cfg:       ic,
			tag:       ic.Tag,
			batchSize: cfg.Limits.BatchBytes,
		}
		if in.tag == "" {
			in.tag = record.Tag(opts.Pod, ic.Container)
		}
		if ic.TimeKey != "" && ic.Parser == config.ParserJSON {
			tf, err := parse.NewTimeFormat(cmp.Or(ic.TimeFormat, config.TimeRFC3339))
			if err != nil {
				return nil, fmt.Errorf("input %q: timeFormat: %w", ic.Container, err)
			}
			in.tr.TimeKey, in.timeFormat = ic.TimeKey, tf
			in.timeErrors = a.reg.Counter("sidelog_time_parse_errors_total",
				"Parsed lines whose time field (timeKey) was missing or not a time in timeFormat: stamped with the time they were read.",
				"container", ic.Container)
		}
		var mine []checkpoint.Entry
		for _, e := range saved {
			if e.Container == ic.Container {
				mine = append(mine, e)
			}
		}
		topts := tail.Options{
			Paths:        ic.Paths,
			Exclude:      ic.Exclude,
			Multiline:    ic.Multiline,
			MaxLineBytes: cfg.Limits.MaxLineBytes,
			MaxFiles:     cfg.Limits.MaxFiles,
			Positions:    mine,
			Metrics:      a.reg,
			Container:    ic.Container,
			ScanInterval: cfg.Limits.PollInterval.D(),
			Logger:       a.log,
			ReadFrom:     readFrom(ic.ReadFrom, restarted),
			IgnoreOlder:  ic.IgnoreOlder.D(),
		}
		topts.Cleanup, topts.CleanupSettle = ic.Cleanup, ic.CleanupSettle.D()
		if len(ic.Cleanup) > 0 {
			if topts.TailedElsewhere, err = tailedElsewhere(cfg.Inputs, ic.Container); err != nil {
				return nil, err
			}
		}
		topts.RateLimit = ic.RateLimit
		t, err := tail.New(topts, in)
		if err != nil {
			return nil, fmt.Errorf("input %q: %w", ic.Container, err)
		}
		in.tailer = t
		a.inputs = append(a.inputs, in)
	}
	return a, nil
}

// run is Run (receipt.go) but for the receipt.
func (a *Agent) run(ctx context.Context) error {
	// The client and the checkpointer outlive ctx: they are needed while draining.
	bg, stop := context.WithCancel(context.Background())
	defer stop()
	var wg sync.WaitGroup
	wg.Go(func() {
		if err := a.client.Run(bg); err != nil && !errors.Is(err, context.Canceled) {
			a.log.Error("upstream client stopped", "err", err)
		}
	})
	wg.Go(func() { a.checkpointLoop(bg) })
	if a.cfg.MetricsAddr != "" {
		srv, err := a.serveHTTP(a.cfg.MetricsAddr)
		if err != nil {
			stop()
			wg.Wait()
			return err
		}
		defer srv.Close()
	}

	// Sends outlive ctx too, until the drain deadline: a Send blocked when the stop signal comes
	// (every batch in flight) must keep its batch, or the acknowledgements of the batches read
	// after it would move the checkpoint past records that were never sent.
	sendCtx, endSends := a.sendContext(ctx)
	defer endSends()
	// Draining starts with the signal, not when the tail loop gets to it: a Send blocked at the
	// signal may be waiting for the very acknowledgements that must be saved at once.
	stopDraining := context.AfterFunc(ctx, func() {
		a.draining.Store(true)
		a.acked()
	})
	defer stopDraining()
	err := a.tailLoop(ctx, sendCtx)
	a.writeReceipt(nil)
	drainErr := a.drain(sendCtx)
	a.drainEnded(drainErr)
	stop()
	wg.Wait()
	if saveErr := a.saveCheckpoint(); saveErr != nil {
		drainErr = errors.Join(drainErr, saveErr)
	}
	for _, in := range a.inputs {
		if cerr := in.tailer.Close(); cerr != nil {
			a.log.Warn("closing files", "container", in.cfg.Container, "err", cerr)
		}
	}
	if err != nil && !errors.Is(err, context.Canceled) {
		return errors.Join(err, drainErr)
	}
	return drainErr
}

// tailLoop reads every input in turn until ctx ends. It sleeps only when a whole round found
// nothing to read: a poll interval, or less when a batch is due before that, so that a batch waits
// the flush interval and not up to a poll interval more. The first round runs even if ctx has
// already ended, so that an agent stopped while it was starting still finds the files it must
// drain.
func (a *Agent) tailLoop(ctx, sendCtx context.Context) error {
	poll := a.cfg.Limits.PollInterval.D()
	flushEvery := a.cfg.Limits.FlushInterval.D()
	timer := time.NewTimer(poll)
	defer timer.Stop()
	for {
		now := time.Now()
		a.refreshLabels(now)
		var read int64
		for _, in := range a.inputs {
			in.ctx, in.now = sendCtx, now
			n, err := in.tailer.Poll(now)
			if err != nil {
				a.log.Warn("polling files", "container", in.cfg.Container, "err", err)
			}
			read += n
			if in.count > 0 && time.Since(in.started) >= flushEvery {
				in.flush()
			}
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if read > 0 {
			continue
		}
		sleep := poll
		for _, in := range a.inputs {
			if in.count > 0 {
				sleep = min(sleep, flushEvery-time.Since(in.started))
			}
			// An input held back by its rate limit is read again as soon as the limit allows,
			// not a poll interval later: its reading stays even, and no other input waits for it.
			if readyIn, throttled := in.tailer.Throttled(now); throttled {
				sleep = min(sleep, readyIn)
			}
		}
		timer.Reset(max(sleep, 0))
		select {
		case <-ctx.Done():
		case <-timer.C:
		}
	}
}

// refreshLabels reads the labels file again once labelsInterval has passed, and takes the pod's
// new labels when it changed. A file that cannot be read or parsed leaves the labels as they
// were, with a warning.
func (a *Agent) refreshLabels(now time.Time) {
	file := a.cfg.LabelsFile
	if file == "" || now.Sub(a.labelsRead) < labelsInterval {
		return
	}
	a.labelsRead = now
	b, err := os.ReadFile(file)
	if err != nil {
		a.log.Warn("reading the pod's labels again; keeping the last ones", "file", file, "err", err)
		return
	}
	if bytes.Equal(b, a.labels) {
		return
	}
	labels, err := ParseLabels(b)
	if err != nil {
		a.log.Warn("reading the pod's labels again; keeping the last ones", "file", file, "err", err)
		return
	}
	a.labels = b
	if maps.Equal(labels, a.pod.Labels) {
		return
	}
	a.pod.Labels = labels
	a.podGen++
	a.log.Info("the pod's labels changed: records read from now on carry the new ones", "labels", len(labels))
}

// sendContext returns the context of Send: it ends DrainTimeout after ctx does, so that the
// deadline counts from the stop signal, as the kubelet's grace period does.
func (a *Agent) sendContext(ctx context.Context) (context.Context, context.CancelFunc) {
	sendCtx, cancel := context.WithCancel(context.Background())
	stop := context.AfterFunc(ctx, func() { time.AfterFunc(a.cfg.DrainTimeout.D(), cancel) })
	return sendCtx, func() { stop(); cancel() }
}

// drain reads every file to its end, sends what is left and waits for the acknowledgements, all
// before ctx ends, DrainTimeout after the stop signal.
//
// The deadline counts from the agent's own signal: it cannot see when the pod's grace period
// began (a native sidecar is signalled after the app containers exited, inside the same grace
// period). So it spends whatever time it gets in the order that loses least if it is killed
// first: a full batch is sent before more is read (Record sends it, and Send blocks while the
// in-flight batches are unacknowledged), and every acknowledged batch is checkpointed at once.
func (a *Agent) drain(ctx context.Context) error {
	a.log.Info("draining", "timeout", a.cfg.DrainTimeout.D())
	// The inputs with the least left to ship go first: one far behind (its rate limit, a burst)
	// may spend the whole deadline on its backlog, which must not cost another its last lines.
	order := slices.Clone(a.inputs)
	slices.SortStableFunc(order, func(x, y *stream) int {
		bx, _ := x.tailer.Unacknowledged()
		by, _ := y.tailer.Unacknowledged()
		return cmp.Compare(bx, by)
	})
	for _, in := range order {
		in.ctx, in.now = ctx, time.Now()
		if err := in.tailer.Drain(ctx, in.now); err != nil && ctx.Err() == nil {
			a.log.Warn("draining files", "container", in.cfg.Container, "err", err)
		}
		in.flush()
	}
	batches, _, err := a.client.Drain(ctx)
	if err != nil || batches > 0 {
		var bytes int64
		var files int
		for _, in := range a.inputs {
			b, f := in.tailer.Unacknowledged()
			bytes, files = bytes+b, files+f
		}
		return fmt.Errorf("drain deadline of %s passed with %d bytes in %d file(s) unacknowledged; the next start reads them again from the checkpoint",
			a.cfg.DrainTimeout.D(), bytes, files)
	}
	a.log.Info("drained: every record acknowledged")
	return nil
}

func (a *Agent) checkpointLoop(ctx context.Context) {
	t := time.NewTicker(checkpointInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-a.ackedWhileDraining:
		}
		if err := a.saveCheckpoint(); err != nil {
			a.log.Warn("saving checkpoint", "err", err)
		}
	}
}

// acked is called with every acknowledged batch, on the forward client's goroutine.
func (a *Agent) acked() {
	if a.draining.Load() {
		select {
		case a.ackedWhileDraining <- struct{}{}:
		default: // a save is due already; it will include this batch
		}
	}
}

func (a *Agent) saveCheckpoint() error {
	var all []checkpoint.Entry
	for _, in := range a.inputs {
		all = append(all, in.tailer.Positions()...)
	}
	if a.savedOnce && slices.Equal(all, a.saved) {
		return nil
	}
	if err := checkpoint.Save(a.opts.StateDir, all); err != nil {
		a.saveErrors.Inc()
		return fmt.Errorf("saving checkpoint: %w", err)
	}
	a.saved, a.savedOnce = all, true
	return nil
}

func (a *Agent) serveHTTP(addr string) (*http.Server, error) {
	mux := http.NewServeMux()
	mux.Handle("/metrics", a.reg)
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("ok\n")) })
	if a.opts.StateDir != "" {
		// A previous run's address must not answer for this one.
		_ = os.Remove(filepath.Join(a.opts.StateDir, AddrFile))
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("serving metrics on %s: %w", addr, err)
	}
	if _, port, _ := net.SplitHostPort(addr); port == "0" {
		// Only Probe of an agent on any free port needs the file. Failing to write it must not
		// stop the metrics: a full or read-only state directory is survivable, and the probe
		// failing then says why.
		if err := writeAddr(a.opts.StateDir, ln.Addr()); err != nil {
			a.log.Error("the startup probe cannot find the metrics port", "err", err)
		}
	}
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			a.log.Error("metrics server", "err", err)
		}
	}()
	return srv, nil
}

// startedFile, in the state directory, says that an agent ran in this pod before: the state
// directory is an emptyDir, new with the pod.
const startedFile = "started"

// markStarted reports whether an agent ran in this pod before (the kubelet restarted the
// container: a crash, an OOM kill, a failed probe), and records that this one did.
func (a *Agent) markStarted() (restarted bool) {
	if a.opts.StateDir == "" {
		return false
	}
	path := filepath.Join(a.opts.StateDir, startedFile)
	if _, err := os.Stat(path); err == nil {
		return true
	}
	if err := os.WriteFile(path, nil, 0o644); err != nil {
		a.log.Warn("cannot record the agent's start: a restart will take it for the pod's first", "err", err)
	}
	return false
}

// readFrom is where files without a checkpoint start. readFrom tail is for the files the pod
// found when it started, which earlier pods shipped; a restarted agent finds also the files
// this pod wrote while it was down or before their first acknowledgement (an outage), which
// no checkpoint names: it reads those from their head, for at least once.
func readFrom(configured string, restarted bool) string {
	if restarted {
		return config.ReadFromHead
	}
	return configured
}

// tailedElsewhere returns whether the tail globs of an input of inputs other than container's
// match a path (their excludes are not looked at: a file only matched by mistake is kept too).
// One container's cleanup must not remove a file another has not read.
func tailedElsewhere(inputs []config.Input, container string) (func(string) bool, error) {
	var others []string
	for _, in := range inputs {
		if in.Container != container {
			others = append(others, in.Paths...)
		}
	}
	if len(others) == 0 {
		return nil, nil
	}
	g, err := find.New(others, nil)
	if err != nil {
		return nil, fmt.Errorf("input %q: the other inputs' paths: %w", container, err)
	}
	return g.Match, nil
}
