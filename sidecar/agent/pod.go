package agent

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"strconv"

	"github.com/sidelog/sidelog/sidecar/config"
	"github.com/sidelog/sidelog/sidecar/record"
)

// PodFromEnv reads the pod identity that the injector provides through the downward API: the
// POD_* and NODE_NAME variables, and the labels file (which the agent reads again while it runs:
// see labelsInterval). A missing variable is an error naming it, because
// records without their pod cannot be routed to their tenant.
func PodFromEnv(getenv func(string) string, labelsFile string) (record.Pod, error) {
	p := record.Pod{
		Namespace: getenv(config.EnvPodNamespace),
		Name:      getenv(config.EnvPodName),
		UID:       getenv(config.EnvPodUID),
		Node:      getenv(config.EnvNodeName),
	}
	for _, v := range []struct{ name, value string }{
		{config.EnvPodNamespace, p.Namespace},
		{config.EnvPodName, p.Name},
		{config.EnvPodUID, p.UID},
	} {
		if v.value == "" {
			return p, fmt.Errorf("environment variable %s is not set: the injector sets it from the downward API", v.name)
		}
	}
	if labelsFile == "" {
		return p, nil
	}
	b, err := os.ReadFile(labelsFile)
	if err != nil {
		return p, fmt.Errorf("reading pod labels: %w", err)
	}
	p.Labels, err = ParseLabels(b)
	if err != nil {
		return p, fmt.Errorf("reading pod labels from %s: %w", labelsFile, err)
	}
	return p, nil
}

// ParseLabels parses the downward API's labels file: one key="value" per line, the value quoted
// as a Go string.
func ParseLabels(b []byte) (map[string]string, error) {
	labels := map[string]string{}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for n := 1; sc.Scan(); n++ {
		line := sc.Bytes()
		if len(bytes.TrimSpace(line)) == 0 {
			continue
		}
		k, v, ok := bytes.Cut(line, []byte("="))
		if !ok {
			return nil, fmt.Errorf("line %d: want key=\"value\", got %q", n, line)
		}
		val, err := strconv.Unquote(string(v))
		if err != nil {
			return nil, fmt.Errorf("line %d: value of %s is not a quoted string: %w", n, k, err)
		}
		labels[string(k)] = val
	}
	return labels, sc.Err()
}
