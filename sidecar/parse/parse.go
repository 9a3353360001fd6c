// Package parse is the agent's parse stage: it turns a log line that is a JSON object into the
// entries of a MessagePack map, without building Go values on the way.
//
// It accepts exactly the objects that encoding/json accepts and yields the same values, so that a
// line means the same to the agent as to any Go program (the tests fuzz it against encoding/json):
// strings are unescaped, including \uXXXX escapes and surrogate pairs, and invalid UTF-8 or a
// lone surrogate becomes U+FFFD as encoding/json makes it; nesting is limited to 10000 levels.
// Numbers written without a fraction or an exponent that fit an int64 become MessagePack
// integers, every other number a float 64 (encoding/json would make all of them float64, which
// loses the precision of large integers such as IDs and nanosecond timestamps).
//
// A line is read twice: once to check it and count the elements of each object and array, so that
// the second pass can write each map and array header before its elements without moving bytes.
package parse

import (
	"encoding/binary"
	"fmt"
	"math"
	"math/bits"
	"strconv"
	"unicode"
	"unicode/utf16"
	"unicode/utf8"
	"unsafe"

	"github.com/sidelog/sidelog/sidecar/msgpack"
)

// MaxDepth is how deeply objects and arrays may nest, the top-level object counting as one:
// encoding/json's limit.
const MaxDepth = 10000

// SyntaxError says why a line is not one JSON object.
type SyntaxError struct {
	// Offset is the byte of the line at which the problem was found.
	Offset int
	Msg    string
}

func (e *SyntaxError) Error() string {
	return fmt.Sprintf("parse: %s at offset %d", e.Msg, e.Offset)
}

// Transcoder transcodes JSON objects to MessagePack. The zero value is ready to use. It keeps
// scratch space between lines so that the steady state does not allocate, and so is not safe for
// concurrent use.
//
// The scratch grows with the widest line seen: about 12 bytes per byte of line at worst (a line
// of small numbers), so 768 KiB for a 64 KiB line. It is not kept for ever: once ShrinkAfter
// lines in a row have used less than a quarter of it, and it is larger than KeepScratch, it is
// let go, so one huge line does not pin its scratch while small ones follow. Share one
// Transcoder between the files of an input rather than keeping one per file.
type Transcoder struct {
	// Rename gives new names to top-level keys of the object (compared after unescaping); the
	// other keys keep theirs. It is read, never written.
	Rename map[string]string
	// TimeKey, if set, is the top-level key whose value Scan notes for TimeValue and EventTime
	// (compared with the key as written in the line, escapes and all; the last one wins, as
	// with encoding/json).
	TimeKey string

	line []byte
	// counts are the element counts of the line's objects and arrays in the order they open.
	counts []int
	// nums are the line's numbers in order, converted by the first pass.
	nums []number
	// strs are where the line's strings (keys included) end, in order, shifted left by two bits
	// that say whether the string has escapes or bytes beyond ASCII.
	strs    []int
	members int
	scanned bool
	// timeStart and timeEnd delimit the value of TimeKey in line; timeEnd is 0 when there is none.
	timeStart, timeEnd int
	timeEscaped        bool
	timeBuf            []byte // an unescaped time string
	// small counts the lines in a row that used less than a quarter of the scratch.
	small int
}

// Scratch limits: see Transcoder.
const (
	// KeepScratch is the scratch, in bytes, that is always kept: enough for lines of a few KiB.
	KeepScratch = 16 << 10
	// ShrinkAfter is how many lines in a row must use less than a quarter of a scratch larger
	// than KeepScratch before it is let go.
	ShrinkAfter = 64
)

// Sizes of the scratch elements, for Retained.
const (
	intSize    = int(unsafe.Sizeof(int(0)))
	numberSize = int(unsafe.Sizeof(number{}))
)

// Retained returns the bytes of scratch the Transcoder holds between lines.
func (t *Transcoder) Retained() int {
	return (cap(t.counts)+cap(t.strs))*intSize + cap(t.nums)*numberSize
}

// Release lets the scratch go (it is allocated again by the next line), for a Transcoder that
// will be idle for a while. A line scanned before must be appended before Release.
func (t *Transcoder) Release() {
	t.counts, t.nums, t.strs, t.small = nil, nil, nil, 0
	t.line, t.scanned = nil, false
}

