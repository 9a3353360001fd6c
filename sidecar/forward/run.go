package forward

import (
	"bytes"
	"compress/gzip"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"time"

	"github.com/sidelog/sidelog/sidecar/config"
	"github.com/sidelog/sidelog/sidecar/delivery"
	"github.com/sidelog/sidelog/sidecar/msgpack"
)

// maxServerMessage bounds what the client buffers of one message from the server (an ack, HELO
// or PONG is a few hundred bytes).
const maxServerMessage = 64 << 10

// errAckTimeout ends a connection on which an acknowledgement is overdue.
var errAckTimeout = errors.New("no acknowledgement within upstream.ackTimeout")

// conn is an established connection: connected, TLS and authentication done.
type conn struct {
	net.Conn
	addr  string
	index int // in cfg.Servers
	r     *msgpack.Reader
	// hdr is scratch space for message headers and options.
	hdr, opt []byte
}

// Run connects and delivers until ctx ends: one connection at a time to the first server of
// cfg.Servers that answers (failover order; it goes back to the first one after a while),
// pipelines up to limit chunks, matches each {"ack": chunk} to its batch, resends every
// unacknowledged batch in order after a connection error or an ack timeout, reconnects with
// exponential backoff plus jitter, and never gives up. It returns nil when ctx ends, and an error
// only if it is already running.
func (c *Client) Run(ctx context.Context) error {
	if !c.running.CompareAndSwap(false, true) {
		return errors.New("forward: Run is already running")
	}
	defer c.running.Store(false)
	var (
		cn        *conn
		failures  int // consecutive connections or attempts that delivered nothing
		connected bool
	)
	for {
		if cn == nil {
			if failures > 0 && !delivery.Sleep(ctx, delivery.Backoff(failures, c.opts.minBackoff, c.opts.maxBackoff)) {
				return nil
			}
			cn = c.connect(ctx, len(c.cfg.Servers))
			if cn == nil {
				if ctx.Err() != nil {
					return nil
				}
				failures++
				continue
			}
		}
		if connected {
			c.m.reconnects.Inc()
		}
		connected = true
		c.m.connected[cn.addr].Set(1)
		c.log.Info("connected to upstream", "server", cn.addr, "tls", c.cfg.TLS != nil, "sharedKey", c.cfg.SharedKeyFile != "", "user", c.cfg.UsernameFile != "")
		next, progressed, err := c.serve(ctx, cn)
		c.m.connected[cn.addr].Set(0)
		_ = cn.Close()
		unacked := c.requeue()
		if ctx.Err() != nil {
			if next != nil {
				_ = next.Close()
			}
			return nil
		}
		if err != nil {
			c.m.connErrors.Inc()
			c.log.Warn("upstream connection lost", "server", cn.addr, "err", err, "unacknowledged", unacked)
		}
		if next != nil {
			c.log.Info("moving back to an earlier upstream server", "from", cn.addr, "to", next.addr)
		}
		if progressed {
			failures = 0
		} else {
			failures++
		}
		cn = next
	}
}

// requeue marks every batch not acknowledged as unsent, so that the next connection sends it
// again, and returns how many there are.
func (c *Client) requeue() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := 0
	for _, p := range c.queue {
		if !p.acked {
			p.sentAt = time.Time{}
			n++
		}
	}
	return n
}

// connect tries the first n servers in order and returns a connection to the first that answers,
// or nil if none did or ctx ended.
func (c *Client) connect(ctx context.Context, n int) *conn {
	for i, addr := range c.cfg.Servers[:n] {
		cn, err := c.dial(ctx, addr)
		if err == nil {
			cn.index = i
			return cn
		}
		if ctx.Err() != nil {
			return nil
		}
		c.m.connErrors.Inc()
		if errors.As(err, new(*authError)) {
			c.m.authRefusals.Inc()
			c.log.Error("upstream refused authentication", "server", addr, "err", err)
		} else {
			c.log.Warn("cannot connect to upstream", "server", addr, "err", err)
		}
	}
	return nil
}

// dial connects to addr and does the TLS and shared-key handshakes, all within the dial timeout.
func (c *Client) dial(ctx context.Context, addr string) (*conn, error) {
	timeout := c.cfg.DialTimeout.D()
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	d := net.Dialer{KeepAlive: 30 * time.Second}
	raw, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	nc := raw
	// Whatever blocks below ends at the deadline or when ctx does.
	stop := context.AfterFunc(ctx, func() { _ = raw.SetDeadline(time.Now()) })
	_ = raw.SetDeadline(time.Now().Add(timeout))
	fail := func(err error) (*conn, error) {
		stop()
		_ = raw.Close()
		if ctx.Err() != nil && !errors.As(err, new(*authError)) {
			return nil, fmt.Errorf("%w (upstream.dialTimeout is %s)", err, timeout)
		}
		return nil, err
	}
	cr := c.credentials()
	if cr.tls != nil {
		conf := cr.tls
		if conf.ServerName == "" {
			host, _, _ := net.SplitHostPort(addr)
			conf = conf.Clone()
			conf.ServerName = host
		}
		tc := tls.Client(raw, conf)
		if err := tc.HandshakeContext(ctx); err != nil {
			return fail(fmt.Errorf("TLS handshake: %w", err))
		}
		nc = tc
	}
	cn := &conn{Conn: nc, addr: addr, r: msgpack.NewReader(nc, maxServerMessage)}
	if cr.sharedKey != nil {
		if err := c.handshake(cn, cr); err != nil {
			return fail(err)
		}
	}
	if !stop() {
		_ = raw.Close()
		return nil, ctx.Err()
	}
	_ = raw.SetDeadline(time.Time{})
	return cn, nil
}

