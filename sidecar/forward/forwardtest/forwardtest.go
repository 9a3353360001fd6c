// Package forwardtest is a Fluentd forward-protocol v1 receiver for tests and benchmarks: the
// server side of what package forward speaks, with the faults a client must survive.
//
// It accepts the four modes (Message, Forward, PackedForward, CompressedPackedForward), decodes
// every entry into an Event (or only counts entries, in CountOnly mode, for throughput runs), and
// acknowledges each message that has a "chunk" option, at once, after a delay, or when the test
// says so. It can require the shared-key handshake, serve TLS, go down and come back up on the
// same address, and drop a connection instead of acknowledging.
//
//	srv, err := forwardtest.Start(forwardtest.Options{})
//	defer srv.Close()
//	... send to srv.Addr() ...
//	err = srv.Wait(ctx, 100) // until 100 entries arrived
//	events := srv.Events()
package forwardtest

import (
	"bytes"
	"compress/gzip"
	"context"
	"crypto/rand"
	"crypto/sha512"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"slices"
	"sync"
	"time"

	"github.com/sidelog/sidelog/sidecar/msgpack"
)

// Modes of Event.Mode.
const (
	ModeMessage                 = "Message"
	ModeForward                 = "Forward"
	ModePackedForward           = "PackedForward"
	ModeCompressedPackedForward = "CompressedPackedForward"
)

// Event is one received entry.
type Event struct {
	Tag  string
	Time time.Time
	// Record is the entry's record, decoded as msgpack.Decode does.
	Record map[string]any
	// Mode is the mode of the message that carried it.
	Mode string
	// Chunk is the chunk option of that message, "" if it had none.
	Chunk string
	// Conn numbers the connection it came on, from 1 in the order they were accepted.
	Conn int
}

// Options configure a Server. The zero value acknowledges every chunk at once.
type Options struct {
	// Addr is where to listen; default 127.0.0.1:0 (a free port).
	Addr string
	// NoAck turns acknowledgements off: chunks are received but never acknowledged.
	NoAck bool
	// ManualAck holds acknowledgements until Ack is called for the chunk (see Unacked).
	ManualAck bool
	// AckDelay delays every acknowledgement by this much (order is kept).
	AckDelay time.Duration
	// SharedKey, when not empty, requires the HELO/PING/PONG handshake with this key.
	SharedKey string
	// Users, when not empty, requires user authentication in the handshake too: name → password.
	Users map[string]string
	// FluentBit makes the handshake behave as Fluent Bit's in_forward does where Fluentd differs:
	// a user-authentication salt in every HELO, users or not, and a wrong shared key answered by
	// closing the connection, without a PONG. (Fluentd sends an empty salt without users.)
	FluentBit bool
	// Hostname is the server's hostname in PONG; default "forwardtest".
	Hostname string
	// TLS, when set, serves TLS with this configuration (see GenerateTLS).
	TLS *tls.Config
	// CountOnly counts entries and bytes without decoding records, for throughput runs in which
	// the receiver must cost little: Events stays empty, and a PackedForward message with a
	// "size" option is counted by it, without decompressing or scanning its entries.
	CountOnly bool
	// MaxMessage bounds one message; default 64 MiB.
	MaxMessage int
	// Logf, when set, receives what goes wrong on connections (such as testing.T.Logf).
	Logf func(format string, args ...any)
}

// Server is a running receiver. Its methods are safe for concurrent use.
type Server struct {
	opts Options
	addr string

	mu       sync.Mutex
	ln       net.Listener // nil while down
	conns    map[*serverConn]bool
	nconns   int
	events   []Event
	count    int64
	bytes    int64
	chunks   []string
	unacked  []pendingAck
	dropNext bool
	authFail int
	// changed is closed and replaced whenever count changes, for Wait.
	changed chan struct{}
	wg      sync.WaitGroup
}

type pendingAck struct {
	chunk string
	conn  *serverConn
}

type serverConn struct {
	net.Conn
	id  int
	wmu sync.Mutex
	// acks feeds the goroutine that writes delayed acknowledgements, in order.
	acks chan delayedAck
}

type delayedAck struct {
	chunk string
	due   time.Time
}

// Start listens and serves until Close.
func Start(opts Options) (*Server, error) {
	if opts.Addr == "" {
		opts.Addr = "127.0.0.1:0"
	}
	if opts.Hostname == "" {
		opts.Hostname = "forwardtest"
	}
	if opts.MaxMessage == 0 {
		opts.MaxMessage = 64 << 20
	}
	s := &Server{opts: opts, conns: map[*serverConn]bool{}, changed: make(chan struct{})}
	if err := s.listen(opts.Addr); err != nil {
		return nil, err
	}
	return s, nil
}

