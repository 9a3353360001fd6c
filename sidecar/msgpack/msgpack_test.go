package msgpack

import (
	"bytes"
	"encoding/hex"
	"errors"
	"io"
	"math"
	"strings"
	"testing"
	"testing/iotest"
	"time"

	"github.com/google/go-cmp/cmp"
)

func unhex(t testing.TB, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(strings.ReplaceAll(s, " ", ""))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestEncode checks every format boundary against the bytes the specification gives.
func TestEncode(t *testing.T) {
	tests := []struct {
		name string
		got  []byte
		want string
	}{
		{"nil", AppendNil(nil), "c0"},
		{"true", AppendBool(nil, true), "c3"},
		{"false", AppendBool(nil, false), "c2"},
		{"int 0", AppendInt(nil, 0), "00"},
		{"int 127", AppendInt(nil, 127), "7f"},
		{"int 128", AppendInt(nil, 128), "cc 80"},
		{"int 256", AppendInt(nil, 256), "cd 0100"},
		{"int 65536", AppendInt(nil, 65536), "ce 00010000"},
		{"int 2^32", AppendInt(nil, 1<<32), "cf 0000000100000000"},
		{"int -1", AppendInt(nil, -1), "ff"},
		{"int -32", AppendInt(nil, -32), "e0"},
		{"int -33", AppendInt(nil, -33), "d0 df"},
		{"int -128", AppendInt(nil, -128), "d0 80"},
		{"int -129", AppendInt(nil, -129), "d1 ff7f"},
		{"int -32769", AppendInt(nil, -32769), "d2 ffff7fff"},
		{"int min", AppendInt(nil, math.MinInt64), "d3 8000000000000000"},
		{"uint max", AppendUint(nil, math.MaxUint64), "cf ffffffffffffffff"},
		{"float", AppendFloat64(nil, 1.5), "cb 3ff8000000000000"},
		{"str empty", AppendString(nil, ""), "a0"},
		{"str 31", AppendString(nil, strings.Repeat("a", 31)), "bf" + strings.Repeat("61", 31)},
		{"str 32", AppendString(nil, strings.Repeat("a", 32))[:2], "d9 20"},
		{"str 256", AppendString(nil, strings.Repeat("a", 256))[:3], "da 0100"},
		{"str 65536", AppendString(nil, strings.Repeat("a", 65536))[:5], "db 00010000"},
		{"str bytes", AppendStringBytes(nil, []byte{0, 0xff}), "a2 00ff"},
		{"bin", AppendBinary(nil, []byte{1, 2}), "c4 02 0102"},
		{"bin 256", AppendBinaryHeader(nil, 256), "c5 0100"},
		{"bin 65536", AppendBinaryHeader(nil, 65536), "c6 00010000"},
		{"array 15", AppendArrayHeader(nil, 15), "9f"},
		{"array 16", AppendArrayHeader(nil, 16), "dc 0010"},
		{"array 65536", AppendArrayHeader(nil, 65536), "dd 00010000"},
		{"map 15", AppendMapHeader(nil, 15), "8f"},
		{"map 16", AppendMapHeader(nil, 16), "de 0010"},
		{"map 65536", AppendMapHeader(nil, 65536), "df 00010000"},
		{"event time", AppendEventTime(nil, time.Unix(1700000000, 123456789)), "d7 00 6553f100 075bcd15"},
	}
	for _, tt := range tests {
		if got := hex.EncodeToString(tt.got); got != strings.ReplaceAll(tt.want, " ", "") {
			t.Errorf("%s: got %s, want %s", tt.name, got, tt.want)
		}
	}
}

func TestRoundTrip(t *testing.T) {
	when := time.Unix(1700000000, 999999999)
	values := []any{
		nil, true, false,
		int64(0), int64(1), int64(127), int64(128), int64(255), int64(256), int64(65535), int64(65536),
		int64(math.MaxUint32), int64(math.MaxUint32 + 1), int64(math.MaxInt64),
		int64(-1), int64(-32), int64(-33), int64(-128), int64(-129), int64(math.MinInt16 - 1), int64(math.MinInt32 - 1), int64(math.MinInt64),
		uint64(math.MaxInt64 + 1), uint64(math.MaxUint64),
		0.0, -1.25, math.Inf(1), math.MaxFloat64,
		"", "log", strings.Repeat("x", 300), strings.Repeat("y", 70000), "\x00\xff invalid utf-8",
		[]byte{}, []byte{0, 1, 2}, bytes.Repeat([]byte{7}, 300),
		when,
		Ext{Type: 5, Data: []byte{1}}, Ext{Type: -1, Data: make([]byte, 16)}, Ext{Type: 3, Data: make([]byte, 3)}, Ext{Type: 3, Data: make([]byte, 300)},
		[]any{}, []any{int64(1), "a", nil}, make([]any, 20),
		map[string]any{}, map[string]any{"ack": "Y2h1bms="},
		map[string]any{"nested": map[string]any{"a": []any{map[string]any{"b": true}}}},
	}
	for _, v := range values {
		b, err := AppendValue(nil, v)
		if err != nil {
			t.Fatalf("AppendValue(%v): %v", v, err)
		}
		got, rest, err := Decode(append(b, 0xc0))
		if err != nil {
			t.Fatalf("Decode(AppendValue(%v)): %v", v, err)
		}
		if len(rest) != 1 {
			t.Errorf("Decode(AppendValue(%v)) left %d bytes, want 1", v, len(rest))
		}
		if diff := cmp.Diff(v, got, cmp.Comparer(time.Time.Equal)); diff != "" {
			t.Errorf("round trip (-want +got):\n%s", diff)
		}
		skipped, err := Skip(b)
		if err != nil || len(skipped) != 0 {
			t.Errorf("Skip(AppendValue(%v)) = %d bytes left, %v; want 0, nil", v, len(skipped), err)
		}
	}
}

func TestDecodeWidens(t *testing.T) {
	tests := []struct {
		in   string
		want any
	}{
		{"ca 3fc00000", 1.5}, // float32
		{"c7 08 00 6553f100 00000001", time.Unix(1700000000, 1)},   // EventTime as ext 8
		{"82 c4 01 6b 01 a1 6b 02", map[string]any{"k": int64(2)}}, // bin key, duplicate key: the last wins
		{"d3 0000000000000005", int64(5)},
		{"cf 0000000000000005", int64(5)},
	}
	for _, tt := range tests {
		got, _, err := Decode(unhex(t, tt.in))
		if err != nil {
			t.Errorf("Decode(%s): %v", tt.in, err)
			continue
		}
		if diff := cmp.Diff(tt.want, got, cmp.Comparer(time.Time.Equal)); diff != "" {
			t.Errorf("Decode(%s) (-want +got):\n%s", tt.in, diff)
		}
	}
}

func TestDecodeErrors(t *testing.T) {
	tests := []struct {
		in, want string
	}{
		{"c1", "invalid type byte 0xc1"},
		{"81 01 02", "map key is a int64"},
		{"d6 00 00000000", "EventTime of 4 bytes"},
		{"dd ffffffff", ErrShort.Error()},
		{"db ffffffff 00", ErrShort.Error()},
		{"92 01", ErrShort.Error()},
	}
	for _, tt := range tests {
		_, _, err := Decode(unhex(t, tt.in))
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("Decode(%s) = %v, want an error containing %q", tt.in, err, tt.want)
		}
	}
	deep := append(bytes.Repeat([]byte{0x91}, MaxDepth+1), 0xc0)
	if _, _, err := Decode(deep); err == nil || !strings.Contains(err.Error(), "nested deeper") {
		t.Errorf("Decode of %d nested arrays = %v, want the depth error", MaxDepth+1, err)
	}
	if _, err := Skip(deep); err != nil {
		t.Errorf("Skip of deeply nested arrays: %v (Skip has no depth limit)", err)
	}
}

