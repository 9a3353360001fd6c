package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sidelog/sidelog/sidecar/config"
	"github.com/sidelog/sidelog/sidecar/receipt"
)

// TestReceiptOfAnAgentThatNeverRan: an agent that fails before it runs (here, a configuration it
// refuses) still leaves a receipt that says why, and the startup probe, which runs this binary in
// the same container, never writes one.
func TestReceiptOfAnAgentThatNeverRan(t *testing.T) {
	file := filepath.Join(t.TempDir(), "termination-log")
	t.Setenv(config.EnvReceiptFile, file)
	t.Setenv(config.Env, `{"version":"sidelog.io/agent/v1"}`)

	if err := run([]string{"--probe", "--state-dir", t.TempDir()}); err == nil {
		t.Fatal("the probe accepted a configuration without inputs")
	}
	if _, err := os.Stat(file); !os.IsNotExist(err) {
		t.Fatalf("the probe wrote a receipt (stat: %v)", err)
	}

	runErr := run([]string{"--state-dir", t.TempDir()})
	if runErr == nil {
		t.Fatal("run accepted a configuration without inputs")
	}
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	r, err := receipt.Parse(string(b))
	if err != nil {
		t.Fatalf("%v: %s", err, b)
	}
	if r.Drained || r.Agent != version || r.Error == "" || !strings.HasPrefix(runErr.Error(), r.Error) {
		t.Errorf("receipt %+v, want not drained, version %q, and the error %q", r, version, runErr)
	}
}
