package agent

import (
	"context"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sidelog/sidelog/sidecar/metrics"
)

func TestProbe(t *testing.T) {
	healthy := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/healthz" {
			http.NotFound(w, r)
		}
	}))
	defer healthy.Close()
	sick := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.WriteHeader(http.StatusServiceUnavailable)
	}))
	defer sick.Close()
	port := func(s *httptest.Server) string { _, p, _ := net.SplitHostPort(s.Listener.Addr().String()); return p }
	dead := func() string {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer l.Close()
		return l.Addr().String()
	}()

	withAddr := t.TempDir()
	if err := writeAddr(withAddr, healthy.Listener.Addr()); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name     string
		addr     string
		stateDir string
		wantErr  string
	}{
		{"any address: asks loopback", ":" + port(healthy), "", ""},
		{"unspecified address: asks loopback", "0.0.0.0:" + port(healthy), "", ""},
		{"loopback", healthy.Listener.Addr().String(), "", ""},
		{"free port: read from the state directory", "127.0.0.1:0", withAddr, ""},
		{"free port, not listening yet", "127.0.0.1:0", t.TempDir(), "has not said where it listens yet"},
		{"unhealthy", sick.Listener.Addr().String(), "", "503"},
		{"nobody listens", dead, "", "connection refused"},
		{"no metrics address", "", "", "no metricsAddr"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := Probe(context.Background(), tt.addr, tt.stateDir)
			switch {
			case tt.wantErr == "" && err != nil:
				t.Errorf("Probe = %v, want nil", err)
			case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
				t.Errorf("Probe = %v, want an error containing %q", err, tt.wantErr)
			}
		})
	}
}

// TestServeHTTPWritesAddr: an agent told to take any free port says which one it took, and a
// previous run's file never outlives the new listener.
func TestServeHTTPWritesAddr(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, AddrFile), []byte("127.0.0.1:1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	a := &Agent{opts: Options{StateDir: dir}, reg: metrics.NewRegistry()}
	srv, err := a.serveHTTP("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	if err := Probe(context.Background(), "127.0.0.1:0", dir); err != nil {
		t.Errorf("Probe of the agent's own server = %v", err)
	}
}

// TestServeHTTPWithoutStateDir: a state directory the agent cannot write to (full, read-only)
// stops neither the metrics nor the startup probe of an agent on a fixed port, or the kubelet
// would restart it for ever, and a native sidecar would keep the app from starting.
func TestServeHTTPWithoutStateDir(t *testing.T) {
	notADir := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(notADir, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	a := &Agent{opts: Options{StateDir: notADir}, reg: metrics.NewRegistry(), log: slog.New(slog.DiscardHandler)}
	srv, err := a.serveHTTP(addr)
	if err != nil {
		t.Fatalf("serveHTTP with an unwritable state directory = %v", err)
	}
	defer srv.Close()
	if err := Probe(context.Background(), addr, notADir); err != nil {
		t.Errorf("Probe = %v", err)
	}
}
