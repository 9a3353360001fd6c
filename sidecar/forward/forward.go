// Package forward is the agent's client of the Fluentd forward protocol v1
// (https://github.com/fluent/fluentd/wiki/Forward-Protocol-Specification-v1): it sends batches of
// pre-encoded entries as PackedForward (or CompressedPackedForward) messages with a "chunk"
// option, and reports each batch acknowledged, in order, once the server answered {"ack": chunk}.
//
// Delivery is at least once. A batch stays queued until it is acknowledged; after a broken
// connection or an acknowledgement that does not come within the ack timeout, every
// unacknowledged batch is sent again, in order, on a new connection. At most a fixed number of
// batches are unacknowledged at once, and Send blocks while they are all out: the caller stops
// reading, so that a slow or absent aggregator costs no memory.
//
// It exists instead of github.com/fluent/fluent-logger-golang, which encodes each record from Go
// values and waits for each acknowledgement before sending the next message.
package forward

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sidelog/sidelog/sidecar/config"
	"github.com/sidelog/sidelog/sidecar/delivery"
	"github.com/sidelog/sidelog/sidecar/metrics"
)

// credentials are what a connection needs from files: the CAs to trust, the shared key and the
// user.
type credentials struct {
	tls       *tls.Config // nil without TLS
	sharedKey []byte      // nil without authentication
	// username and password answer a server that asks for user authentication; both empty
	// without a user.
	username, password []byte
}

// loadCredentials reads the files of cfg.
func loadCredentials(cfg config.Upstream) (*credentials, error) {
	cr := &credentials{}
	if cfg.TLS != nil {
		conf, err := delivery.ClientTLS(cfg.TLS)
		if err != nil {
			return nil, err
		}
		cr.tls = conf
	}
	var err error
	if cr.sharedKey, err = readSecret("upstream.sharedKeyFile", cfg.SharedKeyFile); err != nil {
		return nil, err
	}
	if cr.username, err = readSecret("upstream.usernameFile", cfg.UsernameFile); err != nil {
		return nil, err
	}
	if cr.password, err = readSecret("upstream.passwordFile", cfg.PasswordFile); err != nil {
		return nil, err
	}
	return cr, nil
}

// readSecret reads the non-empty secret in file (nil for no file), field naming it in errors.
func readSecret(field, file string) ([]byte, error) {
	if file == "" {
		return nil, nil
	}
	b, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", field, err)
	}
	// Secrets written by hand usually end with a newline that is not part of the value.
	b = []byte(strings.TrimRight(string(b), "\r\n"))
	if len(b) == 0 {
		return nil, fmt.Errorf("%s: %s is empty", field, file)
	}
	return b, nil
}

// credentials reads the CA bundle, the shared key and the user again, for a new connection: a rotated
// Secret (the kubelet rewrites a mounted Secret's files) then takes effect without a restart.
// New refused files it could not read; a file that cannot be read later, mid-update perhaps,
// leaves the last good credentials in use, with a warning.
func (c *Client) credentials() *credentials {
	if c.cfg.TLS == nil && c.cfg.SharedKeyFile == "" {
		return c.creds.Load() // no files to read
	}
	cr, err := loadCredentials(c.cfg)
	if err != nil {
		c.log.Warn("rereading the upstream credentials failed; using the last ones read", "err", err)
		return c.creds.Load()
	}
	c.creds.Store(cr)
	return cr
}

// Batch is one forward-protocol message: entries of one tag, already encoded by record.Encoder.
type Batch struct {
	Tag string
	// Entries are concatenated MessagePack [time, record] entries (PackedForward).
	Entries []byte
	// Count is the number of entries.
	Count int
	// Acked is called once when the upstream acknowledged the batch, in Send order, from the
	// client's goroutine (the one running Run). It may be nil.
	Acked func()
}

// Defaults of the options.
const (
	DefaultMinBackoff = delivery.DefaultMinBackoff
	DefaultMaxBackoff = delivery.DefaultMaxBackoff
	DefaultFailback   = delivery.DefaultFailback
)

// Option changes a default of New.
type Option func(*options)

type options struct {
	hostname               string
	minBackoff, maxBackoff time.Duration
	failback               time.Duration
}

// WithHostname sets the client's hostname in the shared-key handshake (default os.Hostname(),
// in a pod its name). The server refuses a client with its own hostname.
func WithHostname(h string) Option { return func(o *options) { o.hostname = h } }

// WithBackoff sets the bounds of the wait between connection attempts: it starts at min and
// doubles up to max, half of it random so that agents restarted together spread out.
func WithBackoff(min, max time.Duration) Option {
	return func(o *options) { o.minBackoff, o.maxBackoff = min, max }
}

// WithFailback sets how often, while connected to a server other than the first, the client
// tries the servers before it, and moves back to the first that answers.
func WithFailback(d time.Duration) Option { return func(o *options) { o.failback = d } }

// Client sends batches to the upstream servers. Send, Drain and Run may be called from different
// goroutines; Run must run for anything to be sent.
type Client struct {
	cfg   config.Upstream
	opts  options
	limit int
	creds atomic.Pointer[credentials]
	log   *slog.Logger
	m     clientMetrics

	// win counts the batches given to Send and not yet reported acknowledged; it makes Send
	// block and Drain wait, and wakes Run when Send queued a batch.
	win     *delivery.Window
	running atomic.Bool

	mu sync.Mutex
	// queue holds, in Send order, every batch not yet reported acknowledged. Send appends;
	// only Run's goroutine changes anything else.
	queue []*pending

	chunkPrefix [8]byte
	chunkSeq    atomic.Uint64
}

