package forward_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/sidelog/sidelog/sidecar/config"
	"github.com/sidelog/sidelog/sidecar/forward"
	"github.com/sidelog/sidelog/sidecar/forward/forwardtest"
	"github.com/sidelog/sidelog/sidecar/metrics"
	"github.com/sidelog/sidelog/sidecar/msgpack"
	"github.com/sidelog/sidelog/sidecar/record"
)

// patience bounds every wait: generous, because a loaded 2-core machine is slow, and only reached
// when a test fails.
const patience = 20 * time.Second

var pod = record.Pod{Namespace: "shop", Name: "web-1", UID: "uid-1", Node: "node-1", Labels: map[string]string{"app": "web"}}

// logBuffer collects the client's log for assertions.
type logBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

type client struct {
	*forward.Client
	reg *metrics.Registry
	log *logBuffer
}

func (c *client) counter(name string) uint64 { return c.reg.Counter(name, "").Value() }

// newClient makes a client of servers and runs it until the test ends.
func newClient(t *testing.T, servers []string, limit int, edit func(*config.Upstream), opts ...forward.Option) *client {
	t.Helper()
	cfg := config.Upstream{Servers: servers, AckTimeout: config.Duration(time.Minute), DialTimeout: config.Duration(5 * time.Second)}
	if edit != nil {
		edit(&cfg)
	}
	reg := metrics.NewRegistry()
	lb := &logBuffer{}
	log := slog.New(slog.NewTextHandler(lb, &slog.HandlerOptions{Level: slog.LevelDebug}))
	opts = append([]forward.Option{forward.WithBackoff(5*time.Millisecond, 50*time.Millisecond), forward.WithHostname("agent-test")}, opts...)
	c, err := forward.New(cfg, limit, reg, log, opts...)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
		if t.Failed() {
			t.Logf("client log:\n%s", lb.String())
		}
	})
	return &client{Client: c, reg: reg, log: lb}
}

func startServer(t *testing.T, opts forwardtest.Options) *forwardtest.Server {
	t.Helper()
	opts.Logf = t.Logf
	s, err := forwardtest.Start(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

// eventually polls cond until it holds or patience runs out.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(patience)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("gave up waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func ctx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), patience)
	t.Cleanup(cancel)
	return ctx
}

// base is the time of the test records; entry j of batch i is base + i s + j ns, so that times
// check the nanoseconds.
var base = time.Date(2024, 5, 1, 10, 0, 0, 0, time.UTC)

func line(i, j int) string { return fmt.Sprintf("batch %d entry %d", i, j) }

// batch makes batch i of n entries; acked receives i when it is acknowledged.
func batch(i, n int, acked func(int)) *forward.Batch {
	e := record.NewEncoder(pod, "app", "/var/log/app.log", config.ParserNone)
	var b []byte
	for j := range n {
		b, _ = e.Append(b, base.Add(time.Duration(i)*time.Second+time.Duration(j)), []byte(line(i, j)))
	}
	fb := &forward.Batch{Tag: record.Tag(pod, "app"), Entries: b, Count: n}
	if acked != nil {
		fb.Acked = func() { acked(i) }
	}
	return fb
}

// ackLog records the order of Acked calls.
type ackLog struct {
	mu  sync.Mutex
	ids []int
}

func (a *ackLog) add(i int) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.ids = append(a.ids, i)
}

func (a *ackLog) get() []int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]int(nil), a.ids...)
}

// checkAll checks that every entry of batches 0..batches-1 of n entries arrived at least once,
// with its fields and time.
func checkAll(t *testing.T, events []forwardtest.Event, batches, n int) {
	t.Helper()
	seen := map[string]bool{}
	for _, e := range events {
		log, _ := e.Record["log"].(string)
		var i, j int
		if _, err := fmt.Sscanf(log, "batch %d entry %d", &i, &j); err != nil {
			t.Fatalf("unexpected record %v", e.Record)
		}
		if want := base.Add(time.Duration(i)*time.Second + time.Duration(j)); !e.Time.Equal(want) {
			t.Errorf("%q: time %v, want %v", log, e.Time.UTC(), want)
		}
		if e.Tag != "kube.shop.web-1.app" {
			t.Errorf("%q: tag %q", log, e.Tag)
		}
		want := map[string]any{
			"log":  log,
			"file": "/var/log/app.log",
			"kubernetes": map[string]any{
				"namespace_name": "shop", "pod_name": "web-1", "pod_id": "uid-1",
				"container_name": "app", "host": "node-1", "labels": map[string]any{"app": "web"},
			},
		}
		if diff := cmp.Diff(want, e.Record); diff != "" {
			t.Errorf("record (-want +got):\n%s", diff)
		}
		seen[log] = true
	}
	for i := range batches {
		for j := range n {
			if !seen[line(i, j)] {
				t.Errorf("%q never arrived", line(i, j))
			}
		}
	}
}

