// Package otlp is the agent's OTLP/HTTP client: it sends each batch as one
// ExportLogsServiceRequest in protobuf (POST, Content-Type application/x-protobuf, gzip when
// configured) to the first of the upstream URLs that answers, and reports each batch done, in
// order, once the server answered it for good.
//
// The delivery contract is the forward client's: a batch is reported acknowledged (its records'
// offsets may be checkpointed) only after a 2xx answer; 429, 502, 503 and 504, a refused
// connection and a timeout are retried with backoff, honouring Retry-After, and never given up;
// at most a fixed number of batches wait at once and Send blocks while they do, so that a slow or
// absent receiver stops reading instead of filling memory. As the OTLP specification requires,
// any other 4xx or 5xx answer is not retried: the batch is logged and counted as dropped with the
// server's reason, and then reported done so that reading goes on. A 2xx with a partial_success
// counts the rejected records as dropped with the server's message.
//
// Batches go one request at a time, in Send order, over one kept-alive connection: the protocol
// has no pipelining, and one request of a full batch (1 MiB by default) keeps a receiver busy.
//
// Records are encoded with google.golang.org/protobuf/encoding/protowire, the agent's only
// dependency outside the standard library: Encoder appends each LogRecord to the batch as it is
// read, and a request is a few header bytes written before the batch's records.
package otlp

import (
	"bytes"
	"cmp"
	"compress/gzip"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sidelog/sidelog/sidecar/config"
	"github.com/sidelog/sidelog/sidecar/delivery"
	"github.com/sidelog/sidelog/sidecar/metrics"
)

// Batch is one request's records: LogRecords of one container, appended by Encoder.
type Batch struct {
	// Resource is the content of the Resource message, from AppendResource.
	Resource []byte
	// Records are concatenated ScopeLogs.log_records fields.
	Records []byte
	// Count is the number of records.
	Count int
	// Container names the batch's container in metrics and logs.
	Container string
	// Acked is called once when the batch is done with — answered with a 2xx, or refused for
	// good — in Send order, from the client's goroutine (the one running Run). It may be nil.
	Acked func()
	// Rejected is, when Acked is called, how many of the records the upstream refused (all of
	// them for a batch refused for good): counted as dropped, not delivered.
	Rejected int
}

// Defaults of the options.
const (
	DefaultMinBackoff = delivery.DefaultMinBackoff
	DefaultMaxBackoff = delivery.DefaultMaxBackoff
	DefaultFailback   = delivery.DefaultFailback
	// maxRetryAfter bounds the wait a Retry-After header may ask for.
	maxRetryAfter = 5 * time.Minute
	// maxResponse bounds what is read of an answer (a partial_success or a Status).
	maxResponse = 64 << 10
)

// Reasons of sidelog_dropped_total for records the receiver refused.
const (
	ReasonRejected       = "otlp_rejected"        // a request answered with a permanent error
	ReasonPartialSuccess = "otlp_partial_success" // records a 2xx answer said it rejected
)

// Option changes a default of New.
type Option func(*options)

type options struct {
	minBackoff, maxBackoff time.Duration
	failback               time.Duration
	version                string
}

// WithBackoff sets the bounds of the wait between failed attempts: it starts at min and doubles
// up to max, half of it random. A Retry-After answer replaces it.
func WithBackoff(min, max time.Duration) Option {
	return func(o *options) { o.minBackoff, o.maxBackoff = min, max }
}

// WithFailback sets how long the client stays on a URL other than the first before it tries the
// first again.
func WithFailback(d time.Duration) Option { return func(o *options) { o.failback = d } }

// WithVersion sets the scope's version (the agent's).
func WithVersion(v string) Option { return func(o *options) { o.version = v } }