// pending is a batch in the queue.
type pending struct {
	b     *Batch
	chunk string
	// payload is what goes in the message's entries field: Entries, or Entries compressed once.
	payload []byte
	// sentAt is when it was written on the current connection; zero if it was not.
	sentAt time.Time
	// acked is set when the server acknowledged it; it leaves the queue once the batches before
	// it did too.
	acked    bool
	attempts int
}

type clientMetrics struct {
	recordsSent, recordsAcked *metrics.Counter
	batchesSent, batchesAcked *metrics.Counter
	bytesSent                 *metrics.Counter
	retries, reconnects       *metrics.Counter
	connErrors, ackTimeouts   *metrics.Counter
	authRefusals              *metrics.Counter
	inflight                  *metrics.Gauge
	connected                 map[string]*metrics.Gauge
}

// New returns a client of the servers of cfg that lets maxInflight batches wait for their
// acknowledgement at once (config.Defaults.MaxInflightBatches if it is not positive). It reads the
// CA and shared-key files now, so that a wrong path is an error at start-up. Zero durations and
// an empty compression take the config package's defaults; reg and log may be nil.
func New(cfg config.Upstream, maxInflight int, reg *metrics.Registry, log *slog.Logger, opts ...Option) (*Client, error) {
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
		cfg:   cfg,
		limit: maxInflight,
		log:   log,
		win:   delivery.NewWindow(maxInflight),
		opts: options{
			minBackoff: DefaultMinBackoff,
			maxBackoff: DefaultMaxBackoff,
			failback:   DefaultFailback,
		},
	}
	for _, o := range opts {
		o(&c.opts)
	}
	if c.opts.hostname == "" {
		h, err := os.Hostname()
		if err != nil || h == "" {
			h = "sidelog-agent"
		}
		c.opts.hostname = h
	}
	if c.opts.minBackoff <= 0 || c.opts.maxBackoff < c.opts.minBackoff {
		return nil, fmt.Errorf("backoff: want 0 < min <= max, got %s and %s", c.opts.minBackoff, c.opts.maxBackoff)
	}
	creds, err := loadCredentials(cfg)
	if err != nil {
		return nil, err
	}
	c.creds.Store(creds)
	if _, err := rand.Read(c.chunkPrefix[:]); err != nil {
		return nil, fmt.Errorf("making chunk ids: %w", err)
	}
	c.m = clientMetrics{
		recordsSent:  reg.Counter("sidelog_forward_records_sent_total", "Records written to the upstream, resends included."),
		recordsAcked: reg.Counter("sidelog_forward_records_acked_total", "Records the upstream acknowledged."),
		batchesSent:  reg.Counter("sidelog_forward_batches_sent_total", "Batches (forward-protocol messages) written to the upstream, resends included."),
		batchesAcked: reg.Counter("sidelog_forward_batches_acked_total", "Batches the upstream acknowledged."),
		bytesSent:    reg.Counter("sidelog_forward_bytes_sent_total", "Bytes of messages written to the upstream, after compression."),
		retries:      reg.Counter("sidelog_forward_retries_total", "Batches written again after a connection failure or an acknowledgement timeout."),
		reconnects:   reg.Counter("sidelog_forward_reconnects_total", "Connections to the upstream made after the first one."),
		connErrors:   reg.Counter("sidelog_forward_connection_errors_total", "Failed connection attempts (connect, TLS, authentication) and broken connections."),
		authRefusals: reg.Counter("sidelog_forward_auth_refusals_total", "Connection attempts the upstream refused in the handshake (shared key or user); each is also a connection error."),
		ackTimeouts:  reg.Counter("sidelog_forward_ack_timeouts_total", "Connections given up because an acknowledgement did not come within upstream.ackTimeout."),
		inflight:     reg.Gauge("sidelog_forward_inflight_batches", "Batches given to the client and not yet acknowledged."),
		connected:    map[string]*metrics.Gauge{},
	}
	for _, s := range cfg.Servers {
		c.m.connected[s] = reg.Gauge("sidelog_forward_upstream_connected", "1 for the upstream server the client is connected to, 0 for the others.", "server", s)
	}
	return c, nil
}

// Send queues b. It blocks while limit batches are unacknowledged (backpressure) and returns
// ctx.Err() if ctx ends first. Entries must not be modified by the caller until Acked is called.
func (c *Client) Send(ctx context.Context, b *Batch) error {
	switch {
	case b == nil:
		return errors.New("forward: Send of a nil batch")
	case len(b.Entries) == 0 || b.Count <= 0:
		return fmt.Errorf("forward: Send of an empty batch (%d bytes, count %d)", len(b.Entries), b.Count)
	}
	if err := c.win.Acquire(ctx, b.Count); err != nil {
		return err
	}
	p := &pending{b: b, chunk: c.nextChunk()}
	c.mu.Lock()
	c.queue = append(c.queue, p)
	c.mu.Unlock()
	c.m.inflight.Add(1)
	c.win.Notify()
	return nil
}

// nextChunk returns a chunk id unique to this batch: a random prefix per client and a counter,
// base64-encoded as Fluentd's out_forward does. A resent batch keeps its id, so that a receiver
// can recognise the duplicate.
func (c *Client) nextChunk() string {
	var id [16]byte
	copy(id[:8], c.chunkPrefix[:])
	binary.BigEndian.PutUint64(id[8:], c.chunkSeq.Add(1))
	return base64.StdEncoding.EncodeToString(id[:])
}

// Drain waits until every batch given to Send is acknowledged (its Acked has returned) or ctx
// ends; it returns the number of batches and entries still unacknowledged, and ctx's error if it
// ended first. Run must be running for anything to be acknowledged.
func (c *Client) Drain(ctx context.Context) (batches, entries int, err error) {
	return c.win.Drain(ctx)
}