func TestDelivery(t *testing.T) {
	for _, tt := range []struct {
		mode, compression, want string
	}{
		{"", config.CompressionNone, forwardtest.ModePackedForward},
		{"", "", forwardtest.ModePackedForward},
		{config.ModePackedForward, config.CompressionGzip, forwardtest.ModeCompressedPackedForward},
		{config.ModeForward, "", forwardtest.ModeForward},
	} {
		t.Run("mode="+tt.mode+",compression="+tt.compression, func(t *testing.T) {
			srv := startServer(t, forwardtest.Options{})
			c := newClient(t, []string{srv.Addr()}, 4, func(u *config.Upstream) { u.Mode, u.Compression = tt.mode, tt.compression })
			var acks ackLog
			for i := range 6 {
				if err := c.Send(ctx(t), batch(i, 5, acks.add)); err != nil {
					t.Fatal(err)
				}
			}
			if b, e, err := c.Drain(ctx(t)); b != 0 || e != 0 || err != nil {
				t.Fatalf("Drain = %d, %d, %v; want 0, 0, nil", b, e, err)
			}
			if diff := cmp.Diff([]int{0, 1, 2, 3, 4, 5}, acks.get()); diff != "" {
				t.Errorf("Acked order (-want +got):\n%s", diff)
			}
			events := srv.Events()
			if len(events) != 30 {
				t.Errorf("%d events, want 30 (no duplicates on a healthy connection)", len(events))
			}
			checkAll(t, events, 6, 5)
			for _, e := range events {
				if e.Mode != tt.want {
					t.Fatalf("mode %s, want %s", e.Mode, tt.want)
				}
			}
			for name, want := range map[string]uint64{
				"sidelog_forward_records_sent_total":  30,
				"sidelog_forward_records_acked_total": 30,
				"sidelog_forward_batches_sent_total":  6,
				"sidelog_forward_batches_acked_total": 6,
				"sidelog_forward_retries_total":       0,
			} {
				if got := c.counter(name); got != want {
					t.Errorf("%s = %d, want %d", name, got, want)
				}
			}
			if got := c.counter("sidelog_forward_bytes_sent_total"); got != uint64(srv.Bytes()) {
				t.Errorf("bytes sent %d, server received %d", got, srv.Bytes())
			}
			if got := c.reg.Gauge("sidelog_forward_inflight_batches", "").Value(); got != 0 {
				t.Errorf("in-flight gauge %d, want 0", got)
			}
			if got := c.reg.Gauge("sidelog_forward_upstream_connected", "", "server", srv.Addr()).Value(); got != 1 {
				t.Errorf("connected gauge %d, want 1", got)
			}
		})
	}
}

// TestOutOfOrderAcks checks that acknowledgements are matched by chunk and reported in Send
// order even when the server acknowledges the last batch first.
func TestOutOfOrderAcks(t *testing.T) {
	srv := startServer(t, forwardtest.Options{ManualAck: true})
	c := newClient(t, []string{srv.Addr()}, 4, nil)
	var acks ackLog
	for i := range 3 {
		if err := c.Send(ctx(t), batch(i, 2, acks.add)); err != nil {
			t.Fatal(err)
		}
	}
	eventually(t, "3 chunks at the server", func() bool { return len(srv.Unacked()) == 3 })
	chunks := srv.Unacked()
	for _, ch := range []string{chunks[2], chunks[1]} {
		if err := srv.Ack(ch); err != nil {
			t.Fatal(err)
		}
	}
	eventually(t, "the client to read 2 acks", func() bool { return c.counter("sidelog_forward_batches_acked_total") == 2 })
	if got := acks.get(); len(got) != 0 {
		t.Fatalf("Acked called for %v while batch 0 is unacknowledged", got)
	}
	if err := srv.Ack(chunks[0]); err != nil {
		t.Fatal(err)
	}
	if b, _, err := c.Drain(ctx(t)); b != 0 || err != nil {
		t.Fatalf("Drain = %d, %v", b, err)
	}
	if diff := cmp.Diff([]int{0, 1, 2}, acks.get()); diff != "" {
		t.Errorf("Acked order (-want +got):\n%s", diff)
	}
}

