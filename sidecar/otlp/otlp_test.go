package otlp_test

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/pem"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	collogspb "go.opentelemetry.io/proto/otlp/collector/logs/v1"
	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	logspb "go.opentelemetry.io/proto/otlp/logs/v1"
	resourcepb "go.opentelemetry.io/proto/otlp/resource/v1"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/testing/protocmp"

	"github.com/sidelog/sidelog/sidecar/config"
	"github.com/sidelog/sidelog/sidecar/metrics"
	"github.com/sidelog/sidelog/sidecar/otlp"
	"github.com/sidelog/sidelog/sidecar/parse"
	"github.com/sidelog/sidelog/sidecar/record"
)

var pod = record.Pod{Namespace: "shop", Name: "web-1", UID: "uid-1", Node: "node-a",
	Labels: map[string]string{"app": "web", "team": "checkout"}}

func str(s string) *commonpb.AnyValue {
	return &commonpb.AnyValue{Value: &commonpb.AnyValue_StringValue{StringValue: s}}
}

func kv(k string, v *commonpb.AnyValue) *commonpb.KeyValue {
	return &commonpb.KeyValue{Key: k, Value: v}
}

func kvlist(kvs ...*commonpb.KeyValue) *commonpb.AnyValue {
	return &commonpb.AnyValue{Value: &commonpb.AnyValue_KvlistValue{KvlistValue: &commonpb.KeyValueList{Values: kvs}}}
}

func wantResource(container string) *resourcepb.Resource {
	return &resourcepb.Resource{Attributes: []*commonpb.KeyValue{
		kv("k8s.namespace.name", str("shop")),
		kv("k8s.pod.name", str("web-1")),
		kv("k8s.pod.uid", str("uid-1")),
		kv("k8s.container.name", str(container)),
		kv("k8s.node.name", str("node-a")),
		kv("k8s.pod.label.app", str("web")),
		kv("k8s.pod.label.team", str("checkout")),
	}}
}

// request is one request a test server received.
type request struct {
	header http.Header
	msg    *collogspb.ExportLogsServiceRequest
	err    error
}

// server is an OTLP/HTTP receiver that decodes each request with the official types and answers
// with what answer says (200 and an empty response when it is nil).
type server struct {
	*httptest.Server
	mu     sync.Mutex
	reqs   []request
	answer func(n int, w http.ResponseWriter) bool // true: answered
}

func newServer(t *testing.T, tlsOn bool, answer func(n int, w http.ResponseWriter) bool) *server {
	s := &server{answer: answer}
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(r.Body)
		var req request
		req.header = r.Header.Clone()
		switch {
		case err != nil:
			req.err = err
		case r.Method != http.MethodPost || r.URL.Path != "/v1/logs" || r.Header.Get("Content-Type") != "application/x-protobuf":
			req.err = errors.New(r.Method + " " + r.URL.Path + " " + r.Header.Get("Content-Type"))
		default:
			if r.Header.Get("Content-Encoding") == "gzip" {
				zr, zerr := gzip.NewReader(bytes.NewReader(body))
				if zerr == nil {
					body, zerr = io.ReadAll(zr)
				}
				req.err = zerr
			}
			if req.err == nil {
				req.msg = &collogspb.ExportLogsServiceRequest{}
				req.err = proto.Unmarshal(body, req.msg)
			}
		}
		s.mu.Lock()
		s.reqs = append(s.reqs, req)
		n := len(s.reqs)
		s.mu.Unlock()
		if s.answer != nil && s.answer(n, w) {
			return
		}
		w.Header().Set("Content-Type", "application/x-protobuf")
		b, _ := proto.Marshal(&collogspb.ExportLogsServiceResponse{})
		_, _ = w.Write(b)
	})
	if tlsOn {
		s.Server = httptest.NewTLSServer(h)
	} else {
		s.Server = httptest.NewServer(h)
	}
	t.Cleanup(s.Close)
	return s
}

func (s *server) requests() []request {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]request(nil), s.reqs...)
}

func newClient(t *testing.T, cfg config.Upstream, reg *metrics.Registry, opts ...otlp.Option) *otlp.Client {
	t.Helper()
	cfg.Protocol = config.ProtocolOTLP
	opts = append([]otlp.Option{otlp.WithBackoff(10*time.Millisecond, 50*time.Millisecond), otlp.WithVersion("1.2.3")}, opts...)
	c, err := otlp.New(cfg, 4, reg, nil, opts...)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = c.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	return c
}

