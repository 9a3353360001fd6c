package parse

import (
	"bytes"
	"encoding/json"
	"errors"
	"math"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/sidelog/sidelog/sidecar/msgpack"
)

func decode(t testing.TB, b []byte) any {
	t.Helper()
	v, rest, err := msgpack.Decode(b)
	if err != nil {
		t.Fatalf("decoding the output %x: %v", b, err)
	}
	if len(rest) != 0 {
		t.Fatalf("%d bytes after the map", len(rest))
	}
	return v
}

func TestAppendMap(t *testing.T) {
	tests := []struct {
		name string
		line string
		want map[string]any
	}{
		{"empty", `{}`, map[string]any{}},
		{"spaces", " \t{ \"a\" : 1 , \"b\":[ ] , \"c\" : { } }\r\n", map[string]any{"a": int64(1), "b": []any{}, "c": map[string]any{}}},
		{"literals", `{"t":true,"f":false,"n":null}`, map[string]any{"t": true, "f": false, "n": nil}},
		{"integers", `{"a":0,"b":-0,"c":9223372036854775807,"d":-9223372036854775808,"e":42}`,
			map[string]any{"a": int64(0), "b": int64(0), "c": int64(math.MaxInt64), "d": int64(math.MinInt64), "e": int64(42)}},
		{"floats", `{"a":1.5,"b":1e3,"c":-2.5E-3,"d":9223372036854775808,"e":-9223372036854775809,"f":1.0,"g":1e-400}`,
			map[string]any{"a": 1.5, "b": 1000.0, "c": -0.0025, "d": 9223372036854775808.0, "e": -9223372036854775809.0, "f": 1.0, "g": 0.0}},
		{"escapes", `{"s":"a\"b\\c\/d\be\ff\ng\rh\ti"}`, map[string]any{"s": "a\"b\\c/d\be\ff\ng\rh\ti"}},
		{"unicode escapes", `{"s":"\u00e9\u4e2D\ud83d\ude00\u0000"}`, map[string]any{"s": "é中😀\x00"}},
		{"lone surrogates", `{"a":"\ud800","b":"\udc00x","c":"\ud800\u0041","d":"\ud800\ud800\udc00"}`,
			map[string]any{"a": "\uFFFD", "b": "\uFFFDx", "c": "\uFFFDA", "d": "\uFFFD\U00010000"}},
		{"invalid utf-8", "{\"s\":\"a\xffb\xed\xa0\x80\",\"k\xfe\":1}", map[string]any{"s": "a\uFFFDb\uFFFD\uFFFD\uFFFD", "k\uFFFD": int64(1)}},
		{"raw utf-8", `{"ключ":"значение ✓"}`, map[string]any{"ключ": "значение ✓"}},
		{"nested", `{"a":{"b":[1,{"c":[[],[null]]},"x"]}}`, map[string]any{"a": map[string]any{"b": []any{int64(1), map[string]any{"c": []any{[]any{}, []any{nil}}}, "x"}}}},
		{"duplicate keys: the last wins", `{"a":1,"a":2}`, map[string]any{"a": int64(2)}},
		{"long string", `{"s":"` + strings.Repeat("x", 70000) + `"}`, map[string]any{"s": strings.Repeat("x", 70000)}},
		{"long escaped string", `{"s":"` + strings.Repeat(`\n`, 200) + `"}`, map[string]any{"s": strings.Repeat("\n", 200)}},
	}
	var tr Transcoder
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, err := tr.AppendMap([]byte{0xc0}, []byte(tt.line))
			if err != nil {
				t.Fatalf("AppendMap: %v", err)
			}
			if b[0] != 0xc0 {
				t.Fatal("AppendMap overwrote dst")
			}
			if diff := cmp.Diff(tt.want, decode(t, b[1:])); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		})
	}
}

