package lines

import (
	"bytes"
	"fmt"
	"strings"
	"testing"
	"unicode/utf8"
)

type line struct {
	text      string
	end       int64 // stream offset just past the newline (or the end of a flushed partial line)
	truncated bool
	dropped   int64
}

// run feeds input in chunks of n bytes and returns every line, then the flushed partial line.
func run(input string, n, max int) []line {
	s := New(max)
	var out []line
	var off int64
	for start := 0; start < len(input); start += n {
		chunk := []byte(input[start:min(start+n, len(input))])
		s.Feed(chunk)
		for s.Scan() {
			out = append(out, line{string(s.Bytes()), off + int64(s.Offset()), s.Truncated(), s.Dropped()})
		}
		off += int64(len(chunk))
	}
	if s.Flush() {
		out = append(out, line{string(s.Bytes()), off, s.Truncated(), s.Dropped()})
	}
	return out
}

func TestSplitter(t *testing.T) {
	tests := []struct {
		name  string
		input string
		max   int
		want  []line
	}{
		{"empty", "", 10, nil},
		{"one line", "abc\n", 10, []line{{"abc", 4, false, 0}}},
		{"empty lines", "\n\n", 10, []line{{"", 1, false, 0}, {"", 2, false, 0}}},
		{"crlf", "a\r\nb\r\n", 10, []line{{"a", 3, false, 0}, {"b", 6, false, 0}}},
		{"lone cr kept inside", "a\rb\n", 10, []line{{"a\rb", 4, false, 0}}},
		{"partial flushed", "abc\nde", 10, []line{{"abc", 4, false, 0}, {"de", 6, false, 0}}},
		{"partial with cr flushed", "ab\r", 10, []line{{"ab", 3, false, 0}}},
		{"exactly max", "0123456789\n", 10, []line{{"0123456789", 11, false, 0}}},
		{"exactly max with crlf", "0123456789\r\n", 10, []line{{"0123456789", 12, false, 0}}},
		{"one over max", "0123456789X\nok\n", 10, []line{{"0123456789", 12, true, 1}, {"ok", 15, false, 0}}},
		{"far over max", strings.Repeat("x", 100) + "\nok\n", 10, []line{{strings.Repeat("x", 10), 101, true, 90}, {"ok", 104, false, 0}}},
		{"over max partial flushed", strings.Repeat("y", 30), 10, []line{{strings.Repeat("y", 10), 30, true, 20}}},
		{"nul bytes", "a\x00b\n\x00\n", 10, []line{{"a\x00b", 4, false, 0}, {"\x00", 6, false, 0}}},
		{"invalid utf8", "\xff\xfe\xc3\n", 10, []line{{"\xff\xfe\xc3", 4, false, 0}}},
		{"cut before split rune", "abcdefghi\u00e9\n", 10, []line{{"abcdefghi", 12, true, 2}}},
		{"cut keeps whole rune", "abcdefgh\u00e9x\n", 10, []line{{"abcdefgh\u00e9", 12, true, 1}}},
	}
	for _, tt := range tests {
		// Every chunk size, so that every line start, newline and "\r" falls on a chunk boundary
		// somewhere.
		for n := 1; n <= len(tt.input)+1; n++ {
			t.Run(fmt.Sprintf("%s/chunk=%d", tt.name, n), func(t *testing.T) {
				got := run(tt.input, n, tt.max)
				if fmt.Sprint(got) != fmt.Sprint(tt.want) {
					t.Errorf("got  %+v\nwant %+v", got, tt.want)
				}
			})
		}
	}
}

func TestLinesPointIntoChunk(t *testing.T) {
	chunk := []byte("first\nsecond\n")
	s := New(100)
	s.Feed(chunk)
	if !s.Scan() {
		t.Fatal("no line")
	}
	if &s.Bytes()[0] != &chunk[0] {
		t.Error("a line inside one chunk was copied")
	}
}

func TestCarryStaysBounded(t *testing.T) {
	s := New(64)
	// A megabyte without a newline, in 1 KiB chunks: the carry must not grow past the limit.
	chunk := bytes.Repeat([]byte("z"), 1024)
	for range 1024 {
		s.Feed(chunk)
		for s.Scan() {
			t.Fatal("line without newline")
		}
		if len(s.carry) > 65 || cap(s.carry) > releaseCarry {
			t.Fatalf("carry holds %d bytes (cap %d), limit is 64", len(s.carry), cap(s.carry))
		}
	}
	if s.Pending() != 1<<20 {
		t.Errorf("Pending = %d, want the whole unfinished line %d", s.Pending(), 1<<20)
	}
	s.Feed([]byte("\n"))
	if !s.Scan() || !s.Truncated() || len(s.Bytes()) != 64 || s.Dropped() != 1<<20-64 {
		t.Fatalf("got %d bytes, truncated %v, dropped %d", len(s.Bytes()), s.Truncated(), s.Dropped())
	}
}

