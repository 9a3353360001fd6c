// Package multiline joins the lines of one record (a stack trace, a panic) into one.
//
// A Rule says which lines start a record; it is compiled once per input from config.Multiline
// and shared by the Joiners of that input's files, one Joiner per file. A Joiner holds the
// record being built until a line starts the next one, the file ends, or FlushTimeout passes
// without a new line (so the last record of a quiet file still leaves).
//
// Two rules hold for every preset and for a user's firstLine regex:
//   - With no record pending, any line starts one: a continuation line that arrives after its
//     record was flushed becomes a record of its own.
//   - Blank lines never end a record by themselves, and blank lines at the end of a record are
//     left out of it (their bytes still count towards the record's end offset). Stack traces
//     contain blank lines (Go dumps, Python's chained exceptions, the empty line that
//     java.util.logging prints after a trace); a regex decides for itself.
//
// # Memory
//
// A Joiner holds its pending record, at most maxBytes (its buffer never grows beyond that), and
// lets the buffer go once the record leaves if it grew beyond ReleaseAbove, so that an idle file
// pins nothing large (a file closed to make room drops its Joiner after a Flush). What
// Joiners hold beyond ReleaseAbove each is charged to a Budget, the process-wide Shared one
// (DefaultBudget, 16 MiB) unless Rule.SetBudget says otherwise: a record that would need more
// room than the budget has left is sent as it is, and its next line starts a new record; a first
// line that does not fit is sent at once as a record of its own (both counted in
// Budget.Flushes). No byte is lost; a record is cut. Without the budget, maxFiles
// files each holding a record of maxBytes (64 MiB at the defaults) would not fit the agent's
// memory limit; with it, Joiners hold at most ReleaseAbove per open file plus the budget
// (4 + 16 MiB at the defaults, one input).
package multiline

import (
	"bytes"
	"fmt"
	"regexp"
	"strings"
	"sync/atomic"
	"time"

	"github.com/sidelog/sidelog/sidecar/config"
	"github.com/sidelog/sidelog/sidecar/lines"
)

// Preset names, as in config.MultilinePresets.
const (
	Java   = "java"
	Python = "python"
	Go     = "go"
	Ruby   = "ruby"
)

// classifier decides whether line starts a new record. state is the preset's state after the
// previous line, n the number of lines in the pending record (0: none). It returns whether the
// line starts a record and the state after it.
type classifier func(state uint8, line []byte, n int) (start bool, next uint8)

// Memory limits of Joiners; see the package documentation.
const (
	// ReleaseAbove is the buffer capacity above which a Joiner lets its buffer go when its
	// record leaves.
	ReleaseAbove = 4 << 10
	// ShrinkAfter is how many records in a row, each using less than a quarter of a buffer
	// larger than ReleaseAbove, let it go while a file is busy (see Joiner.flush).
	ShrinkAfter = 64
	// DefaultBudget is the limit of the Shared budget.
	DefaultBudget = 16 << 20
)

// Budget bounds the bytes of buffer that Joiners hold beyond ReleaseAbove each. It is safe for
// concurrent use.
type Budget struct {
	limit   atomic.Int64
	held    atomic.Int64
	flushes atomic.Uint64
}

// NewBudget returns a budget of limit bytes.
func NewBudget(limit int64) *Budget {
	b := new(Budget)
	b.limit.Store(limit)
	return b
}

// Shared is the budget of every Rule that Compile returns: one for the whole process (the agent),
// whatever the number of inputs and files.
var Shared = NewBudget(DefaultBudget)

// Held returns the bytes of buffer charged now: what Joiners hold beyond ReleaseAbove each.
func (b *Budget) Held() int64 { return b.held.Load() }

// Flushes returns how many records were sent before their end because the budget was spent.
func (b *Budget) Flushes() uint64 { return b.flushes.Load() }

// Rule says where records start. It is safe for concurrent use.
type Rule struct {
	name     string
	classify classifier
	timeout  time.Duration
	budget   *Budget
}

// SetBudget makes the Joiners of r charge b instead of Shared. Call it before the first Joiner
// of r is made.
func (r *Rule) SetBudget(b *Budget) { r.budget = b }