func TestAppendMapRejects(t *testing.T) {
	tests := []struct {
		line string
		msg  string
		off  int
	}{
		{``, "not a JSON object", 0},
		{`   `, "not a JSON object", 3},
		{`[1]`, "not a JSON object", 0},
		{`"s"`, "not a JSON object", 0},
		{`plain text log line`, "not a JSON object", 0},
		{`{"a":1}x`, "invalid character 'x' after the object", 7},
		{`{"a":1}{}`, "after the object", 7},
		{`{"a":1`, "unexpected end of line", 6},
		{`{"a" 1}`, "invalid character '1'", 5},
		{`{a:1}`, "invalid character 'a'", 1},
		{`{"a":1,}`, "invalid character '}'", 7},
		{`{"a":[1,]}`, "invalid character ']'", 8},
		{`{"a":01}`, "invalid character '1'", 6},
		{`{"a":1.}`, "no digit after the decimal point", 7},
		{`{"a":1e}`, "no digit in the exponent", 7},
		{`{"a":-}`, "invalid number", 6},
		{`{"a":+1}`, "invalid character '+'", 5},
		{`{"a":.5}`, "invalid character '.'", 5},
		{`{"a":1e400}`, "out of the range", 5},
		{`{"a":-1e400}`, "out of the range", 5},
		{`{"a":tru}`, "want true", 5},
		{`{"a":nul}`, "want null", 5},
		{`{"a":"x`, "unterminated string", 7},
		{`{"a":"\x"}`, "invalid escape", 7},
		{`{"a":"\u12"}`, "invalid \\u escape", 10},
		{`{"a":'x'}`, "invalid character '\\''", 5},
		{"{\"a\":\"tab\there\"}", "control character", 9},
		{`{"a":NaN}`, "invalid character 'N'", 5},
		{"\ufeff{}", "not a JSON object", 0},
	}
	var tr Transcoder
	for _, tt := range tests {
		b, err := tr.AppendMap([]byte("dst"), []byte(tt.line))
		var se *SyntaxError
		if !errors.As(err, &se) || !strings.Contains(se.Msg, tt.msg) || se.Offset != tt.off {
			t.Errorf("AppendMap(%q) = %v, want %q at offset %d", tt.line, err, tt.msg, tt.off)
		}
		if string(b) != "dst" {
			t.Errorf("AppendMap(%q) changed dst to %q", tt.line, b)
		}
		if json.Valid([]byte(tt.line)) && strings.HasPrefix(strings.TrimSpace(tt.line), "{") && !strings.Contains(tt.line, "e400") {
			t.Errorf("test case %q is valid JSON", tt.line)
		}
	}
}

// TestDepth checks the nesting limit against encoding/json's.
func TestDepth(t *testing.T) {
	for _, depth := range []int{MaxDepth - 1, MaxDepth, MaxDepth + 1} {
		line := `{"a":` + strings.Repeat("[", depth-1) + strings.Repeat("]", depth-1) + `}`
		var v any
		jsonErr := json.Unmarshal([]byte(line), &v)
		var tr Transcoder
		_, err := tr.AppendMap(nil, []byte(line))
		if (err == nil) != (jsonErr == nil) {
			t.Errorf("depth %d: AppendMap: %v; encoding/json: %v", depth, err, jsonErr)
		}
	}
}

