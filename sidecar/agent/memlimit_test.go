package agent

import (
	"log/slog"
	"math"
	"runtime/debug"
	"testing"

	"github.com/sidelog/sidelog/sidecar/config"
)

func TestSetMemoryLimit(t *testing.T) {
	defer debug.SetMemoryLimit(debug.SetMemoryLimit(-1))
	log := slog.New(slog.DiscardHandler)
	env := func(kv ...string) func(string) string {
		return func(k string) string {
			for i := 0; i+1 < len(kv); i += 2 {
				if kv[i] == k {
					return kv[i+1]
				}
			}
			return ""
		}
	}
	debug.SetMemoryLimit(math.MaxInt64)
	share := config.MemoryLimitShare
	if got, want := SetMemoryLimit(env(config.EnvMemoryLimit, "134217728"), log), int64(134217728*share); got != want || debug.SetMemoryLimit(-1) != want {
		t.Errorf("128 MiB container: limit %d (runtime %d), want %d", got, debug.SetMemoryLimit(-1), want)
	}
	// GOMEMLIMIT wins: the runtime read it at start (here: what is in force).
	debug.SetMemoryLimit(50 << 20)
	if got := SetMemoryLimit(env("GOMEMLIMIT", "50MiB", config.EnvMemoryLimit, "134217728"), log); got != 50<<20 {
		t.Errorf("with GOMEMLIMIT: limit %d, want it untouched at %d", got, 50<<20)
	}
	for _, bad := range []string{"", "128Mi", "-1", "0", "x"} {
		debug.SetMemoryLimit(math.MaxInt64)
		if got := SetMemoryLimit(env(config.EnvMemoryLimit, bad), log); got != math.MaxInt64 {
			t.Errorf("%s=%q: limit %d, want none", config.EnvMemoryLimit, bad, got)
		}
	}
}