// TestShortPrefixes checks that every proper prefix of a value is reported as short, which is
// what lets Reader wait for more data.
func TestShortPrefixes(t *testing.T) {
	b, err := AppendValue(nil, []any{"tag", []byte("entries"), map[string]any{"chunk": "abc", "size": int64(300)}, time.Unix(1, 2), 1.5, int64(-70000)})
	if err != nil {
		t.Fatal(err)
	}
	for i := range len(b) {
		if _, _, err := Decode(b[:i]); !errors.Is(err, ErrShort) {
			t.Errorf("Decode of %d/%d bytes: %v, want ErrShort", i, len(b), err)
		}
		if _, err := Skip(b[:i]); !errors.Is(err, ErrShort) {
			t.Errorf("Skip of %d/%d bytes: %v, want ErrShort", i, len(b), err)
		}
	}
}

func TestReadHelpers(t *testing.T) {
	var b []byte
	b = AppendArrayHeader(b, 3)
	b = AppendString(b, "tag")
	b = AppendBinary(b, []byte{1, 2, 3})
	b = AppendMapHeader(b, 1)
	n, rest, err := ReadArrayHeader(b)
	if err != nil || n != 3 {
		t.Fatalf("ReadArrayHeader = %d, %v; want 3", n, err)
	}
	tag, rest, err := ReadBytes(rest)
	if err != nil || string(tag) != "tag" {
		t.Fatalf("ReadBytes = %q, %v; want tag", tag, err)
	}
	bin, rest, err := ReadBytes(rest)
	if err != nil || !bytes.Equal(bin, []byte{1, 2, 3}) {
		t.Fatalf("ReadBytes = %v, %v; want [1 2 3]", bin, err)
	}
	if _, _, err := ReadArrayHeader(rest); err == nil || !strings.Contains(err.Error(), "got map, want array") {
		t.Errorf("ReadArrayHeader of a map: %v, want a type error", err)
	}
	if _, _, err := ReadBytes(rest); err == nil {
		t.Error("ReadBytes of a map succeeded")
	}
	n, rest, err = ReadMapHeader(rest)
	if err != nil || n != 1 || len(rest) != 0 {
		t.Errorf("ReadMapHeader = %d, %d bytes left, %v; want 1, 0", n, len(rest), err)
	}
	if _, _, err := ReadBytes(unhex(t, "a5 6162")); !errors.Is(err, ErrShort) {
		t.Errorf("ReadBytes of a truncated str: %v, want ErrShort", err)
	}
}