// Compile builds the rule that m describes. A zero FlushTimeout means
// config.DefaultFlushTimeout.
func Compile(m *config.Multiline) (*Rule, error) {
	if m == nil {
		return nil, fmt.Errorf("multiline: no configuration")
	}
	r := &Rule{timeout: m.FlushTimeout.D(), budget: Shared}
	if r.timeout <= 0 {
		r.timeout = config.DefaultFlushTimeout
	}
	switch {
	case m.Preset != "" && m.FirstLine != "":
		return nil, fmt.Errorf("multiline: set preset or firstLine, not both")
	case m.FirstLine != "":
		re, err := regexp.Compile(m.FirstLine)
		if err != nil {
			return nil, fmt.Errorf("multiline.firstLine %q: %w", m.FirstLine, err)
		}
		r.name = "firstLine " + m.FirstLine
		r.classify = func(_ uint8, line []byte, n int) (bool, uint8) { return n == 0 || re.Match(line), 0 }
	case m.Preset == Java:
		r.name, r.classify = Java, java
	case m.Preset == Python:
		r.name, r.classify = Python, python
	case m.Preset == Go:
		r.name, r.classify = Go, goPanic
	case m.Preset == Ruby:
		r.name, r.classify = Ruby, ruby
	case m.Preset == "":
		return nil, fmt.Errorf("multiline: set preset or firstLine")
	default:
		return nil, fmt.Errorf("multiline.preset: unknown preset %q, want one of %s", m.Preset, strings.Join(config.MultilinePresets, ", "))
	}
	return r, nil
}

// String names the rule.
func (r *Rule) String() string { return r.name }

// FlushTimeout is how long a pending record waits for another line.
func (r *Rule) FlushTimeout() time.Duration { return r.timeout }

// Emit receives a complete record: rec (valid only during the call), the file offset just past
// its last line, and how many bytes were left out because the record exceeded the limit (0 when
// it is whole).
type Emit func(rec []byte, end int64, dropped int)

// Joiner builds the records of one file. It is not safe for concurrent use.
type Joiner struct {
	rule *Rule
	max  int

	buf     []byte // the pending record, lines joined with "\n", at most max bytes
	keep    int    // len(buf) without trailing blank lines
	n       int    // lines in the pending record; 0: none pending
	end     int64
	dropped int
	state   uint8
	last    time.Time // when the last line was added
	// small counts the records in a row that used less than a quarter of a buffer larger than
	// ReleaseAbove (flush).
	small int
}

// NewJoiner returns a Joiner for one file whose records keep at most maxBytes bytes.
func NewJoiner(r *Rule, maxBytes int) *Joiner {
	if maxBytes <= 0 {
		panic("multiline: maxBytes must be positive")
	}
	return &Joiner{rule: r, max: maxBytes}
}

// Add adds one line (without its newline) that ends at file offset end. If the line starts a
// new record, the pending one is complete and goes to emit first. line is copied.
func (j *Joiner) Add(line []byte, end int64, now time.Time, emit Emit) {
	start, state := j.rule.classify(j.state, line, j.n)
	if start || j.n == 0 {
		j.flush(emit, true)
	} else if !j.reserve(len(j.buf) + 1 + len(line)) {
		// The budget is spent: the record leaves as it is, and this line starts the next.
		j.rule.budget.flushes.Add(1)
		j.Flush(emit)
	}
	j.state = state
	if j.n == 0 && !j.reserve(len(line)) {
		// Not even this first line fits: it leaves at once, a record of its own, so that the
		// budget bounds first lines too (maxFiles of them could hold maxBytes each).
		j.rule.budget.flushes.Add(1)
		cut := lines.Cut(line, j.max)
		rec := line[:cut]
		if isBlank(rec) {
			rec = rec[:0]
		}
		emit(rec, end, len(line)-cut)
		return
	}
	j.append(line)
	j.n++
	j.end = end
	j.last = now
}