// Client sends batches to the upstream URLs. Send, Drain and Run may be called from different
// goroutines; Run must run for anything to be sent.
type Client struct {
	cfg     config.Upstream
	urls    []string
	opts    options
	log     *slog.Logger
	reg     *metrics.Registry
	m       clientMetrics
	http    *http.Client
	tls     atomic.Pointer[tls.Config] // nil without TLS; the last CA read
	headers atomic.Pointer[http.Header]
	running atomic.Bool

	win *delivery.Window
	mu  sync.Mutex
	// queue holds, in Send order, every batch not yet reported done. Send appends; Run's
	// goroutine removes.
	queue []*pending

	// head and gz are Run's scratch space for the request's head and for compressing.
	head []byte
	gz   *gzip.Writer
	zbuf bytes.Buffer
}

type pending struct {
	b        *Batch
	attempts int
}

type clientMetrics struct {
	recordsSent, recordsAcked *metrics.Counter
	batchesSent, batchesAcked *metrics.Counter
	bytesSent                 *metrics.Counter
	retries, errors           *metrics.Counter
	refused                   *metrics.Counter
	inflight                  *metrics.Gauge
	current                   map[string]*metrics.Gauge
}

// New returns a client of the URLs of cfg (cfg.Protocol must be config.ProtocolOTLP) that lets
// maxInflight batches wait at once (config.Defaults.MaxInflightBatches if it is not positive).
// It reads the CA file and the headers directory now, so that a wrong path is an error at
// start-up. reg and log may be nil.
func New(cfg config.Upstream, maxInflight int, reg *metrics.Registry, log *slog.Logger, opts ...Option) (*Client, error) {
	if cfg.Protocol != config.ProtocolOTLP {
		return nil, fmt.Errorf("upstream.protocol: got %q, want %q", cfg.Protocol, config.ProtocolOTLP)
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg.SetDefaults()
	if maxInflight <= 0 {
		maxInflight = config.Defaults.MaxInflightBatches
	}
	if reg == nil {
		reg = metrics.NewRegistry()
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	c := &Client{
		cfg: cfg, log: log, reg: reg,
		win:  delivery.NewWindow(maxInflight),
		opts: options{minBackoff: DefaultMinBackoff, maxBackoff: DefaultMaxBackoff, failback: DefaultFailback},
	}
	for _, o := range opts {
		o(&c.opts)
	}
	if c.opts.minBackoff <= 0 || c.opts.maxBackoff < c.opts.minBackoff {
		return nil, fmt.Errorf("backoff: want 0 < min <= max, got %s and %s", c.opts.minBackoff, c.opts.maxBackoff)
	}
	for _, s := range cfg.Servers {
		u, _ := url.Parse(s) // Validate checked it
		if u.Path == "" {
			u.Path = config.DefaultOTLPPath
		}
		c.urls = append(c.urls, u.String())
	}
	if cfg.TLS != nil {
		conf, err := delivery.ClientTLS(cfg.TLS)
		if err != nil {
			return nil, err
		}
		c.tls.Store(conf)
	}
	if cfg.HeadersDir != "" {
		h, err := readHeaders(cfg.HeadersDir)
		if err != nil {
			return nil, err
		}
		c.headers.Store(&h)
	}
	dialer := &net.Dialer{Timeout: cfg.DialTimeout.D(), KeepAlive: 30 * time.Second}
	c.http = &http.Client{
		Timeout: cfg.AckTimeout.D(),
		Transport: &http.Transport{
			Proxy:               nil, // the agent ignores *_PROXY: the injector keeps the app's environment out anyway
			DialContext:         dialer.DialContext,
			DialTLSContext:      c.dialTLS(dialer),
			MaxIdleConnsPerHost: 1,
			IdleConnTimeout:     90 * time.Second,
			DisableCompression:  true,
		},
	}
	c.gz, _ = gzip.NewWriterLevel(io.Discard, gzip.BestSpeed)
	c.m = clientMetrics{
		recordsSent:  reg.Counter("sidelog_otlp_records_sent_total", "Log records sent to the upstream, resends included."),
		recordsAcked: reg.Counter("sidelog_otlp_records_acked_total", "Log records in requests the upstream answered with a 2xx (partially rejected ones included)."),
		batchesSent:  reg.Counter("sidelog_otlp_requests_sent_total", "Export requests sent to the upstream, resends included."),
		batchesAcked: reg.Counter("sidelog_otlp_requests_acked_total", "Export requests the upstream answered with a 2xx."),
		bytesSent:    reg.Counter("sidelog_otlp_bytes_sent_total", "Bytes of request bodies sent to the upstream, after compression."),
		retries:      reg.Counter("sidelog_otlp_retries_total", "Requests sent again after a retryable answer or a connection failure."),
		errors:       reg.Counter("sidelog_otlp_errors_total", "Requests that failed: no connection, a timeout, or an answer other than 2xx."),
		refused:      reg.Counter("sidelog_otlp_requests_refused_total", "Requests the upstream refused for good (a 4xx other than 429, or a 5xx other than 502, 503 and 504): their records are dropped."),
		inflight:     reg.Gauge("sidelog_otlp_inflight_batches", "Batches given to the client and not yet done with."),
		current:      map[string]*metrics.Gauge{},
	}
	for _, s := range c.urls {
		c.m.current[s] = reg.Gauge("sidelog_otlp_upstream_current", "1 for the upstream URL requests go to, 0 for the others.", "url", s)
	}
	return c, nil
}

// dialTLS makes the TLS connections of https URLs. It reads the CA file again for every new
// connection, so that a rotated Secret takes effect without a restart; a file that cannot be
// read leaves the last good CA in use, with a warning.
func (c *Client) dialTLS(d *net.Dialer) func(ctx context.Context, network, addr string) (net.Conn, error) {
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		conf := c.tls.Load()
		if c.cfg.TLS != nil {
			if fresh, err := delivery.ClientTLS(c.cfg.TLS); err != nil {
				c.log.Warn("rereading the upstream CA failed; using the last one read", "err", err)
			} else {
				c.tls.Store(fresh)
				conf = fresh
			}
		}
		if conf == nil {
			conf = &tls.Config{MinVersion: tls.VersionTLS12} // https without upstream.tls: the system roots
		}
		if conf.ServerName == "" {
			host, _, _ := net.SplitHostPort(addr)
			conf = conf.Clone()
			conf.ServerName = host
		}
		raw, err := d.DialContext(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		tc := tls.Client(raw, conf)
		if err := tc.HandshakeContext(ctx); err != nil {
			_ = raw.Close()
			return nil, fmt.Errorf("TLS handshake: %w", err)
		}
		return tc, nil
	}
}

// reservedHeaders are set by the client; a headers file may not change them.
var reservedHeaders = map[string]bool{"Content-Type": true, "Content-Encoding": true, "Content-Length": true, "Host": true, "Transfer-Encoding": true, "Connection": true}

// readHeaders reads the header files of dir: each regular file (or symbolic link to one, as the
// kubelet projects a Secret's keys) whose name does not start with "..", its name the header's.
func readHeaders(dir string) (http.Header, error) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("upstream.headersDir: %w", err)
	}
	h := http.Header{}
	for _, e := range ents {
		name := e.Name()
		if strings.HasPrefix(name, ".") {
			continue // the kubelet's ..data and ..<timestamp> entries
		}
		p := filepath.Join(dir, name)
		fi, err := os.Stat(p)
		if err != nil {
			return nil, fmt.Errorf("upstream.headersDir: %w", err)
		}
		if !fi.Mode().IsRegular() {
			continue
		}
		if !validHeaderName(name) {
			return nil, fmt.Errorf("upstream.headersDir: %s: %q is not an HTTP header name", p, name)
		}
		if reservedHeaders[http.CanonicalHeaderKey(name)] {
			return nil, fmt.Errorf("upstream.headersDir: %s: the agent sets %s itself", p, http.CanonicalHeaderKey(name))
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return nil, fmt.Errorf("upstream.headersDir: %w", err)
		}
		v := strings.TrimRight(string(b), "\r\n")
		if strings.ContainsAny(v, "\r\n\x00") {
			return nil, fmt.Errorf("upstream.headersDir: %s: a header value must be one line", p)
		}
		h.Set(name, v)
	}
	return h, nil
}