// TestServerDownThenUp checks backpressure while the server is down and that nothing is lost
// when it comes back.
func TestServerDownThenUp(t *testing.T) {
	srv := startServer(t, forwardtest.Options{})
	srv.Down()
	const limit = 2
	c := newClient(t, []string{srv.Addr()}, limit, nil)
	var acks ackLog
	for i := range limit {
		if err := c.Send(ctx(t), batch(i, 3, acks.add)); err != nil {
			t.Fatal(err)
		}
	}
	canceled, cancel := context.WithCancel(context.Background())
	cancel()
	if err := c.Send(canceled, batch(99, 1, nil)); !errors.Is(err, context.Canceled) {
		t.Fatalf("Send with %d batches out = %v, want it to block until its context ends", limit, err)
	}
	sent := make(chan error, 1)
	go func() { sent <- c.Send(context.Background(), batch(limit, 3, acks.add)) }()
	select {
	case err := <-sent:
		t.Fatalf("Send returned (%v) while %d batches wait for a server that is down", err, limit)
	default:
	}
	eventually(t, "failed connection attempts", func() bool { return c.counter("sidelog_forward_connection_errors_total") >= 2 })

	if err := srv.Up(); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-sent:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(patience):
		t.Fatal("Send still blocked after the server came back")
	}
	if b, _, err := c.Drain(ctx(t)); b != 0 || err != nil {
		t.Fatalf("Drain = %d, %v", b, err)
	}
	checkAll(t, srv.Events(), limit+1, 3)
	if diff := cmp.Diff([]int{0, 1, 2}, acks.get()); diff != "" {
		t.Errorf("Acked order (-want +got):\n%s", diff)
	}
}

// TestDropBeforeAck checks that a batch whose connection broke before its acknowledgement is
// sent again, and acknowledged once.
func TestDropBeforeAck(t *testing.T) {
	srv := startServer(t, forwardtest.Options{})
	srv.DropNext()
	c := newClient(t, []string{srv.Addr()}, 4, nil)
	var acks ackLog
	if err := c.Send(ctx(t), batch(0, 4, acks.add)); err != nil {
		t.Fatal(err)
	}
	if b, _, err := c.Drain(ctx(t)); b != 0 || err != nil {
		t.Fatalf("Drain = %d, %v", b, err)
	}
	chunks := srv.Chunks()
	if len(chunks) != 2 || chunks[0] != chunks[1] {
		t.Errorf("chunks received %q, want the same chunk twice", chunks)
	}
	if srv.Count() != 8 {
		t.Errorf("%d entries received, want 8 (4, dropped, then 4 again)", srv.Count())
	}
	checkAll(t, srv.Events(), 1, 4)
	if diff := cmp.Diff([]int{0}, acks.get()); diff != "" {
		t.Errorf("Acked calls (-want +got):\n%s", diff)
	}
	if got := c.counter("sidelog_forward_retries_total"); got != 1 {
		t.Errorf("retries = %d, want 1", got)
	}
	if got := c.counter("sidelog_forward_reconnects_total"); got != 1 {
		t.Errorf("reconnects = %d, want 1", got)
	}
}

// TestAckTimeout checks that a batch the server never acknowledges is sent again on a new
// connection after the ack timeout.
func TestAckTimeout(t *testing.T) {
	srv := startServer(t, forwardtest.Options{NoAck: true})
	c := newClient(t, []string{srv.Addr()}, 4, func(u *config.Upstream) { u.AckTimeout = config.Duration(50 * time.Millisecond) })
	if err := c.Send(ctx(t), batch(0, 1, nil)); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the batch sent on 3 connections", func() bool {
		return len(srv.Chunks()) >= 3 && srv.Connections() >= 3
	})
	chunks := srv.Chunks()
	for _, ch := range chunks {
		if ch != chunks[0] {
			t.Fatalf("chunks %q: a resent batch must keep its chunk id", chunks)
		}
	}
	if c.counter("sidelog_forward_ack_timeouts_total") < 2 {
		t.Errorf("ack timeouts = %d, want at least 2", c.counter("sidelog_forward_ack_timeouts_total"))
	}
	if !strings.Contains(c.log.String(), "no acknowledgement within upstream.ackTimeout") {
		t.Error("the log does not say why the connection was dropped")
	}
}

