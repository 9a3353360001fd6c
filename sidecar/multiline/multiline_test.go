package multiline

import (
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/sidelog/sidelog/sidecar/config"
	"github.com/sidelog/sidelog/sidecar/lines"
)

type record struct {
	text    string
	end     int64
	dropped int
}

// join splits content into lines as the tailer does and joins them with rule, flushing at the end.
func join(t testing.TB, m config.Multiline, content []byte, max int) []record {
	t.Helper()
	r, err := Compile(&m)
	if err != nil {
		t.Fatal(err)
	}
	j := NewJoiner(r, max)
	var out []record
	emit := func(rec []byte, end int64, dropped int) { out = append(out, record{string(rec), end, dropped}) }
	s := lines.New(1 << 20)
	s.Feed(content)
	now := time.Unix(0, 0)
	for s.Scan() {
		j.Add(s.Bytes(), int64(s.Offset()), now, emit)
	}
	if s.Flush() {
		j.Add(s.Bytes(), int64(len(content)), now, emit)
	}
	j.Flush(emit)
	return out
}

// want describes an expected record by its first line and its number of lines.
type want struct {
	first string
	lines int
}

func TestPresetsOnRealTraces(t *testing.T) {
	tests := []struct {
		file   string
		preset string
		want   []want
	}{
		{"java.log", Java, []want{
			{"2026-11-25 08:22:04.135 INFO [com.example.shop.App] starting shop on port 8080", 1},
			{"2026-11-25 08:22:04.296 SEVERE [com.example.shop.App] request failed: GET /orders/A-17", 10},
			{"2026-11-25 08:22:04.299 INFO [com.example.shop.App] next request", 1},
			{"2026-11-25 08:22:04.300 WARNING [com.example.shop.App] with suppressed", 6},
			{"2026-11-25 08:22:04.302 INFO [com.example.shop.App] shutting down", 1},
			{`Exception in thread "worker-1" java.lang.ArrayIndexOutOfBoundsException: Index 3 out of bounds for length 2`, 3},
			{"2026-11-25 08:22:04.306 INFO [com.example.shop.App] bye", 1},
		}},
		{"python.log", Python, []want{
			{"2026-11-25 08:22:07,662 INFO shop: starting shop on port 8080", 1},
			{"2026-11-25 08:22:07,662 ERROR shop: request failed: GET /orders/B-2", 1},
			{"Traceback (most recent call last):", 16},
			{"2026-11-25 08:22:07,675 INFO shop: next request", 1},
			{"2026-11-25 08:22:07,675 ERROR shop: while reporting a parse error", 1},
			{"Traceback (most recent call last):", 24},
			{"2026-11-25 08:22:07,677 INFO shop: shutting down", 1},
			{"Traceback (most recent call last):", 16},
		}},
		{"go.log", Go, []want{
			{"2026/11/25 08:22:16.067595 starting shop on :8080", 1},
			{"2026/11/25 08:22:16.067736 loaded 3 orders", 1},
			{"panic: runtime error: index out of range [5] with length 3", 20},
			{"loading config", 1},
			{"panic: runtime error: invalid memory address or nil pointer dereference", 6},
			{"waiting for results", 1},
			{"fatal error: all goroutines are asleep - deadlock!", 6},
			{"2026/11/25 08:22:17 listening", 1},
			{"2026/11/25 08:22:17 http: panic serving 127.0.0.1:50592: assignment to entry in nil map", 18},
			{"2026/11/25 08:22:17 request done, err: true", 1},
		}},
		{"ruby.log", Ruby, []want{
			{"I, [2026-01-05T10:00:00.000101 #1]  INFO -- : starting pry session", 1},
			{"/Library/Ruby/Gems/2.0.0/gems/pry-0.10.4/lib/pry/pry_instance.rb:529:in `select_prompt': private method `eval' called for nil:NilClass (NoMethodError)", 12},
			{"I, [2026-01-05T10:00:01.000202 #1]  INFO -- : ruby 2.6 prints the backtrace first", 1},
			{"Traceback (most recent call last):", 4},
			{"I, [2026-01-05T10:00:02.000303 #1]  INFO -- : ruby 3.3 adds error_highlight", 1},
			{"-e:1:in `foo': undefined local variable or method `time' for main (NameError)", 5},
			{"E, [2026-01-05T10:00:03.000404 #1] ERROR -- : render failed: undefined local variable or method `x'", 4},
			{"got nil", 1},
			{"nilraise.rb:11:in '<main>': undefined method 'length' for nil (NoMethodError)", 1},
			{"I, [2026-01-05T10:00:04.000505 #1]  INFO -- : bye", 1},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.preset, func(t *testing.T) {
			content, err := os.ReadFile("testdata/" + tt.file)
			if err != nil {
				t.Fatal(err)
			}
			got := join(t, config.Multiline{Preset: tt.preset}, content, 1<<20)
			var gotW []want
			for _, r := range got {
				gotW = append(gotW, want{strings.SplitN(r.text, "\n", 2)[0], strings.Count(r.text, "\n") + 1})
			}
			if fmt.Sprint(gotW) != fmt.Sprint(tt.want) {
				t.Errorf("records:\n%s\nwant:\n%s", describe(gotW), describe(tt.want))
			}
			checkNothingLost(t, content, got)
		})
	}
}

func describe(ws []want) string {
	var b strings.Builder
	for _, w := range ws {
		fmt.Fprintf(&b, "  %2d lines: %s\n", w.lines, w.first)
	}
	return b.String()
}

// checkNothingLost asserts that the records hold every non-blank line of content once, in order,
// and that their end offsets rise to the end of the content.
func checkNothingLost(t *testing.T, content []byte, recs []record) {
	t.Helper()
	var in, out []string
	for _, l := range strings.Split(string(content), "\n") {
		if !isBlank([]byte(l)) {
			in = append(in, l)
		}
	}
	var last int64
	for _, r := range recs {
		for _, l := range strings.Split(r.text, "\n") {
			if !isBlank([]byte(l)) {
				out = append(out, l)
			}
		}
		if r.end <= last {
			t.Errorf("record %q ends at %d, not after the previous one (%d)", r.text, r.end, last)
		}
		last = r.end
		if strings.HasSuffix(r.text, "\n") {
			t.Errorf("record %q ends with a blank line", r.text)
		}
	}
	if strings.Join(in, "\n") != strings.Join(out, "\n") {
		t.Errorf("lines lost, duplicated or reordered")
	}
	if last != int64(len(content)) {
		t.Errorf("last record ends at %d, want %d", last, len(content))
	}
}

func TestRules(t *testing.T) {
	tests := []struct {
		name  string
		m     config.Multiline
		input string
		want  []string
	}{
		{
			name:  "java: padded levels are not continuations",
			m:     config.Multiline{Preset: Java},
			input: " INFO [main] one\n WARN [main] two\n",
			want:  []string{" INFO [main] one", " WARN [main] two"},
		},
		{
			name:  "java: exception header only right after the first line",
			m:     config.Multiline{Preset: Java},
			input: "ERROR failed\njava.io.IOException: x\n\tat a.B.c(B.java:1)\nERROR again\nmsg\norg.Foo.BarError\n",
			want:  []string{"ERROR failed\njava.io.IOException: x\n\tat a.B.c(B.java:1)", "ERROR again", "msg\norg.Foo.BarError"},
		},
		{
			name:  "java: orphan frame after a flush starts a record",
			m:     config.Multiline{Preset: Java},
			input: "\tat a.B.c(B.java:1)\nnext\n",
			want:  []string{"\tat a.B.c(B.java:1)", "next"},
		},
		{
			name:  "python: exception line without colon ends the traceback",
			m:     config.Multiline{Preset: Python},
			input: "Traceback (most recent call last):\n  File \"x.py\", line 1, in <module>\n    time.sleep(9)\nKeyboardInterrupt\nnext\n",
			want:  []string{"Traceback (most recent call last):\n  File \"x.py\", line 1, in <module>\n    time.sleep(9)\nKeyboardInterrupt", "next"},
		},
		{
			name:  "python: blank line after a traceback is dropped from it",
			m:     config.Multiline{Preset: Python},
			input: "Traceback (most recent call last):\n  File \"x\"\nE: x\n\nnext\n",
			want:  []string{"Traceback (most recent call last):\n  File \"x\"\nE: x", "next"},
		},
		{
			name:  "python: traceback after a plain line starts its own record",
			m:     config.Multiline{Preset: Python},
			input: "ERROR boom\nTraceback (most recent call last):\n  File \"x\"\nE: x\n",
			want:  []string{"ERROR boom", "Traceback (most recent call last):\n  File \"x\"\nE: x"},
		},
		{
			name:  "go: a log line with parentheses ends a dump",
			m:     config.Multiline{Preset: Go},
			input: "panic: x\n\ngoroutine 1 [running]:\nmain.main()\n\t/a.go:1 +0x1\n2026/01/01 connected (ok)\n",
			want:  []string{"panic: x\n\ngoroutine 1 [running]:\nmain.main()\n\t/a.go:1 +0x1", "2026/01/01 connected (ok)"},
		},
		{
			name:  "go: SIGQUIT dump",
			m:     config.Multiline{Preset: Go},
			input: "SIGQUIT: quit\nPC=0x46e1a1 m=0 sigcode=0\n\ngoroutine 0 [idle]:\nruntime.futex(0x5a1f48, 0x80, 0x0, 0x0, 0x0, 0x0)\n\t/usr/local/go/src/runtime/sys_linux_amd64.s:553 +0x21\nok\n",
			want:  []string{"SIGQUIT: quit\nPC=0x46e1a1 m=0 sigcode=0\n\ngoroutine 0 [idle]:\nruntime.futex(0x5a1f48, 0x80, 0x0, 0x0, 0x0, 0x0)\n\t/usr/local/go/src/runtime/sys_linux_amd64.s:553 +0x21", "ok"},
		},
		{
			name:  "firstLine regex",
			m:     config.Multiline{FirstLine: `^\d{4}-\d{2}-\d{2} `},
			input: "2026-01-01 a\n  more\nmore\n\n2026-01-02 b\n",
			want:  []string{"2026-01-01 a\n  more\nmore", "2026-01-02 b"},
		},
		{
			name:  "firstLine regex: leading continuation lines form a record",
			m:     config.Multiline{FirstLine: `^\[`},
			input: "orphan\nalso\n[1] x\n",
			want:  []string{"orphan\nalso", "[1] x"},
		},
		{
			name:  "only blank lines make an empty record",
			m:     config.Multiline{Preset: Java},
			input: "\n\nfirst\n",
			want:  []string{"", "first"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got []string
			for _, r := range join(t, tt.m, []byte(tt.input), 1<<20) {
				got = append(got, r.text)
			}
			if fmt.Sprintf("%q", got) != fmt.Sprintf("%q", tt.want) {
				t.Errorf("got  %q\nwant %q", got, tt.want)
			}
		})
	}
}

func TestRecordLimit(t *testing.T) {
	input := "first line\n\tat a\n\tat b\n\tat c\nnext\n"
	got := join(t, config.Multiline{Preset: Java}, []byte(input), 16)
	want := []record{
		{"first line\n\tat a", int64(len("first line\n\tat a\n\tat b\n\tat c\n")), len("\n\tat b\n\tat c")},
		{"next", int64(len(input)), 0},
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("got  %+v\nwant %+v", got, want)
	}
	// A single line over the limit is cut too.
	got = join(t, config.Multiline{Preset: Java}, []byte(strings.Repeat("x", 40)+"\n"), 16)
	if len(got) != 1 || got[0].text != strings.Repeat("x", 16) || got[0].dropped != 24 {
		t.Errorf("got %+v, want 16 bytes kept and 24 dropped", got)
	}
}

func TestFlushTimeout(t *testing.T) {
	r, err := Compile(&config.Multiline{Preset: Java, FlushTimeout: config.Duration(time.Second)})
	if err != nil {
		t.Fatal(err)
	}
	j := NewJoiner(r, 1024)
	var got []string
	emit := func(rec []byte, _ int64, _ int) { got = append(got, string(rec)) }
	t0 := time.Unix(1000, 0)
	if j.Due(t0) {
		t.Fatal("Due with nothing pending")
	}
	j.Add([]byte("ERROR x"), 8, t0, emit)
	j.Add([]byte("\tat y"), 14, t0.Add(500*time.Millisecond), emit)
	if j.Due(t0.Add(1400 * time.Millisecond)) {
		t.Error("Due before a second passed since the last line")
	}
	if !j.Due(t0.Add(1500 * time.Millisecond)) {
		t.Fatal("not Due a second after the last line")
	}
	j.Flush(emit)
	if len(got) != 1 || got[0] != "ERROR x\n\tat y" || j.Pending() {
		t.Errorf("after Flush: got %q, pending %v", got, j.Pending())
	}
}

func TestCompileErrors(t *testing.T) {
	for _, m := range []config.Multiline{
		{},
		{Preset: "cobol"},
		{Preset: Java, FirstLine: "^x"},
		{FirstLine: "(unclosed"},
	} {
		if _, err := Compile(&m); err == nil {
			t.Errorf("Compile(%+v) succeeded", m)
		}
	}
	r, err := Compile(&config.Multiline{Preset: Go})
	if err != nil || r.FlushTimeout() != config.DefaultFlushTimeout {
		t.Errorf("default flush timeout: %v, %v", r, err)
	}
}

// BenchmarkJoiner measures the java preset on 200-byte log lines, one record per line.
func BenchmarkJoiner(b *testing.B) {
	for _, bc := range []struct {
		name string
		m    config.Multiline
	}{
		{"java", config.Multiline{Preset: Java}},
		{"firstLine", config.Multiline{FirstLine: `^\d{4}-\d{2}-\d{2} `}},
	} {
		b.Run(bc.name, func(b *testing.B) {
			line := []byte("2026-11-25 08:22:04.135 INFO [com.example.shop.App] " + strings.Repeat("x", 200-53))
			r, err := Compile(&bc.m)
			if err != nil {
				b.Fatal(err)
			}
			j := NewJoiner(r, 64<<10)
			var n int
			emit := func(rec []byte, _ int64, _ int) { n += len(rec) }
			now := time.Now()
			b.ReportAllocs()
			b.SetBytes(int64(len(line)))
			var end int64
			for b.Loop() {
				end += int64(len(line))
				j.Add(line, end, now, emit)
			}
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "lines/s")
			if n == 0 && b.N > 1 {
				b.Fatal("no records")
			}
		})
	}
}

