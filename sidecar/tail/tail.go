// Package tail reads the files of one input (one app container) and hands their complete
// records, in file order, to a Sink, with the offset a checkpoint may store once a record is
// acknowledged.
//
// It ties the file stages together: find (globs), fingerprint (identity across rotation and
// restarts), lines (splitting) and multiline (joining). One goroutine drives an Input with
// Poll, Drain and Close; File.Ack and Input.Positions may be called from any goroutine.
//
// All files share one read buffer, and a line is handed to the sink as a slice of it, so the
// per-line path neither copies nor allocates. The only memory kept per file is its unfinished
// line (bounded by MaxLineBytes) and, with multiline, its pending record (bounded likewise).
//
// # Rotation
//
//   - rename-and-create: the open descriptor keeps the renamed file readable; it is read to its
//     end (lines written just before the rename included) and closed once no glob finds it and
//     it has been quiet for RotateWait. The new file at the path is read from its start. A renamed
//     file that a glob still matches is recognised by its dev+inode and not read twice.
//   - delete: the same; the open descriptor is read to the end before it is closed. A file that
//     was found but disappeared before it could be opened is counted as dropped
//     (reason deleted_before_read) and logged.
//   - copytruncate: a file shorter than what was read, or whose first bytes changed, was
//     truncated; what was read is kept and the file is read again from 0 as a new File. No
//     tailer can close the window between the copy and the truncation: lines the application
//     wrote after the tailer's last read and before the truncation exist only in the copy. If a
//     glob matches the copy, it is recognised by its fingerprint and read from where the
//     original was left, so nothing is lost; otherwise the bytes known to be unread are counted
//     as dropped (reason truncated_before_read) and logged. A non-O_APPEND writer keeps writing
//     at its old offset after the truncation, leaving a run of NUL bytes, which is read as such.
//   - inode reuse: a new file that gets a deleted file's inode does not resume at the old
//     offset: a remembered position needs the first bytes to match too.
//
// # More files than MaxFiles
//
// Files found beyond MaxFiles wait, longest waiting first. When one is waiting, an open file
// that has been idle at its end for RotateWait is closed to make room; it is remembered (by
// identity, with its offset and unfinished line) and resumes where it was when its turn comes.
// Drain reads the waiting files too, MaxFiles at a time, once the open ones are at their end.
package tail

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sidelog/sidelog/sidecar/checkpoint"
	"github.com/sidelog/sidelog/sidecar/config"
	"github.com/sidelog/sidelog/sidecar/find"
	"github.com/sidelog/sidelog/sidecar/fingerprint"
	"github.com/sidelog/sidelog/sidecar/lines"
	"github.com/sidelog/sidelog/sidecar/metrics"
	"github.com/sidelog/sidelog/sidecar/multiline"
)

// Defaults for zero Options fields.
const (
	DefaultBufferSize = 256 << 10
	DefaultRotateWait = 5 * time.Second
)

// budgetBuffers is how many buffers one file may read per Poll, so that one busy file cannot
// starve the others.
const budgetBuffers = 4

// ErrClosed is returned by Poll and Drain after Close.
var ErrClosed = errors.New("tail: input closed")

// Sink receives complete records in file order. rec is only valid during the call.
// end is the file offset just past the record: what a checkpoint may store once the record
// is acknowledged. Record may block: that is how backpressure stops reading.
type Sink interface {
	Record(f *File, rec []byte, end int64)
}

// Options configure an Input.
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
}

// Input tails the files of one input.
type Input struct {
	opts  Options
	sink  Sink
	log   *slog.Logger
	globs *find.Globs
	rule  *multiline.Rule
	m     *instruments

	buf   []byte // shared read buffer
	fpBuf []byte // fingerprint scratch, FingerprintSize bytes

	// Written only by the goroutine that calls Poll, under mu; read by it freely and by
	// Positions under mu.
	mu    sync.Mutex
	open  []*File
	known []*known

	byID    map[fingerprint.ID]*File      // open files by dev+inode
	byFP    map[[32]byte]*File            // open files with a full fingerprint
	waiting map[fingerprint.ID]*candidate // files found but not open
	seen    map[fingerprint.ID]bool       // scratch for scan
	gauges  map[string]*pathGauge

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
}