// shrink lets the scratch go once lines have used little of it for long enough; it runs before
// a line is scanned, so that the scratch of the last line is still there for AppendMembers.
func (t *Transcoder) shrink() {
	if t.small >= ShrinkAfter {
		t.Release()
	}
}

// used counts towards shrink after a line: whether it used less than a quarter of the scratch.
func (t *Transcoder) used(counts, nums, strs int) {
	held := t.Retained()
	if held > KeepScratch && ((counts+strs)*intSize+nums*numberSize)*4 < held {
		t.small++
	} else {
		t.small = 0
	}
}

type number struct {
	isInt bool
	i     int64
	f     float64
}

// Scan checks that line is one JSON object (whitespace around it is allowed) and returns how many
// members it has. After a successful Scan, AppendMembers writes them.
func (t *Transcoder) Scan(line []byte) (members int, err error) {
	t.scanned = false
	t.shrink()
	s := scanner{b: line, counts: t.counts[:0], nums: t.nums[:0], strs: t.strs[:0], timeKey: t.TimeKey}
	s.space()
	if s.i >= len(s.b) || s.b[s.i] != '{' {
		err = s.fail("not a JSON object")
	} else if err = s.value(); err == nil {
		s.space()
		if s.i < len(s.b) {
			err = s.fail("invalid character " + strconv.QuoteRune(rune(s.b[s.i])) + " after the object")
		}
	}
	t.counts, t.nums, t.strs = s.counts, s.nums, s.strs
	t.used(len(s.counts), len(s.nums), len(s.strs))
	if err != nil {
		return 0, err
	}
	t.line, t.members, t.scanned = line, s.counts[0], true
	t.timeStart, t.timeEnd, t.timeEscaped = s.timeStart, s.timeEnd, s.timeEscaped
	return t.members, nil
}

// AppendMembers appends the members of the line last scanned as MessagePack key/value pairs
// (without a map header: the caller writes one that counts them with its own fields). It panics
// if the last Scan failed.
func (t *Transcoder) AppendMembers(dst []byte) []byte {
	if !t.scanned {
		panic("parse: AppendMembers without a successful Scan")
	}
	e := emitter{b: t.line, counts: t.counts, nums: t.nums, strs: t.strs}
	// The lengths of the keys to rename: a key of another length is not looked up (hashing
	// every top-level key was a tenth of the parser's time).
	for k := range t.Rename {
		if len(k) < 64 {
			e.renameLens |= 1 << len(k)
		} else {
			e.renameLens = ^uint64(0)
		}
	}
	e.space()
	return e.object(dst, t.Rename)
}

// AppendMap appends line as a MessagePack map. On error dst is returned unchanged.
func (t *Transcoder) AppendMap(dst, line []byte) ([]byte, error) {
	n, err := t.Scan(line)
	if err != nil {
		return dst, err
	}
	return t.AppendMembers(msgpack.AppendMapHeader(dst, n)), nil
}

// scanner is the first pass: it validates and records counts and numbers.
type scanner struct {
	b      []byte
	i      int
	depth  int
	counts []int
	nums   []number
	strs   []int

	timeKey            string
	timeStart, timeEnd int
	timeEscaped        bool
}

func (s *scanner) fail(msg string) error { return &SyntaxError{Offset: s.i, Msg: msg} }

func (s *scanner) unexpected() error {
	if s.i >= len(s.b) {
		return s.fail("unexpected end of line")
	}
	return s.fail("invalid character " + strconv.QuoteRune(rune(s.b[s.i])))
}

func (s *scanner) space() {
	for s.i < len(s.b) && isSpace(s.b[s.i]) {
		s.i++
	}
}

func isSpace(c byte) bool { return c == ' ' || c == '\t' || c == '\n' || c == '\r' }

// value scans the value at s.i, which is not white space.
func (s *scanner) value() error {
	if s.i >= len(s.b) {
		return s.unexpected()
	}
	switch c := s.b[s.i]; {
	case c == '{' || c == '[':
		return s.container(c)
	case c == '"':
		return s.str()
	case c == 't':
		return s.literal("true")
	case c == 'f':
		return s.literal("false")
	case c == 'n':
		return s.literal("null")
	case c == '-' || c >= '0' && c <= '9':
		return s.number()
	default:
		return s.unexpected()
	}
}