// longRecord is a Java record of about size bytes: a first line and 100-byte frames.
func longRecord(first string, size int) []string {
	out := []string{first}
	for n := len(first); n < size; n += 101 {
		out = append(out, "\tat "+strings.Repeat("f", 96))
	}
	return out
}

// TestJoinerReleasesBuffer: after a 60 KiB record, small records leave the buffer small and
// nothing charged to the budget.
func TestJoinerReleasesBuffer(t *testing.T) {
	r, err := Compile(&config.Multiline{Preset: Java})
	if err != nil {
		t.Fatal(err)
	}
	r.SetBudget(NewBudget(DefaultBudget))
	const max = 64 << 10
	j := NewJoiner(r, max)
	var got []string
	emit := func(rec []byte, _ int64, _ int) { got = append(got, string(rec)) }
	now := time.Unix(0, 0)
	for _, l := range longRecord("ERROR long", 60<<10) {
		j.Add([]byte(l), 0, now, emit)
		if c := j.Retained(); c > max {
			t.Fatalf("buffer capacity %d, beyond the record limit %d", c, max)
		}
	}
	if j.Retained() < 60<<10 || r.budget.Held() == 0 {
		t.Fatalf("the long record's buffer is %d bytes, charged %d; want it held", j.Retained(), r.budget.Held())
	}
	// The buffer is kept while records come (the next may be long too), and let go after
	// ShrinkAfter small ones in a row.
	const small = ShrinkAfter + 2
	for i := range small {
		j.Add([]byte(fmt.Sprintf("INFO small %d", i)), 0, now, emit)
		if i == 2 && j.Retained() < 60<<10 {
			t.Errorf("the buffer was let go after %d small records, want it kept for %d", i, ShrinkAfter)
		}
	}
	if len(got) != small || len(got[0]) < 60<<10 {
		t.Fatalf("%d records, the first %d bytes; want the long one and %d small ones", len(got), len(got[0]), small-1)
	}
	if c := j.Retained(); c > ReleaseAbove {
		t.Errorf("after small records the buffer is %d bytes, want at most %d", c, ReleaseAbove)
	}
	if h := r.budget.Held(); h != 0 {
		t.Errorf("the budget still counts %d bytes", h)
	}
}