// File is one file being tailed (one identity: a rotated file is a new File).
type File struct {
	Path string // the path it was found at
	Meta any    // for the sink's own per-file state (e.g. a pre-encoded record prefix); tail never touches it

	in    *Input
	fd    *os.File
	ident fingerprint.Identity // written under in.mu

	offset int64 // next byte to read: every byte before it went through split
	size   int64 // size at the last check
	split  *lines.Splitter
	join   *multiline.Joiner

	acked  atomic.Int64
	behind atomic.Int64 // size - offset, for the bytes-behind gauge
	// next is the copy of this file's content that resumed where it was left (copytruncate).
	// The copy's offsets are this file's, so acknowledgements of records read here move the
	// copy's position too: until they come, the copy's position stays where this file's was.
	next atomic.Pointer[File]

	active   bool      // read something in the last pass: check it even between scans
	lastData time.Time // when the file last grew (or was opened)
	goneAt   time.Time // when a scan first did not find it; zero while found
	// Lines and multiline records cut to MaxLineBytes in this pass, for one log line per pass.
	truncLines, truncBytes, truncRecords, truncRecordBytes int64
	readErr                                                string
	finished                                               bool
}

// Ack records that every record of f up to end was acknowledged upstream. Safe from any goroutine.
// Acks for one file come in increasing order of end, and those of a file's records before those
// of its copy's (the sink sends and the aggregator acknowledges in order).
func (f *File) Ack(end int64) {
	f.acked.Store(end)
	if c := f.next.Load(); c != nil {
		c.Ack(end)
	}
}

// Acked returns the end of the last acknowledged record.
func (f *File) Acked() int64 { return f.acked.Load() }

// known is a file that is not open but may be found again: a file closed to make room (file set),
// a file's content before a copytruncate (truncated set: its copy may turn up), or a position
// from the last run.
type known struct {
	fingerprint.Identity
	path      string
	offset    int64
	file      *File // the closed File, to reopen as it was
	truncated *File // the File of the content before a truncation, holding its unfinished line
	lost      int64 // bytes known to be unread when it was truncated
}

// candidate is a file found by the globs that is not open.
type candidate struct {
	id        fingerprint.ID
	path      string
	size      int64
	firstSeen time.Time
	copyOf    string // path of the open file it is a copy of, while deferred
	err       string // last error opening it, to log a persistent one once
}

// New returns an Input for opts that hands records to sink. It does no I/O; the first Poll
// finds the files.
func New(opts Options, sink Sink) (*Input, error) {
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
	in := &Input{
		opts:    opts,
		sink:    sink,
		globs:   globs,
		buf:     make([]byte, opts.BufferSize),
		fpBuf:   make([]byte, opts.FingerprintSize),
		byID:    map[fingerprint.ID]*File{},
		byFP:    map[[32]byte]*File{},
		waiting: map[fingerprint.ID]*candidate{},
		seen:    map[fingerprint.ID]bool{},
		gauges:  map[string]*pathGauge{},
	}
	if opts.Multiline != nil {
		if in.rule, err = multiline.Compile(opts.Multiline); err != nil {
			return nil, fmt.Errorf("input %q: %w", opts.Container, err)
		}
	}
	in.log = opts.Logger
	if in.log == nil {
		in.log = slog.New(slog.DiscardHandler)
	}
	in.log = in.log.With("container", opts.Container)
	in.m = newInstruments(opts.Metrics, opts.Container)
	for _, e := range opts.Positions {
		if e.Container != opts.Container || e.Offset <= 0 {
			continue
		}
		in.known = append(in.known, &known{Identity: e.Identity, path: e.Path, offset: e.Offset})
	}
	return in, nil
}

// Poll does one pass: expand globs (find), open new files (resume from Positions by fingerprint,
// otherwise from offset 0 -- the agent starts with the pod, so every unknown file is read from its
// start), detect rotation/truncation, read what is available from each file (bounded per file per
// call so one busy file cannot starve others), hand complete records to the sink, flush multiline
// records whose FlushTimeout passed (measured against now). It returns the number of bytes read so
// the caller can sleep when idle.
//
// Problems with one file or directory are logged and counted, not returned: they must not stop
// the others. The error is ErrClosed after Close.
func (in *Input) Poll(now time.Time) (int64, error) {
	if in.closed {
		return 0, ErrClosed
	}
	if in.drained {
		return 0, nil
	}
	full := in.opts.ScanInterval <= 0 || !in.scanned || now.Sub(in.lastScan) >= in.opts.ScanInterval
	in.check(now, full)
	if full {
		in.scan(now)
	}
	var total int64
	budget := int64(budgetBuffers * len(in.buf))
	for _, f := range in.open {
		n := in.read(f, now, budget)
		f.active = n > 0
		total += n
	}
	for _, f := range in.open {
		if f.join != nil && f.join.Due(now) {
			f.join.Flush(f.emitJoined)
		}
	}
	in.retireGone(now)
	in.report()
	return total, nil
}