// validHeaderName reports whether s is an RFC 9110 token.
func validHeaderName(s string) bool {
	if s == "" {
		return false
	}
	for _, r := range s {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9':
		case strings.ContainsRune("!#$%&'*+-.^_`|~", r):
		default:
			return false
		}
	}
	return true
}

// currentHeaders reads the headers directory again: a rotated token takes effect at the next
// request. A directory that cannot be read leaves the last good headers, with a warning.
func (c *Client) currentHeaders() http.Header {
	if c.cfg.HeadersDir == "" {
		return nil
	}
	h, err := readHeaders(c.cfg.HeadersDir)
	if err != nil {
		c.log.Warn("rereading the upstream headers failed; using the last ones read", "err", err)
		return *c.headers.Load()
	}
	c.headers.Store(&h)
	return h
}

// Send queues b. It blocks while the in-flight limit is reached (backpressure) and returns
// ctx.Err() if ctx ends first. Records must not be modified until Acked is called.
func (c *Client) Send(ctx context.Context, b *Batch) error {
	switch {
	case b == nil:
		return errors.New("otlp: Send of a nil batch")
	case len(b.Records) == 0 || b.Count <= 0:
		return fmt.Errorf("otlp: Send of an empty batch (%d bytes, count %d)", len(b.Records), b.Count)
	}
	if err := c.win.Acquire(ctx, b.Count); err != nil {
		return err
	}
	c.mu.Lock()
	c.queue = append(c.queue, &pending{b: b})
	c.mu.Unlock()
	c.m.inflight.Add(1)
	c.win.Notify()
	return nil
}

