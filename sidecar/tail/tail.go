// Package tail reads the files of one input (one app container) and hands their complete
// records, in file order, to a Sink, with the offset a checkpoint may store once a record is
// acknowledged.
//
// It ties the file stages together: find (globs), fingerprint (identity across rotation and
// restarts), lines (splitting) and multiline (joining). Inside, each role has its own file: the
// tracker (tracker.go) decides, without I/O, what every file found is -- new, resumed, a copy,
// idle, gone -- so that its rules are tested as a table; a reader (reader.go) owns an open
// file's descriptor, line splitter and joiner; a Position (position.go) is all that is kept of a
// file that is not open; scan.go carries the decisions out; cleanup.go removes rotated files
// once every byte of them was acknowledged (Options.Cleanup), its rule a table-tested function
// too. One goroutine drives a Tailer with Poll, Drain and Close; File.Ack and Tailer.Positions
// may be called from any goroutine.
//
// All files share one read buffer, and a line is handed to the sink as a slice of it, so the
// per-line path neither copies nor allocates. The only memory kept per open file is its first
// bytes (at most FingerprintSize, compared at every growth check instead of hashing them), its
// unfinished line (bounded by MaxLineBytes) and, with multiline, its pending record (bounded
// likewise); a file that is not open keeps its Position only.
//
// # Rotation
//
//   - rename-and-create: the open descriptor keeps the renamed file readable; it is read to its
//     end (lines written just before the rename included) and closed once no glob finds it and
//     it has been quiet for RotateWait. The new file at the path is read from its start. A renamed
//     file that a glob still matches is recognised by its dev+inode and not read twice.
//   - delete: the same; the open descriptor is read to the end before it is closed. A file that
//     was found but disappeared before it could be opened is counted as dropped
//     (reason deleted_before_read) and logged -- unless it was a copy of an open file, whose
//     content was read through the original.
//   - copytruncate: a file shorter than what was read, or whose first bytes changed, was
//     truncated; what was read is kept and the file is read again from 0 as a new File. No
//     tailer can close the window between the copy and the truncation: lines the application
//     wrote after the tailer's last read and before the truncation exist only in the copy. If a
//     glob matches the copy, it is recognised by its fingerprint and read from where the
//     original was left, so nothing is lost -- also when the rotation happened while the agent
//     was down: a saved position whose inode now holds other bytes is taken by its copy. Otherwise
//     the bytes known to be unread are counted as dropped (reason truncated_before_read) and
//     logged. A non-O_APPEND writer keeps writing at its old offset after the truncation,
//     leaving a run of NUL bytes, which is read as such.
//   - inode reuse: a new file that gets a deleted file's inode does not resume at the old
//     offset: a remembered position needs the first bytes to match too.
//
// # More files than MaxFiles
//
// Files found beyond MaxFiles wait, longest waiting first. When one is waiting, an open file
// that has been idle at its end for RotateWait is closed to make room ("parked"): only its
// Position is kept, at the end of its last complete line, and it is read again from there when
// its turn comes, so an unfinished line is neither held nor lost. A parked file that has not
// changed (same size and modification time) is not reopened: idle files do not take turns. If a
// parked file disappears, the bytes past its position (its unfinished line and what was written
// since) cannot be read any more: they are counted as dropped (deleted_before_read) and logged.
// If it is rewritten in place, it is handled as a truncation. Drain reads the waiting files
// too, MaxFiles at a time, once the open ones are at their end.
//
// # Rate limit
//
// With Options.RateLimit, Poll reads the input's files within its budget (package budget): no
// more bytes than it allows, and no more lines, stopping at a line's end. What is not read stays
// in the file, counted in sidelog_file_bytes_behind, and holds no memory; the files take turns on
// the budget, and Throttled tells the caller when to poll again. Drain is not limited.
package tail

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"sync"
	"time"

	"github.com/sidelog/sidelog/sidecar/budget"
	"github.com/sidelog/sidelog/sidecar/checkpoint"
	"github.com/sidelog/sidelog/sidecar/config"
	"github.com/sidelog/sidelog/sidecar/find"
	"github.com/sidelog/sidelog/sidecar/fingerprint"
	"github.com/sidelog/sidelog/sidecar/metrics"
	"github.com/sidelog/sidelog/sidecar/multiline"
)

