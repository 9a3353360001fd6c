package main

import (
	"bytes"
	"compress/gzip"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"sort"
	"strings"
	"sync"
	"time"

	collogspb "go.opentelemetry.io/proto/otlp/collector/logs/v1"
	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
)

// otlpReceiver is an OTLP/HTTP logs endpoint that keeps every request, decoded with the official
// OTLP Go types.
type otlpReceiver struct {
	srv *httptest.Server

	mu     sync.Mutex
	reqs   []*collogspb.ExportLogsServiceRequest
	count  int64
	notify chan struct{}
}

func startOTLPReceiver() *otlpReceiver {
	r := &otlpReceiver{notify: make(chan struct{})}
	r.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		body, err := io.ReadAll(req.Body)
		if err == nil && req.Header.Get("Content-Encoding") == "gzip" {
			var zr *gzip.Reader
			if zr, err = gzip.NewReader(bytes.NewReader(body)); err == nil {
				body, err = io.ReadAll(zr)
			}
		}
		msg := &collogspb.ExportLogsServiceRequest{}
		if err == nil {
			err = proto.Unmarshal(body, msg)
		}
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		var n int64
		for _, rl := range msg.ResourceLogs {
			for _, sl := range rl.ScopeLogs {
				n += int64(len(sl.LogRecords))
			}
		}
		r.mu.Lock()
		r.reqs = append(r.reqs, msg)
		r.count += n
		close(r.notify)
		r.notify = make(chan struct{})
		r.mu.Unlock()
		w.Header().Set("Content-Type", "application/x-protobuf")
	}))
	return r
}

func (r *otlpReceiver) URL() string { return r.srv.URL }
func (r *otlpReceiver) Close()      { r.srv.Close() }

func (r *otlpReceiver) Count() int64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.count
}

func (r *otlpReceiver) Wait(ctx context.Context, n int64) error {
	for {
		r.mu.Lock()
		got, ch := r.count, r.notify
		r.mu.Unlock()
		if got >= n {
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// print shows each request's resource once and each record's body, time and file.
func (r *otlpReceiver) print(logDir string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for i, req := range r.reqs {
		for _, rl := range req.ResourceLogs {
			var attrs []string
			for _, kv := range rl.Resource.Attributes {
				attrs = append(attrs, kv.Key+"="+kv.Value.GetStringValue())
			}
			sort.Strings(attrs)
			fmt.Printf("\n   request %d, resource: %s\n", i+1, strings.Join(attrs, " "))
			for _, sl := range rl.ScopeLogs {
				fmt.Printf("   scope: %s %s\n", sl.Scope.GetName(), sl.Scope.GetVersion())
				for _, lr := range sl.LogRecords {
					file := ""
					for _, kv := range lr.Attributes {
						if kv.Key == "log.file.path" {
							file = strings.TrimPrefix(kv.Value.GetStringValue(), logDir+"/")
						}
					}
					fmt.Printf("\n   observed %s  log.file.path: %s\n", time.Unix(0, int64(lr.ObservedTimeUnixNano)).UTC().Format(time.RFC3339Nano), file)
					fmt.Printf("   body: %s\n", indentAfterFirst(bodyText(lr.Body), "         "))
				}
			}
		}
	}
}

// bodyText is a string body as it is, and a map body as JSON.
func bodyText(v *commonpb.AnyValue) string {
	if s, ok := v.GetValue().(*commonpb.AnyValue_StringValue); ok {
		return s.StringValue
	}
	b, err := protojson.Marshal(v)
	if err != nil {
		return fmt.Sprint(v)
	}
	return string(b)
}