// reserve makes room in buf for n bytes (at most max) and reports whether it could: growing the
// buffer beyond ReleaseAbove takes from the budget, which may be spent.
func (j *Joiner) reserve(n int) bool {
	n = min(n, j.max)
	if n <= cap(j.buf) {
		return true
	}
	// Grow by doubling, from 512 bytes, never beyond max.
	c := max(2*cap(j.buf), 512, n)
	c = min(c, j.max)
	grow := charged(c) - charged(cap(j.buf))
	b := j.rule.budget
	if grow > 0 && b.held.Load()+grow > b.limit.Load() {
		return false
	}
	b.held.Add(grow)
	nb := make([]byte, len(j.buf), c)
	copy(nb, j.buf)
	j.buf = nb
	return true
}

// charged is what a buffer of capacity c takes from the budget: what it has beyond
// ReleaseAbove. Smaller buffers are kept between records (at most ReleaseAbove per file), and
// a Joiner dropped without a last Flush must not keep part of the budget for ever.
func charged(c int) int64 { return int64(max(c-ReleaseAbove, 0)) }

// free lets the buffer go and gives its charge back to the budget.
func (j *Joiner) free() {
	j.rule.budget.held.Add(-charged(cap(j.buf)))
	j.buf, j.small = nil, 0
}

func (j *Joiner) append(line []byte) {
	blank := isBlank(line)
	if j.n > 0 {
		if len(j.buf) >= j.max {
			j.dropped += 1 + len(line)
			return
		}
		j.buf = append(j.buf, '\n')
	}
	room := j.max - len(j.buf)
	if len(line) > room {
		cut := lines.Cut(line, room)
		j.dropped += len(line) - cut
		line = line[:cut]
	}
	j.buf = append(j.buf, line...) // Add reserved the room
	if !blank {
		j.keep = len(j.buf)
	}
}

// Pending reports whether a record is being built.
func (j *Joiner) Pending() bool { return j.n > 0 }

// Due reports whether the pending record has waited FlushTimeout since its last line.
func (j *Joiner) Due(now time.Time) bool {
	return j.n > 0 && now.Sub(j.last) >= j.rule.timeout
}

// Flush hands the pending record, if any, to emit.
func (j *Joiner) Flush(emit Emit) { j.flush(emit, false) }

// flush hands the pending record on. A long record leaves a buffer larger than ReleaseAbove
// behind, which an idle file must not pin: a flush from outside (the flush timeout, a drain, a
// file closed) frees it. busy is set when the flush is Add's, a new line having started the next
// record: the buffer is then kept for it, until ShrinkAfter records in a row have used less
// than a quarter of it. Freeing it after every long record made a file of stack traces a few
// KiB long grow a new buffer from 512 bytes for each one (15 KiB of garbage per trace, the
// agent's largest cost on such files).
func (j *Joiner) flush(emit Emit, busy bool) {
	if j.n == 0 {
		return
	}
	rec := j.buf[:j.keep]
	end, dropped := j.end, j.dropped
	j.n, j.keep, j.dropped, j.state = 0, 0, 0, 0
	j.buf = j.buf[:0]
	emit(rec, end, dropped)
	if cap(j.buf) <= ReleaseAbove {
		return
	}
	if busy {
		if len(rec)*4 >= cap(j.buf) {
			j.small = 0
			return
		}
		if j.small++; j.small < ShrinkAfter {
			return
		}
	}
	j.free()
}

// Reset forgets the pending record, for a file that starts again from its beginning.
func (j *Joiner) Reset() {
	j.n, j.keep, j.dropped, j.state = 0, 0, 0, 0
	j.buf = j.buf[:0]
	if cap(j.buf) > ReleaseAbove {
		j.free()
	}
}

// Retained returns the capacity of the Joiner's buffer: what it holds between lines.
func (j *Joiner) Retained() int { return cap(j.buf) }

// isBlank reports whether line holds nothing but spaces and tabs.
func isBlank(line []byte) bool {
	for _, c := range line {
		if c != ' ' && c != '\t' {
			return false
		}
	}
	return true
}

// indent returns the number of leading spaces and tabs.
func indent(line []byte) int {
	i := 0
	for i < len(line) && (line[i] == ' ' || line[i] == '\t') {
		i++
	}
	return i
}

func hasPrefix(b []byte, s string) bool { return len(b) >= len(s) && string(b[:len(s)]) == s }

