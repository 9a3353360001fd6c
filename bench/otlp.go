//go:build unix

package main

import (
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"google.golang.org/protobuf/encoding/protowire"
)

// otlpSink is an OTLP/HTTP logs receiver in this process: it counts the log records of each
// ExportLogsServiceRequest (gzip or not) by walking the protobuf, and answers 200 with an empty
// response once it has, as a Collector does once its pipeline took them.
type otlpSink struct {
	ln  net.Listener
	srv *http.Server

	count, bytes, requests atomic.Int64
	conns                  atomic.Int64

	mu     sync.Mutex
	notify chan struct{} // closed and replaced whenever count grows
}

func startOTLPSink() (*otlpSink, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	s := &otlpSink{ln: ln, notify: make(chan struct{})}
	s.srv = &http.Server{
		Handler: http.HandlerFunc(s.serve),
		ConnState: func(_ net.Conn, st http.ConnState) {
			if st == http.StateNew {
				s.conns.Add(1)
			}
		},
	}
	go func() { _ = s.srv.Serve(ln) }()
	return s, nil
}

// URL is the sink's base URL; requests go to /v1/logs.
func (s *otlpSink) URL() string { return "http://" + s.ln.Addr().String() }

func (s *otlpSink) serve(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(r.Body)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	s.bytes.Add(int64(len(body)))
	if r.Header.Get("Content-Encoding") == "gzip" {
		zr, err := gzip.NewReader(bytes.NewReader(body))
		if err == nil {
			body, err = io.ReadAll(zr)
		}
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
	}
	n, err := countRecords(body)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	s.requests.Add(1)
	s.count.Add(n)
	s.mu.Lock()
	close(s.notify)
	s.notify = make(chan struct{})
	s.mu.Unlock()
	w.Header().Set("Content-Type", "application/x-protobuf")
	w.WriteHeader(http.StatusOK)
}

// countRecords counts resource_logs[].scope_logs[].log_records of an ExportLogsServiceRequest.
func countRecords(req []byte) (int64, error) {
	var n int64
	err := eachField(req, 1, func(rl []byte) error {
		return eachField(rl, 2, func(sl []byte) error {
			return eachField(sl, 2, func([]byte) error { n++; return nil })
		})
	})
	return n, err
}

// eachField calls f with every length-delimited field num of message b.
func eachField(b []byte, num protowire.Number, f func([]byte) error) error {
	for len(b) > 0 {
		n, typ, k := protowire.ConsumeTag(b)
		if k < 0 {
			return protowire.ParseError(k)
		}
		b = b[k:]
		if n == num && typ == protowire.BytesType {
			v, m := protowire.ConsumeBytes(b)
			if m < 0 {
				return protowire.ParseError(m)
			}
			if err := f(v); err != nil {
				return err
			}
			b = b[m:]
			continue
		}
		m := protowire.ConsumeFieldValue(n, typ, b)
		if m < 0 {
			return protowire.ParseError(m)
		}
		b = b[m:]
	}
	return nil
}

func (s *otlpSink) Count() int64     { return s.count.Load() }
func (s *otlpSink) Bytes() int64     { return s.bytes.Load() }
func (s *otlpSink) Connections() int { return int(s.conns.Load()) }
func (s *otlpSink) Close() error     { return s.srv.Close() }

// Wait waits until the sink counted n records or ctx ends.
func (s *otlpSink) Wait(ctx context.Context, n int64) error {
	for {
		s.mu.Lock()
		ch := s.notify
		s.mu.Unlock()
		if got := s.count.Load(); got >= n {
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return fmt.Errorf("%d of %d records: %w", s.count.Load(), n, ctx.Err())
		}
	}
}

// collectorConfig is the OpenTelemetry Operator's sidecar shape
// (../shared/tools/otelcol/examples/sender-filelog.yaml): the filelog receiver from the start
// of the files, the memory limiter and the batch processor, the otlphttp exporter. Compression is
// off, as the agent's is by default, so that both send the same kind of request.
const collectorConfig = `receivers:
  file_log:
    include: [%q]
    start_at: beginning
processors:
  memory_limiter:
    check_interval: 1s
    limit_mib: 256
  batch: {}
exporters:
  otlp_http:
    logs_endpoint: %s/v1/logs
    compression: none
service:
  pipelines:
    logs:
      receivers: [file_log]
      processors: [memory_limiter, batch]
      exporters: [otlp_http]
  telemetry:
    metrics:
      level: none
    logs:
      level: warn
`

// collector runs the Collector binary, pinned to the agent's core, on file from its start until
// the sink has every line.
func (b *bench) collector(file string) (result, error) {
	fi, err := os.Stat(file)
	if err != nil {
		return result{}, err
	}
	dir, err := b.mkdir("collector")
	if err != nil {
		return result{}, err
	}
	sink, err := startOTLPSink()
	if err != nil {
		return result{}, err
	}
	defer sink.Close()
	conf := filepath.Join(dir, "config.yaml")
	if err := os.WriteFile(conf, fmt.Appendf(nil, collectorConfig, filepath.Dir(file)+"/*.log", sink.URL()), 0o644); err != nil {
		return result{}, err
	}
	logf, err := os.Create(filepath.Join(dir, "collector.log"))
	if err != nil {
		return result{}, err
	}
	defer logf.Close()
	cmd := exec.Command(b.opts.otelcol, "--config", conf)
	// The Collector's file_log keeps its offsets in memory only (no storage extension), as the
	// Operator's sidecar does by default.
	cmd.Env = append(os.Environ(), "GOMAXPROCS=1")
	cmd.Stdout, cmd.Stderr = logf, logf
	self0 := selfCPU()
	started, err := b.cpus.start(cmd)
	if err != nil {
		return result{}, fmt.Errorf("starting %s: %w", b.opts.otelcol, err)
	}
	rss := watchRSS(cmd.Process.Pid)
	// exited is closed once the process has exited; exitErr is then what cmd.Wait returned.
	exited := make(chan struct{})
	var exitErr error
	go func() { exitErr = cmd.Wait(); close(exited) }()
	ctx, cancel := context.WithTimeout(context.Background(), deadline(b.opts.lines)*4)
	defer cancel()
	go func() {
		select {
		case <-exited:
			cancel()
		case <-ctx.Done():
		}
	}()
	werr := sink.Wait(ctx, int64(b.opts.lines))
	elapsed := time.Since(started)
	recv := selfCPU() - self0
	rss.sample()
	_, waited, _ := schedstat(cmd.Process.Pid)
	sent := sink.Bytes()
	_ = cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-exited:
	case <-time.After(time.Minute):
		_ = cmd.Process.Kill()
		<-exited
	}
	peak := rss.end()
	log, _ := os.ReadFile(logf.Name())
	if werr != nil {
		return result{}, fmt.Errorf("%w (collector exit: %v)\ncollector log:\n%s", werr, exitErr, tail(log))
	}
	var ee *exec.ExitError
	if exitErr != nil && !errors.As(exitErr, &ee) {
		return result{}, fmt.Errorf("collector: %w", exitErr)
	}
	r := usage(cmd.ProcessState, peak, result{waited: waited, sent: sent, resent: sink.Count() - int64(b.opts.lines)})
	r.lines, r.bytes, r.elapsed, r.recvCPU = b.opts.lines, fi.Size(), elapsed, recv
	return r, nil
}

func tail(b []byte) string {
	const n = 4 << 10
	if len(b) > n {
		b = b[len(b)-n:]
	}
	return string(b)
}