// Drain stops discovery, reads every open file to its end, flushes partial lines and multiline
// buffers to the sink. Called once at SIGTERM.
//
// It first expands the globs one last time, so that a file the application created just before
// it exited is read too. Files waiting for a place (MaxFiles) then take turns: the open files,
// read to their end, are closed as makeRoom closes idle ones (their positions are still
// reported and acknowledged), and the waiting ones are opened and read to their end in their
// place. A waiting file that cannot be opened is logged and left.
//
// Reading stops when ctx ends (the drain deadline: what is read after it could not be sent);
// Drain then returns ctx's error.
func (in *Input) Drain(ctx context.Context, now time.Time) error {
	if in.closed {
		return ErrClosed
	}
	if in.drained {
		return nil
	}
	in.drained = true
	defer in.report()
	in.check(now, true)
	in.scan(now)
	for {
		for _, f := range in.open {
			for f.offset < f.size {
				if err := ctx.Err(); err != nil {
					return fmt.Errorf("draining input %q: %w", in.opts.Container, err)
				}
				if in.read(f, now, int64(len(in.buf))) == 0 {
					break // shrank or failed: logged, and the next check would say why
				}
			}
			in.flushFile(f)
		}
		if len(in.waiting) == 0 || !in.takeTurn(now) {
			break
		}
	}
	for i := 0; i < len(in.known); i++ {
		if k := in.known[i]; k.truncated != nil {
			in.settleTruncated(k)
			in.removeKnown(i)
			i--
		}
	}
	if len(in.waiting) > 0 {
		in.log.Warn("draining: files left unread because they could not be opened", "files", len(in.waiting))
	}
	return nil
}

// takeTurn, during Drain, closes every open file (each read to its end) and opens the files
// waiting longest in their place. It reports whether it opened any.
func (in *Input) takeTurn(now time.Time) bool {
	for _, f := range slices.Clone(in.open) {
		in.park(f)
	}
	cands := slices.SortedStableFunc(maps.Values(in.waiting), func(a, b *candidate) int { return a.firstSeen.Compare(b.firstSeen) })
	for _, c := range cands {
		if len(in.open) >= in.opts.MaxFiles {
			break
		}
		in.openCandidate(c, now)
	}
	in.m.waiting.Set(int64(len(in.waiting)))
	return len(in.open) > 0
}

// Positions returns the acknowledged position of every file worth remembering (for checkpoint.Save).
func (in *Input) Positions() []checkpoint.Entry {
	in.mu.Lock()
	defer in.mu.Unlock()
	var out []checkpoint.Entry
	add := func(path string, id fingerprint.Identity, off int64) {
		if off > 0 {
			out = append(out, checkpoint.Entry{Container: in.opts.Container, Path: path, Identity: id, Offset: off})
		}
	}
	for _, f := range in.open {
		add(f.Path, f.ident, f.acked.Load())
	}
	for _, k := range in.known {
		switch {
		case k.file != nil:
			add(k.file.Path, k.file.ident, k.file.acked.Load())
		case k.truncated == nil:
			add(k.path, k.Identity, k.offset)
		}
	}
	return out
}

// Unacknowledged returns the bytes that were not acknowledged yet of the files read so far (each
// file's size at its last check minus its acknowledged offset: open files, files closed to make
// room, content cut by a truncation, finished files whose last records are still in flight) and
// the number of files they are in, for saying how much a drain left behind. Call it from the
// goroutine that drives Poll and Drain.
func (in *Input) Unacknowledged() (bytes int64, files int) {
	count := func(f *File) {
		if n := f.size - f.acked.Load(); n > 0 {
			bytes += n
			files++
		}
	}
	for _, f := range in.open {
		count(f)
	}
	for _, k := range in.known {
		switch {
		case k.file != nil:
			count(k.file)
		case k.truncated != nil:
			count(k.truncated)
		}
	}
	for _, f := range in.retired {
		count(f)
	}
	return bytes, files
}

// Close closes every file.
func (in *Input) Close() error {
	if in.closed {
		return nil
	}
	in.closed = true
	var errs []error
	for _, f := range slices.Clone(in.open) {
		if err := in.closeFile(f); err != nil {
			errs = append(errs, err)
		}
	}
	in.m.waiting.Set(0)
	return errors.Join(errs...)
}

