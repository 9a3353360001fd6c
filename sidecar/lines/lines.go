// Package lines cuts a byte stream, handed over in chunks, into lines.
//
// A line that lies wholly inside a chunk is returned as a slice of that chunk, without copying.
// Only the start of a line that crosses a chunk boundary is copied, into a carry buffer that never
// grows beyond the line limit: a longer line is truncated (its rest is discarded up to the
// newline) and reported, never a reason to stop. Bytes are not interpreted: NUL bytes and invalid
// UTF-8 pass through unchanged.
package lines

import (
	"bytes"
	"unicode/utf8"
)

// releaseCarry is the capacity above which the carry buffer is freed once its line is complete,
// so that one long line does not pin MaxLineBytes of memory per idle file.
const releaseCarry = 4 << 10

// Splitter splits a stream into lines. Feed it a chunk, then call Scan until it returns false;
// the bytes after the last newline are carried over to the next chunk.
//
// A line is returned without its "\n" and without a "\r" just before it. A line longer than the
// limit is cut to the limit (at a UTF-8 rune boundary when the cut would split a valid rune).
type Splitter struct {
	max int

	chunk []byte
	pos   int // next byte of chunk to look at

	carry []byte // head of a line begun in an earlier chunk: at most max+1 bytes
	over  int64  // bytes of the carried line discarded because carry was full

	line      []byte
	truncated bool
	dropped   int64
}

// New returns a Splitter that keeps at most maxLineBytes of a line. maxLineBytes must be positive.
func New(maxLineBytes int) *Splitter {
	if maxLineBytes <= 0 {
		panic("lines: maxLineBytes must be positive")
	}
	return &Splitter{max: maxLineBytes}
}

// Feed sets the next chunk of the stream. The chunk must not change until Scan returns false;
// lines returned by Bytes may point into it.
func (s *Splitter) Feed(chunk []byte) {
	s.chunk = chunk
	s.pos = 0
}

// Scan advances to the next complete line of the current chunk. It returns false when the chunk
// holds no further newline; the bytes after the last newline are then carried over.
func (s *Splitter) Scan() bool {
	rest := s.chunk[s.pos:]
	i := bytes.IndexByte(rest, '\n')
	if i < 0 {
		s.hold(rest)
		s.pos = len(s.chunk)
		// The last line returned may be a carry buffer that was let go; an idle stream must not
		// keep it alive through line (up to maxLineBytes per file).
		s.line = nil
		return false
	}
	s.pos += i + 1
	if len(s.carry) == 0 {
		s.set(rest[:i], 0)
		return true
	}
	s.hold(rest[:i])
	s.set(s.carry, s.over)
	s.over = 0
	if cap(s.carry) > releaseCarry {
		s.carry = nil // s.line still points at the old array, which stays alive while in use
	} else {
		s.carry = s.carry[:0]
	}
	return true
}

// Bytes returns the line found by the last call to Scan or Flush. It is valid until the next
// call to Feed, Scan, Flush or Reset.
func (s *Splitter) Bytes() []byte { return s.line }

// Offset returns how many bytes of the current chunk have been consumed: after a successful
// Scan, the position just past the newline of the line returned. The line's end in the stream
// is the chunk's start plus Offset.
func (s *Splitter) Offset() int { return s.pos }

// Truncated reports whether the line returned last was cut to the limit.
func (s *Splitter) Truncated() bool { return s.truncated }

// Dropped returns how many bytes of the line returned last were discarded by truncation.
func (s *Splitter) Dropped() int64 { return s.dropped }

// Pending returns the length of the unfinished line (no newline yet): the bytes held and those
// already discarded from it. The line starts that many bytes before the end of the stream fed.
func (s *Splitter) Pending() int64 { return int64(len(s.carry)) + s.over }

// Flush returns the unfinished line held (the last line of a stream that ends without a newline)
// and forgets it; false if there is none. Call it only when the stream is known to have ended.
func (s *Splitter) Flush() bool {
	if len(s.carry) == 0 {
		return false
	}
	s.set(s.carry, s.over)
	if cap(s.carry) > releaseCarry {
		s.carry = nil // s.line keeps the array alive while in use
	} else {
		s.carry = s.carry[:0]
	}
	s.over = 0
	return true
}

// Reset forgets any unfinished line, for a stream that starts again from its beginning.
func (s *Splitter) Reset() {
	s.carry = s.carry[:0]
	s.over = 0
	s.chunk = nil
	s.pos = 0
	s.line = nil
}

// Release is Reset that also frees the carry buffer, for a stream that will be read again from
// before its unfinished line: the line is read whole again then, and an idle stream pins no
// memory meanwhile.
func (s *Splitter) Release() {
	s.Reset()
	s.carry = nil
}

// hold appends p to the carried line, up to max+1 bytes: one byte more than the limit so that a
// "\r" ending a line of exactly max bytes is not mistaken for an over-long line.
func (s *Splitter) hold(p []byte) {
	if len(p) == 0 {
		return
	}
	room := s.max + 1 - len(s.carry)
	if room <= 0 {
		s.over += int64(len(p))
		return
	}
	if len(p) > room {
		s.over += int64(len(p) - room)
		p = p[:room]
	}
	if n := len(s.carry) + len(p); n > cap(s.carry) {
		// Grow by doubling but never beyond max+1: append's growth would go up to a quarter
		// beyond it, and every idle file with an unfinished line keeps its carry.
		c := min(max(2*cap(s.carry), 512, n), s.max+1)
		nc := make([]byte, len(s.carry), c)
		copy(nc, s.carry)
		s.carry = nc
	}
	s.carry = append(s.carry, p...)
}

// set makes b the current line: b is the raw line without "\n", over the bytes already
// discarded from it.
func (s *Splitter) set(b []byte, over int64) {
	if over == 0 && len(b) > 0 && b[len(b)-1] == '\r' {
		b = b[:len(b)-1]
	}
	if over == 0 && len(b) <= s.max {
		s.line, s.truncated, s.dropped = b, false, 0
		return
	}
	cut := Cut(b, s.max)
	s.line, s.truncated, s.dropped = b[:cut], true, int64(len(b)-cut)+over
}

// Cut returns where to cut b so that it keeps at most max bytes: max, moved back to the start of
// a rune when the cut would split a valid UTF-8 sequence (so that a truncated line does not end
// in an invalid rune that the line did not have). Invalid UTF-8 is cut at max.
func Cut(b []byte, max int) int {
	if len(b) <= max {
		return len(b)
	}
	for i := max; i > 0 && i > max-utf8.UTFMax; i-- {
		if utf8.RuneStart(b[i]) {
			if i == max {
				return max
			}
			if r, size := utf8.DecodeRune(b[i:]); (r != utf8.RuneError || size > 1) && i+size > max {
				return i
			}
			return max
		}
	}
	return max
}