func (s *scanner) literal(lit string) error {
	if len(s.b)-s.i < len(lit) || string(s.b[s.i:s.i+len(lit)]) != lit {
		return s.fail("invalid literal, want " + lit)
	}
	s.i += len(lit)
	return nil
}

// container scans an object (open is '{') or an array ('[').
func (s *scanner) container(open byte) error {
	s.depth++
	if s.depth > MaxDepth {
		return s.fail("nested deeper than " + strconv.Itoa(MaxDepth))
	}
	close := byte(']')
	if open == '{' {
		close = '}'
	}
	idx := len(s.counts)
	s.counts = append(s.counts, 0)
	s.i++
	s.space()
	n := 0
	if s.i < len(s.b) && s.b[s.i] == close {
		s.i++
	} else {
		for {
			isTime := false
			if open == '{' {
				if s.i >= len(s.b) || s.b[s.i] != '"' {
					return s.unexpected()
				}
				keyStart := s.i + 1
				if err := s.str(); err != nil {
					return err
				}
				isTime = s.depth == 1 && s.timeKey != "" && string(s.b[keyStart:s.i-1]) == s.timeKey
				s.space()
				if s.i >= len(s.b) || s.b[s.i] != ':' {
					return s.unexpected()
				}
				s.i++
				s.space()
			}
			valueStart := s.i
			if err := s.value(); err != nil {
				return err
			}
			if isTime {
				s.timeStart, s.timeEnd = valueStart, s.i
				s.timeEscaped = s.b[valueStart] == '"' && s.strs[len(s.strs)-1]&strEscaped != 0
			}
			n++
			s.space()
			if s.i >= len(s.b) {
				return s.unexpected()
			}
			if c := s.b[s.i]; c == ',' {
				s.i++
				s.space()
				continue
			} else if c == close {
				s.i++
				break
			}
			return s.unexpected()
		}
	}
	s.counts[idx] = n
	s.depth--
	return nil
}

// plainASCII marks the ASCII bytes a string holds as they are: not '"', '\\' or a control
// character; plain adds the bytes beyond ASCII, for the rest of a string once one was seen.
var plainASCII, plain = func() (ascii, all [256]bool) {
	for c := 0x20; c < 256; c++ {
		all[c] = c != '"' && c != '\\'
		ascii[c] = all[c] && c < utf8.RuneSelf
	}
	return ascii, all
}()

// Flags of a string in Transcoder.strs.
const (
	strEscaped = 1 << iota
	strNonASCII
	strFlags = 2
)

func (s *scanner) str() error {
	s.i++ // '"'
	flags := 0
	tbl, ascii := &plainASCII, true
	for {
		s.i = skipPlain(s.b, s.i, ascii)
		for s.i < len(s.b) && tbl[s.b[s.i]] {
			s.i++
		}
		if s.i >= len(s.b) {
			return s.fail("unterminated string")
		}
		switch c := s.b[s.i]; {
		case c == '"':
			s.i++
			s.strs = append(s.strs, s.i<<strFlags|flags)
			return nil
		case c >= utf8.RuneSelf:
			flags |= strNonASCII
			tbl, ascii = &plain, false
			s.i++
		case c == '\\':
			flags |= strEscaped
			s.i++
			if s.i >= len(s.b) {
				return s.fail("unterminated string")
			}
			switch s.b[s.i] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
				s.i++
			case 'u':
				s.i++
				for range 4 {
					if s.i >= len(s.b) || unhex(s.b[s.i]) < 0 {
						return s.fail("invalid \\u escape")
					}
					s.i++
				}
			default:
				return s.fail("invalid escape")
			}
		default:
			return s.fail("control character in string")
		}
	}
}

// skipPlain returns the index of the first byte from i on that may end a run of plain string
// bytes: '"', '\\', a control character, or (ascii) a byte beyond ASCII -- or a byte at most 7
// before the end, which the caller's table loop then looks at. It looks at 8 bytes at a time
// (SWAR): strings are most of a JSON line, and a byte at a time was the parser's largest cost.
func skipPlain(b []byte, i int, ascii bool) int {
	const (
		ones = 0x0101010101010101
		high = 0x8080808080808080
	)
	for ; i+8 <= len(b); i += 8 {
		w := binary.LittleEndian.Uint64(b[i:])
		q, bs := w^(ones*'"'), w^(ones*'\\')
		// A byte of q or bs that is zero, a byte below 0x20, and (ascii) a byte with its high
		// bit set; only the lowest set bit is exact, which is the one used.
		m := (q-ones)&^q | (bs-ones)&^bs | (w-ones*0x20)&^w
		if ascii {
			m |= w
		}
		if m &= high; m != 0 {
			return i + bits.TrailingZeros64(m)/8
		}
	}
	return i
}