// check looks at the open files' sizes: growth, and truncation (size below what was read, or
// first bytes changed). all checks every file; otherwise only those that were read last pass.
func (in *Input) check(now time.Time, all bool) {
	for i := 0; i < len(in.open); i++ {
		f := in.open[i]
		if !all && !f.active {
			continue
		}
		fi, err := f.fd.Stat()
		if err != nil {
			in.readError(f, fmt.Errorf("checking %s: %w", f.Path, err))
			continue
		}
		size := fi.Size()
		truncated := size < f.offset
		if !truncated && size != f.size && f.ident.Fingerprint.Len > 0 {
			// Rewritten past the old offset between two checks: only the first bytes tell.
			ok, err := f.ident.Fingerprint.Match(f.fd, in.fpBuf)
			if err != nil {
				in.readError(f, fmt.Errorf("checking %s: %w", f.Path, err))
				continue
			}
			truncated = !ok
		}
		if truncated {
			f = in.truncated(f, now, size)
		}
		if size > f.size {
			f.lastData = now
		}
		f.size = size
		if !f.ident.Fingerprint.Full(len(in.fpBuf)) && int64(f.ident.Fingerprint.Len) < size {
			in.refreshFingerprint(f)
		}
		f.behind.Store(f.size - f.offset)
	}
}

// refreshFingerprint lengthens a short fingerprint as its file grows. Reads stop at the size the
// last check saw, so a short fingerprint always covers what was read: a position saved with it
// never skips bytes it did not identify.
func (in *Input) refreshFingerprint(f *File) {
	fp, err := fingerprint.Read(f.fd, in.fpBuf)
	if err != nil {
		in.readError(f, fmt.Errorf("fingerprinting %s: %w", f.Path, err))
		return
	}
	in.mu.Lock()
	f.ident.Fingerprint = fp
	in.mu.Unlock()
	if fp.Full(len(in.fpBuf)) {
		in.byFP[fp.Sum] = f
	}
}

// truncated handles a file whose content was truncated (copytruncate): the records of the old
// content are finished, and the same descriptor continues as a new File from offset 0.
func (in *Input) truncated(f *File, now time.Time, size int64) *File {
	lost := max(f.size-f.offset, 0)
	in.log.Warn("file truncated (copytruncate?): reading it again from the start",
		"path", f.Path, "read", f.offset, "size", size)
	in.m.rotations("truncated").Inc()

	// A copy of the old content that a glob matches resumes where this one was left, at the
	// start of its unfinished line, which the copy then holds whole. Only a full fingerprint can
	// recognise a copy (it has another inode).
	remember := f.ident.Fingerprint.Full(len(in.fpBuf))
	if remember {
		if f.join != nil {
			f.join.Flush(f.emitJoined)
		}
	} else {
		in.flushFile(f)
		in.retired = append(in.retired, f)
		if lost > 0 {
			in.drop(reasonTruncated, lost, "file truncated before it was read to the end", "path", f.Path)
		}
	}

	fp, err := fingerprint.Read(f.fd, in.fpBuf)
	if err != nil {
		in.readError(f, fmt.Errorf("fingerprinting %s: %w", f.Path, err))
	}
	g := in.newFile(f.Path, f.fd, fingerprint.Identity{ID: f.ident.ID, Fingerprint: fp}, 0, now)
	g.size = 0 // the caller's check goes on with g and sets it
	in.mu.Lock()
	in.open[slices.Index(in.open, f)] = g
	if remember {
		in.known = append(in.known, &known{Identity: f.ident, path: f.Path, offset: f.offset - f.split.Pending(),
			truncated: f, lost: lost})
	}
	in.mu.Unlock()
	if in.byFP[f.ident.Fingerprint.Sum] == f {
		delete(in.byFP, f.ident.Fingerprint.Sum)
	}
	if fp.Full(len(in.fpBuf)) {
		in.byFP[fp.Sum] = g
	}
	in.byID[g.ident.ID] = g
	f.fd = nil
	f.finished = true
	in.gaugeSwap(f, g)
	return g
}

