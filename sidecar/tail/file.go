package tail

import (
	"sync/atomic"
	"time"
)

// File is one file being tailed (one identity: a rotated file is a new File). It is what the
// sink is handed with each record and acknowledges; it lives on while the file is closed to make
// room (then only its Position and acknowledgements are kept) and until its last records are
// acknowledged.
type File struct {
	Path string // the path it was found at
	Meta any    // for the sink's own per-file state (e.g. a pre-encoded record prefix); tail never touches it

	t *Tailer
	// pos is the file's identity and offsets. Its Identity is written under t.mu (Positions
	// reads it); Offset is the reader's offset while open, then where reading resumes.
	pos Position
	rd  *reader // nil while the file is not open

	acked  atomic.Int64
	behind atomic.Int64 // size - offset, for the bytes-behind gauge
	// next is the copy of this file's content that resumed where it was left (copytruncate).
	// The copy's offsets are this file's, so acknowledgements of records read here move the
	// copy's position too: until they come, the copy's position stays where this file's was.
	next atomic.Pointer[File]

	active   bool      // read something in the last pass, or left behind by the rate limit: check it even between scans
	lastData time.Time // when the file last grew (or was opened)
	goneAt   time.Time // when a scan first did not find it; zero while found
	skipped  bool      // started past its first byte (ReadFrom tail, IgnoreOlder): never removed (Options.Cleanup)
	// Lines and multiline records cut to MaxLineBytes in this pass, for one log line per pass.
	truncLines, truncBytes, truncRecords, truncRecordBytes int64
	readErr                                                string
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

// unacknowledged is what a drain that ends now leaves behind of f: the bytes seen but not
// acknowledged.
func (f *File) unacknowledged() int64 { return max(f.pos.Size-f.acked.Load(), 0) }

func (f *File) emitJoined(rec []byte, end int64, dropped int) {
	if dropped > 0 {
		f.noisy()
		f.truncRecords++
		f.truncRecordBytes += int64(dropped)
	}
	f.t.sink.Record(f, rec, end)
	f.t.nRecords++
}

func (f *File) truncatedLine(dropped int64) {
	f.noisy()
	f.truncLines++
	f.truncBytes += dropped
}

// noisy queues f for report, which logs its truncations once per pass.
func (f *File) noisy() {
	if f.truncLines == 0 && f.truncRecords == 0 {
		f.t.noisy = append(f.t.noisy, f)
	}
}
