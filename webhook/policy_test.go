package webhook

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/go-logr/logr"
)

// configMapDir lays out dir as kubelet mounts a ConfigMap: policy.yaml → ..data/policy.yaml,
// ..data → a timestamped directory, swapped atomically on every update.
type configMapDir struct {
	t   *testing.T
	dir string
	n   int
}

func (c *configMapDir) write(content string) {
	c.t.Helper()
	c.n++
	ts := filepath.Join(c.dir, "..2030_01_01_00_00_0"+string(rune('0'+c.n)))
	if err := os.Mkdir(ts, 0o755); err != nil {
		c.t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(ts, "policy.yaml"), []byte(content), 0o644); err != nil {
		c.t.Fatal(err)
	}
	tmp := filepath.Join(c.dir, "..data_tmp")
	if err := os.Symlink(filepath.Base(ts), tmp); err != nil {
		c.t.Fatal(err)
	}
	if err := os.Rename(tmp, filepath.Join(c.dir, "..data")); err != nil {
		c.t.Fatal(err)
	}
	if _, err := os.Lstat(filepath.Join(c.dir, "policy.yaml")); os.IsNotExist(err) {
		if err := os.Symlink(filepath.Join("..data", "policy.yaml"), filepath.Join(c.dir, "policy.yaml")); err != nil {
			c.t.Fatal(err)
		}
	}
}

func TestPolicyFileReload(t *testing.T) {
	cm := &configMapDir{t: t, dir: t.TempDir()}
	cm.write("upstream: [a.logging:24224]\n")
	path := filepath.Join(cm.dir, "policy.yaml")

	f, err := LoadPolicyFile(path, "v1.28.3", logr.Discard())
	if err != nil {
		t.Fatal(err)
	}
	if got := f.Policy(); got.Upstream[0] != "a.logging:24224" || got.KubernetesVersion != "v1.28.3" {
		t.Fatalf("policy = upstream %v, version %q; want the file's upstream and discovery's version", got.Upstream, got.KubernetesVersion)
	}

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- f.Start(ctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Start: %v", err)
		}
	}()

	applied := counterValue(t, policyReloads.WithLabelValues("applied"))
	rejected := counterValue(t, policyReloads.WithLabelValues("rejected"))

	steps := []struct {
		content      string
		wantUpstream string
		wantVersion  string
	}{
		{"upstream: [b.logging:24224]\nkubernetesVersion: v1.31.0\n", "b.logging:24224", "v1.31.0"},
		{"upstream: [c.logging:24224]\nsidecarMode: sometimes\n", "b.logging:24224", "v1.31.0"}, // rejected: the previous stays
		{"upstream: [d.logging:24224]\n", "d.logging:24224", "v1.28.3"},
	}
	for i, s := range steps {
		cm.write(s.content)
		if i == 1 {
			// A rejected policy changes nothing visible; wait for the rejection to be counted.
			waitFor(t, "the rejection", func() bool {
				return counterValue(t, policyReloads.WithLabelValues("rejected")) == rejected+1
			})
		}
		waitFor(t, "upstream "+s.wantUpstream, func() bool {
			p := f.Policy()
			return p.Upstream[0] == s.wantUpstream && p.KubernetesVersion == s.wantVersion
		})
	}
	if got := counterValue(t, policyReloads.WithLabelValues("applied")); got != applied+2 {
		t.Errorf("applied reloads = %v, want %v", got, applied+2)
	}
	// Reloading unchanged or already rejected content reports nothing new.
	if err := f.Reload(); err != nil {
		t.Errorf("Reload of an unchanged file: %v", err)
	}
	if got := counterValue(t, policyReloads.WithLabelValues("rejected")); got != rejected+1 {
		t.Errorf("rejected reloads = %v, want %v", got, rejected+1)
	}
}

func TestLoadPolicyFileErrors(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.yaml")
	if err := os.WriteFile(bad, []byte("upstreams: [x:1]\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, path, want string
	}{
		{"missing", filepath.Join(dir, "none.yaml"), "reading the policy"},
		{"unknown field", bad, "upstreams"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := LoadPolicyFile(tt.path, "", logr.Discard())
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error = %v, want one mentioning %q", err, tt.want)
			}
		})
	}
}

// waitFor polls cond for up to 20s: generous, for a loaded machine.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestPolicyFileStartsBad checks that a replica whose policy never parsed has no policy, is not
// ready and says why, and becomes ready when the file is fixed.
func TestPolicyFileStartsBad(t *testing.T) {
	cm := &configMapDir{t: t, dir: t.TempDir()}
	cm.write("upstream: [a.logging:24224]\nsidecarMode: sometimes\n")
	path := filepath.Join(cm.dir, "policy.yaml")

	f, err := NewPolicyFile(path, "", logr.Discard())
	if err == nil || f == nil {
		t.Fatalf("NewPolicyFile = %v, %v; want a PolicyFile and the error", f, err)
	}
	if p := f.Policy(); p != nil {
		t.Fatalf("Policy() = %+v, want nil while no policy parsed", p)
	}
	if err := f.Ready(nil); err == nil || !strings.Contains(err.Error(), "sidecarMode") {
		t.Fatalf("Ready = %v, want an error naming sidecarMode", err)
	}

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- f.Start(ctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Start: %v", err)
		}
	}()
	cm.write("upstream: [a.logging:24224]\nsidecarMode: sometimes\nmaxGlobs: 3\n")
	time.Sleep(100 * time.Millisecond)
	if err := f.Ready(nil); err == nil || !strings.Contains(err.Error(), "sidecarMode") {
		t.Fatalf("after another bad policy, Ready = %v, want an error naming sidecarMode", err)
	}
	cm.write("upstream: [a.logging:24224]\n")
	waitFor(t, "ready", func() bool { return f.Ready(nil) == nil })
	if p := f.Policy(); p == nil || p.Upstream[0] != "a.logging:24224" {
		t.Fatalf("Policy() = %+v, want the fixed file's", p)
	}
}