// Defaults for zero Options fields.
const (
	DefaultBufferSize = 256 << 10
	DefaultRotateWait = 5 * time.Second
	// DefaultCleanupSettle is config.DefaultCleanupSettle.
	DefaultCleanupSettle = config.DefaultCleanupSettle
)

// budgetBuffers is how many buffers one file may read per Poll, so that one busy file cannot
// starve the others.
const budgetBuffers = 4

// ErrClosed is returned by Poll and Drain after Close.
var ErrClosed = errors.New("tail: tailer closed")

// Sink receives complete records in file order. rec is only valid during the call.
// end is the file offset just past the record: what a checkpoint may store once the record
// is acknowledged. Record may block: that is how backpressure stops reading.
type Sink interface {
	Record(f *File, rec []byte, end int64)
}

// Options configure a Tailer.
type Options struct {
	Paths, Exclude []string
	Multiline      *config.Multiline  // nil: one record per line
	MaxLineBytes   int                // zero: config.Defaults.MaxLineBytes
	MaxFiles       int                // at most this many files open; others wait. Zero: config.Defaults.MaxFiles
	Positions      []checkpoint.Entry // from the last run; entries of other containers are ignored
	Metrics        *metrics.Registry  // may be nil; series labelled container=<Container>
	Container      string             // for metric labels and checkpoint entries
	Logger         *slog.Logger       // may be nil

	// ScanInterval is the least time between two expansions of the globs (and checks of every
	// open file). Zero scans at every Poll; set it to the poll interval when Poll is called
	// again at once after a busy pass.
	ScanInterval time.Duration
	// RotateWait is how long a file that no glob finds any more (renamed away or deleted) stays
	// open after the last byte was written to it, for writers that have not reopened their log
	// yet; it is also how long a file must be idle before it yields its place to a waiting one
	// when MaxFiles are open. Zero: DefaultRotateWait.
	RotateWait time.Duration
	// BufferSize is the size of the read buffer shared by all files. Zero: DefaultBufferSize.
	BufferSize int
	// FingerprintSize is how many leading bytes identify a file. Zero: fingerprint.Size.
	FingerprintSize int

	// ReadFrom is where a file that the first scan finds, and that no position names, starts:
	// config.ReadFromHead ("" too) at its first byte, config.ReadFromTail at the size the first
	// scan saw. Files found later are read from their start: they were created (or rotated in)
	// while the agent ran.
	ReadFrom string
	// RateLimit, when set, is the input's reading budget (budget.Limiter): Poll reads no faster,
	// Drain is not limited.
	RateLimit *config.RateLimit
	// IgnoreOlder, when above zero, leaves closed a file that no position names and whose
	// modification time is older than this at a scan. A file ignored so and written to again
	// later is read from the size it had when it was first ignored: its old content stays
	// ignored, its new lines are shipped.
	IgnoreOlder time.Duration

	// Cleanup are absolute globs of rotated files to remove once every byte of them was read
	// and acknowledged and their writer has left them (see cleanup.go). Only files the Paths
	// match too are ever removed. Empty: none is.
	Cleanup []string
	// CleanupSettle is how long a file must have been left unwritten before it is removed.
	// Zero: DefaultCleanupSettle.
	CleanupSettle time.Duration
	// TailedElsewhere reports whether another Tailer of the pod (another container's input)
	// tails path too: such a file is never removed, since that one may not have read it. Nil:
	// none does.
	TailedElsewhere func(path string) bool
}

