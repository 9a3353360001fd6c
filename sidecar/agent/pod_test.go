package agent

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/sidelog/sidelog/sidecar/record"
)

func TestPodFromEnv(t *testing.T) {
	dir := t.TempDir()
	labels := filepath.Join(dir, "labels")
	// As the kubelet writes it: sorted keys, Go-quoted values.
	if err := os.WriteFile(labels, []byte("app=\"shop\"\npod-template-hash=\"7c9\"\nweird=\"a \\\"quoted\\\"\\nvalue\""), 0o644); err != nil {
		t.Fatal(err)
	}
	env := map[string]string{"POD_NAME": "web-1", "POD_NAMESPACE": "shop", "POD_UID": "u-1", "NODE_NAME": "virtual-node"}
	got, err := PodFromEnv(func(k string) string { return env[k] }, labels)
	if err != nil {
		t.Fatal(err)
	}
	want := record.Pod{Namespace: "shop", Name: "web-1", UID: "u-1", Node: "virtual-node",
		Labels: map[string]string{"app": "shop", "pod-template-hash": "7c9", "weird": "a \"quoted\"\nvalue"}}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("PodFromEnv mismatch (-want +got):\n%s", diff)
	}
}

func TestPodFromEnvErrors(t *testing.T) {
	env := map[string]string{"POD_NAME": "web-1", "POD_NAMESPACE": "shop"}
	if _, err := PodFromEnv(func(k string) string { return env[k] }, ""); err == nil || !strings.Contains(err.Error(), "POD_UID") {
		t.Errorf("missing POD_UID: err = %v, want it named", err)
	}
	env["POD_UID"] = "u"
	if _, err := ParseLabels([]byte("app=shop")); err == nil || !strings.Contains(err.Error(), "line 1") {
		t.Errorf("unquoted label: err = %v, want the line named", err)
	}
}