// TestBudget: 20 files each building a 40 KiB record under a 256 KiB budget. The Joiners never
// hold more than the budget beyond ReleaseAbove each; records that did not fit leave early, cut
// in two or more, and no line is lost.
func TestBudget(t *testing.T) {
	r, err := Compile(&config.Multiline{Preset: Java})
	if err != nil {
		t.Fatal(err)
	}
	const budget, files = 256 << 10, 20
	bud := NewBudget(budget)
	r.SetBudget(bud)
	var js []*Joiner
	var got [files][]string
	for range files {
		js = append(js, NewJoiner(r, 64<<10))
	}
	now := time.Unix(0, 0)
	rec := longRecord("ERROR", 40<<10)
	for _, l := range rec {
		for i, j := range js {
			j.Add([]byte(l), 0, now, func(b []byte, _ int64, _ int) { got[i] = append(got[i], string(b)) })
			if h := bud.Held(); h > budget {
				t.Fatalf("Joiners hold %d bytes beyond ReleaseAbove each, more than the budget %d", h, budget)
			}
		}
	}
	for i, j := range js {
		j.Flush(func(b []byte, _ int64, _ int) { got[i] = append(got[i], string(b)) })
	}
	whole := strings.Join(rec, "\n")
	split := 0
	for i := range files {
		if joined := strings.Join(got[i], "\n"); joined != whole {
			t.Fatalf("file %d: the records joined again are %d bytes, want the %d of the record", i, len(joined), len(whole))
		}
		if len(got[i]) > 1 {
			split++
		}
	}
	if split == 0 || bud.Flushes() == 0 {
		t.Errorf("no record was cut (%d budget flushes): the budget was not applied", bud.Flushes())
	}
	if split == files {
		t.Error("every record was cut: the budget let none through whole")
	}
	if h := bud.Held(); h != 0 {
		t.Errorf("after every Flush the budget still counts %d bytes", h)
	}
}

