package e2e

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// maxAgentBytes is the bound on the stripped static agent binary: it is pulled onto
// every node for every opted-in pod.
const maxAgentBytes = 10 << 20

// allowedAgentImports are the agent's only packages outside the standard library: the protobuf
// wire encoding of OTLP, and what it imports.
var allowedAgentImports = map[string]bool{
	"google.golang.org/protobuf/encoding/protowire": true,
	"google.golang.org/protobuf/internal/errors":    true,
	"google.golang.org/protobuf/internal/detrand":   true,
}

// TestAgentBinary: the agent stays a small static binary that imports nothing from Kubernetes.
func TestAgentBinary(t *testing.T) {
	fi, err := os.Stat(binary(t, "sidelog-agent"))
	if err != nil {
		t.Fatal(err)
	}
	if fi.Size() > maxAgentBytes {
		t.Errorf("sidelog-agent is %d bytes, more than %d", fi.Size(), maxAgentBytes)
	}

	list := exec.Command("go", "list", "-deps", "./cmd/sidelog-agent")
	list.Dir = ".."
	list.Env = append(os.Environ(), "CGO_ENABLED=0")
	out, err := list.Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	var deps []string
	for _, pkg := range strings.Fields(string(out)) {
		// The standard library has no dot in its first path element; the agent's own packages
		// are the module's.
		if first, _, _ := strings.Cut(pkg, "/"); strings.Contains(first, ".") && !strings.HasPrefix(pkg, "github.com/sidelog/sidelog/") && !allowedAgentImports[pkg] {
			deps = append(deps, pkg)
		}
	}
	if len(deps) > 0 {
		t.Errorf("sidelog-agent imports packages outside the standard library and protowire: %s", strings.Join(deps, ", "))
	}
	for _, pkg := range strings.Fields(string(out)) {
		if strings.HasPrefix(pkg, "github.com/sidelog/sidelog/") && !strings.HasPrefix(pkg, "github.com/sidelog/sidelog/sidecar/") &&
			pkg != "github.com/sidelog/sidelog/cmd/sidelog-agent" {
			t.Errorf("sidelog-agent imports %s: the agent is built from sidecar/ alone", pkg)
		}
	}
}

// TestAgentConfigFile: `sidelog-agent --config FILE` takes the same document as $SIDELOG_CONFIG
// (the pod's identity still comes from the environment) and refuses a bad one naming the field,
// before it reads a line.
func TestAgentConfigFile(t *testing.T) {
	dir := t.TempDir()
	recv := startReceiver(t)
	write := func(name, doc string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(doc), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	agent := func(args ...string) *exec.Cmd {
		cmd := exec.Command(binary(t, "sidelog-agent"), args...)
		cmd.Env = []string{"POD_NAME=web-1", "POD_NAMESPACE=shop", "POD_UID=uid-1", "NODE_NAME=node-1"}
		return cmd
	}

	bad := write("bad.json", `{"version":"sidelog.io/agent/v1","inputs":[{"container":"app","paths":["logs/*.log"]}],"upstream":{"servers":["`+recv.Addr+`"]}}`)
	out, err := agent("--config", bad, "--state-dir", t.TempDir()).CombinedOutput()
	if err == nil || !strings.Contains(string(out), "inputs[0].paths[0]") {
		t.Errorf("agent with a relative glob: err %v, output %q; want a failure naming inputs[0].paths[0]", err, out)
	}

	logs := filepath.Join(dir, "logs")
	if err := os.Mkdir(logs, 0o755); err != nil {
		t.Fatal(err)
	}
	appendFile(t, filepath.Join(logs, "app.log"), "from a config file")
	good := write("good.json", `{"version":"sidelog.io/agent/v1","inputs":[{"container":"app","paths":["`+logs+`/*.log"]}],"upstream":{"servers":["`+recv.Addr+`"]}}`)
	cmd := agent("--config", good, "--state-dir", t.TempDir())
	output := new(syncBuffer)
	cmd.Stdout, cmd.Stderr = output, output
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		if t.Failed() {
			t.Logf("agent output:\n%s", output)
		}
	})
	got := recv.wait(t, 1)
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := cmd.Wait(); err != nil {
		t.Errorf("agent exit after SIGTERM = %v, want 0\n%s", err, output)
	}
	if got[0].Log != "from a config file" || got[0].Tag != "kube.shop.web-1.app" {
		t.Errorf("record %+v, want the line tagged kube.shop.web-1.app", got[0])
	}
}