// scan expands the globs, notices files that are gone, and opens new ones.
func (in *Input) scan(now time.Time) {
	in.lastScan, in.scanned = now, true
	paths, err := in.globs.Files()
	complete := err == nil
	if err != nil && err.Error() != in.lastErr {
		in.log.Warn("finding files", "err", err)
	}
	in.lastErr = ""
	if err != nil {
		in.lastErr = err.Error()
	}
	clear(in.seen)
	var cands []*candidate
	for _, p := range paths {
		fi, err := os.Stat(p)
		if err != nil {
			// Gone between listing and stat, or a dangling link: the next scan decides.
			continue
		}
		if !fi.Mode().IsRegular() {
			continue
		}
		id, ok := fingerprint.IDOf(fi)
		if !ok || in.seen[id] {
			continue // the same file through a second path (a link)
		}
		in.seen[id] = true
		if f := in.byID[id]; f != nil {
			f.goneAt = time.Time{}
			continue
		}
		c := in.waiting[id]
		if c == nil {
			c = &candidate{id: id, firstSeen: now}
			in.waiting[id] = c
		}
		c.path, c.size = p, fi.Size()
		cands = append(cands, c)
	}
	if complete {
		in.forgetMissing(now)
	}
	// Longest waiting first, so that files closed to make room queue behind the others.
	slices.SortStableFunc(cands, func(a, b *candidate) int { return a.firstSeen.Compare(b.firstSeen) })
	for _, c := range cands {
		if len(in.open) >= in.opts.MaxFiles && !in.makeRoom(now) {
			break
		}
		in.openCandidate(c, now)
	}
	if complete && !in.mayMatchWaiting() {
		in.expireKnown()
	}
	waiting := len(in.waiting)
	for _, k := range in.known {
		if k.file != nil && in.waiting[k.ID] == nil {
			waiting++ // closed to make room in this scan
		}
	}
	in.m.waiting.Set(int64(waiting))
}

// forgetMissing handles what the last complete scan did not find: open files start their
// RotateWait, and files that were never opened are gone.
func (in *Input) forgetMissing(now time.Time) {
	for _, f := range in.open {
		if !in.seen[f.ident.ID] && f.goneAt.IsZero() {
			f.goneAt = now
			in.m.rotations("moved").Inc()
			in.log.Info("file renamed away or deleted: reading it to its end", "path", f.Path)
		}
	}
	for id, c := range in.waiting {
		if in.seen[id] {
			continue
		}
		delete(in.waiting, id)
		var read int64
		if i := in.knownFile(id); i >= 0 {
			read = in.known[i].file.offset
		}
		if unread := c.size - read; unread > 0 {
			in.drop(reasonDeleted, unread, "file deleted or renamed away before it could be read", "path", c.path)
		}
	}
	// A file closed to make room whose inode no scan finds any more is finished: its
	// unfinished last line is all there will be.
	for i := 0; i < len(in.known); i++ {
		if k := in.known[i]; k.file != nil && !in.seen[k.ID] {
			in.flushFile(k.file)
			k.file.finished = true
			in.removeKnown(i)
			i--
		}
	}
}

// mayMatchWaiting reports whether a file found but not open yet may still be opened, and so
// match a remembered position. Files that could not be opened (no permission) are retried, but
// must not keep positions and truncated content alive for ever.
func (in *Input) mayMatchWaiting() bool {
	for _, c := range in.waiting {
		if c.err == "" {
			return true
		}
	}
	return false
}

// expireKnown drops positions from the last run and truncated contents that no file matched
// once every file found was examined: their files are gone.
func (in *Input) expireKnown() {
	for i := 0; i < len(in.known); i++ {
		k := in.known[i]
		if k.file != nil {
			continue
		}
		if k.truncated != nil {
			in.settleTruncated(k)
		}
		in.removeKnown(i)
		i--
	}
}

// settleTruncated gives up on a copy of truncated content turning up: the unfinished line the
// old content ended with is handed on, and the bytes known to be unread are counted as lost.
func (in *Input) settleTruncated(k *known) {
	in.flushFile(k.truncated)
	in.retired = append(in.retired, k.truncated)
	if k.lost > 0 {
		in.drop(reasonTruncated, k.lost, "file truncated before it was read to the end, and no glob matches its copy", "path", k.path)
	}
}

func (in *Input) knownFile(id fingerprint.ID) int {
	for i, k := range in.known {
		if k.file != nil && k.ID == id {
			return i
		}
	}
	return -1
}

func (in *Input) removeKnown(i int) {
	in.mu.Lock()
	in.known = slices.Delete(in.known, i, i+1)
	in.mu.Unlock()
}