// TestBudgetLongFirstLines: records whose first line alone is long (a JSON line, a message with a
// dump) are bounded too: a first line the budget cannot take leaves at once, whole.
func TestBudgetLongFirstLines(t *testing.T) {
	r, err := Compile(&config.Multiline{Preset: Java})
	if err != nil {
		t.Fatal(err)
	}
	const budget, files = 256 << 10, 40
	bud := NewBudget(budget)
	r.SetBudget(bud)
	now := time.Unix(0, 0)
	var got [files][]string
	var js []*Joiner
	for range files {
		js = append(js, NewJoiner(r, 64<<10))
	}
	first := "ERROR " + strings.Repeat("d", 30<<10)
	for i, j := range js {
		j.Add([]byte(first), 0, now, func(b []byte, _ int64, _ int) { got[i] = append(got[i], string(b)) })
		if h := bud.Held(); h > budget {
			t.Fatalf("Joiners hold %d bytes beyond ReleaseAbove each, more than the budget %d", h, budget)
		}
	}
	sent := 0
	for i, j := range js {
		if len(got[i]) == 1 {
			sent++
			if got[i][0] != first || j.Pending() {
				t.Errorf("file %d: a first line sent at once arrived as %d bytes, pending %v", i, len(got[i][0]), j.Pending())
			}
		}
		j.Flush(func(b []byte, _ int64, _ int) { got[i] = append(got[i], string(b)) })
		if len(got[i]) != 1 || got[i][0] != first {
			t.Fatalf("file %d: %d records", i, len(got[i]))
		}
	}
	if sent == 0 || sent == files {
		t.Errorf("%d of %d first lines sent at once; want those beyond the budget, and only them", sent, files)
	}
	if uint64(sent) != bud.Flushes() {
		t.Errorf("%d flushes counted for %d first lines sent at once", bud.Flushes(), sent)
	}
	if h := bud.Held(); h != 0 {
		t.Errorf("after every Flush the budget still counts %d bytes", h)
	}
}