// Addr is the host:port the server listens on; it stays the same across Down and Up.
func (s *Server) Addr() string { return s.addr }

func (s *Server) listen(addr string) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("forwardtest: listening on %s: %w", addr, err)
	}
	if s.opts.TLS != nil {
		ln = tls.NewListener(ln, s.opts.TLS)
	}
	s.mu.Lock()
	s.ln, s.addr = ln, ln.Addr().String()
	s.mu.Unlock()
	s.wg.Add(1)
	go s.accept(ln)
	return nil
}

// Down stops listening and closes every connection, as a server that went away: connections are
// refused until Up.
func (s *Server) Down() {
	s.mu.Lock()
	ln := s.ln
	s.ln = nil
	conns := make([]*serverConn, 0, len(s.conns))
	for c := range s.conns {
		conns = append(conns, c)
	}
	s.mu.Unlock()
	if ln != nil {
		_ = ln.Close()
	}
	for _, c := range conns {
		_ = c.Close()
	}
}

// Up listens again on the same address after Down.
func (s *Server) Up() error {
	s.mu.Lock()
	up := s.ln != nil
	s.mu.Unlock()
	if up {
		return nil
	}
	return s.listen(s.addr)
}

// Close stops the server and waits for its goroutines.
func (s *Server) Close() error {
	s.Down()
	s.wg.Wait()
	return nil
}

// DropNext makes the server close the connection of the next message with a chunk instead of
// acknowledging it (its entries are kept: the client must send them again).
func (s *Server) DropNext() {
	s.mu.Lock()
	s.dropNext = true
	s.mu.Unlock()
}

// Ack acknowledges a chunk held in ManualAck mode, on the connection it came on. Chunks may be
// acknowledged in any order.
func (s *Server) Ack(chunk string) error {
	s.mu.Lock()
	i := slices.IndexFunc(s.unacked, func(p pendingAck) bool { return p.chunk == chunk })
	if i < 0 {
		s.mu.Unlock()
		return fmt.Errorf("forwardtest: no unacknowledged chunk %q", chunk)
	}
	p := s.unacked[i]
	s.unacked = slices.Delete(s.unacked, i, i+1)
	s.mu.Unlock()
	return p.conn.writeAck(chunk)
}

// Unacked returns the chunks held in ManualAck mode, in the order they arrived.
func (s *Server) Unacked() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]string, len(s.unacked))
	for i, p := range s.unacked {
		out[i] = p.chunk
	}
	return out
}

// Events returns a copy of every entry received, in order of arrival (duplicates included).
func (s *Server) Events() []Event {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.events)
}

// Count returns the number of entries received, duplicates included.
func (s *Server) Count() int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.count
}

// Bytes returns the number of message bytes received.
func (s *Server) Bytes() int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.bytes
}

// Chunks returns the chunk option of every message received, in order, duplicates included.
func (s *Server) Chunks() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.chunks)
}

// Connections returns the number of connections accepted (before any handshake).
func (s *Server) Connections() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.nconns
}

// AuthFailures returns the number of shared-key handshakes the server refused.
func (s *Server) AuthFailures() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.authFail
}

// Wait waits until at least n entries were received or ctx ends.
func (s *Server) Wait(ctx context.Context, n int64) error {
	for {
		s.mu.Lock()
		count, changed := s.count, s.changed
		s.mu.Unlock()
		if count >= n {
			return nil
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return fmt.Errorf("forwardtest: %d entries received, want %d: %w", count, n, ctx.Err())
		}
	}
}

func (s *Server) logf(format string, args ...any) {
	if s.opts.Logf != nil {
		s.opts.Logf(format, args...)
	}
}

func (s *Server) accept(ln net.Listener) {
	defer s.wg.Done()
	for {
		nc, err := ln.Accept()
		if err != nil {
			return
		}
		s.mu.Lock()
		if s.ln != ln { // went down meanwhile
			s.mu.Unlock()
			_ = nc.Close()
			return
		}
		s.nconns++
		c := &serverConn{Conn: nc, id: s.nconns}
		s.conns[c] = true
		s.mu.Unlock()
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			err := s.serve(c)
			_ = c.Close()
			s.mu.Lock()
			delete(s.conns, c)
			s.mu.Unlock()
			if err != nil && !errors.Is(err, io.EOF) && !errors.Is(err, net.ErrClosed) {
				s.logf("forwardtest: connection %d: %v", c.id, err)
			}
		}()
	}
}