// openCandidate opens a file found by the globs, resuming at a known position when its identity
// matches one.
func (in *Input) openCandidate(c *candidate, now time.Time) {
	fd, err := os.Open(c.path)
	if err != nil {
		// A file deleted since the scan stays waiting: the next scan counts it if it is gone.
		if !errors.Is(err, os.ErrNotExist) && err.Error() != c.err {
			in.log.Warn("opening file", "path", c.path, "err", err)
		}
		c.err = err.Error()
		return
	}
	fi, err := fd.Stat()
	var id fingerprint.ID
	if err == nil {
		id, _ = fingerprint.IDOf(fi)
	}
	if err != nil || id != c.id {
		fd.Close() // the path holds another file now; the next scan sorts it out
		return
	}
	fp, err := fingerprint.Read(fd, in.fpBuf)
	if err != nil {
		fd.Close()
		if err.Error() != c.err {
			in.log.Warn("opening file", "path", c.path, "err", err)
		}
		c.err = err.Error()
		return
	}
	full := fp.Full(len(in.fpBuf))
	if full {
		// A copy of a file being read is most likely copytruncate's copy made before the
		// truncation: wait for the truncation, after which the copy resumes where the original
		// was. Bounded, because two different files may start with the same bytes.
		if o := in.byFP[fp.Sum]; o != nil && now.Sub(c.firstSeen) < in.opts.RotateWait {
			fd.Close()
			if c.copyOf == "" {
				in.log.Info("file starts like one being read: waiting for a truncation", "path", c.path, "original", o.Path)
			}
			c.copyOf = o.Path
			return
		}
	}
	ident := fingerprint.Identity{ID: id, Fingerprint: fp}
	var f, copyOf *File
	offset := int64(0)
	if i := in.match(ident, fd, fi.Size()); i >= 0 {
		k := in.known[i]
		in.removeKnown(i)
		offset = k.offset
		if k.truncated != nil {
			k.truncated.split.Reset() // the copy holds the unfinished line whole
			copyOf = k.truncated
		}
		if k.file != nil {
			offset = k.file.offset
		}
		switch {
		case offset > fi.Size():
			in.log.Warn("file is shorter than the position remembered for it: reading it from the start",
				"path", c.path, "position", offset, "size", fi.Size())
			offset = 0
		case k.file != nil:
			f = k.file
		}
		if offset > 0 {
			in.log.Info("resuming file", "path", c.path, "offset", offset, "remembered_as", k.path)
		}
	}
	if f == nil {
		f = in.newFile(c.path, fd, ident, offset, now)
		if copyOf != nil && offset > 0 {
			f.acked.Store(min(copyOf.acked.Load(), offset))
			copyOf.next.Store(f)
		}
	} else {
		f.fd, f.lastData, f.goneAt = fd, now, time.Time{}
	}
	// Read in this pass up to the size seen before the fingerprint was taken, so that a short
	// fingerprint covers everything read.
	f.size = fi.Size()
	f.behind.Store(f.size - f.offset)
	delete(in.waiting, c.id)
	in.mu.Lock()
	f.ident = ident
	in.open = append(in.open, f)
	in.mu.Unlock()
	in.byID[id] = f
	if full {
		in.byFP[fp.Sum] = f
	}
	in.gaugeAdd(f)
	in.m.open.Add(1)
}

// match returns the index of the known entry that the file (id, r, size) is, or -1. Entries on
// the same inode are tried first, so that two files starting with the same bytes each get
// their own position.
//
// A file on another inode is taken for a remembered one by its first bytes alone, as a copy
// (copytruncate, or a rotation by copy while the agent was down) would be. Not when the
// remembered file's own inode is still found by the globs: then the other file only starts
// like it (a common header), and resuming it at the remembered offset would skip its first
// lines. Truncated content is the exception: its inode lives on, truncated, and its copy is
// exactly what it waits for.
func (in *Input) match(ident fingerprint.Identity, r io.ReaderAt, size int64) int {
	n := len(in.fpBuf)
	for pass := 0; pass < 2; pass++ {
		for i, k := range in.known {
			// A fingerprint longer than ours (FingerprintSize was larger in the last run) cannot
			// be checked with our buffer; that file is read again from its start.
			if (k.ID == ident.ID) != (pass == 0) || int64(k.Fingerprint.Len) > size || k.Fingerprint.Len > n {
				continue
			}
			if pass == 1 && k.truncated == nil && in.seen[k.ID] {
				continue
			}
			if k.Fingerprint.Len == ident.Fingerprint.Len && k.Fingerprint.Full(n) {
				if k.Fingerprint.Sum == ident.Fingerprint.Sum {
					return i
				}
				continue
			}
			ok, err := k.Identity.Match(ident.ID, r, in.fpBuf)
			if err != nil {
				in.log.Warn("matching file against a remembered position", "path", k.path, "err", err)
				continue
			}
			if ok {
				return i
			}
		}
	}
	return -1
}