// TestJoinerKeepsBufferForLongRecords: stack traces a little longer than ReleaseAbove, one after
// the other with plain lines between them, reuse one buffer; a flush from outside (the timeout)
// lets it go.
func TestJoinerKeepsBufferForLongRecords(t *testing.T) {
	r, err := Compile(&config.Multiline{Preset: Java})
	if err != nil {
		t.Fatal(err)
	}
	r.SetBudget(NewBudget(DefaultBudget))
	j := NewJoiner(r, 64<<10)
	emit := func([]byte, int64, int) {}
	now := time.Unix(0, 0)
	var lines [][]byte
	for range 10 {
		for _, l := range longRecord("ERROR failed", ReleaseAbove+500) {
			lines = append(lines, []byte(l))
		}
		for i := range 9 {
			lines = append(lines, []byte(fmt.Sprintf("INFO served %d", i)))
		}
	}
	for _, l := range lines { // grow the buffer once
		j.Add(l, 0, now, emit)
	}
	if n := testing.AllocsPerRun(10, func() {
		for _, l := range lines {
			j.Add(l, 0, now, emit)
		}
	}); n != 0 {
		t.Errorf("%v allocations per 10 traces, want 0: the buffer is grown again for each", n)
	}
	j.Flush(emit)
	if c := j.Retained(); c > ReleaseAbove {
		t.Errorf("after a flush from outside the buffer is %d bytes, want at most %d", c, ReleaseAbove)
	}
	if h := r.budget.Held(); h != 0 {
		t.Errorf("the budget still counts %d bytes", h)
	}
}
