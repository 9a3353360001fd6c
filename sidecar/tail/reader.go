package tail

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/sidelog/sidelog/sidecar/fingerprint"
	"github.com/sidelog/sidelog/sidecar/lines"
	"github.com/sidelog/sidelog/sidecar/multiline"
)

// reader is an open file's descriptor and what turns its bytes into records: the line splitter
// and, with multiline, the joiner. It exists only while the file is open, so a file closed to
// make room holds no line, no record and no descriptor.
type reader struct {
	fd    *os.File
	split *lines.Splitter
	join  *multiline.Joiner // nil: one record per line
	// head is the file's first bytes, as many as its fingerprint covers. A growth check compares
	// the file's first bytes with it, which costs a read and a compare, not a hash.
	head []byte
}

func newReader(fd *os.File, head []byte, maxLine int, rule *multiline.Rule) *reader {
	r := &reader{fd: fd, split: lines.New(maxLine), head: head}
	if rule != nil {
		r.join = multiline.NewJoiner(rule, maxLine)
	}
	return r
}

// readHead reads the first len(buf) bytes of fd (fewer if the file is shorter) and returns a
// copy of them with their fingerprint.
func readHead(fd io.ReaderAt, buf []byte) ([]byte, fingerprint.Fingerprint, error) {
	n, err := fd.ReadAt(buf, 0)
	if err != nil && !errors.Is(err, io.EOF) {
		return nil, fingerprint.Fingerprint{}, fmt.Errorf("reading fingerprint: %w", err)
	}
	return bytes.Clone(buf[:n]), fingerprint.Of(buf[:n]), nil
}

// sameHead reports whether the file still starts with the bytes it started with when it was
// opened: a file rewritten past its old size between two checks is told apart only by them.
// scratch must hold len(r.head) bytes.
func (r *reader) sameHead(scratch []byte) (bool, error) {
	if len(r.head) == 0 {
		return true, nil
	}
	n, err := r.fd.ReadAt(scratch[:len(r.head)], 0)
	if err != nil && !errors.Is(err, io.EOF) {
		return false, err
	}
	return n == len(r.head) && bytes.Equal(scratch[:n], r.head), nil
}

// read reads f from its offset up to the size the last check saw, at most budget bytes (no limit
// if negative), and hands its records to the sink. buf is the tailer's shared read buffer.
//
// With a rate limit (Options.RateLimit), it reads no more bytes than the limiter allows and
// stops after as many lines as it allows, leaving the rest in the file: what is not read is not
// held. A line cut by the byte budget is carried by the splitter (bounded by MaxLineBytes) and
// finished by a later read, so a line longer than a second's budget passes in pieces. Drain
// reads without the limit.
func (t *Tailer) read(f *File, now time.Time, budget int64) int64 {
	r := f.rd
	lim := t.limit
	if t.drained {
		lim = nil
	}
	var total int64
	for f.pos.Offset < f.pos.Size && (budget < 0 || total < budget) {
		want := min(int64(len(t.buf)), f.pos.Size-f.pos.Offset)
		maxLines := int64(-1)
		if lim != nil {
			bytes, lines := lim.Allow(now)
			if bytes <= 0 || lines <= 0 {
				t.throttled = true
				break
			}
			want = min(want, bytes)
			if lines < want {
				maxLines = lines // no limit when even one-byte lines could not reach it
			}
		}
		n, err := r.fd.ReadAt(t.buf[:want], f.pos.Offset)
		if n > 0 {
			used, lines := t.consume(f, t.buf[:n], now, maxLines)
			lim.Take(int64(used), lines)
			total += int64(used)
			if used < n {
				t.throttled = true
				break // the line budget is spent; the rest of the chunk is read again later
			}
		}
		if err != nil {
			if errors.Is(err, io.EOF) {
				f.pos.Size = f.pos.Offset // shrank since the check; the next check sees why
			} else {
				t.readError(f, fmt.Errorf("reading %s: %w", f.Path, err))
			}
			break
		}
	}
	if total > 0 {
		f.readErr = ""
	}
	f.behind.Store(f.pos.Size - f.pos.Offset)
	t.nBytes += uint64(total)
	return total
}

// consume splits chunk, which starts at f's offset, into lines and hands them on, stopping after
// maxLines lines (no limit if negative). It returns the bytes consumed (the whole chunk, or up to
// the end of the last line handed on when it stopped) and the lines handed on. Bytes after the
// last newline of a chunk consumed whole are carried by the splitter.
func (t *Tailer) consume(f *File, chunk []byte, now time.Time, maxLines int64) (used int, lines int64) {
	s, j := f.rd.split, f.rd.join
	s.Feed(chunk)
	base := f.pos.Offset
	used = len(chunk)
	for lines != maxLines && s.Scan() {
		if s.Truncated() {
			f.truncatedLine(s.Dropped())
		}
		if j == nil {
			t.sink.Record(f, s.Bytes(), base+int64(s.Offset()))
			t.nRecords++
		} else {
			j.Add(s.Bytes(), base+int64(s.Offset()), now, f.emitJoined)
		}
		lines++
		if lines == maxLines {
			// The splitter carries nothing after a complete line: what follows in the chunk is
			// read again, from the line's end, by a later read.
			used = s.Offset()
		}
	}
	t.nLines += uint64(lines)
	f.pos.Offset += int64(used)
	return used, lines
}

// flush hands on what f's reader holds because its content ended: the unfinished last line and
// the pending multiline record.
func (t *Tailer) flush(f *File) {
	r := f.rd
	if r == nil {
		return
	}
	if r.split.Flush() {
		if r.split.Truncated() {
			f.truncatedLine(r.split.Dropped())
		}
		t.nLines++
		if r.join != nil {
			r.join.Add(r.split.Bytes(), f.pos.Offset, time.Time{}, f.emitJoined)
		} else {
			t.sink.Record(f, r.split.Bytes(), f.pos.Offset)
			t.nRecords++
		}
	}
	if r.join != nil {
		r.join.Flush(f.emitJoined)
	}
}

// flushRecord hands on the pending multiline record, so that the file's offset, less its
// unfinished line, is the end of its last complete record.
func (f *File) flushRecord() {
	if f.rd != nil && f.rd.join != nil {
		f.rd.join.Flush(f.emitJoined)
	}
}

// boundary returns the end of f's last complete line: its offset less its unfinished line.
func (f *File) boundary() int64 {
	if f.rd == nil {
		return f.pos.Offset
	}
	return f.pos.Offset - f.rd.split.Pending()
}

// closeFd closes the descriptor, keeping the splitter and joiner.
func (r *reader) closeFd() error {
	if r.fd == nil {
		return nil
	}
	err := r.fd.Close()
	r.fd = nil
	return err
}
