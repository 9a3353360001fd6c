package forwardtest

import (
	"bytes"
	"compress/gzip"
	"context"
	"net"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/sidelog/sidelog/sidecar/msgpack"
)

func start(t *testing.T, opts Options) *Server {
	t.Helper()
	opts.Logf = t.Logf
	s, err := Start(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

func encode(t *testing.T, v any) []byte {
	t.Helper()
	b, err := msgpack.AppendValue(nil, v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func waitCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// exchange sends msg on a new connection and returns the server's answer, if want is true.
func exchange(t *testing.T, addr string, msg []byte, want bool) any {
	t.Helper()
	nc, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	if _, err := nc.Write(msg); err != nil {
		t.Fatal(err)
	}
	if !want {
		return nil
	}
	_ = nc.SetReadDeadline(time.Now().Add(20 * time.Second))
	v, err := msgpack.NewReader(nc, 1<<10).Decode()
	if err != nil {
		t.Fatalf("reading the answer: %v", err)
	}
	return v
}

func TestModes(t *testing.T) {
	t1 := time.Unix(1700000000, 5)
	t2 := time.Unix(1700000001, 0)
	rec := map[string]any{"log": "hello", "n": int64(1)}
	packed := append(encode(t, []any{t1, rec}), encode(t, []any{int64(1700000001), rec})...)
	var z bytes.Buffer
	zw := gzip.NewWriter(&z)
	_, _ = zw.Write(packed)
	_ = zw.Close()

	tests := []struct {
		name  string
		msg   any
		mode  string
		chunk string
		times []time.Time
	}{
		{"Message", []any{"tag.a", t1, rec}, ModeMessage, "", []time.Time{t1}},
		{"Message with chunk", []any{"tag.a", int64(1700000001), rec, map[string]any{"chunk": "c1"}}, ModeMessage, "c1", []time.Time{t2}},
		{"Forward", []any{"tag.a", []any{[]any{t1, rec}, []any{uint64(1700000001), rec}}, map[string]any{"chunk": "c2"}}, ModeForward, "c2", []time.Time{t1, t2}},
		{"PackedForward as bin", []any{"tag.a", packed, map[string]any{"chunk": "c3", "size": int64(2)}}, ModePackedForward, "c3", []time.Time{t1, t2}},
		{"PackedForward as str", []any{"tag.a", string(packed)}, ModePackedForward, "", []time.Time{t1, t2}},
		{"CompressedPackedForward", []any{"tag.a", z.Bytes(), map[string]any{"chunk": "c4", "compressed": "gzip"}}, ModeCompressedPackedForward, "c4", []time.Time{t1, t2}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := start(t, Options{})
			answer := exchange(t, s.Addr(), encode(t, tt.msg), tt.chunk != "")
			if tt.chunk != "" {
				if diff := cmp.Diff(map[string]any{"ack": tt.chunk}, answer); diff != "" {
					t.Errorf("ack (-want +got):\n%s", diff)
				}
			}
			if err := s.Wait(waitCtx(t), int64(len(tt.times))); err != nil {
				t.Fatal(err)
			}
			var want []Event
			for _, ts := range tt.times {
				want = append(want, Event{Tag: "tag.a", Time: ts, Record: rec, Mode: tt.mode, Chunk: tt.chunk, Conn: 1})
			}
			if diff := cmp.Diff(want, s.Events(), cmpopts.EquateComparable(time.Time{})); diff != "" {
				t.Errorf("events (-want +got):\n%s", diff)
			}
		})
	}
}

func TestCountOnly(t *testing.T) {
	var packed []byte
	for range 1000 {
		packed = append(packed, encode(t, []any{time.Unix(1, 0), map[string]any{"log": "x"}})...)
	}
	for name, opt := range map[string]map[string]any{
		"counted by size": {"chunk": "c", "size": int64(1000)},
		"scanned":         {"chunk": "c"},
	} {
		t.Run(name, func(t *testing.T) {
			s := start(t, Options{CountOnly: true})
			msg := encode(t, []any{"t", packed, opt})
			if diff := cmp.Diff(map[string]any{"ack": "c"}, exchange(t, s.Addr(), msg, true)); diff != "" {
				t.Errorf("ack (-want +got):\n%s", diff)
			}
			if s.Count() != 1000 || len(s.Events()) != 0 || s.Bytes() != int64(len(msg)) {
				t.Errorf("count %d, %d events, %d bytes; want 1000, 0, %d", s.Count(), len(s.Events()), s.Bytes(), len(msg))
			}
		})
	}
}

// TestBadMessages checks that the server closes a connection that breaks the protocol, without
// acknowledging.
func TestBadMessages(t *testing.T) {
	entry := encode(t, []any{time.Unix(1, 0), map[string]any{"log": "x"}})
	for name, msg := range map[string]any{
		"size mismatch":  []any{"t", entry, map[string]any{"chunk": "c", "size": int64(2)}},
		"not an array":   map[string]any{"tag": "t"},
		"record not map": []any{"t", int64(1), "text", map[string]any{"chunk": "c"}},
		"bad time":       []any{"t", []any{[]any{"yesterday", map[string]any{}}}, map[string]any{"chunk": "c"}},
		"bad gzip":       []any{"t", entry, map[string]any{"chunk": "c", "compressed": "gzip"}},
	} {
		t.Run(name, func(t *testing.T) {
			s := start(t, Options{})
			nc, err := net.Dial("tcp", s.Addr())
			if err != nil {
				t.Fatal(err)
			}
			defer nc.Close()
			if _, err := nc.Write(encode(t, msg)); err != nil {
				t.Fatal(err)
			}
			_ = nc.SetReadDeadline(time.Now().Add(20 * time.Second))
			var buf [1]byte
			if n, err := nc.Read(buf[:]); n != 0 || err == nil {
				t.Errorf("read %d bytes, %v; want the connection closed", n, err)
			}
			if s.Count() != 0 {
				t.Errorf("%d entries kept from a bad message", s.Count())
			}
		})
	}
}

func TestAckDelayKeepsOrder(t *testing.T) {
	s := start(t, Options{AckDelay: 10 * time.Millisecond})
	nc, err := net.Dial("tcp", s.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	entry := encode(t, []any{time.Unix(1, 0), map[string]any{"log": "x"}})
	var want []any
	for _, ch := range []string{"a", "b", "c"} {
		if _, err := nc.Write(encode(t, []any{"t", entry, map[string]any{"chunk": ch}})); err != nil {
			t.Fatal(err)
		}
		want = append(want, map[string]any{"ack": ch})
	}
	_ = nc.SetReadDeadline(time.Now().Add(20 * time.Second))
	r := msgpack.NewReader(nc, 1<<10)
	var got []any
	for range want {
		v, err := r.Decode()
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, v)
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("acks (-want +got):\n%s", diff)
	}
}

func TestDownUp(t *testing.T) {
	s := start(t, Options{})
	addr := s.Addr()
	s.Down()
	if nc, err := net.Dial("tcp", addr); err == nil {
		nc.Close()
		t.Fatal("connected to a server that is down")
	}
	if err := s.Up(); err != nil {
		t.Fatal(err)
	}
	if s.Addr() != addr {
		t.Errorf("address changed from %s to %s", addr, s.Addr())
	}
	answer := exchange(t, addr, encode(t, []any{"t", int64(1), map[string]any{}, map[string]any{"chunk": "up"}}), true)
	if diff := cmp.Diff(map[string]any{"ack": "up"}, answer); diff != "" {
		t.Errorf("ack (-want +got):\n%s", diff)
	}
}