// batch encodes lines of one file into a batch whose Acked closes the returned channel.
func batch(file, parser string, at time.Time, lines ...string) (*otlp.Batch, chan struct{}) {
	enc := otlp.NewEncoder(file, parser)
	var recs []byte
	for _, l := range lines {
		recs, _ = enc.Append(recs, at, []byte(l))
	}
	acked := make(chan struct{})
	return &otlp.Batch{Resource: otlp.AppendResource(nil, pod, "app"), Records: recs, Count: len(lines), Container: "app",
		Acked: func() { close(acked) }}, acked
}

func waitAcked(t *testing.T, acked chan struct{}, within time.Duration) {
	t.Helper()
	select {
	case <-acked:
	case <-time.After(within):
		t.Fatalf("batch not done within %s", within)
	}
}

func send(t *testing.T, c *otlp.Client, b *otlp.Batch) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := c.Send(ctx, b); err != nil {
		t.Fatal(err)
	}
}

// TestRequestDecodesWithOfficialTypes: what the agent sends is an ExportLogsServiceRequest that
// the OTLP Go types decode, field by field as the issue says.
func TestRequestDecodesWithOfficialTypes(t *testing.T) {
	for _, gz := range []bool{false, true} {
		t.Run(map[bool]string{false: "plain", true: "gzip"}[gz], func(t *testing.T) {
			srv := newServer(t, false, nil)
			cfg := config.Upstream{Servers: []string{srv.URL}}
			if gz {
				cfg.Compression = config.CompressionGzip
			}
			c := newClient(t, cfg, nil)
			at := time.Unix(1700000000, 123456789)
			long := strings.Repeat("x", 20000) // lengths of two and three varint bytes
			lines := []string{
				"plain line",
				"",
				long,
				"bad \xff utf-8",
				`{"msg":"hi","n":42,"f":1.5,"ok":true,"no":false,"nil":null,"arr":[1,"two",{"k":"v"}],"obj":{"a":{"b":[]}},"esc":"tab\tq\"é\u00e9\ud83d\ude00","big":"` + long + `"}`,
				`{}`,
				`{"not json`,
			}
			b, acked := batch("/var/log/app/a.log", config.ParserJSON, at, lines...)
			send(t, c, b)
			waitAcked(t, acked, 5*time.Second)

			reqs := srv.requests()
			if len(reqs) != 1 || reqs[0].err != nil {
				t.Fatalf("server got %d requests, first error %v", len(reqs), reqs[0].err)
			}
			if gz && reqs[0].header.Get("Content-Encoding") != "gzip" {
				t.Errorf("Content-Encoding %q, want gzip", reqs[0].header.Get("Content-Encoding"))
			}
			file := []*commonpb.KeyValue{kv("log.file.path", str("/var/log/app/a.log"))}
			rec := func(body *commonpb.AnyValue) *logspb.LogRecord {
				return &logspb.LogRecord{ObservedTimeUnixNano: uint64(at.UnixNano()), Body: body, Attributes: file}
			}
			i64 := func(n int64) *commonpb.AnyValue {
				return &commonpb.AnyValue{Value: &commonpb.AnyValue_IntValue{IntValue: n}}
			}
			arr := func(vs ...*commonpb.AnyValue) *commonpb.AnyValue {
				return &commonpb.AnyValue{Value: &commonpb.AnyValue_ArrayValue{ArrayValue: &commonpb.ArrayValue{Values: vs}}}
			}
			want := &collogspb.ExportLogsServiceRequest{ResourceLogs: []*logspb.ResourceLogs{{
				Resource: wantResource("app"),
				ScopeLogs: []*logspb.ScopeLogs{{
					Scope: &commonpb.InstrumentationScope{Name: "sidelog", Version: "1.2.3"},
					LogRecords: []*logspb.LogRecord{
						rec(str("plain line")),
						rec(str("")),
						rec(str(long)),
						rec(str("bad \uFFFD utf-8")),
						rec(kvlist(
							kv("msg", str("hi")),
							kv("n", i64(42)),
							kv("f", &commonpb.AnyValue{Value: &commonpb.AnyValue_DoubleValue{DoubleValue: 1.5}}),
							kv("ok", &commonpb.AnyValue{Value: &commonpb.AnyValue_BoolValue{BoolValue: true}}),
							kv("no", &commonpb.AnyValue{Value: &commonpb.AnyValue_BoolValue{BoolValue: false}}),
							kv("nil", &commonpb.AnyValue{}),
							kv("arr", arr(i64(1), str("two"), kvlist(kv("k", str("v"))))),
							kv("obj", kvlist(kv("a", kvlist(kv("b", arr()))))),
							kv("esc", str("tab\tq\"éé😀")),
							kv("big", str(long)),
						)),
						rec(kvlist()),
						rec(str(`{"not json`)),
					},
				}},
			}}}
			if diff := cmp.Diff(want, reqs[0].msg, protocmp.Transform()); diff != "" {
				t.Errorf("request mismatch (-want +got):\n%s", diff)
			}
			if ua := reqs[0].header.Get("User-Agent"); ua != "sidelog-agent/1.2.3" {
				t.Errorf("User-Agent %q", ua)
			}
		})
	}
}