func unhex(c byte) rune {
	switch {
	case c >= '0' && c <= '9':
		return rune(c - '0')
	case c >= 'a' && c <= 'f':
		return rune(c - 'a' + 10)
	case c >= 'A' && c <= 'F':
		return rune(c - 'A' + 10)
	}
	return -1
}

func isDigit(c byte) bool { return c >= '0' && c <= '9' }

func (s *scanner) number() error {
	start := s.i
	neg := s.b[s.i] == '-'
	if neg {
		s.i++
	}
	if s.i >= len(s.b) || !isDigit(s.b[s.i]) {
		return s.fail("invalid number")
	}
	var mag uint64
	overflow := false
	if s.b[s.i] == '0' {
		s.i++
	} else {
		for s.i < len(s.b) && isDigit(s.b[s.i]) {
			d := uint64(s.b[s.i] - '0')
			if mag > (math.MaxUint64-d)/10 {
				overflow = true
			}
			mag = mag*10 + d
			s.i++
		}
	}
	isInt := true
	if s.i < len(s.b) && s.b[s.i] == '.' {
		isInt = false
		s.i++
		if s.i >= len(s.b) || !isDigit(s.b[s.i]) {
			return s.fail("invalid number: no digit after the decimal point")
		}
		for s.i < len(s.b) && isDigit(s.b[s.i]) {
			s.i++
		}
	}
	if s.i < len(s.b) && (s.b[s.i] == 'e' || s.b[s.i] == 'E') {
		isInt = false
		s.i++
		if s.i < len(s.b) && (s.b[s.i] == '+' || s.b[s.i] == '-') {
			s.i++
		}
		if s.i >= len(s.b) || !isDigit(s.b[s.i]) {
			return s.fail("invalid number: no digit in the exponent")
		}
		for s.i < len(s.b) && isDigit(s.b[s.i]) {
			s.i++
		}
	}
	if isInt && !overflow {
		switch {
		case !neg && mag <= math.MaxInt64:
			s.nums = append(s.nums, number{isInt: true, i: int64(mag)})
			return nil
		case neg && mag <= 1<<63:
			s.nums = append(s.nums, number{isInt: true, i: int64(-mag)})
			return nil
		}
	}
	lit := s.b[start:s.i]
	// The string does not outlive the call: ParseFloat copies it into any error it returns.
	f, err := strconv.ParseFloat(unsafe.String(unsafe.SliceData(lit), len(lit)), 64)
	if err != nil {
		s.i = start
		return s.fail("number out of the range of a float64")
	}
	s.nums = append(s.nums, number{f: f})
	return nil
}

// emitter is the second pass over a line the scanner accepted: it writes MessagePack.
type emitter struct {
	b      []byte
	i      int
	counts []int
	ci     int
	nums   []number
	ni     int
	strs   []int
	si     int
	// renameLens has bit n set when a key to rename has n bytes (all bits for one of 64 or more).
	renameLens uint64
}

func (e *emitter) space() {
	for e.i < len(e.b) && isSpace(e.b[e.i]) {
		e.i++
	}
}

// object writes the members of the object at e.i without a map header, renaming its keys per
// rename.
func (e *emitter) object(dst []byte, rename map[string]string) []byte {
	n := e.counts[e.ci]
	e.ci++
	e.i++ // '{'
	for range n {
		e.space()
		start := len(dst)
		var body int
		dst, body = e.str(dst)
		if n := len(dst) - body; rename != nil && e.renameLens&(1<<min(n, 63)) != 0 {
			if to, ok := rename[string(dst[body:])]; ok {
				dst = msgpack.AppendString(dst[:start], to)
			}
		}
		e.space()
		e.i++ // ':'
		e.space()
		dst = e.value(dst)
		e.space()
		e.i++ // ',' or '}'
	}
	if n == 0 {
		e.space()
		e.i++ // '}'
	}
	return dst
}