// Drain waits until every batch given to Send is done with (its Acked has returned) or ctx ends;
// it returns the number of batches and records left, and ctx's error if it ended first.
func (c *Client) Drain(ctx context.Context) (batches, records int, err error) {
	return c.win.Drain(ctx)
}

// outcome is what an attempt at a request came to.
type outcome int

const (
	delivered outcome = iota // 2xx
	refused                  // a permanent error: the batch is dropped
	retry                    // try again, on the next URL, after a wait
)

// Run sends until ctx ends: the oldest batch first, to the current URL; after a retryable
// failure the next URL is tried at once, and once every URL failed in a row the client waits
// (backoff, or the longest Retry-After) before it starts again from the first. While on a URL
// other than the first it tries the first again after the failback interval. It returns nil when
// ctx ends, and an error only if it is already running.
func (c *Client) Run(ctx context.Context) error {
	if !c.running.CompareAndSwap(false, true) {
		return errors.New("otlp: Run is already running")
	}
	defer c.running.Store(false)
	defer c.http.CloseIdleConnections()
	var (
		cur       int // index in c.urls
		failures  int // consecutive rounds of every URL failing
		tried     int // URLs failed in a row in this round
		wait      time.Duration
		leftFirst time.Time // when the client moved off the first URL
	)
	c.m.current[c.urls[0]].Set(1)
	move := func(to int) {
		c.m.current[c.urls[cur]].Set(0)
		c.m.current[c.urls[to]].Set(1)
		if cur == 0 && to != 0 {
			leftFirst = time.Now()
		}
		cur = to
	}
	for {
		c.mu.Lock()
		var p *pending
		if len(c.queue) > 0 {
			p = c.queue[0]
		}
		c.mu.Unlock()
		if p == nil {
			select {
			case <-ctx.Done():
				return nil
			case <-c.win.Woken():
			}
			continue
		}
		if cur != 0 && time.Since(leftFirst) >= c.opts.failback {
			c.log.Info("trying the first upstream URL again", "from", c.urls[cur], "to", c.urls[0])
			move(0)
			leftFirst = time.Now()
		}
		out, after := c.attempt(ctx, p, c.urls[cur])
		if ctx.Err() != nil {
			return nil
		}
		switch out {
		case delivered, refused:
			failures, tried, wait = 0, 0, 0
			c.done(p)
			continue
		}
		wait = max(wait, after)
		tried++
		if tried < len(c.urls) {
			move((cur + 1) % len(c.urls))
			continue
		}
		failures++
		d := wait
		if d == 0 {
			d = delivery.Backoff(failures, c.opts.minBackoff, c.opts.maxBackoff)
		}
		tried, wait = 0, 0
		if !delivery.Sleep(ctx, d) {
			return nil
		}
		move(0)
	}
}