func (s *Server) serve(c *serverConn) error {
	r := msgpack.NewReader(c, s.opts.MaxMessage)
	if s.opts.SharedKey != "" {
		if err := s.handshake(c, r); err != nil {
			return err
		}
	}
	if s.opts.AckDelay > 0 {
		c.acks = make(chan delayedAck, 1024)
		defer close(c.acks)
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			for a := range c.acks {
				time.Sleep(time.Until(a.due))
				if err := c.writeAck(a.chunk); err != nil {
					_ = c.Close()
				}
			}
		}()
	}
	for {
		raw, err := r.Raw()
		if err != nil {
			return err
		}
		chunk, err := s.message(c, raw)
		if err != nil {
			return err
		}
		if chunk == "" {
			continue
		}
		s.mu.Lock()
		drop := s.dropNext
		s.dropNext = false
		s.mu.Unlock()
		switch {
		case drop:
			return nil
		case s.opts.NoAck:
		case s.opts.ManualAck:
			s.mu.Lock()
			s.unacked = append(s.unacked, pendingAck{chunk, c})
			s.mu.Unlock()
		case s.opts.AckDelay > 0:
			c.acks <- delayedAck{chunk, time.Now().Add(s.opts.AckDelay)}
		default:
			if err := c.writeAck(chunk); err != nil {
				return err
			}
		}
	}
}

func (c *serverConn) writeAck(chunk string) error {
	b, _ := msgpack.AppendValue(nil, map[string]any{"ack": chunk})
	c.wmu.Lock()
	defer c.wmu.Unlock()
	_, err := c.Write(b)
	return err
}

// message decodes one message and returns its chunk option.
func (s *Server) message(c *serverConn, raw []byte) (chunk string, err error) {
	n, rest, err := msgpack.ReadArrayHeader(raw)
	if err != nil || n < 2 || n > 4 {
		return "", fmt.Errorf("message is not an array of 2 to 4 elements: %w", err)
	}
	tagb, rest, err := msgpack.ReadBytes(rest)
	if err != nil {
		return "", fmt.Errorf("tag: %w", err)
	}
	tag := string(tagb)
	var (
		events []Event
		count  int
		mode   string
		packed []byte
	)
	if entries, after, err := msgpack.ReadArrayHeader(rest); err == nil {
		// Forward: [tag, [entry...], option?]
		mode, rest = ModeForward, after
		for range entries {
			var entry []byte
			if entry, rest, err = split(rest); err != nil {
				return "", fmt.Errorf("entries: %w", err)
			}
			if events, err = s.entry(events, entry); err != nil {
				return "", err
			}
			count++
		}
	} else if b, after, err := msgpack.ReadBytes(rest); err == nil {
		// PackedForward: [tag, entries (str or bin), option?]
		mode, packed, rest = ModePackedForward, b, after
	} else {
		// Message: [tag, time, record, option?]
		mode = ModeMessage
		t, after, err := split(rest)
		if err != nil {
			return "", fmt.Errorf("time: %w", err)
		}
		r, after, err := split(after)
		if err != nil {
			return "", fmt.Errorf("record: %w", err)
		}
		rest = after
		entry := append(append(msgpack.AppendArrayHeader(nil, 2), t...), r...)
		if events, err = s.entry(events, entry); err != nil {
			return "", err
		}
		count = 1
	}
	nopts := n - 2
	if mode == ModeMessage {
		nopts = n - 3
	}
	if nopts < 0 || nopts > 1 {
		return "", fmt.Errorf("%s message of %d elements", mode, n)
	}
	opts, err := options(rest, nopts)
	if err != nil {
		return "", err
	}
	size, hasSize := opts["size"].(int64)
	if mode == ModePackedForward && s.opts.CountOnly && hasSize {
		count = int(size)
	} else if mode == ModePackedForward {
		if opts["compressed"] == "gzip" {
			mode = ModeCompressedPackedForward
			if packed, err = gunzip(packed); err != nil {
				return "", err
			}
		}
		for len(packed) > 0 {
			var entry []byte
			if entry, packed, err = split(packed); err != nil {
				return "", fmt.Errorf("packed entries: %w", err)
			}
			if events, err = s.entry(events, entry); err != nil {
				return "", err
			}
			count++
		}
		if hasSize && size != int64(count) {
			return "", fmt.Errorf("option size is %d, the message holds %d entries", size, count)
		}
	}
	if v, ok := opts["chunk"]; ok {
		if chunk, ok = v.(string); !ok || chunk == "" {
			return "", fmt.Errorf("chunk option is %v, want a non-empty str", v)
		}
	}
	for i := range events {
		events[i].Tag, events[i].Mode, events[i].Chunk, events[i].Conn = tag, mode, chunk, c.id
	}
	s.mu.Lock()
	s.events = append(s.events, events...)
	s.count += int64(count)
	s.bytes += int64(len(raw))
	if chunk != "" {
		s.chunks = append(s.chunks, chunk)
	}
	close(s.changed)
	s.changed = make(chan struct{})
	s.mu.Unlock()
	return chunk, nil
}

