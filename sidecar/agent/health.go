package agent

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// AddrFile is the file in the state directory where the agent writes the address its /healthz
// and /metrics listen on, once it listens. It is how Probe finds an agent that was told to take
// any free port (metricsAddr 127.0.0.1:0, as the injector does for hostNetwork pods, where a
// fixed port would collide with another pod's on the same node).
const AddrFile = "metrics.addr"

// probeTimeout bounds one probe; the kubelet's exec probe timeout is longer.
const probeTimeout = time.Second

// Probe asks the agent running in this container whether it is healthy: a GET of /healthz on
// the loopback address of metricsAddr's port (the port from AddrFile in stateDir when it is 0).
// It needs no network path from the kubelet, which a service mesh's mTLS or a NetworkPolicy may
// close, so it is what the injected startup probe runs (sidelog-agent --probe).
func Probe(ctx context.Context, metricsAddr, stateDir string) error {
	if metricsAddr == "" {
		return fmt.Errorf("the configuration has no metricsAddr: nothing to probe")
	}
	host, port, err := net.SplitHostPort(metricsAddr)
	if err != nil {
		return fmt.Errorf("metricsAddr %q: %w", metricsAddr, err)
	}
	if port == "0" {
		b, err := os.ReadFile(filepath.Join(stateDir, AddrFile))
		if err != nil {
			return fmt.Errorf("the agent has not said where it listens yet: %w", err)
		}
		if host, port, err = net.SplitHostPort(strings.TrimSpace(string(b))); err != nil {
			return fmt.Errorf("%s: %w", AddrFile, err)
		}
	}
	if ip := net.ParseIP(host); host == "" || ip != nil && ip.IsUnspecified() {
		host = "127.0.0.1"
	}
	ctx, cancel := context.WithTimeout(ctx, probeTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+net.JoinHostPort(host, port)+"/healthz", nil)
	if err != nil {
		return err
	}
	// Never through a proxy: the agent is on this host.
	client := &http.Client{Transport: &http.Transport{Proxy: nil}}
	resp, err := client.Do(req)
	if err != nil {
		return fmt.Errorf("probing /healthz: %w", err)
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<10))
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("probing /healthz: %s", resp.Status)
	}
	return nil
}

// writeAddr records where the agent listens, for Probe; written whole or not at all.
func writeAddr(stateDir string, addr net.Addr) error {
	if stateDir == "" {
		return nil
	}
	tmp := filepath.Join(stateDir, AddrFile+".tmp")
	if err := os.WriteFile(tmp, []byte(addr.String()+"\n"), 0o644); err != nil {
		return fmt.Errorf("writing %s: %w", AddrFile, err)
	}
	if err := os.Rename(tmp, filepath.Join(stateDir, AddrFile)); err != nil {
		return fmt.Errorf("writing %s: %w", AddrFile, err)
	}
	return nil
}
