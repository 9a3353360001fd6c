package agent

import (
	"path/filepath"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/sidelog/sidelog/sidecar/config"
)

// TestRecordsCarryTheWorkload: the owners and namespace labels of the configuration (which the
// webhook wrote) reach every record's kubernetes map.
func TestRecordsCarryTheWorkload(t *testing.T) {
	dir := t.TempDir()
	s := receiver(t)
	cfg := newConfig(s.Addr(), config.Input{Container: "app", Paths: []string{filepath.Join(dir, "*.log")}})
	cfg.Owners = []config.Owner{{Kind: "Job", Name: "nightly-2904"}, {Kind: "CronJob", Name: "nightly"}}
	cfg.NamespaceLabels = map[string]string{"team": "data"}
	r := start(t, cfg, t.TempDir())
	appendLines(t, filepath.Join(dir, "a.log"), numbered("line", 0, 10)...)
	wait(t, s, 10)
	if err := r.stop(t); err != nil {
		t.Fatal(err)
	}
	for _, e := range s.Events() {
		k, _ := e.Record["kubernetes"].(map[string]any)
		got := map[string]any{"workload_kind": k["workload_kind"], "workload_name": k["workload_name"], "namespace_labels": k["namespace_labels"]}
		want := map[string]any{"workload_kind": "CronJob", "workload_name": "nightly", "namespace_labels": map[string]any{"team": "data"}}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Fatalf("record %v (-want +got):\n%s", e.Record["log"], diff)
		}
	}
}