// TestCarryCapacity: a line of the limit, carried over many chunks, never gets a buffer larger
// than the limit (append alone would grow it up to a quarter beyond).
func TestCarryCapacity(t *testing.T) {
	const max = 64 << 10
	s := New(max)
	chunk := bytes.Repeat([]byte("y"), 1000)
	for range max / 1000 {
		s.Feed(chunk)
		for s.Scan() {
			t.Fatal("line without newline")
		}
		if c := cap(s.carry); c > max+1 {
			t.Fatalf("carry capacity %d, beyond the limit %d+1", c, max)
		}
	}
	s.Feed([]byte("\n"))
	if !s.Scan() || len(s.Bytes()) != max/1000*1000 {
		t.Fatalf("line of %d bytes", len(s.Bytes()))
	}
}

// TestIdleHoldsNothing: a long line carried across chunks and completed by the last bytes of a
// chunk is not kept alive once the chunk is done (through the last line returned), nor after a
// Flush: an idle file must not pin up to maxLineBytes.
func TestIdleHoldsNothing(t *testing.T) {
	s := New(64 << 10)
	long := bytes.Repeat([]byte("w"), 40<<10)
	s.Feed(long[:30<<10])
	for s.Scan() {
		t.Fatal("line without newline")
	}
	s.Feed(append(long[30<<10:], '\n'))
	if !s.Scan() || len(s.Bytes()) != len(long) {
		t.Fatalf("got %d bytes, want the carried line of %d", len(s.Bytes()), len(long))
	}
	if s.Scan() {
		t.Fatal("a second line")
	}
	if s.line != nil || cap(s.carry) > releaseCarry {
		t.Errorf("at the end of the chunk the splitter still holds %d bytes of line and a carry of capacity %d", len(s.line), cap(s.carry))
	}
	s.Feed(long[:20<<10])
	for s.Scan() {
		t.Fatal("line without newline")
	}
	if !s.Flush() || len(s.Bytes()) != 20<<10 {
		t.Fatal("Flush did not return the unfinished line")
	}
	if cap(s.carry) > releaseCarry {
		t.Errorf("after Flush the carry keeps a capacity of %d", cap(s.carry))
	}
}

func TestReset(t *testing.T) {
	s := New(10)
	s.Feed([]byte("old partial"))
	for s.Scan() {
	}
	if got := s.Pending(); got != int64(len("old partial")) {
		t.Fatalf("Pending = %d, want %d", got, len("old partial"))
	}
	s.Reset()
	if s.Pending() != 0 {
		t.Fatal("Pending after Reset")
	}
	s.Feed([]byte("new\n"))
	if !s.Scan() || string(s.Bytes()) != "new" {
		t.Fatalf("got %q after Reset", s.Bytes())
	}
}

func TestCut(t *testing.T) {
	tests := []struct {
		in   string
		max  int
		want int
	}{
		{"abc", 5, 3},
		{"abcdef", 3, 3},
		{"ab\u20ac", 3, 2},         // € is 3 bytes: cutting at 3 would split it
		{"ab\u20ac", 4, 2},         // still inside €
		{"ab\u20ac", 5, 5},         // whole
		{"ab\u20acx", 5, 5},        // right after €
		{"\xff\xff\xff\xff", 2, 2}, // invalid: cut where asked
		{"a\ufffdb", 2, 1},         // a real U+FFFD is a valid rune too
	}
	for _, tt := range tests {
		got := Cut([]byte(tt.in), tt.max)
		if got != tt.want {
			t.Errorf("Cut(%q, %d) = %d, want %d", tt.in, tt.max, got, tt.want)
		}
		if utf8.ValidString(tt.in) && !utf8.ValidString(tt.in[:got]) {
			t.Errorf("Cut(%q, %d) split a rune", tt.in, tt.max)
		}
	}
}

// BenchmarkSplitter measures splitting 200-byte lines out of 256 KiB chunks, as the tailer does.
func BenchmarkSplitter(b *testing.B) {
	line := strings.Repeat("x", 199) + "\n"
	chunk := []byte(strings.Repeat(line, (256<<10)/len(line)))
	nlines := bytes.Count(chunk, []byte("\n"))
	s := New(64 << 10)
	b.SetBytes(int64(len(chunk)))
	b.ReportAllocs()
	var total int
	for b.Loop() {
		s.Feed(chunk)
		for s.Scan() {
			total += len(s.Bytes())
		}
	}
	b.ReportMetric(float64(nlines)*float64(b.N)/b.Elapsed().Seconds(), "lines/s")
	if total == 0 {
		b.Fatal("no lines")
	}
}
