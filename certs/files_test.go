package certs

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"sigs.k8s.io/controller-runtime/pkg/certwatcher"
)

func testPair(t *testing.T) *keyPair {
	t.Helper()
	ca := mustCA(t, time.Now())
	s, err := newServing(ca, []string{"localhost"}, time.Now(), time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestWritePair(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "certs")
	first, second := testPair(t), testPair(t)

	for i, step := range []struct {
		pair        *keyPair
		wantChanged bool
	}{{first, true}, {first, false}, {second, true}} {
		changed, err := writePair(dir, step.pair.certPEM, step.pair.keyPEM)
		if err != nil {
			t.Fatalf("step %d: %v", i, err)
		}
		if changed != step.wantChanged {
			t.Errorf("step %d: changed = %v, want %v", i, changed, step.wantChanged)
		}
		cert, err1 := os.ReadFile(filepath.Join(dir, KeyCert))
		key, err2 := os.ReadFile(filepath.Join(dir, KeyKey))
		if err1 != nil || err2 != nil || !bytes.Equal(cert, step.pair.certPEM) || !bytes.Equal(key, step.pair.keyPEM) {
			t.Errorf("step %d: files do not hold the pair (%v, %v)", i, err1, err2)
		}
		if info, err := os.Stat(filepath.Join(dir, KeyKey)); err != nil || info.Mode().Perm() != 0o600 {
			t.Errorf("step %d: tls.key mode = %v (%v), want 0600", i, info.Mode().Perm(), err)
		}
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	// ..data, the one pair directory it points at, tls.crt and tls.key: the old pair is gone.
	if len(entries) != 4 {
		var names []string
		for _, e := range entries {
			names = append(names, e.Name())
		}
		t.Errorf("directory holds %v, want ..data, one pair directory, tls.crt and tls.key", names)
	}
}

func TestWritePairReplacesRegularFiles(t *testing.T) {
	dir := t.TempDir()
	old, pair := testPair(t), testPair(t)
	if err := os.WriteFile(filepath.Join(dir, KeyCert), old.certPEM, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, KeyKey), old.keyPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := writePair(dir, pair.certPEM, pair.keyPEM); err != nil {
		t.Fatal(err)
	}
	cert, err := os.ReadFile(filepath.Join(dir, KeyCert))
	if err != nil || !bytes.Equal(cert, pair.certPEM) {
		t.Errorf("tls.crt not replaced (%v)", err)
	}
}

// controller-runtime's certwatcher, which the webhook server uses, must notice each new pair.
func TestCertWatcherReloadsWrittenPair(t *testing.T) {
	dir := t.TempDir()
	pair := testPair(t)
	if _, err := writePair(dir, pair.certPEM, pair.keyPEM); err != nil {
		t.Fatal(err)
	}
	w, err := certwatcher.New(filepath.Join(dir, KeyCert), filepath.Join(dir, KeyKey))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() { _ = w.Start(ctx) }()

	for i := range 3 {
		next := testPair(t)
		if _, err := writePair(dir, next.certPEM, next.keyPEM); err != nil {
			t.Fatal(err)
		}
		// The watcher also polls every 10s; well within the deadline either way.
		deadline := time.Now().Add(30 * time.Second)
		for {
			c, _ := w.GetCertificate(nil)
			if c != nil && bytes.Equal(c.Certificate[0], next.cert.Raw) {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("pair %d: certwatcher still serves the previous certificate", i)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
}