// done reports the oldest batch done with and removes it from the queue.
func (c *Client) done(p *pending) {
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

// body returns the request body of b: the head written before its records, and the records,
// compressed into one slice with gzip.
func (c *Client) body(b *Batch) ([][]byte, error) {
	c.head = appendRequestHead(c.head[:0], b.Resource, c.opts.version, len(b.Records))
	if c.cfg.Compression != config.CompressionGzip {
		return [][]byte{c.head, b.Records}, nil
	}
	c.zbuf.Reset()
	c.gz.Reset(&c.zbuf)
	_, _ = c.gz.Write(c.head)
	_, _ = c.gz.Write(b.Records)
	if err := c.gz.Close(); err != nil {
		return nil, fmt.Errorf("compressing a batch: %w", err)
	}
	return [][]byte{c.zbuf.Bytes()}, nil
}

// attempt sends p to u once and says what came of it; after is the wait a Retry-After header
// asked for.
func (c *Client) attempt(ctx context.Context, p *pending, u string) (out outcome, after time.Duration) {
	parts, err := c.body(p.b)
	if err != nil {
		c.log.Error("dropping a batch that cannot be compressed", "err", err)
		c.drop(p.b, ReasonRejected, p.b.Count)
		return refused, 0
	}
	size := 0
	for _, b := range parts {
		size += len(b)
	}
	// The transport may read a body after Do returned (a server that answers before reading
	// it all), and closes it when it is done: the buffers, which the next attempt and the
	// batch's Acked reuse, are let go only then.
	var (
		bodiesMu sync.Mutex
		bodies   []*sentBody
	)
	newBody := func() io.ReadCloser {
		rs := make([]io.Reader, len(parts))
		for i, b := range parts {
			rs[i] = bytes.NewReader(b)
		}
		b := &sentBody{Reader: io.MultiReader(rs...), closed: make(chan struct{})}
		bodiesMu.Lock()
		bodies = append(bodies, b)
		bodiesMu.Unlock()
		return b
	}
	defer func() {
		bodiesMu.Lock()
		defer bodiesMu.Unlock()
		timeout := time.NewTimer(c.cfg.AckTimeout.D())
		defer timeout.Stop()
		for _, b := range bodies {
			select {
			case <-b.closed:
			case <-timeout.C:
				// Never seen; but then the next attempt must not write into what it reads.
				c.log.Warn("the HTTP transport still holds a request body", "url", u)
				c.head, c.zbuf = nil, bytes.Buffer{}
				return
			}
		}
	}()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u, newBody())
	if err != nil {
		c.log.Error("building a request", "url", u, "err", err)
		return retry, 0
	}
	req.ContentLength = int64(size)
	req.GetBody = func() (io.ReadCloser, error) { return newBody(), nil }
	for k, v := range c.currentHeaders() {
		req.Header[k] = v
	}
	req.Header.Set("Content-Type", "application/x-protobuf")
	req.Header.Set("User-Agent", "sidelog-agent/"+cmp.Or(c.opts.version, "dev"))
	if c.cfg.Compression == config.CompressionGzip {
		req.Header.Set("Content-Encoding", "gzip")
	}
	if p.attempts > 0 {
		c.m.retries.Inc()
	}
	p.attempts++
	c.m.batchesSent.Inc()
	c.m.recordsSent.Add(uint64(p.b.Count))
	resp, err := c.http.Do(req)
	if err != nil {
		if ctx.Err() == nil {
			c.m.errors.Inc()
			c.log.Warn("upstream request failed", "url", u, "err", err, "records", p.b.Count)
		}
		return retry, 0
	}
	c.m.bytesSent.Add(uint64(size))
	answer, _ := io.ReadAll(io.LimitReader(resp.Body, maxResponse))
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, maxResponse)) // so the connection is kept
	_ = resp.Body.Close()
	code := resp.StatusCode
	switch {
	case code >= 200 && code < 300:
		c.m.batchesAcked.Inc()
		c.m.recordsAcked.Add(uint64(p.b.Count))
		// A server may answer OTLP/HTTP protobuf with JSON only by mistake; its body is then not
		// read as a partial success.
		if ct := resp.Header.Get("Content-Type"); ct != "" && !strings.HasPrefix(ct, "application/x-protobuf") {
			answer = nil
		}
		if rejected, msg := partialSuccess(answer); rejected > 0 || msg != "" {
			c.log.Warn("the upstream rejected some records", "url", u, "container", p.b.Container,
				"rejected", rejected, "of", p.b.Count, "message", msg)
			if rejected > 0 {
				c.drop(p.b, ReasonPartialSuccess, int(min(rejected, int64(p.b.Count))))
			}
		}
		return delivered, 0
	case code == http.StatusTooManyRequests, code == http.StatusBadGateway,
		code == http.StatusServiceUnavailable, code == http.StatusGatewayTimeout:
		c.m.errors.Inc()
		after = retryAfter(resp.Header.Get("Retry-After"), time.Now())
		c.log.Warn("upstream busy; retrying", "url", u, "status", resp.Status, "retryAfter", after, "message", reason(answer))
		return retry, after
	default:
		c.m.errors.Inc()
		c.m.refused.Inc()
		c.log.Error("upstream refused a batch for good; its records are dropped (OTLP: not retryable)",
			"url", u, "status", resp.Status, "container", p.b.Container, "records", p.b.Count, "message", reason(answer))
		c.drop(p.b, ReasonRejected, p.b.Count)
		return refused, 0
	}
}