// java: a log line starts a record; stack frames ("\tat ..."), "... N more", "Caused by:" and
// "Suppressed:" continue it, and so does an exception header ("java.lang.IllegalStateException:
// msg", a dotted class name ending in Exception, Error or Throwable) right after the record's
// first line, where loggers print it. "Exception in thread ..." starts a record.
func java(_ uint8, line []byte, n int) (bool, uint8) {
	if n == 0 {
		return true, 0
	}
	if isBlank(line) {
		return false, 0
	}
	i := indent(line)
	rest := line[i:]
	switch {
	case i > 0 && (hasPrefix(rest, "at ") || hasPrefix(rest, "...")):
		return false, 0
	case hasPrefix(rest, "Caused by: ") || hasPrefix(rest, "Suppressed: "):
		return false, 0
	case n == 1 && i == 0 && javaException(line):
		return false, 0
	}
	return true, 0
}

// javaException reports whether line starts with a qualified class name ending in Exception,
// Error or Throwable, followed by ":" or the end of the line.
func javaException(line []byte) bool {
	end, dot := len(line), false
	for i, c := range line {
		if c == ':' {
			end = i
			break
		}
		if c == '.' {
			dot = true
			continue
		}
		if !(c == '$' || c == '_' || '0' <= c && c <= '9' || 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z') {
			return false // a space or a date: not a class name
		}
	}
	name := line[:end]
	return dot && (bytes.HasSuffix(name, []byte("Exception")) || bytes.HasSuffix(name, []byte("Error")) || bytes.HasSuffix(name, []byte("Throwable")))
}

// Python states.
const (
	pyNone       uint8 = iota
	pyTraceback        // inside "Traceback (most recent call last):" and its frames
	pyAfterError       // after the exception line that ends a traceback
	pyChained          // after "During handling of the above exception ..." or "The above exception was ..."
)

// python follows Fluent Bit's python parser: a traceback is a record of its own, from
// "Traceback (most recent call last):" through the indented frames to the exception line; the
// log line before it ("ERROR ... request failed") stays a record by itself. Unlike Fluent Bit,
// chained exceptions ("During handling of the above exception, another exception occurred:",
// "The above exception was the direct cause of the following exception:") stay in the same
// record as the tracebacks they join, and the exception line need not contain a colon
// (KeyboardInterrupt).
func python(state uint8, line []byte, n int) (bool, uint8) {
	tb := string(bytes.TrimRight(line, " \t")) == "Traceback (most recent call last):"
	if n > 0 {
		blank := isBlank(line)
		switch state {
		case pyTraceback:
			if blank || indent(line) > 0 {
				return false, pyTraceback
			}
			return false, pyAfterError
		case pyAfterError, pyChained:
			switch {
			case blank:
				return false, state
			case string(line) == "During handling of the above exception, another exception occurred:" ||
				string(line) == "The above exception was the direct cause of the following exception:":
				return false, pyChained
			case tb && state == pyChained:
				return false, pyTraceback
			}
		default:
			if blank {
				return false, pyNone
			}
		}
	}
	if tb {
		return true, pyTraceback
	}
	return true, pyNone
}

// Go states.
const (
	goNone uint8 = iota
	goDump       // inside a panic or fatal error and its goroutine dump
)

// goPanic joins a panic ("panic: ...", "fatal error: ...", "runtime: ...", "SIGQUIT: quit",
// net/http's "http: panic serving ...") with the goroutine dump after it: "[signal ...]",
// "goroutine N [state]:" headers, function lines, indented file lines, "created by ...", blank
// lines between goroutines and the "exit status 2" of go run. Any other line ends the dump.
func goPanic(state uint8, line []byte, n int) (bool, uint8) {
	if n > 0 {
		if isBlank(line) {
			return false, state
		}
		if state == goDump && goDumpLine(line) {
			return false, goDump
		}
	}
	if goPanicStart(line) {
		return true, goDump
	}
	return true, goNone
}

func goPanicStart(line []byte) bool {
	if hasPrefix(line, "panic: ") || hasPrefix(line, "fatal error: ") || hasPrefix(line, "runtime: ") {
		return true
	}
	if bytes.Contains(line, []byte("http: panic serving ")) {
		return true
	}
	// Fatal signals: "SIGQUIT: quit", "SIGSEGV: segmentation violation".
	if hasPrefix(line, "SIG") {
		i := 3
		for i < len(line) && 'A' <= line[i] && line[i] <= 'Z' {
			i++
		}
		return i > 3 && hasPrefix(line[i:], ": ")
	}
	return false
}