// serve delivers on cn until it fails, ctx ends, or a connection to an earlier server is ready
// (next). progressed reports whether any acknowledgement came.
func (c *Client) serve(ctx context.Context, cn *conn) (next *conn, progressed bool, err error) {
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	// Closing the connection is what interrupts a blocked write or read when ctx ends.
	stop := context.AfterFunc(sctx, func() { _ = cn.Close() })
	defer stop()

	acks := make(chan string, c.limit+1)
	readErr := make(chan error, 1)
	go func() { readErr <- cn.readAcks(sctx, acks) }()

	var failback <-chan time.Time
	if cn.index > 0 {
		t := time.NewTicker(c.opts.failback)
		defer t.Stop()
		failback = t.C
	}
	var probe chan *conn // non-nil while a probe of the earlier servers runs
	defer func() {
		cancel() // closes cn, which ends the reader, and ends a probe
		<-readErr
		if probe != nil {
			if p := <-probe; p != nil {
				_ = p.Close()
			}
		}
	}()

	ackTimer := time.NewTimer(time.Hour)
	defer ackTimer.Stop()
	for {
		// Once moving to another server (next), nothing more is written here: what is out is
		// waited for, what is not goes on the next connection.
		if next == nil {
			if err := c.writeUnsent(cn); err != nil {
				return nil, progressed, err
			}
		}
		oldest, out := c.oldestUnacked()
		if next != nil && !out {
			return next, progressed, nil
		}
		if out {
			ackTimer.Reset(time.Until(oldest.Add(c.cfg.AckTimeout.D())))
		} else {
			ackTimer.Stop()
		}
		select {
		case <-ctx.Done():
			return next, progressed, ctx.Err()
		case <-c.win.Woken():
		case chunk := <-acks:
			if c.ack(chunk) {
				progressed = true
			}
		case err := <-readErr:
			readErr <- err // for the deferred wait
			return next, progressed, err
		case <-ackTimer.C:
			if oldest, out := c.oldestUnacked(); out && time.Since(oldest) >= c.cfg.AckTimeout.D() {
				c.m.ackTimeouts.Inc()
				return next, progressed, fmt.Errorf("%w (%s)", errAckTimeout, c.cfg.AckTimeout.D())
			}
		case <-failback:
			if probe == nil && next == nil {
				ch := make(chan *conn, 1)
				go func() { ch <- c.connect(sctx, cn.index) }()
				probe = ch
			}
		case p := <-probe:
			probe = nil
			if p != nil {
				next = p
			}
		}
	}
}

// oldestUnacked returns when the oldest batch written on this connection and not acknowledged
// was written, and whether there is one.
func (c *Client) oldestUnacked() (time.Time, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, p := range c.queue {
		if !p.acked && !p.sentAt.IsZero() {
			return p.sentAt, true
		}
	}
	return time.Time{}, false
}

// writeUnsent writes, in order, every queued batch not yet written on cn.
func (c *Client) writeUnsent(cn *conn) error {
	for {
		c.mu.Lock()
		var p *pending
		for _, q := range c.queue {
			if !q.acked && q.sentAt.IsZero() {
				p = q
				break
			}
		}
		c.mu.Unlock()
		if p == nil {
			return nil
		}
		if err := c.write(cn, p); err != nil {
			return err
		}
	}
}