func (e *emitter) value(dst []byte) []byte {
	switch e.b[e.i] {
	case '{':
		dst = msgpack.AppendMapHeader(dst, e.counts[e.ci])
		return e.object(dst, nil)
	case '[':
		n := e.counts[e.ci]
		e.ci++
		e.i++
		dst = msgpack.AppendArrayHeader(dst, n)
		for range n {
			e.space()
			dst = e.value(dst)
			e.space()
			e.i++ // ',' or ']'
		}
		if n == 0 {
			e.space()
			e.i++
		}
		return dst
	case '"':
		dst, _ = e.str(dst)
		return dst
	case 't':
		e.i += 4
		return msgpack.AppendBool(dst, true)
	case 'f':
		e.i += 5
		return msgpack.AppendBool(dst, false)
	case 'n':
		e.i += 4
		return msgpack.AppendNil(dst)
	}
	for e.i < len(e.b) && isNumberByte(e.b[e.i]) {
		e.i++
	}
	num := e.nums[e.ni]
	e.ni++
	if num.isInt {
		return msgpack.AppendInt(dst, num.i)
	}
	return msgpack.AppendFloat64(dst, num.f)
}

func isNumberByte(c byte) bool {
	return isDigit(c) || c == '-' || c == '+' || c == '.' || c == 'e' || c == 'E'
}

// str writes the string at e.i as a str and returns where its bytes start in dst.
func (e *emitter) str(dst []byte) ([]byte, int) {
	start := e.i + 1
	end, flags := e.strs[e.si]>>strFlags, e.strs[e.si]&(1<<strFlags-1)
	e.si++
	raw := e.b[start : end-1]
	e.i = end
	if flags == 0 || flags == strNonASCII && utf8.Valid(raw) {
		dst = msgpack.AppendStringHeader(dst, len(raw))
		body := len(dst)
		return append(dst, raw...), body
	}
	// The unescaped length is unknown until written: write after the largest header, then move
	// the bytes back behind the header they need.
	hdr := len(dst)
	dst = msgpack.AppendStringHeader(dst, math.MaxUint32)
	body := len(dst)
	dst = unquote(dst, raw)
	n := len(dst) - body
	dst = msgpack.AppendStringHeader(dst[:hdr], n)
	moved := len(dst)
	dst = append(dst[:moved], dst[body:body+n]...)
	return dst, moved
}

// unquote appends the unescaped bytes of a string the scanner accepted, as encoding/json decodes
// them.
func unquote(dst, s []byte) []byte {
	for i := 0; i < len(s); {
		c := s[i]
		switch {
		case c == '\\':
			switch s[i+1] {
			case 'b':
				dst = append(dst, '\b')
			case 'f':
				dst = append(dst, '\f')
			case 'n':
				dst = append(dst, '\n')
			case 'r':
				dst = append(dst, '\r')
			case 't':
				dst = append(dst, '\t')
			case 'u':
				r := getu4(s[i:])
				i += 6
				if utf16.IsSurrogate(r) {
					if pair := utf16.DecodeRune(r, getu4(s[i:])); pair != unicode.ReplacementChar {
						i += 6
						dst = utf8.AppendRune(dst, pair)
						continue
					}
					r = unicode.ReplacementChar
				}
				dst = utf8.AppendRune(dst, r)
				continue
			default: // '"', '\\', '/'
				dst = append(dst, s[i+1])
			}
			i += 2
		case c < utf8.RuneSelf:
			dst = append(dst, c)
			i++
		default:
			r, size := utf8.DecodeRune(s[i:])
			if r == utf8.RuneError && size == 1 {
				dst = utf8.AppendRune(dst, utf8.RuneError)
			} else {
				dst = append(dst, s[i:i+size]...)
			}
			i += size
		}
	}
	return dst
}

// getu4 decodes the \uXXXX escape at the start of s, or returns -1 if there is none.
func getu4(s []byte) rune {
	if len(s) < 6 || s[0] != '\\' || s[1] != 'u' {
		return -1
	}
	var r rune
	for _, c := range s[2:6] {
		d := unhex(c)
		if d < 0 {
			return -1
		}
		r = r<<4 | d
	}
	return r
}