func split(b []byte) (value, rest []byte, err error) {
	rest, err = msgpack.Skip(b)
	if err != nil {
		return nil, b, err
	}
	return b[:len(b)-len(rest)], rest, nil
}

// options decodes the option map if n is 1.
func options(b []byte, n int) (map[string]any, error) {
	if n == 0 {
		return nil, nil
	}
	v, _, err := msgpack.Decode(b)
	if err != nil {
		return nil, fmt.Errorf("option: %w", err)
	}
	m, ok := v.(map[string]any)
	if !ok && v != nil {
		return nil, fmt.Errorf("option is %T, want a map", v)
	}
	return m, nil
}

func gunzip(b []byte) ([]byte, error) {
	zr, err := gzip.NewReader(bytes.NewReader(b))
	if err != nil {
		return nil, fmt.Errorf("compressed entries: %w", err)
	}
	out, err := io.ReadAll(zr)
	if err != nil {
		return nil, fmt.Errorf("compressed entries: %w", err)
	}
	return out, nil
}

// entry decodes one [time, record] entry, or only checks its shape in CountOnly mode.
func (s *Server) entry(events []Event, b []byte) ([]Event, error) {
	if s.opts.CountOnly {
		if n, _, err := msgpack.ReadArrayHeader(b); err != nil || n != 2 {
			return nil, fmt.Errorf("entry is not [time, record]: %w", err)
		}
		return events, nil
	}
	v, _, err := msgpack.Decode(b)
	if err != nil {
		return nil, fmt.Errorf("entry: %w", err)
	}
	a, ok := v.([]any)
	if !ok || len(a) != 2 {
		return nil, fmt.Errorf("entry is %.100v, want [time, record]", v)
	}
	var t time.Time
	switch ts := a[0].(type) {
	case time.Time:
		t = ts
	case int64:
		t = time.Unix(ts, 0)
	case uint64:
		t = time.Unix(int64(ts), 0)
	default:
		return nil, fmt.Errorf("entry time is a %T", a[0])
	}
	rec, ok := a[1].(map[string]any)
	if !ok {
		return nil, fmt.Errorf("entry record is a %T, want a map", a[1])
	}
	return append(events, Event{Time: t, Record: rec}), nil
}

// handshake is the server side of the shared-key and user authentication.
func (s *Server) handshake(c *serverConn, r *msgpack.Reader) error {
	var nonce, userSalt [16]byte
	if _, err := rand.Read(nonce[:]); err != nil {
		return err
	}
	auth := []byte{}
	if len(s.opts.Users) > 0 || s.opts.FluentBit {
		if _, err := rand.Read(userSalt[:]); err != nil {
			return err
		}
		auth = userSalt[:]
	}
	helo, _ := msgpack.AppendValue(nil, []any{"HELO", map[string]any{"nonce": nonce[:], "auth": auth, "keepalive": true}})
	if _, err := c.Write(helo); err != nil {
		return err
	}
	v, err := r.Decode()
	if err != nil {
		return fmt.Errorf("waiting for PING: %w", err)
	}
	ping, ok := v.([]any)
	if !ok || len(ping) != 6 || ping[0] != "PING" {
		return fmt.Errorf("want PING, got %.100v", v)
	}
	host, _ := text(ping[1])
	salt, _ := text(ping[2])
	theirs, _ := text(ping[3])
	user, _ := text(ping[4])
	pass, _ := text(ping[5])
	refuse := func(reason string) error {
		s.mu.Lock()
		s.authFail++
		s.mu.Unlock()
		if reason == "shared_key mismatch" && s.opts.FluentBit {
			return errors.New(reason)
		}
		pong, _ := msgpack.AppendValue(nil, []any{"PONG", false, reason, "", ""})
		_, _ = c.Write(pong)
		return errors.New(reason)
	}
	if theirs != digest(salt, host, nonce[:], s.opts.SharedKey) {
		return refuse("shared_key mismatch")
	}
	if len(s.opts.Users) > 0 {
		want, ok := s.opts.Users[user]
		if !ok || pass != digest(string(auth), user, nil, want) {
			return refuse("username/password mismatch")
		}
	}
	pong, _ := msgpack.AppendValue(nil, []any{"PONG", true, "", s.opts.Hostname, digest(salt, s.opts.Hostname, nonce[:], s.opts.SharedKey)})
	_, err = c.Write(pong)
	return err
}

func digest(salt, host string, nonce []byte, key string) string {
	h := sha512.New()
	h.Write([]byte(salt))
	h.Write([]byte(host))
	h.Write(nonce)
	h.Write([]byte(key))
	return hex.EncodeToString(h.Sum(nil))
}

func text(v any) (string, bool) {
	switch v := v.(type) {
	case string:
		return v, true
	case []byte:
		return string(v), true
	}
	return "", false
}