func TestDrainUnacknowledged(t *testing.T) {
	srv := startServer(t, forwardtest.Options{NoAck: true})
	c := newClient(t, []string{srv.Addr()}, 4, nil)
	for i, n := range []int{3, 5} {
		if err := c.Send(ctx(t), batch(i, n, nil)); err != nil {
			t.Fatal(err)
		}
	}
	if err := srv.Wait(ctx(t), 8); err != nil {
		t.Fatal(err)
	}
	dctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	b, e, err := c.Drain(dctx)
	if b != 2 || e != 8 || !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Drain = %d, %d, %v; want 2, 8, context.DeadlineExceeded", b, e, err)
	}
}

// freeAddr returns an address where nothing listens.
func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	_ = ln.Close()
	return addr
}

// TestFailover checks that the client uses the second server while the first is down, and moves
// back to the first once it answers, losing nothing.
func TestFailover(t *testing.T) {
	first := freeAddr(t)
	second := startServer(t, forwardtest.Options{})
	c := newClient(t, []string{first, second.Addr()}, 4, nil, forward.WithFailback(20*time.Millisecond))
	var acks ackLog
	if err := c.Send(ctx(t), batch(0, 2, acks.add)); err != nil {
		t.Fatal(err)
	}
	if b, _, err := c.Drain(ctx(t)); b != 0 || err != nil {
		t.Fatalf("Drain = %d, %v", b, err)
	}
	if second.Count() != 2 {
		t.Fatalf("second server got %d entries, want 2", second.Count())
	}

	primary := startServer(t, forwardtest.Options{Addr: first})
	i := 1
	eventually(t, "a batch at the first server", func() bool {
		if err := c.Send(ctx(t), batch(i, 2, acks.add)); err != nil {
			t.Fatal(err)
		}
		i++
		if _, _, err := c.Drain(ctx(t)); err != nil {
			t.Fatal(err)
		}
		return primary.Count() > 0
	})
	checkAll(t, append(second.Events(), primary.Events()...), i, 2)
	if got := acks.get(); len(got) != i {
		t.Errorf("%d batches acknowledged, want %d", len(got), i)
	}
	if !strings.Contains(c.log.String(), "moving back to an earlier upstream server") {
		t.Error("the log does not say the client moved back to the first server")
	}
	if got := c.reg.Gauge("sidelog_forward_upstream_connected", "", "server", second.Addr()).Value(); got != 0 {
		t.Errorf("connected gauge of the second server = %d after moving back", got)
	}
}