// TestEncoderAllocatesNothing: appending into a buffer with room allocates nothing per record.
func TestEncoderAllocatesNothing(t *testing.T) {
	for _, tt := range []struct{ name, parser, line string }{
		{"plain", config.ParserNone, strings.Repeat("a log line ", 20)},
		{"json", config.ParserJSON, `{"level":"info","msg":"hello \"world\"","n":1,"nested":{"a":[1,2,3]},"long":"` + strings.Repeat("y", 300) + `"}`},
		{"invalid utf-8", config.ParserNone, "x\xffy"},
	} {
		enc := otlp.NewEncoder("/var/log/app.log", tt.parser)
		buf := make([]byte, 0, 1<<16)
		now := time.Now()
		line := []byte(tt.line)
		buf, _ = enc.Append(buf, now, line) // warms the JSON scratch space
		if n := testing.AllocsPerRun(100, func() { buf, _ = enc.Append(buf[:0], now, line) }); n != 0 {
			t.Errorf("%s: %.1f allocations per record, want 0", tt.name, n)
		}
	}
}

func counter(reg *metrics.Registry, name string) string {
	var b strings.Builder
	_, _ = reg.WriteTo(&b)
	var out []string
	for _, l := range strings.Split(b.String(), "\n") {
		if strings.HasPrefix(l, name) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

// TestRetryAfter: a 503 with Retry-After is retried after the wait the server asked for, and the
// batch is acknowledged only by the 2xx that follows.
func TestRetryAfter(t *testing.T) {
	srv := newServer(t, false, func(n int, w http.ResponseWriter) bool {
		if n == 1 {
			w.Header().Set("Retry-After", "1")
			w.WriteHeader(http.StatusServiceUnavailable)
			return true
		}
		return false
	})
	c := newClient(t, config.Upstream{Servers: []string{srv.URL}}, nil)
	b, acked := batch("/f", "", time.Now(), "one", "two")
	start := time.Now()
	send(t, c, b)
	waitAcked(t, acked, 10*time.Second)
	if d := time.Since(start); d < time.Second {
		t.Errorf("acknowledged after %s, before the server's Retry-After of 1s", d)
	}
	if n := len(srv.requests()); n != 2 {
		t.Errorf("server got %d requests, want 2", n)
	}
}

// TestRetryableCodes: 429, 502 and 504 are retried too, with backoff.
func TestRetryableCodes(t *testing.T) {
	codes := []int{http.StatusTooManyRequests, http.StatusBadGateway, http.StatusGatewayTimeout}
	srv := newServer(t, false, func(n int, w http.ResponseWriter) bool {
		if n <= len(codes) {
			w.WriteHeader(codes[n-1])
			return true
		}
		return false
	})
	c := newClient(t, config.Upstream{Servers: []string{srv.URL}}, nil)
	b, acked := batch("/f", "", time.Now(), "one")
	send(t, c, b)
	waitAcked(t, acked, 10*time.Second)
	if n := len(srv.requests()); n != 4 {
		t.Errorf("server got %d requests, want 4", n)
	}
}

// TestPermanentError: a 400 is not retried: the batch is counted as dropped with its reason and
// reported done, so that reading goes on; the next batch goes through.
func TestPermanentError(t *testing.T) {
	srv := newServer(t, false, func(n int, w http.ResponseWriter) bool {
		if n == 1 {
			w.WriteHeader(http.StatusBadRequest)
			_, _ = w.Write([]byte("bad batch"))
			return true
		}
		return false
	})
	reg := metrics.NewRegistry()
	c := newClient(t, config.Upstream{Servers: []string{srv.URL}}, reg)
	b1, acked1 := batch("/f", "", time.Now(), "a", "b", "c")
	b2, acked2 := batch("/f", "", time.Now(), "d")
	send(t, c, b1)
	send(t, c, b2)
	waitAcked(t, acked1, 5*time.Second)
	waitAcked(t, acked2, 5*time.Second)
	if n := len(srv.requests()); n != 2 {
		t.Errorf("server got %d requests, want 2 (the refused batch not retried)", n)
	}
	if got, want := counter(reg, "sidelog_dropped_total"), `sidelog_dropped_total{container="app",reason="otlp_rejected"} 3`; got != want {
		t.Errorf("dropped: %q, want %q", got, want)
	}
}

// TestPartialSuccess: rejected_log_records of a 2xx answer are counted as dropped; the batch is
// acknowledged.
func TestPartialSuccess(t *testing.T) {
	srv := newServer(t, false, func(n int, w http.ResponseWriter) bool {
		b, _ := proto.Marshal(&collogspb.ExportLogsServiceResponse{PartialSuccess: &collogspb.ExportLogsPartialSuccess{
			RejectedLogRecords: 2, ErrorMessage: "two too old"}})
		w.Header().Set("Content-Type", "application/x-protobuf")
		_, _ = w.Write(b)
		return true
	})
	reg := metrics.NewRegistry()
	c := newClient(t, config.Upstream{Servers: []string{srv.URL}}, reg)
	b, acked := batch("/f", "", time.Now(), "a", "b", "c")
	send(t, c, b)
	waitAcked(t, acked, 5*time.Second)
	if got, want := counter(reg, "sidelog_dropped_total"), `sidelog_dropped_total{container="app",reason="otlp_partial_success"} 2`; got != want {
		t.Errorf("dropped: %q, want %q", got, want)
	}
}

// TestServerDownThenUp: nothing listening, then a receiver on the same address: the batch waits,
// is retried, and is acknowledged once the receiver answers; batches are reported in order.
func TestServerDownThenUp(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	c := newClient(t, config.Upstream{Servers: []string{"http://" + addr}}, nil)
	var order []int
	var mu sync.Mutex
	var last chan struct{}
	for i := range 3 {
		b, acked := batch("/f", "", time.Now(), "line")
		b.Acked = func() { mu.Lock(); order = append(order, i); mu.Unlock(); close(acked) }
		send(t, c, b)
		last = acked
	}
	time.Sleep(300 * time.Millisecond)
	select {
	case <-last:
		t.Fatal("acknowledged with no server")
	default:
	}
	srv := newServer(t, false, nil)
	srv.Close()
	ln, err = net.Listen("tcp", addr)
	if err != nil {
		t.Skipf("cannot listen on %s again: %v", addr, err)
	}
	up := &http.Server{Handler: srv.Config.Handler}
	go func() { _ = up.Serve(ln) }()
	t.Cleanup(func() { up.Close() })
	waitAcked(t, last, 10*time.Second)
	if diff := cmp.Diff([]int{0, 1, 2}, order); diff != "" {
		t.Errorf("order (-want +got):\n%s", diff)
	}
}

// TestFailover: the first URL refuses connections and the second answers 503: both are tried in
// order until the third delivers.
func TestFailover(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	down := "http://" + ln.Addr().String()
	ln.Close()
	busy := newServer(t, false, func(int, http.ResponseWriter) bool { return false })
	busy.answer = func(_ int, w http.ResponseWriter) bool { w.WriteHeader(http.StatusServiceUnavailable); return true }
	good := newServer(t, false, nil)
	c := newClient(t, config.Upstream{Servers: []string{down, busy.URL, good.URL}}, nil)
	b, acked := batch("/f", "", time.Now(), "x")
	send(t, c, b)
	waitAcked(t, acked, 5*time.Second)
	if len(busy.requests()) != 1 || len(good.requests()) != 1 {
		t.Errorf("busy got %d requests, good %d; want 1 and 1", len(busy.requests()), len(good.requests()))
	}
}

// TestBackpressure: Send blocks once the in-flight limit of batches is out.
func TestBackpressure(t *testing.T) {
	release := make(chan struct{})
	srv := newServer(t, false, func(int, http.ResponseWriter) bool { <-release; return false })
	defer close(release)
	c := newClient(t, config.Upstream{Servers: []string{srv.URL}}, nil)
	for range 4 {
		b, _ := batch("/f", "", time.Now(), "x")
		send(t, c, b)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	b, _ := batch("/f", "", time.Now(), "x")
	if err := c.Send(ctx, b); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("fifth Send = %v, want it blocked until the deadline", err)
	}
	if n, _, _ := c.Drain(ctx); n != 4 {
		t.Errorf("Drain left %d batches, want 4", n)
	}
}

// TestTLSAndHeaders: https with the CA from a file and a server name, and headers from a
// directory read again for every request.
func TestTLSAndHeaders(t *testing.T) {
	srv := newServer(t, true, nil)
	dir := t.TempDir()
	ca := filepath.Join(dir, "ca.crt")
	if err := os.WriteFile(ca, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw}), 0o600); err != nil {
		t.Fatal(err)
	}
	hdrs := filepath.Join(dir, "headers")
	if err := os.MkdirAll(filepath.Join(hdrs, "..data"), 0o700); err != nil {
		t.Fatal(err)
	}
	write := func(name, v string) {
		if err := os.WriteFile(filepath.Join(hdrs, name), []byte(v), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write("Authorization", "Bearer one\n")
	write("X-Scope-OrgID", "tenant-a")
	c := newClient(t, config.Upstream{Servers: []string{srv.URL}, TLS: &config.TLS{CAFile: ca, ServerName: "example.com"}, HeadersDir: hdrs}, nil)
	b, acked := batch("/f", "", time.Now(), "x")
	send(t, c, b)
	waitAcked(t, acked, 5*time.Second)
	write("Authorization", "Bearer two")
	b, acked = batch("/f", "", time.Now(), "y")
	send(t, c, b)
	waitAcked(t, acked, 5*time.Second)
	reqs := srv.requests()
	if len(reqs) != 2 || reqs[0].err != nil || reqs[1].err != nil {
		t.Fatalf("requests: %+v", reqs)
	}
	for i, want := range []string{"Bearer one", "Bearer two"} {
		if got := reqs[i].header.Get("Authorization"); got != want {
			t.Errorf("request %d: Authorization %q, want %q", i, got, want)
		}
		if got := reqs[i].header.Get("X-Scope-Orgid"); got != "tenant-a" {
			t.Errorf("request %d: X-Scope-OrgID %q", i, got)
		}
	}
}

// TestNewRefuses: a CA or headers directory that cannot be used is an error at start-up.
func TestNewRefuses(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad")
	_ = os.MkdirAll(bad, 0o700)
	_ = os.WriteFile(filepath.Join(bad, "Content-Type"), []byte("text/plain"), 0o600)
	for _, tt := range []struct {
		cfg  config.Upstream
		want string
	}{
		{config.Upstream{Protocol: config.ProtocolOTLP, Servers: []string{"https://h:1"}, TLS: &config.TLS{CAFile: filepath.Join(dir, "none")}}, "upstream.tls.caFile"},
		{config.Upstream{Protocol: config.ProtocolOTLP, Servers: []string{"http://h:1"}, HeadersDir: filepath.Join(dir, "none")}, "upstream.headersDir"},
		{config.Upstream{Protocol: config.ProtocolOTLP, Servers: []string{"http://h:1"}, HeadersDir: bad}, "the agent sets Content-Type itself"},
		{config.Upstream{Protocol: config.ProtocolForward, Servers: []string{"h:1"}}, `want "otlp"`},
	} {
		if _, err := otlp.New(tt.cfg, 1, nil, nil); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("New(%+v) = %v, want an error containing %q", tt.cfg, err, tt.want)
		}
	}
}

// TestEncoderEventTime: with SetEventTime, a parsed line's time field becomes the record's
// time_unix_nano; a line without a usable one has none (unknown) and is counted, never dropped.
func TestEncoderEventTime(t *testing.T) {
	f, err := parse.NewTimeFormat("rfc3339")
	if err != nil {
		t.Fatal(err)
	}
	tr := &parse.Transcoder{TimeKey: "ts"}
	e := otlp.NewEncoderWith("/var/log/app/a.log", config.ParserJSON, tr)
	misses := 0
	e.SetEventTime(f, func() { misses++ })
	read := time.Unix(1_800_000_000, 0)
	var b []byte
	for _, line := range []string{`{"ts":"2026-11-30T12:00:00.5Z","msg":"a"}`, `{"ts":"yesterday","msg":"b"}`, `{"msg":"c"}`, `plain`} {
		b, _ = e.Append(b, read, []byte(line))
	}
	var sl logspb.ScopeLogs
	if err := proto.Unmarshal(b, &sl); err != nil {
		t.Fatal(err)
	}
	want := []uint64{uint64(time.Date(2026, 11, 30, 12, 0, 0, 5e8, time.UTC).UnixNano()), 0, 0, 0}
	if len(sl.LogRecords) != len(want) {
		t.Fatalf("%d records, want %d", len(sl.LogRecords), len(want))
	}
	for i, r := range sl.LogRecords {
		if r.TimeUnixNano != want[i] || r.ObservedTimeUnixNano != uint64(read.UnixNano()) {
			t.Errorf("record %d: time %d, observed %d; want %d, %d", i, r.TimeUnixNano, r.ObservedTimeUnixNano, want[i], read.UnixNano())
		}
	}
	if misses != 2 {
		t.Errorf("%d misses counted, want 2 (the unparsable time and the missing one; a plain line is not parsed)", misses)
	}
}

// TestResourceWorkload: the owners the webhook resolved become the semantic conventions' name
// attributes of each kind that has one, the workload is in sidelog.workload.kind and .name
// whatever its kind, and the namespace's labels are k8s.namespace.label.<key>, decoded with the
// official types.
func TestResourceWorkload(t *testing.T) {
	for _, tt := range []struct {
		name     string
		owners   []config.Owner
		nsLabels map[string]string
		want     []*commonpb.KeyValue // after the pod's own attributes and labels
	}{
		{"deployment", []config.Owner{{Kind: "ReplicaSet", Name: "web-5d8f"}, {Kind: "Deployment", Name: "web"}},
			map[string]string{"team": "payments", "kubernetes.io/metadata.name": "shop"},
			[]*commonpb.KeyValue{
				kv("k8s.replicaset.name", str("web-5d8f")), kv("k8s.deployment.name", str("web")),
				kv("sidelog.workload.kind", str("Deployment")), kv("sidelog.workload.name", str("web")),
				kv("k8s.pod.label.app", str("web")), kv("k8s.pod.label.team", str("checkout")),
				kv("k8s.namespace.label.kubernetes.io/metadata.name", str("shop")), kv("k8s.namespace.label.team", str("payments")),
			}},
		{"cronjob", []config.Owner{{Kind: "Job", Name: "nightly-2904"}, {Kind: "CronJob", Name: "nightly"}}, nil,
			[]*commonpb.KeyValue{
				kv("k8s.job.name", str("nightly-2904")), kv("k8s.cronjob.name", str("nightly")),
				kv("sidelog.workload.kind", str("CronJob")), kv("sidelog.workload.name", str("nightly")),
				kv("k8s.pod.label.app", str("web")), kv("k8s.pod.label.team", str("checkout")),
			}},
		{"argo rollout: no semantic convention for it", []config.Owner{{Kind: "ReplicaSet", Name: "canary-6c7"}, {Kind: "Rollout", Name: "canary"}}, nil,
			[]*commonpb.KeyValue{
				kv("k8s.replicaset.name", str("canary-6c7")),
				kv("sidelog.workload.kind", str("Rollout")), kv("sidelog.workload.name", str("canary")),
				kv("k8s.pod.label.app", str("web")), kv("k8s.pod.label.team", str("checkout")),
			}},
		{"statefulset", []config.Owner{{Kind: "StatefulSet", Name: "db"}}, map[string]string{},
			[]*commonpb.KeyValue{
				kv("k8s.statefulset.name", str("db")),
				kv("sidelog.workload.kind", str("StatefulSet")), kv("sidelog.workload.name", str("db")),
				kv("k8s.pod.label.app", str("web")), kv("k8s.pod.label.team", str("checkout")),
			}},
	} {
		p := pod
		p.Owners, p.NamespaceLabels = tt.owners, tt.nsLabels
		var res resourcepb.Resource
		if err := proto.Unmarshal(otlp.AppendResource(nil, p, "app"), &res); err != nil {
			t.Fatalf("%s: %v", tt.name, err)
		}
		want := &resourcepb.Resource{Attributes: append(wantResource("app").Attributes[:5:5], tt.want...)}
		if diff := cmp.Diff(want, &res, protocmp.Transform()); diff != "" {
			t.Errorf("%s: resource (-want +got):\n%s", tt.name, diff)
		}
	}
}