func TestRename(t *testing.T) {
	tr := Transcoder{Rename: map[string]string{"file": "app_file", "kubernetes": "app_kubernetes"}}
	line := `{"file":"x","\u006bubernetes":{"file":"nested names stay"},"log":"m"}`
	n, err := tr.Scan([]byte(line))
	if err != nil || n != 3 {
		t.Fatalf("Scan = %d, %v; want 3, nil", n, err)
	}
	got := decode(t, tr.AppendMembers(msgpack.AppendMapHeader(nil, n)))
	want := map[string]any{"app_file": "x", "app_kubernetes": map[string]any{"file": "nested names stay"}, "log": "m"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
}

func TestAppendMembersWithoutScan(t *testing.T) {
	var tr Transcoder
	if _, err := tr.Scan([]byte("not json")); err == nil {
		t.Fatal("Scan accepted a non-object")
	}
	defer func() {
		if recover() == nil {
			t.Error("AppendMembers after a failed Scan did not panic")
		}
	}()
	tr.AppendMembers(nil)
}

// TestNoAllocs checks that a reused Transcoder allocates nothing per line.
func TestNoAllocs(t *testing.T) {
	line := []byte(`{"level":"info","ts":1700000000.123,"n":42,"msg":"caf\u00e9 \"quoted\"","tags":["a","b"],"ctx":{"user":7,"ok":true,"x":null}}`)
	var tr Transcoder
	dst := make([]byte, 0, 1024)
	allocs := testing.AllocsPerRun(100, func() {
		var err error
		if dst, err = tr.AppendMap(dst[:0], line); err != nil {
			t.Fatal(err)
		}
	})
	if allocs != 0 {
		t.Errorf("%v allocations per line, want 0", allocs)
	}
}

// FuzzAppendMap checks the transcoder against encoding/json: the same lines are accepted as
// objects, with the same values.
func FuzzAppendMap(f *testing.F) {
	for _, s := range []string{
		`{}`, `{"a":1}`, `{"level":"info","msg":"hello","n":-12.5e3,"ok":true,"x":null}`,
		`{"s":"\u00e9\ud83d\ude00\ud800\\\"\/\b\f\n\r\t"}`, `{"a":[1,[2,{"b":[]}]],"c":{}}`,
		"{\"k\xff\":\"v\xed\xa0\x80\"}", `{"big":123456789012345678901234567890,"neg":-9223372036854775809}`,
		`{"a":1e400}`, `[1,2]`, `"str"`, `{"a":01}`, ` {"a" : 1 } `, `{"a":1}x`, `{"a":"\u12`,
	} {
		f.Add([]byte(s))
	}
	var tr Transcoder
	f.Fuzz(func(t *testing.T, line []byte) {
		out, err := tr.AppendMap(nil, line)
		var want any
		jsonErr := json.Unmarshal(line, &want)
		_, isObject := want.(map[string]any)
		if jsonErr != nil || !isObject {
			if err == nil {
				t.Fatalf("accepted %q, which encoding/json does not take as an object (%v)", line, jsonErr)
			}
			return
		}
		if err != nil {
			t.Fatalf("rejected %q, which encoding/json accepts: %v", line, err)
		}
		dec := json.NewDecoder(bytes.NewReader(line))
		dec.UseNumber()
		var exact any
		if err := dec.Decode(&exact); err != nil {
			t.Fatal(err)
		}
		got, rest, err := msgpack.Decode(out)
		if err != nil || len(rest) != 0 {
			t.Fatalf("output of %q does not decode: %v", line, err)
		}
		if msg := compare(exact, got); msg != "" {
			t.Fatalf("%q: %s", line, msg)
		}
	})
}

// compare reports how got (decoded from our MessagePack) differs from want (decoded by
// encoding/json with UseNumber).
func compare(want, got any) string {
	switch w := want.(type) {
	case json.Number:
		lit := string(w)
		if i, err := w.Int64(); err == nil && !strings.ContainsAny(lit, ".eE") {
			if g, ok := got.(int64); !ok || g != i {
				return "number " + lit + ": got " + fmtValue(got) + ", want int64"
			}
			return ""
		}
		f, _ := w.Float64()
		if g, ok := got.(float64); !ok || g != f {
			return "number " + lit + ": got " + fmtValue(got) + ", want float64"
		}
	case map[string]any:
		g, ok := got.(map[string]any)
		if !ok || len(g) != len(w) {
			return "object: got " + fmtValue(got)
		}
		for k, v := range w {
			gv, ok := g[k]
			if !ok {
				return "missing key " + k
			}
			if msg := compare(v, gv); msg != "" {
				return k + ": " + msg
			}
		}
	case []any:
		g, ok := got.([]any)
		if !ok || len(g) != len(w) {
			return "array: got " + fmtValue(got)
		}
		for i := range w {
			if msg := compare(w[i], g[i]); msg != "" {
				return msg
			}
		}
	default: // string, bool, nil
		if want != got {
			return "got " + fmtValue(got) + ", want " + fmtValue(want)
		}
	}
	return ""
}

func fmtValue(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}

var benchLine = []byte(`{"level":"info","ts":"2024-05-01T10:00:00.123Z","caller":"api/handler.go:88","msg":"request served","method":"GET","path":"/api/v1/orders/12345","status":200,"latency_ms":12.75,"user":{"id":4242,"role":"admin"}}`)

func BenchmarkAppendMap(b *testing.B) {
	var tr Transcoder
	dst := make([]byte, 0, 4096)
	b.SetBytes(int64(len(benchLine)))
	b.ReportAllocs()
	for b.Loop() {
		var err error
		if dst, err = tr.AppendMap(dst[:0], benchLine); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkEncodingJSON is the alternative the transcoder replaces: decode into a map, which
// would still have to be encoded.
func BenchmarkEncodingJSON(b *testing.B) {
	b.SetBytes(int64(len(benchLine)))
	b.ReportAllocs()
	for b.Loop() {
		var v map[string]any
		if err := json.Unmarshal(benchLine, &v); err != nil {
			b.Fatal(err)
		}
	}
}

// TestScratchShrinks: a 60 KiB line of numbers grows the scratch to about 700 KiB; small lines
// after it let it go, so an input that saw one wide line does not pin its scratch.
func TestScratchShrinks(t *testing.T) {
	var b strings.Builder
	b.WriteString(`{"n":[`)
	for b.Len() < 60<<10 {
		b.WriteString("1,")
	}
	b.WriteString(`1]}`)
	wide, small := []byte(b.String()), []byte(`{"level":"info","msg":"ok","n":42,"tags":["a","b"]}`)
	var tr Transcoder
	if _, err := tr.AppendMap(nil, wide); err != nil {
		t.Fatal(err)
	}
	if held := tr.Retained(); held < 60<<10*10 {
		t.Fatalf("after the wide line the scratch is %d bytes; the test expects it to have grown", held)
	}
	for i := range ShrinkAfter + 1 {
		if _, err := tr.AppendMap(nil, small); err != nil {
			t.Fatal(err)
		}
		if i == 0 && tr.Retained() < 60<<10 {
			t.Fatal("the scratch was let go after one small line: alternating lines would allocate every time")
		}
	}
	if held := tr.Retained(); held > KeepScratch {
		t.Errorf("after %d small lines the scratch is still %d bytes, want at most %d", ShrinkAfter+1, held, KeepScratch)
	}
	// Wide lines in a row keep their scratch: no allocation per line.
	for range 3 {
		if _, err := tr.AppendMap(nil, wide); err != nil {
			t.Fatal(err)
		}
	}
	dst := make([]byte, 0, 2*len(wide))
	if allocs := testing.AllocsPerRun(10, func() { _, _ = tr.AppendMap(dst, wide) }); allocs > 0 {
		t.Errorf("%v allocations per wide line in a row, want the scratch reused", allocs)
	}
	tr.Release()
	if held := tr.Retained(); held != 0 {
		t.Errorf("after Release the scratch is %d bytes", held)
	}
}