// Tailer tails the files of one input.
type Tailer struct {
	opts  Options
	sink  Sink
	log   *slog.Logger
	globs *find.Globs
	rule  *multiline.Rule
	m     *instruments
	// limit is the input's reading budget, nil for none; throttled says that the last Poll
	// stopped reading at it with bytes left, and turn which open file the next Poll reads first.
	limit     *budget.Limiter
	throttled bool
	turn      int

	buf     []byte // shared read buffer
	headBuf []byte // scratch for a file's first bytes, FingerprintSize bytes

	// mu guards what Positions reads: open, and the tracker's parked and saved lists. They are
	// written only by the goroutine that calls Poll, under mu, and read by it freely.
	mu   sync.Mutex
	open []*File
	tr   *tracker

	byID   map[fingerprint.ID]*File // open files by dev+inode
	byFP   map[[32]byte]*File       // open files with a full fingerprint
	gauges map[string]*pathGauge

	lastScan time.Time
	scanned  bool
	drained  bool
	closed   bool
	lastErr  string  // last scan error logged, to log a persistent one once
	noisy    []*File // files with truncations to report at the end of this pass
	// retired are files no longer open or remembered whose last records may not be acknowledged
	// yet: what a drain that runs out of time must still count as unacknowledged.
	retired  []*File
	nLines   uint64 // counts of this pass, added to the metrics at its end
	nRecords uint64
	nBytes   uint64

	// cleanup matches the files to remove once delivered (Options.Cleanup); nil for none.
	cleanup      *find.Globs
	lastClean    time.Time
	lastCleanErr string
	removeErr    map[fingerprint.ID]string // last error removing each file, to log it once
	shared       map[fingerprint.ID]bool   // files kept because another input tails them, logged once
	// live are the modification times, at the last full scan, of the files found that the
	// cleanup globs do not match, by inode: a file seen under a second name (a symlink, a hard
	// link) is not newer than itself.
	live map[fingerprint.ID]time.Time
}

// New returns a Tailer for opts that hands records to sink. It does no I/O; the first Poll
// finds the files.
func New(opts Options, sink Sink) (*Tailer, error) {
	if sink == nil {
		return nil, errors.New("tail: nil sink")
	}
	globs, err := find.New(opts.Paths, opts.Exclude)
	if err != nil {
		return nil, fmt.Errorf("input %q: %w", opts.Container, err)
	}
	if opts.MaxLineBytes < 0 || opts.MaxFiles < 0 || opts.BufferSize < 0 || opts.FingerprintSize < 0 || opts.RotateWait < 0 || opts.ScanInterval < 0 {
		return nil, fmt.Errorf("input %q: negative limit in options", opts.Container)
	}
	if opts.MaxLineBytes == 0 {
		opts.MaxLineBytes = config.Defaults.MaxLineBytes
	}
	if opts.MaxFiles == 0 {
		opts.MaxFiles = config.Defaults.MaxFiles
	}
	if opts.BufferSize == 0 {
		opts.BufferSize = DefaultBufferSize
	}
	if opts.FingerprintSize == 0 {
		opts.FingerprintSize = fingerprint.Size
	}
	if opts.RotateWait == 0 {
		opts.RotateWait = DefaultRotateWait
	}
	switch opts.ReadFrom {
	case "", config.ReadFromHead, config.ReadFromTail:
	default:
		return nil, fmt.Errorf("input %q: readFrom %q, want %q or %q", opts.Container, opts.ReadFrom, config.ReadFromHead, config.ReadFromTail)
	}
	if opts.IgnoreOlder < 0 {
		return nil, fmt.Errorf("input %q: negative ignoreOlder", opts.Container)
	}
	if opts.CleanupSettle < 0 {
		return nil, fmt.Errorf("input %q: negative cleanupSettle", opts.Container)
	}
	if opts.CleanupSettle == 0 {
		opts.CleanupSettle = DefaultCleanupSettle
	}
	t := &Tailer{
		opts:    opts,
		sink:    sink,
		globs:   globs,
		buf:     make([]byte, opts.BufferSize),
		headBuf: make([]byte, opts.FingerprintSize),
		tr:      newTracker(opts.FingerprintSize, opts.RotateWait),
		byID:    map[fingerprint.ID]*File{},
		byFP:    map[[32]byte]*File{},
		gauges:  map[string]*pathGauge{},
	}
	if opts.Multiline != nil {
		if t.rule, err = multiline.Compile(opts.Multiline); err != nil {
			return nil, fmt.Errorf("input %q: %w", opts.Container, err)
		}
	}
	if r := opts.RateLimit; r != nil {
		if r.BytesPerSecond < 0 || r.LinesPerSecond < 0 {
			return nil, fmt.Errorf("input %q: negative rate limit", opts.Container)
		}
		t.limit = budget.New(r.BytesPerSecond, r.LinesPerSecond)
	}
	t.log = opts.Logger
	if t.log == nil {
		t.log = slog.New(slog.DiscardHandler)
	}
	t.log = t.log.With("container", opts.Container)
	t.m = newInstruments(opts.Metrics, opts.Container)
	if len(opts.Cleanup) > 0 {
		if t.cleanup, err = find.New(opts.Cleanup, nil); err != nil {
			return nil, fmt.Errorf("input %q: cleanup: %w", opts.Container, err)
		}
		t.removeErr = map[fingerprint.ID]string{}
		t.shared = map[fingerprint.ID]bool{}
		t.live = map[fingerprint.ID]time.Time{}
		t.m.addCleanup()
	}
	if t.limit != nil {
		t.m.addRateLimit()
	}
	for _, e := range opts.Positions {
		if e.Container != opts.Container || e.Offset <= 0 {
			continue
		}
		t.tr.saved = append(t.tr.saved, &saved{Position: positionOf(e)})
	}
	return t, nil
}