// write writes p as a PackedForward or CompressedPackedForward message,
// [tag, entries (bin), {"size": count, "chunk": id[, "compressed": "gzip"]}], or as a Forward
// message, [tag, [entry...], {"size": count, "chunk": id}]. The entries are the same bytes
// either way: only their header differs.
func (c *Client) write(cn *conn, p *pending) error {
	if p.payload == nil {
		p.payload = p.b.Entries
		if c.cfg.Compression == config.CompressionGzip {
			z, err := compress(p.b.Entries)
			if err != nil {
				return err
			}
			p.payload = z
		}
	}
	cn.hdr = msgpack.AppendArrayHeader(cn.hdr[:0], 3)
	cn.hdr = msgpack.AppendString(cn.hdr, p.b.Tag)
	if c.cfg.Mode == config.ModeForward {
		cn.hdr = msgpack.AppendArrayHeader(cn.hdr, p.b.Count)
	} else {
		cn.hdr = msgpack.AppendBinaryHeader(cn.hdr, len(p.payload))
	}
	gz := c.cfg.Compression == config.CompressionGzip
	n := 2
	if gz {
		n = 3
	}
	cn.opt = msgpack.AppendMapHeader(cn.opt[:0], n)
	cn.opt = msgpack.AppendString(cn.opt, "size")
	cn.opt = msgpack.AppendInt(cn.opt, int64(p.b.Count))
	cn.opt = msgpack.AppendString(cn.opt, "chunk")
	cn.opt = msgpack.AppendString(cn.opt, p.chunk)
	if gz {
		cn.opt = msgpack.AppendString(cn.opt, "compressed")
		cn.opt = msgpack.AppendString(cn.opt, "gzip")
	}
	// A write that the server does not take within the ack timeout is as good as unacknowledged.
	_ = cn.SetWriteDeadline(time.Now().Add(c.cfg.AckTimeout.D()))
	// On a TCP connection this is one writev: the entries are not copied.
	bufs := net.Buffers{cn.hdr, p.payload, cn.opt}
	size := int64(len(cn.hdr) + len(p.payload) + len(cn.opt))
	written, err := bufs.WriteTo(cn.Conn)
	c.m.bytesSent.Add(uint64(written))
	if err != nil {
		return fmt.Errorf("writing a batch of %d bytes: %w", size, err)
	}
	c.mu.Lock()
	p.sentAt = time.Now()
	c.mu.Unlock()
	if p.attempts > 0 {
		c.m.retries.Inc()
	}
	p.attempts++
	c.m.batchesSent.Inc()
	c.m.recordsSent.Add(uint64(p.b.Count))
	return nil
}

// gzipWriters keeps the compressors between batches: each holds about 800 KiB of state, which
// a new one per batch would allocate and the collector free again at every batch.
var gzipWriters = sync.Pool{New: func() any {
	// The fastest level: in a sidecar CPU is dearer than bytes, and log lines compress well anyway.
	zw, _ := gzip.NewWriterLevel(io.Discard, gzip.BestSpeed)
	return zw
}}

func compress(b []byte) ([]byte, error) {
	var buf bytes.Buffer
	buf.Grow(len(b) / 4)
	zw := gzipWriters.Get().(*gzip.Writer)
	defer gzipWriters.Put(zw)
	zw.Reset(&buf)
	if _, err := zw.Write(b); err != nil {
		return nil, fmt.Errorf("compressing a batch: %w", err)
	}
	if err := zw.Close(); err != nil {
		return nil, fmt.Errorf("compressing a batch: %w", err)
	}
	return buf.Bytes(), nil
}

// ack records the server's acknowledgement of chunk and reports, in Send order, every batch
// acknowledged with all those before it. It returns false for a chunk it does not know.
func (c *Client) ack(chunk string) bool {
	c.mu.Lock()
	var found *pending
	for _, p := range c.queue {
		if p.chunk == chunk && !p.acked && !p.sentAt.IsZero() {
			found = p
			break
		}
	}
	if found != nil {
		found.acked = true
	}
	c.mu.Unlock()
	if found == nil {
		c.log.Debug("ignoring an acknowledgement of an unknown chunk", "chunk", chunk)
		return false
	}
	c.m.batchesAcked.Inc()
	c.m.recordsAcked.Add(uint64(found.b.Count))
	for {
		c.mu.Lock()
		if len(c.queue) == 0 || !c.queue[0].acked {
			c.mu.Unlock()
			return true
		}
		p := c.queue[0]
		c.mu.Unlock()
		// The batch leaves the queue last, so that Drain returning means the caller has seen
		// every acknowledgement and the metrics count it.
		if p.b.Acked != nil {
			p.b.Acked()
		}
		c.m.inflight.Add(-1)
		c.mu.Lock()
		c.queue[0] = nil
		c.queue = c.queue[1:]
		c.mu.Unlock()
		c.win.Release(p.b.Count)
	}
}

// readAcks reads the server's messages and passes on the chunk of each acknowledgement.
func (cn *conn) readAcks(ctx context.Context, acks chan<- string) error {
	for {
		v, err := cn.r.Decode()
		if err != nil {
			return fmt.Errorf("reading acknowledgements: %w", err)
		}
		m, ok := v.(map[string]any)
		if !ok {
			if a, ok := v.([]any); ok && len(a) > 0 && a[0] == "HELO" {
				return errors.New("the server sent HELO: it requires shared-key authentication, set upstream.sharedKeyFile")
			}
			return fmt.Errorf("unexpected message from the server: %.100v", v)
		}
		var chunk string
		switch a := m["ack"].(type) {
		case string:
			chunk = a
		case []byte:
			chunk = string(a)
		default:
			return fmt.Errorf("unexpected message from the server, want {\"ack\": chunk}: %.100v", v)
		}
		select {
		case acks <- chunk:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}