func goDumpLine(line []byte) bool {
	if line[0] == ' ' || line[0] == '\t' {
		return true
	}
	for _, p := range []string{"goroutine ", "[signal ", "created by ", "exit status ", "runtime stack:", "runtime: ", "fatal error: ", "PC=", "...additional frames elided..."} {
		if hasPrefix(line, p) {
			return true
		}
	}
	// A function line: "main.main()", "main.(*T).f(0xc000010000, {0x1, 0x2})", "panic({...})".
	// The name before the first "(" has no spaces, which a log line's text has.
	i := bytes.IndexByte(line, '(')
	return i > 0 && line[len(line)-1] == ')' && bytes.IndexByte(line[:i], ' ') < 0
}

// Ruby states.
const (
	rbNone      uint8 = iota
	rbException       // after an exception's first line or a backtrace line
	rbBlank           // a blank line inside an exception: error_highlight's snippet may follow
	rbSnippet         // after error_highlight's source line: its "^^^^" line follows
	rbReversed        // inside Ruby 2.5-2.7's "Traceback (most recent call last):" form
)

// ruby joins an exception ("app.rb:3:in `f': msg (Class)") with its "\tfrom ..." lines and
// error_highlight snippet, Ruby 2.5-2.7's reversed "Traceback (most recent call last):" form
// ending with the message line, and backtrace lines ("app.rb:3:in `f'") printed after a log line.
func ruby(state uint8, line []byte, n int) (bool, uint8) {
	if n > 0 {
		blank := isBlank(line)
		i := indent(line)
		if i > 0 && rubyFrom(line[i:]) {
			if state == rbReversed {
				return false, rbReversed
			}
			return false, rbException
		}
		switch state {
		case rbReversed:
			if blank {
				return false, rbReversed
			}
			if rubyFrame(line) {
				return false, rbException // the message line ends the reversed form
			}
		case rbException:
			switch {
			case blank:
				return false, rbBlank
			case i > 0, rubyFrame(line) && line[len(line)-1] == '\'':
				return false, rbException
			}
		case rbBlank:
			switch {
			case blank:
				return false, rbBlank
			case rubyFrame(line):
				return false, rbException
			default:
				return false, rbSnippet
			}
		case rbSnippet:
			if !blank && len(bytes.Trim(line, " \t^~")) == 0 {
				return false, rbException
			}
		default:
			if blank {
				return false, rbNone
			}
			if n == 1 && rubyFrame(line) && line[len(line)-1] == '\'' {
				return false, rbException
			}
		}
	}
	switch {
	case string(bytes.TrimRight(line, " \t")) == "Traceback (most recent call last):":
		return true, rbReversed
	case rubyFrame(line):
		return true, rbException
	}
	return true, rbNone
}

// rubyFrom reports whether s (indentation removed) is a backtrace line: "from x.rb:1:in ..."
// or, in the reversed form, "2: from x.rb:1:in ...".
func rubyFrom(s []byte) bool {
	i := 0
	for i < len(s) && '0' <= s[i] && s[i] <= '9' {
		i++
	}
	if i > 0 {
		if !hasPrefix(s[i:], ": ") {
			return false
		}
		s = s[i+2:]
	}
	return hasPrefix(s, "from ")
}

// rubyFrame reports whether line begins with a location: a word without spaces ending in
// ":<line>:in" and a space, as in "app.rb:3:in `f'" or "<internal:numeric>:237:in 'times'".
func rubyFrame(line []byte) bool {
	sp := bytes.IndexByte(line, ' ')
	if sp < 0 {
		return false
	}
	word := line[:sp]
	if !bytes.HasSuffix(word, []byte(":in")) {
		return false
	}
	word = word[:len(word)-3]
	i := len(word)
	for i > 0 && '0' <= word[i-1] && word[i-1] <= '9' {
		i--
	}
	return i < len(word) && i > 1 && word[i-1] == ':'
}
