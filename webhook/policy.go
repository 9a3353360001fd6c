package webhook

import (
	"bytes"
	"context"
	"fmt"
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
// the previous policy stays in force.
type PolicyFile struct {
	path        string
	kubeVersion string
	log         logr.Logger

	current  atomic.Pointer[injector.Policy]
	mu       sync.Mutex // serialises reloads; guards raw and rejected
	raw      []byte     // the content current was parsed from
	rejected []byte     // the last content that did not parse, reported once
}

// LoadPolicyFile reads and parses the policy at path. kubernetesVersion, the API server's
// version from discovery, fills the policy's KubernetesVersion when the file leaves it empty.
func LoadPolicyFile(path, kubernetesVersion string, log logr.Logger) (*PolicyFile, error) {
	f := &PolicyFile{path: path, kubeVersion: kubernetesVersion, log: log}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("reading the policy: %w", err)
	}
	p, err := f.parse(data)
	if err != nil {
		return nil, err
	}
	f.current.Store(p)
	f.raw = data
	return f, nil
}

// StaticPolicy returns a policy source that always returns p.
func StaticPolicy(p *injector.Policy) func() *injector.Policy {
	return func() *injector.Policy { return p }
}

// Policy returns the policy in force. It is shared: do not modify it.
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
		return fmt.Errorf("reading the policy: %w", err)
	}
	if bytes.Equal(data, f.raw) || bytes.Equal(data, f.rejected) {
		return nil
	}
	p, err := f.parse(data)
	if err != nil {
		f.rejected = data
		policyReloads.WithLabelValues("rejected").Inc()
		return err
	}
	f.current.Store(p)
	f.raw = data
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
			f.log.Error(err, "the changed policy is not applied; the previous one stays in force")
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