// Poll does one pass: expand globs (find), open new files (resume from Positions by fingerprint,
// otherwise from offset 0 -- the agent starts with the pod, so every unknown file is read from its
// start -- unless Options.ReadFrom or IgnoreOlder say otherwise), detect rotation/truncation, read what is available from each file (bounded per file per
// call so one busy file cannot starve others), hand complete records to the sink, flush multiline
// records whose FlushTimeout passed (measured against now). It returns the number of bytes read so
// the caller can sleep when idle.
//
// Problems with one file or directory are logged and counted, not returned: they must not stop
// the others. The error is ErrClosed after Close.
func (t *Tailer) Poll(now time.Time) (int64, error) {
	if t.closed {
		return 0, ErrClosed
	}
	if t.drained {
		return 0, nil
	}
	full := t.opts.ScanInterval <= 0 || !t.scanned || now.Sub(t.lastScan) >= t.opts.ScanInterval
	t.check(now, full)
	if full {
		t.scan(now)
	}
	total := t.readAll(now)
	if t.limit != nil {
		t.m.throttled.Set(b2i(t.throttled))
	}
	for _, f := range t.open {
		// A pending record of a file that the rate limit left behind may go on in the bytes not
		// read yet: its flush timeout counts from when the reading catches up.
		if j := f.rd.join; j != nil && j.Due(now) && (t.limit == nil || f.pos.Offset >= f.pos.Size) {
			j.Flush(f.emitJoined)
		}
	}
	t.retireGone(now)
	if full {
		t.clean(now)
	}
	t.report()
	return total, nil
}

// readAll reads every open file, each at most budgetBuffers buffers. Under a rate limit it reads
// nothing until a tenth of a second's budget has accrued (budget.Limiter.Ready; ReadyIn says when),
// and starts with the next file at each pass, so that the files of the input share its budget.
func (t *Tailer) readAll(now time.Time) int64 {
	t.throttled = false
	perFile := int64(budgetBuffers * len(t.buf))
	n := len(t.open)
	if t.limit != nil && n > 0 && !t.limit.Ready(now) {
		for _, f := range t.open {
			behind := f.pos.Offset < f.pos.Size
			// A file left behind is checked before its next read, as one being read is: a
			// truncation between two scans must be seen before its new bytes are read as the old.
			f.active = behind
			t.throttled = t.throttled || behind
		}
		return 0
	}
	start := 0
	if t.limit != nil {
		start = t.turn
		t.turn++
	}
	var total int64
	for i := range n {
		f := t.open[(start+i)%n]
		read := t.read(f, now, perFile)
		f.active = read > 0 || t.limit != nil && f.pos.Offset < f.pos.Size
		total += read
	}
	return total
}

// Throttled reports whether the last Poll left bytes unread because of the rate limit, and how
// long after now the limit lets the input read again. When it is false (no limit, or none
// reached) the caller need not wake for this input before it would anyway.
func (t *Tailer) Throttled(now time.Time) (readyIn time.Duration, throttled bool) {
	if t.limit == nil || !t.throttled {
		return 0, false
	}
	return t.limit.ReadyIn(now), true
}