// makeRoom closes the open file that has been idle longest (at its end, no growth for
// RotateWait) so that a waiting file can be opened. It reports whether a place was freed.
func (in *Input) makeRoom(now time.Time) bool {
	var idle *File
	for _, f := range in.open {
		if f.offset < f.size || !f.goneAt.IsZero() || now.Sub(f.lastData) < in.opts.RotateWait {
			continue
		}
		if idle == nil || f.lastData.Before(idle.lastData) {
			idle = f
		}
	}
	if idle == nil {
		return false
	}
	if idle.join != nil {
		idle.join.Flush(idle.emitJoined)
	}
	in.park(idle)
	return true
}

// park closes f and remembers it, so that it resumes where it was when it is found again and its
// acknowledged position is still reported. Its unfinished line is forgotten and read again
// then: there may be many more parked files than open ones, and none should pin a line buffer.
func (in *Input) park(f *File) {
	if err := in.closeFile(f); err != nil {
		in.log.Warn("closing file to make room", "path", f.Path, "err", err)
	}
	f.offset -= f.split.Pending()
	f.split.Release()
	in.mu.Lock()
	in.known = append(in.known, &known{Identity: f.ident, path: f.Path, offset: f.offset, file: f})
	in.mu.Unlock()
}

// retireGone closes files that no glob finds any more once they are read to the end and have
// been quiet for RotateWait.
func (in *Input) retireGone(now time.Time) {
	in.retired = slices.DeleteFunc(in.retired, func(f *File) bool { return f.acked.Load() >= f.offset })
	for i := 0; i < len(in.open); i++ {
		f := in.open[i]
		if f.goneAt.IsZero() || f.offset < f.size || now.Sub(f.goneAt) < in.opts.RotateWait || now.Sub(f.lastData) < in.opts.RotateWait {
			continue
		}
		in.flushFile(f)
		if err := in.closeFile(f); err != nil {
			in.log.Warn("closing finished file", "path", f.Path, "err", err)
		}
		f.finished = true
		in.retired = append(in.retired, f)
		in.log.Info("file finished", "path", f.Path, "read", f.offset)
		i--
	}
}

func (in *Input) newFile(path string, fd *os.File, ident fingerprint.Identity, offset int64, now time.Time) *File {
	f := &File{Path: path, in: in, fd: fd, ident: ident, offset: offset, size: offset, lastData: now,
		split: lines.New(in.opts.MaxLineBytes)}
	if in.rule != nil {
		f.join = multiline.NewJoiner(in.rule, in.opts.MaxLineBytes)
	}
	f.acked.Store(offset)
	return f
}

// closeFile closes f's descriptor and forgets it as open.
func (in *Input) closeFile(f *File) error {
	var err error
	if f.fd != nil {
		err = f.fd.Close()
		f.fd = nil
	}
	in.mu.Lock()
	if i := slices.Index(in.open, f); i >= 0 {
		in.open = slices.Delete(in.open, i, i+1)
	}
	in.mu.Unlock()
	if in.byID[f.ident.ID] == f {
		delete(in.byID, f.ident.ID)
	}
	if in.byFP[f.ident.Fingerprint.Sum] == f {
		delete(in.byFP, f.ident.Fingerprint.Sum)
	}
	in.gaugeRemove(f)
	in.m.open.Add(-1)
	if err != nil {
		return fmt.Errorf("closing %s: %w", f.Path, err)
	}
	return nil
}

// read reads f from its offset up to the size the last check saw, at most budget bytes (no limit
// if negative), and hands its records to the sink.
func (in *Input) read(f *File, now time.Time, budget int64) int64 {
	var total int64
	for f.offset < f.size && (budget < 0 || total < budget) {
		want := min(int64(len(in.buf)), f.size-f.offset)
		n, err := f.fd.ReadAt(in.buf[:want], f.offset)
		if n > 0 {
			in.consume(f, in.buf[:n], now)
			total += int64(n)
		}
		if err != nil {
			if errors.Is(err, io.EOF) {
				f.size = f.offset // shrank since the check; the next check sees why
			} else {
				in.readError(f, fmt.Errorf("reading %s: %w", f.Path, err))
			}
			break
		}
	}
	if total > 0 {
		f.readErr = ""
	}
	f.behind.Store(f.size - f.offset)
	in.nBytes += uint64(total)
	return total
}