func (c *Client) drop(b *Batch, reason string, n int) {
	b.Rejected = min(b.Rejected+n, b.Count)
	c.reg.Counter("sidelog_dropped_total", metrics.DroppedHelp,
		"container", b.Container, "reason", reason).Add(uint64(n))
}

// reason returns what an error answer says: a google.rpc.Status's message, else the start of
// the body if it is text.
func reason(b []byte) string {
	if m := statusText(b); m != "" {
		return m
	}
	s := strings.ToValidUTF8(string(b[:min(len(b), 200)]), "?")
	return strings.TrimSpace(s)
}

// retryAfter parses a Retry-After value, seconds or an HTTP date, bounded by maxRetryAfter; 0
// for none or a bad one.
func retryAfter(v string, now time.Time) time.Duration {
	if v == "" {
		return 0
	}
	var d time.Duration
	if n, err := strconv.Atoi(strings.TrimSpace(v)); err == nil {
		d = time.Duration(n) * time.Second
	} else if t, err := http.ParseTime(v); err == nil {
		d = t.Sub(now)
	}
	return min(max(d, 0), maxRetryAfter)
}

// sentBody is a request body that says when the transport closed it.
type sentBody struct {
	io.Reader
	once   sync.Once
	closed chan struct{}
}

func (b *sentBody) Close() error {
	b.once.Do(func() { close(b.closed) })
	return nil
}