func TestTLS(t *testing.T) {
	serverConf, caFile, err := forwardtest.GenerateTLS(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	_, otherCA, err := forwardtest.GenerateTLS(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Run("trusted", func(t *testing.T) {
		srv := startServer(t, forwardtest.Options{TLS: serverConf})
		c := newClient(t, []string{srv.Addr()}, 4, func(u *config.Upstream) { u.TLS = &config.TLS{CAFile: caFile} })
		if err := c.Send(ctx(t), batch(0, 3, nil)); err != nil {
			t.Fatal(err)
		}
		if b, _, err := c.Drain(ctx(t)); b != 0 || err != nil {
			t.Fatalf("Drain = %d, %v", b, err)
		}
		checkAll(t, srv.Events(), 1, 3)
	})
	t.Run("server name", func(t *testing.T) {
		srv := startServer(t, forwardtest.Options{TLS: serverConf})
		c := newClient(t, []string{srv.Addr()}, 4, func(u *config.Upstream) {
			u.TLS = &config.TLS{CAFile: caFile, ServerName: "localhost"}
		})
		if err := c.Send(ctx(t), batch(0, 1, nil)); err != nil {
			t.Fatal(err)
		}
		if b, _, err := c.Drain(ctx(t)); b != 0 || err != nil {
			t.Fatalf("Drain = %d, %v", b, err)
		}
	})
	t.Run("untrusted", func(t *testing.T) {
		srv := startServer(t, forwardtest.Options{TLS: serverConf})
		c := newClient(t, []string{srv.Addr()}, 4, func(u *config.Upstream) { u.TLS = &config.TLS{CAFile: otherCA} })
		if err := c.Send(ctx(t), batch(0, 1, nil)); err != nil {
			t.Fatal(err)
		}
		eventually(t, "failed TLS handshakes", func() bool { return c.counter("sidelog_forward_connection_errors_total") >= 2 })
		if srv.Count() != 0 {
			t.Errorf("%d entries reached a server the client does not trust", srv.Count())
		}
		if !strings.Contains(c.log.String(), "certificate signed by unknown authority") {
			t.Errorf("the log does not say why TLS failed:\n%s", c.log.String())
		}
	})
}

func writeKey(t *testing.T, key string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "shared-key")
	if err := os.WriteFile(p, []byte(key), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestCredentialsRotate: a new shared key, written over the key file as the kubelet updates a
// mounted Secret, is used from the next connection on; a key file caught empty mid-update leaves
// the last good key in use.
func TestCredentialsRotate(t *testing.T) {
	srv := startServer(t, forwardtest.Options{SharedKey: "one"})
	addr := srv.Addr()
	keyFile := writeKey(t, "one")
	c := newClient(t, []string{addr}, 4, func(u *config.Upstream) { u.SharedKeyFile = keyFile })
	send := func(i int) {
		t.Helper()
		if err := c.Send(ctx(t), batch(i, 1, nil)); err != nil {
			t.Fatal(err)
		}
		if b, _, err := c.Drain(ctx(t)); b != 0 || err != nil {
			t.Fatalf("Drain = %d, %v", b, err)
		}
	}
	restart := func(key string) *forwardtest.Server {
		t.Helper()
		_ = srv.Close()
		s := startServer(t, forwardtest.Options{Addr: addr, SharedKey: key})
		return s
	}
	send(0)

	// The aggregator and the Secret move to a new key.
	if err := os.WriteFile(keyFile, []byte("two\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	srv = restart("two")
	send(1)
	if n := srv.Count(); n != 1 {
		t.Fatalf("%d entries reached the server with the new key, want 1", n)
	}

	// Caught empty while the kubelet rewrites it: the key read last still works.
	if err := os.WriteFile(keyFile, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	srv = restart("two")
	send(2)
	if n := srv.Count(); n != 1 {
		t.Fatalf("%d entries reached the server after the key file was emptied, want 1", n)
	}
	if !strings.Contains(c.log.String(), "rereading the upstream credentials failed; using the last ones read") {
		t.Errorf("the log does not say the key file could not be read:\n%s", c.log.String())
	}
}

func TestSharedKey(t *testing.T) {
	t.Run("accepted", func(t *testing.T) {
		srv := startServer(t, forwardtest.Options{SharedKey: "s3cret"})
		c := newClient(t, []string{srv.Addr()}, 4, func(u *config.Upstream) { u.SharedKeyFile = writeKey(t, "s3cret\n") })
		if err := c.Send(ctx(t), batch(0, 2, nil)); err != nil {
			t.Fatal(err)
		}
		if b, _, err := c.Drain(ctx(t)); b != 0 || err != nil {
			t.Fatalf("Drain = %d, %v", b, err)
		}
		checkAll(t, srv.Events(), 1, 2)
	})
	for _, tt := range []struct {
		name      string
		serverKey string
		clientKey string
		log       string
	}{
		{"wrong key", "s3cret", "guess", `the server refused the shared key of upstream.sharedKeyFile: \"shared_key mismatch\"`},
		{"server wants a key", "s3cret", "", "it requires shared-key authentication, set upstream.sharedKeyFile"},
		{"server has no key", "", "s3cret", "waiting for the server's HELO (is shared-key authentication enabled on the server?)"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			srv := startServer(t, forwardtest.Options{SharedKey: tt.serverKey})
			c := newClient(t, []string{srv.Addr()}, 4, func(u *config.Upstream) {
				u.DialTimeout = config.Duration(100 * time.Millisecond)
				if tt.clientKey != "" {
					u.SharedKeyFile = writeKey(t, tt.clientKey)
				}
			})
			if err := c.Send(ctx(t), batch(0, 1, nil)); err != nil {
				t.Fatal(err)
			}
			eventually(t, "two failed attempts", func() bool { return c.counter("sidelog_forward_connection_errors_total") >= 2 })
			if !strings.Contains(c.log.String(), tt.log) {
				t.Errorf("the log does not say %q:\n%s", tt.log, c.log.String())
			}
			if tt.serverKey != "" && srv.Count() != 0 {
				t.Errorf("%d entries accepted without authentication", srv.Count())
			}
			if b, e, _ := c.Drain(canceledCtx()); b != 1 || e != 1 {
				t.Errorf("Drain = %d, %d; want the batch unacknowledged", b, e)
			}
		})
	}
	t.Run("server does not know the key", func(t *testing.T) {
		addr := fakeAuthServer(t)
		c := newClient(t, []string{addr}, 4, func(u *config.Upstream) { u.SharedKeyFile = writeKey(t, "s3cret") })
		if err := c.Send(ctx(t), batch(0, 1, nil)); err != nil {
			t.Fatal(err)
		}
		eventually(t, "two failed attempts", func() bool { return c.counter("sidelog_forward_connection_errors_total") >= 2 })
		if want := "the server's PONG digest does not match the shared key"; !strings.Contains(c.log.String(), want) {
			t.Errorf("the log does not say %q:\n%s", want, c.log.String())
		}
	})
}

// TestUserAuth: the handshake as Fluent Bit's in_forward and Fluentd's with users speak it. A
// HELO's user-authentication salt does not mean the server has users (Fluent Bit sends one
// always); a refusal is an error counted once per connection attempt, the batch stays queued,
// and credentials fixed in place are used from the next attempt on.
func TestUserAuth(t *testing.T) {
	users := map[string]string{"agent": "pa55"}
	for _, tt := range []struct {
		name       string
		srv        forwardtest.Options
		user, pass string // files' contents; empty: no user configured
		key        string
		refused    string // the log's words for a refusal; empty: delivered
	}{
		{name: "Fluent Bit without users", srv: forwardtest.Options{SharedKey: "s3cret", FluentBit: true}, key: "s3cret"},
		{name: "Fluent Bit without users, client has a user", srv: forwardtest.Options{SharedKey: "s3cret", FluentBit: true}, key: "s3cret", user: "agent", pass: "pa55"},
		{name: "Fluentd without users", srv: forwardtest.Options{SharedKey: "s3cret"}, key: "s3cret", user: "agent", pass: "pa55"},
		{name: "user accepted", srv: forwardtest.Options{SharedKey: "s3cret", Users: users, FluentBit: true}, key: "s3cret", user: "agent", pass: "pa55\n"},
		{name: "wrong password", srv: forwardtest.Options{SharedKey: "s3cret", Users: users}, key: "s3cret", user: "agent", pass: "guess",
			refused: `the server refused the handshake as user \"agent\" of upstream.usernameFile and upstream.passwordFile: \"username/password mismatch\"`},
		{name: "no user", srv: forwardtest.Options{SharedKey: "s3cret", Users: users}, key: "s3cret",
			refused: `the server refused the handshake without a user (set upstream.usernameFile and upstream.passwordFile)`},
		{name: "Fluent Bit, wrong key", srv: forwardtest.Options{SharedKey: "s3cret", FluentBit: true}, key: "guess",
			refused: "the server closed the connection after the PING without answering: it refused the shared key of upstream.sharedKeyFile"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			srv := startServer(t, tt.srv)
			c := newClient(t, []string{srv.Addr()}, 4, func(u *config.Upstream) {
				u.DialTimeout = config.Duration(time.Second)
				u.SharedKeyFile = writeKey(t, tt.key)
				if tt.user != "" {
					u.UsernameFile, u.PasswordFile = writeKey(t, tt.user), writeKey(t, tt.pass)
				}
			}, forward.WithBackoff(time.Millisecond, 20*time.Millisecond))
			if err := c.Send(ctx(t), batch(0, 2, nil)); err != nil {
				t.Fatal(err)
			}
			if tt.refused == "" {
				if b, _, err := c.Drain(ctx(t)); b != 0 || err != nil {
					t.Fatalf("Drain = %d, %v", b, err)
				}
				checkAll(t, srv.Events(), 1, 2)
				return
			}
			eventually(t, "three refused attempts", func() bool { return c.counter("sidelog_forward_auth_refusals_total") >= 3 })
			if !strings.Contains(c.log.String(), tt.refused) {
				t.Errorf("the log does not say %q:\n%s", tt.refused, c.log.String())
			}
			// Once per attempt: the log line, the refusal and the connection error.
			refusals := c.counter("sidelog_forward_auth_refusals_total")
			if lines := uint64(strings.Count(c.log.String(), "upstream refused authentication")); lines < refusals-1 || lines > refusals+1 {
				t.Errorf("%d log lines for %d refusals", lines, refusals)
			}
			if errs := c.counter("sidelog_forward_connection_errors_total"); errs < refusals || errs > refusals+1 {
				t.Errorf("%d connection errors for %d refusals", errs, refusals)
			}
			if n := srv.Count(); n != 0 {
				t.Errorf("%d entries accepted although the handshake was refused", n)
			}
			if b, e, _ := c.Drain(canceledCtx()); b != 1 || e != 2 {
				t.Errorf("Drain = %d batches, %d entries unacknowledged; want the batch kept", b, e)
			}
		})
	}

	t.Run("password fixed in place", func(t *testing.T) {
		srv := startServer(t, forwardtest.Options{SharedKey: "s3cret", Users: users, FluentBit: true})
		var passFile string
		c := newClient(t, []string{srv.Addr()}, 4, func(u *config.Upstream) {
			u.SharedKeyFile = writeKey(t, "s3cret")
			u.UsernameFile, passFile = writeKey(t, "agent"), writeKey(t, "old")
			u.PasswordFile = passFile
		}, forward.WithBackoff(time.Millisecond, 20*time.Millisecond))
		if err := c.Send(ctx(t), batch(0, 2, nil)); err != nil {
			t.Fatal(err)
		}
		eventually(t, "a refused attempt", func() bool { return c.counter("sidelog_forward_auth_refusals_total") >= 1 })
		if err := os.WriteFile(passFile, []byte("pa55"), 0o600); err != nil {
			t.Fatal(err)
		}
		if b, _, err := c.Drain(ctx(t)); b != 0 || err != nil {
			t.Fatalf("Drain = %d, %v", b, err)
		}
		checkAll(t, srv.Events(), 1, 2)
	})
}

func canceledCtx() context.Context {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	return ctx
}

// fakeAuthServer accepts any PING and answers PONG with a digest made without the key, as a
// server posing as the aggregator would; it acknowledges anything sent after.
func fakeAuthServer(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ln.Close() })
	go func() {
		for {
			nc, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer nc.Close()
				helo, _ := msgpack.AppendValue(nil, []any{"HELO", map[string]any{"nonce": []byte("0123456789abcdef"), "auth": "", "keepalive": true}})
				if _, err := nc.Write(helo); err != nil {
					return
				}
				r := msgpack.NewReader(nc, 1<<20)
				if _, err := r.Decode(); err != nil {
					return
				}
				pong, _ := msgpack.AppendValue(nil, []any{"PONG", true, "", "impostor", strings.Repeat("0", 128)})
				_, _ = nc.Write(pong)
				_, _ = r.Decode()
			}()
		}
	}()
	return ln.Addr().String()
}

func TestSendRejectsEmptyBatches(t *testing.T) {
	c, err := forward.New(config.Upstream{Servers: []string{"127.0.0.1:1"}}, 1, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, b := range []*forward.Batch{nil, {Tag: "t", Count: 1}, {Tag: "t", Entries: []byte{0x90}}} {
		if err := c.Send(context.Background(), b); err == nil {
			t.Errorf("Send(%+v) succeeded", b)
		}
	}
	if b, e, err := c.Drain(context.Background()); b != 0 || e != 0 || err != nil {
		t.Errorf("Drain after rejected sends = %d, %d, %v", b, e, err)
	}
}

func TestRunTwice(t *testing.T) {
	srv := startServer(t, forwardtest.Options{})
	c := newClient(t, []string{srv.Addr()}, 1, nil)
	// newClient's Run may not have started yet: one of the two calls fails, and it must be this
	// one or the other; wait until the first is surely running by delivering a batch.
	if err := c.Send(ctx(t), batch(0, 1, nil)); err != nil {
		t.Fatal(err)
	}
	if _, _, err := c.Drain(ctx(t)); err != nil {
		t.Fatal(err)
	}
	if err := c.Run(context.Background()); err == nil || !strings.Contains(err.Error(), "already running") {
		t.Errorf("second Run = %v, want an error", err)
	}
}

func TestNewErrors(t *testing.T) {
	dir := t.TempDir()
	notPEM := filepath.Join(dir, "not.pem")
	empty := filepath.Join(dir, "empty")
	for _, p := range []string{notPEM, empty} {
		if err := os.WriteFile(p, []byte("\n"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	ok := []string{"127.0.0.1:24224"}
	tests := []struct {
		cfg  config.Upstream
		opts []forward.Option
		want string
	}{
		{config.Upstream{}, nil, "upstream.servers: at least one"},
		{config.Upstream{Servers: []string{"nohost"}}, nil, "upstream.servers[0]"},
		{config.Upstream{Servers: ok, Compression: "zstd"}, nil, `upstream.compression: got "zstd"`},
		{config.Upstream{Servers: ok, Mode: "Message"}, nil, `upstream.mode: got "Message", want "PackedForward" or "Forward"`},
		{config.Upstream{Servers: ok, Mode: config.ModeForward, Compression: config.CompressionGzip}, nil, `upstream.mode: Forward entries cannot be compressed`},
		{config.Upstream{Servers: ok, TLS: &config.TLS{CAFile: filepath.Join(dir, "missing")}}, nil, "upstream.tls.caFile"},
		{config.Upstream{Servers: ok, TLS: &config.TLS{CAFile: notPEM}}, nil, "holds no PEM certificate"},
		{config.Upstream{Servers: ok, SharedKeyFile: filepath.Join(dir, "missing")}, nil, "upstream.sharedKeyFile"},
		{config.Upstream{Servers: ok, SharedKeyFile: empty}, nil, "is empty"},
		{config.Upstream{Servers: ok}, []forward.Option{forward.WithBackoff(time.Second, time.Millisecond)}, "backoff"},
	}
	for _, tt := range tests {
		_, err := forward.New(tt.cfg, 4, nil, nil, tt.opts...)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("New(%+v) = %v, want an error containing %q", tt.cfg, err, tt.want)
		}
	}
}

// BenchmarkClient measures delivery end to end over loopback TCP: batches of about 1 MiB of
// 200-byte lines encoded by record.Encoder, to a forwardtest server that counts entries and
// acknowledges each chunk. One op is one batch.
func BenchmarkClient(b *testing.B) {
	for _, compression := range []string{config.CompressionNone, config.CompressionGzip} {
		b.Run(compression, func(b *testing.B) {
			srv, err := forwardtest.Start(forwardtest.Options{CountOnly: true})
			if err != nil {
				b.Fatal(err)
			}
			defer srv.Close()
			c, err := forward.New(config.Upstream{Servers: []string{srv.Addr()}, Compression: compression}, 4, nil, nil)
			if err != nil {
				b.Fatal(err)
			}
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan error, 1)
			go func() { done <- c.Run(ctx) }()
			defer func() { cancel(); <-done }()

			e := record.NewEncoder(pod, "app", "/var/log/app/app.log", config.ParserNone)
			lineBytes := []byte(strings.Repeat("0123456789", 20))
			var entries []byte
			n := 0
			now := time.Now()
			for len(entries) < 1<<20 {
				// Vary the lines a little, so that gzip sees something like logs.
				copy(lineBytes, fmt.Sprintf("%08d", n))
				entries, _ = e.Append(entries, now, lineBytes)
				n++
			}
			b.SetBytes(int64(len(entries)))
			b.ResetTimer()
			for range b.N {
				// The entries are only read, so every batch can share them.
				if err := c.Send(ctx, &forward.Batch{Tag: "kube.shop.web-1.app", Entries: entries, Count: n}); err != nil {
					b.Fatal(err)
				}
			}
			if _, _, err := c.Drain(ctx); err != nil {
				b.Fatal(err)
			}
			b.StopTimer()
			if got, want := srv.Count(), int64(b.N*n); got != want {
				b.Fatalf("server counted %d entries, want %d", got, want)
			}
			b.ReportMetric(float64(b.N*n)/b.Elapsed().Seconds(), "entries/s")
		})
	}
}
