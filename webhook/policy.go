package webhook

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/fsnotify/fsnotify"
	"github.com/go-logr/logr"

	"github.com/sidelog/sidelog/injector"
)

// policyPoll is how often PolicyFile re-reads its file even without a change notification:
// a safety net for file systems whose events are lost or never sent.
const policyPoll = 30 * time.Second

// PolicyFile is the cluster policy read from a file, typically a mounted ConfigMap, and read
// again whenever the file changes. A changed file that does not parse is logged and counted and
// the previous policy stays in force. A file that never parsed leaves no policy in force: Policy
// returns nil and Ready fails with the reason, so that a replica started with a bad policy is
// never ready (and a rollout carrying it stops) but keeps watching for a good one.
type PolicyFile struct {
	path        string
	kubeVersion string
	log         logr.Logger

	current  atomic.Pointer[injector.Policy]
	mu       sync.Mutex // serialises reloads; guards raw, rejected and lastErr
	raw      []byte     // the content current was parsed from
	rejected []byte     // the last content that did not parse, reported once
	lastErr  error      // why the last content was rejected; nil once a policy is in force
}

// NewPolicyFile reads and parses the policy at path; when that fails the error is returned
// with a PolicyFile that has no policy yet and becomes ready when the file is fixed (Start).
// kubernetesVersion, the API server's version from discovery, fills the policy's
// KubernetesVersion when the file leaves it empty.
func NewPolicyFile(path, kubernetesVersion string, log logr.Logger) (*PolicyFile, error) {
	f := &PolicyFile{path: path, kubeVersion: kubernetesVersion, log: log}
	data, err := os.ReadFile(path)
	if err != nil {
		f.lastErr = fmt.Errorf("reading the policy: %w", err)
		return f, f.lastErr
	}
	p, err := f.parse(data)
	if err != nil {
		f.rejected, f.lastErr = data, err
		return f, err
	}
	f.current.Store(p)
	f.raw = data
	return f, nil
}

// LoadPolicyFile is NewPolicyFile for callers that need the policy at once: it fails when the
// file does not parse.
func LoadPolicyFile(path, kubernetesVersion string, log logr.Logger) (*PolicyFile, error) {
	f, err := NewPolicyFile(path, kubernetesVersion, log)
	if err != nil {
		return nil, err
	}
	return f, nil
}

// Ready is a readiness check: it fails, saying why, while no policy is in force.
func (f *PolicyFile) Ready(*http.Request) error {
	if f.current.Load() != nil {
		return nil
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	return fmt.Errorf("no valid cluster policy: %w", f.lastErr)
}

// StaticPolicy returns a policy source that always returns p.
func StaticPolicy(p *injector.Policy) func() *injector.Policy {
	return func() *injector.Policy { return p }
}

// Policy returns the policy in force, nil if none ever parsed. It is shared: do not modify it.
func (f *PolicyFile) Policy() *injector.Policy { return f.current.Load() }

func (f *PolicyFile) parse(data []byte) (*injector.Policy, error) {
	p, err := injector.ParsePolicy(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", f.path, err)
	}
	if p.KubernetesVersion == "" {
		p.KubernetesVersion = f.kubeVersion
	}
	return p, nil
}

// Reload reads the file again and applies it if it changed and parses. A content that was
// rejected before is not reported again.
func (f *PolicyFile) Reload() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	data, err := os.ReadFile(f.path)
	if err != nil {
		policyReloads.WithLabelValues("rejected").Inc()
		if f.current.Load() == nil {
			f.lastErr = fmt.Errorf("reading the policy: %w", err)
		}
		return fmt.Errorf("reading the policy: %w", err)
	}
	if (f.raw != nil && bytes.Equal(data, f.raw)) || (f.rejected != nil && bytes.Equal(data, f.rejected)) {
		return nil
	}
	p, err := f.parse(data)
	if err != nil {
		f.rejected = data
		if f.current.Load() == nil {
			f.lastErr = err
		}
		policyReloads.WithLabelValues("rejected").Inc()
		return err
	}
	f.current.Store(p)
	f.raw, f.lastErr = data, nil
	policyReloads.WithLabelValues("applied").Inc()
	f.log.Info("applied the changed policy", "file", f.path)
	return nil
}

// NeedLeaderElection tells controller-runtime's manager that every replica watches its file.
func (f *PolicyFile) NeedLeaderElection() bool { return false }

// Start reloads the policy whenever its file changes, until ctx is done. It watches the
// directory rather than the file: kubelet updates a mounted ConfigMap by swapping a symlink,
// which a watch on the file itself would not see.
func (f *PolicyFile) Start(ctx context.Context) error {
	w, err := fsnotify.NewWatcher()
	if err != nil {
		return fmt.Errorf("watching the policy: %w", err)
	}
	defer w.Close()
	if err := w.Add(filepath.Dir(f.path)); err != nil {
		return fmt.Errorf("watching the policy's directory: %w", err)
	}
	tick := time.NewTicker(policyPoll)
	defer tick.Stop()
	reload := func() {
		if err := f.Reload(); err != nil {
			if f.current.Load() == nil {
				f.log.Error(err, "no valid cluster policy: this replica stays not ready until the policy file is fixed")
			} else {
				f.log.Error(err, "the changed policy is not applied; the previous one stays in force")
			}
		}
	}
	reload() // what changed between LoadPolicyFile and the watch
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-w.Events:
			reload()
		case err := <-w.Errors:
			f.log.Error(err, "watching the policy file")
		case <-tick.C:
			reload()
		}
	}
}