func TestReader(t *testing.T) {
	var stream []byte
	var want []any
	for i := range 50 {
		v := []any{"tag", bytes.Repeat([]byte{byte(i)}, i*100), map[string]any{"chunk": strings.Repeat("c", i)}}
		want = append(want, v)
		var err error
		if stream, err = AppendValue(stream, v); err != nil {
			t.Fatal(err)
		}
	}
	for name, src := range map[string]io.Reader{
		"whole":    bytes.NewReader(stream),
		"one byte": iotest.OneByteReader(bytes.NewReader(stream)),
		"half":     iotest.HalfReader(bytes.NewReader(stream)),
		"data+EOF": iotest.DataErrReader(bytes.NewReader(stream)),
	} {
		r := NewReader(src, 1<<20)
		var got []any
		for {
			v, err := r.Decode()
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				t.Fatalf("%s: after %d values: %v", name, len(got), err)
			}
			got = append(got, v)
		}
		if !same(want, got) {
			t.Errorf("%s: got %d values that differ from the %d written", name, len(got), len(want))
		}
	}

	r := NewReader(bytes.NewReader(stream[:len(stream)-1]), 1<<20)
	var err error
	for err == nil {
		_, err = r.Raw()
	}
	if !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Errorf("stream cut inside a value: %v, want io.ErrUnexpectedEOF", err)
	}

	big := AppendBinaryHeader(nil, 2000)
	r = NewReader(bytes.NewReader(big), 1000)
	if _, err := r.Raw(); err == nil || !strings.Contains(err.Error(), "over the limit of 1000") {
		t.Errorf("value over the limit: %v, want the limit error", err)
	}
}