// Drain stops discovery, reads every open file to its end, flushes partial lines and multiline
// buffers to the sink. Called once at SIGTERM.
//
// It first expands the globs one last time, so that a file the application created just before
// it exited is read too, and so that files closed to make room with an unfinished last line are
// read again for it. Files waiting for a place (MaxFiles) then take turns: the open files, read
// to their end, are closed as makeRoom closes idle ones (their positions are still reported and
// acknowledged), and the waiting ones are opened and read to their end in their place. A waiting
// file that cannot be opened is logged and left.
//
// Reading stops when ctx ends (the drain deadline: what is read after it could not be sent);
// Drain then returns ctx's error.
func (t *Tailer) Drain(ctx context.Context, now time.Time) error {
	if t.closed {
		return ErrClosed
	}
	if t.drained {
		return nil
	}
	t.drained = true
	defer t.report()
	t.check(now, true)
	t.scan(now)
	for {
		for _, f := range t.open {
			for f.pos.Offset < f.pos.Size {
				if err := ctx.Err(); err != nil {
					return fmt.Errorf("draining input %q: %w", t.opts.Container, err)
				}
				if t.read(f, now, int64(len(t.buf))) == 0 {
					break // shrank or failed: logged, and the next check would say why
				}
			}
			t.flush(f)
		}
		if len(t.tr.waiting) == 0 || !t.takeTurn(now) {
			break
		}
	}
	for _, c := range t.tr.cut {
		t.settle(c)
	}
	t.setCut(nil)
	if len(t.tr.waiting) > 0 {
		t.log.Warn("draining: files left unread because they could not be opened", "files", len(t.tr.waiting))
	}
	return nil
}

// takeTurn, during Drain, closes every open file (each read to its end) and opens the files
// waiting longest in their place. It reports whether it opened any.
func (t *Tailer) takeTurn(now time.Time) bool {
	for _, f := range slices.Clone(t.open) {
		t.park(f)
	}
	cands := slices.SortedStableFunc(maps.Values(t.tr.waiting), func(a, b *candidate) int { return a.firstSeen.Compare(b.firstSeen) })
	for _, c := range cands {
		if len(t.open) >= t.opts.MaxFiles {
			break
		}
		t.openCandidate(c, now)
	}
	t.m.waiting.Set(int64(len(t.tr.waiting)))
	return len(t.open) > 0
}

// Positions returns the acknowledged position of every file worth remembering (for checkpoint.Save).
func (t *Tailer) Positions() []checkpoint.Entry {
	t.mu.Lock()
	defer t.mu.Unlock()
	var out []checkpoint.Entry
	add := func(f *File) {
		// Only the fields written under mu: the poll goroutine moves the offsets meanwhile.
		if off := f.acked.Load(); off > 0 {
			out = append(out, checkpoint.Entry{Container: t.opts.Container, Path: f.Path, Identity: f.pos.Identity, Offset: off, Skipped: f.skipped})
		}
	}
	for _, f := range t.open {
		add(f)
	}
	for _, f := range t.tr.parked {
		add(f)
	}
	for _, s := range t.tr.saved {
		if s.Acked > 0 {
			out = append(out, s.Entry(t.opts.Container))
		}
	}
	return out
}

// Unacknowledged returns the bytes that were not acknowledged yet of the files read so far (each
// file's size at its last check minus its acknowledged offset: open files, files closed to make
// room, content cut by a truncation, finished files whose last records are still in flight) and
// the number of files they are in, for saying how much a drain left behind. Call it from the
// goroutine that drives Poll and Drain.
func (t *Tailer) Unacknowledged() (bytes int64, files int) {
	count := func(f *File) {
		if n := f.unacknowledged(); n > 0 {
			bytes += n
			files++
		}
	}
	for _, f := range t.open {
		count(f)
	}
	for _, f := range t.tr.parked {
		count(f)
	}
	for _, c := range t.tr.cut {
		count(c.file)
	}
	for _, f := range t.retired {
		count(f)
	}
	return bytes, files
}

// Close closes every file.
func (t *Tailer) Close() error {
	if t.closed {
		return nil
	}
	t.closed = true
	var errs []error
	for _, f := range slices.Clone(t.open) {
		if err := t.closeFile(f); err != nil {
			errs = append(errs, err)
		}
	}
	t.m.waiting.Set(0)
	return errors.Join(errs...)
}
