package agent

import (
	"fmt"
	"log/slog"
	"math"
	"runtime/debug"
	"strconv"
	"strings"

	"github.com/sidelog/sidelog/sidecar/config"
)

// SetMemoryLimit gives the Go runtime a soft memory limit of config.MemoryLimitShare of the
// container's memory limit (config.EnvMemoryLimit, bytes), so that the garbage collector runs
// more often as the heap nears the limit instead of letting it reach twice what is live
// (GOGC=100) and the container be killed. An explicit GOMEMLIMIT wins: the runtime has read it
// already. It logs the limit in force and returns it (math.MaxInt64: none).
func SetMemoryLimit(getenv func(string) string, log *slog.Logger) int64 {
	if v := getenv("GOMEMLIMIT"); v != "" {
		limit := debug.SetMemoryLimit(-1)
		log.Info("Go memory limit from GOMEMLIMIT", "GOMEMLIMIT", v, "bytes", limit)
		return limit
	}
	v := strings.TrimSpace(getenv(config.EnvMemoryLimit))
	if v == "" {
		log.Info("no memory limit given: the Go runtime has none", "env", config.EnvMemoryLimit)
		return debug.SetMemoryLimit(-1)
	}
	container, err := parseBytes(v)
	if err != nil {
		log.Warn("ignoring the container's memory limit: the Go runtime has none", "env", config.EnvMemoryLimit, "value", v, "err", err)
		return debug.SetMemoryLimit(-1)
	}
	limit := int64(float64(container) * config.MemoryLimitShare)
	debug.SetMemoryLimit(limit)
	log.Info("Go memory limit set from the container's", "container_limit_bytes", container,
		"share", config.MemoryLimitShare, "go_memory_limit_bytes", limit, "go_memory_limit", fmt.Sprintf("%.1fMiB", float64(limit)/(1<<20)))
	return limit
}

// parseBytes reads the downward API's value of limits.memory with divisor 1: a positive integer.
func parseBytes(v string) (int64, error) {
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("want a number of bytes: %w", err)
	}
	if n <= 0 || n == math.MaxInt64 {
		return 0, fmt.Errorf("want a positive number of bytes, got %d", n)
	}
	return n, nil
}