// consume splits chunk, which starts at f.offset, into lines and hands them on.
func (in *Input) consume(f *File, chunk []byte, now time.Time) {
	s := f.split
	s.Feed(chunk)
	base := f.offset
	var n uint64
	if f.join == nil {
		for s.Scan() {
			if s.Truncated() {
				f.truncatedLine(s.Dropped())
			}
			in.sink.Record(f, s.Bytes(), base+int64(s.Offset()))
			n++
		}
		in.nRecords += n
	} else {
		for s.Scan() {
			if s.Truncated() {
				f.truncatedLine(s.Dropped())
			}
			f.join.Add(s.Bytes(), base+int64(s.Offset()), now, f.emitJoined)
			n++
		}
	}
	in.nLines += n
	f.offset += int64(len(chunk))
}

// flushFile hands on what f holds because its content ended: the unfinished last line and the
// pending multiline record.
func (in *Input) flushFile(f *File) {
	if f.split.Flush() {
		if f.split.Truncated() {
			f.truncatedLine(f.split.Dropped())
		}
		in.nLines++
		if f.join != nil {
			f.join.Add(f.split.Bytes(), f.offset, time.Time{}, f.emitJoined)
		} else {
			in.sink.Record(f, f.split.Bytes(), f.offset)
			in.nRecords++
		}
	}
	if f.join != nil {
		f.join.Flush(f.emitJoined)
	}
}

func (f *File) emitJoined(rec []byte, end int64, dropped int) {
	if dropped > 0 {
		f.noisy()
		f.truncRecords++
		f.truncRecordBytes += int64(dropped)
	}
	f.in.sink.Record(f, rec, end)
	f.in.nRecords++
}

func (f *File) truncatedLine(dropped int64) {
	f.noisy()
	f.truncLines++
	f.truncBytes += dropped
}

// noisy queues f for report, which logs its truncations once per pass.
func (f *File) noisy() {
	if f.truncLines == 0 && f.truncRecords == 0 {
		f.in.noisy = append(f.in.noisy, f)
	}
}

func (in *Input) readError(f *File, err error) {
	if err.Error() != f.readErr {
		in.log.Warn("file error", "path", f.Path, "err", err)
		f.readErr = err.Error()
	}
}

// report adds this pass's counts to the metrics and logs its truncations, one log line per file
// and pass: a file of over-long lines must not flood the log, and no drop goes unlogged.
func (in *Input) report() {
	m := in.m
	m.lines.Add(in.nLines)
	m.records.Add(in.nRecords)
	m.bytes.Add(in.nBytes)
	in.nLines, in.nRecords, in.nBytes = 0, 0, 0
	for _, f := range in.noisy {
		if f.truncLines > 0 {
			m.dropped[reasonLineTooLong].Add(uint64(f.truncLines))
			m.droppedBytes[reasonLineTooLong].Add(uint64(f.truncBytes))
			in.log.Warn("lines longer than maxLineBytes truncated", "path", f.Path, "lines", f.truncLines,
				"reason", reasonLineTooLong, "dropped_bytes", f.truncBytes, "max_line_bytes", in.opts.MaxLineBytes)
		}
		if f.truncRecords > 0 {
			m.dropped[reasonRecordTooLong].Add(uint64(f.truncRecords))
			m.droppedBytes[reasonRecordTooLong].Add(uint64(f.truncRecordBytes))
			in.log.Warn("multiline records longer than maxLineBytes truncated", "path", f.Path, "records", f.truncRecords,
				"reason", reasonRecordTooLong, "dropped_bytes", f.truncRecordBytes, "max_line_bytes", in.opts.MaxLineBytes)
		}
		f.truncLines, f.truncBytes, f.truncRecords, f.truncRecordBytes = 0, 0, 0, 0
	}
	in.noisy = in.noisy[:0]
}

// drop counts and logs an unavoidable loss of n bytes.
func (in *Input) drop(reason string, n int64, msg string, args ...any) {
	in.m.dropped[reason].Inc()
	in.m.droppedBytes[reason].Add(uint64(n))
	in.log.Warn(msg, append(args, "reason", reason, "dropped_bytes", n)...)
}
