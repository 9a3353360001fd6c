package agent

import (
	"testing"

	"github.com/sidelog/sidelog/sidecar/config"
)

// TestTailedElsewhere: a container's cleanup keeps the files another container's tail globs
// match, and only those.
func TestTailedElsewhere(t *testing.T) {
	inputs := []config.Input{
		{Container: "app", Paths: []string{"/var/log/app/*.log*"}, Cleanup: []string{"/var/log/app/*.log.*"}},
		{Container: "audit", Paths: []string{"/var/log/app/audit.log*"}, Exclude: []string{"/var/log/app/audit.log.9"}},
		{Container: "web", Paths: []string{"/var/log/web/**/*.log"}},
	}
	other, err := tailedElsewhere(inputs, "app")
	if err != nil {
		t.Fatal(err)
	}
	for path, want := range map[string]bool{
		"/var/log/app/audit.log.1": true,
		"/var/log/app/audit.log.9": true, // excluded there, kept here all the same
		"/var/log/app/app.log.1":   false,
		"/var/log/web/a/b/x.log":   true,
		"/var/log/web/x.log.1":     false,
	} {
		if got := other(path); got != want {
			t.Errorf("tailed elsewhere %s = %v, want %v", path, got, want)
		}
	}
	if alone, err := tailedElsewhere(inputs[:1], "app"); err != nil || alone != nil {
		t.Errorf("a single input: %v, %v; want no function", alone != nil, err)
	}
}