func TestAppendValueUnsupported(t *testing.T) {
	if _, err := AppendValue(nil, map[string]any{"a": []any{struct{}{}}}); err == nil || !strings.Contains(err.Error(), `["a"]: [0]: msgpack: cannot encode a struct {}`) {
		t.Errorf("AppendValue(struct) = %v, want an error naming where", err)
	}
}

// FuzzDecode checks that Decode never panics, agrees with Skip on where a value ends, and that
// what it decodes encodes back to a value that decodes the same.
func FuzzDecode(f *testing.F) {
	for _, s := range []string{
		"c0", "93 a3 746167 c4 03 010203 82 a4 6368756e6b a1 78 a4 73697a65 01",
		"81 a3 61636b a8 59326831626d733d",
		"92 a4 48454c4f 83 a5 6e6f6e6365 c4 02 0102 a4 61757468 a0 a9 6b656570616c697665 c3",
		"95 a4 504f4e47 c3 a0 a4 686f7374 a3 616263",
		"92 d7 00 6553f100 075bcd15 81 a3 6c6f67 a2 6869",
		"dc 0001 de 0001 c4 00 cb 7ff8000000000000",
		"c7 03 05 010203 d4 ff 01 ca 3fc00000 d3 8000000000000000 cf ffffffffffffffff",
	} {
		f.Add(unhex(f, s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		v, rest, err := Decode(b)
		skipped, skipErr := Skip(b)
		if err != nil {
			if errors.Is(err, ErrShort) && skipErr == nil {
				t.Fatalf("Decode says short, Skip says complete: %x", b)
			}
			return
		}
		if skipErr != nil || len(skipped) != len(rest) {
			t.Fatalf("Decode consumed %d bytes, Skip %d (%v): %x", len(b)-len(rest), len(b)-len(skipped), skipErr, b)
		}
		enc, err := AppendValue(nil, v)
		if err != nil {
			t.Fatalf("re-encoding %#v: %v", v, err)
		}
		v2, rest2, err := Decode(enc)
		if err != nil || len(rest2) != 0 {
			t.Fatalf("decoding the re-encoding of %x: %v (%d bytes left)", b, err, len(rest2))
		}
		if !same(v, v2) {
			t.Fatalf("re-encoding changed the value: %#v became %#v", v, v2)
		}
		r := NewReader(iotest.OneByteReader(bytes.NewReader(b)), len(b)+1)
		raw, err := r.Raw()
		if err != nil || len(raw) != len(b)-len(rest) {
			t.Fatalf("Reader read %d bytes (%v), Decode %d: %x", len(raw), err, len(b)-len(rest), b)
		}
	})
}

// same is a deep equality for decoded values in which NaN equals NaN. (cmp.Diff is too slow on the
// large trees the fuzzer builds.)
func same(a, b any) bool {
	switch a := a.(type) {
	case float64:
		b, ok := b.(float64)
		return ok && (a == b || math.IsNaN(a) && math.IsNaN(b))
	case time.Time:
		b, ok := b.(time.Time)
		return ok && a.Equal(b)
	case []byte:
		b, ok := b.([]byte)
		return ok && bytes.Equal(a, b)
	case Ext:
		b, ok := b.(Ext)
		return ok && a.Type == b.Type && bytes.Equal(a.Data, b.Data)
	case []any:
		b, ok := b.([]any)
		if !ok || len(a) != len(b) {
			return false
		}
		for i := range a {
			if !same(a[i], b[i]) {
				return false
			}
		}
		return true
	case map[string]any:
		b, ok := b.(map[string]any)
		if !ok || len(a) != len(b) {
			return false
		}
		for k, v := range a {
			w, ok := b[k]
			if !ok || !same(v, w) {
				return false
			}
		}
		return true
	default:
		return a == b
	}
}
