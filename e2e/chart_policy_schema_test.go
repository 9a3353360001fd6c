package e2e

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"

	"github.com/sidelog/sidelog/injector"
)

// policyCases are cluster policies, as the chart's values.policy, that the webhook refuses
// (bad) or takes (good).
var policyCases = []struct {
	name   string
	policy string
	bad    bool
}{
	{"unknown field", `upstreams: ["fluentd:24224"]`, true},
	{"not a mapping", `"fluentd:24224"`, true},
	{"image with a space", `agentImage: "ghcr.io/sidelog/agent 1.0"`, true},
	{"pull policy", `imagePullPolicy: Sometimes`, true},
	{"negative user", `agentUser: -1`, true},
	{"fractional user", `agentUser: 1.5`, true},
	{"identity", `agentIdentity: root`, true},
	{"startup probe", `startupProbe: http`, true},
	{"upstream without port", `upstream: [fluentd]`, true},
	{"upstream port 0", `upstream: ["fluentd:0"]`, true},
	{"upstream port too high", `upstream: ["fluentd:70000"]`, true},
	{"upstream host not a DNS name", `upstream: ["flu_entd:24224"]`, true},
	{"upstream host with an empty label", `upstream: ["fluentd..logging:24224"]`, true},
	{"upstream listed twice", `upstream: ["a:1", "a:1"]`, true},
	{"upstream a string", `upstream: "fluentd:24224"`, true},
	{"more upstreams than the default maxUpstreams", `upstream: ["a:1", "b:1", "c:1", "d:1", "e:1", "f:1", "g:1", "h:1", "i:1"]`, true},
	{"more upstreams than maxUpstreams", "upstream: [\"a:1\", \"b:1\", \"c:1\"]\nmaxUpstreams: 2", true},
	{"Forward mode gzipped", "upstreamMode: Forward\nupstreamCompression: gzip", true},
	{"mode", `upstreamMode: Message`, true},
	{"compression", `upstreamCompression: zstd`, true},
	{"server name", `upstreamServerName: "-fluentd-"`, true},
	{"server name in capitals", `upstreamServerName: Fluentd.Logging`, true},
	{"CA Secret name", `upstreamCA: Bad_Name`, true},
	{"CA Secret key", `upstreamCA: "ca/bad key"`, true},
	{"shared key with an empty key", `upstreamSharedKey: "fluentd/"`, true},
	{"user Secret with an empty label", `upstreamUser: "a..b"`, true},
	{"quantity", `resources: {requests: {cpu: lots}}`, true},
	{"resource name", `resources: {requests: {nvidia.com/gpu: 1}}`, true},
	{"zero quantity", `resources: {requests: {cpu: "0"}}`, true},
	{"zero number", `resources: {limits: {memory: 0}}`, true},
	{"negative quantity", `resources: {requests: {memory: -1Mi}}`, true},
	{"request above limit", `resources: {requests: {memory: 1Gi}, limits: {memory: 128Mi}}`, true},
	{"cpu request above limit", `resources: {requests: {cpu: "2"}, limits: {cpu: 500m}}`, true},
	{"claims", `resources: {claims: [{name: gpu}]}`, true},
	{"sidecar mode", `sidecarMode: sidecar`, true},
	{"kubernetes version", `kubernetesVersion: latest`, true},
	{"override option", `allowPodOverride: [upstreams]`, true},
	{"missing volume", `missingVolume: hostPath`, true},
	{"negative maxGlobs", `maxGlobs: -1`, true},
	{"metrics port", `metricsPort: 70000`, true},
	{"negative drain timeout", `drainTimeout: -5s`, true},
	{"drain timeout in days", `drainTimeout: 1d`, true},
	{"drain timeout a number", `drainTimeout: 20`, true},
	{"agent limit negative", `agentLimits: {maxFiles: -1}`, true},
	{"agent limit unknown", `agentLimits: {batchSize: 1}`, true},
	{"agent flush interval", `agentLimits: {flushInterval: soon}`, true},
	{"rate limit without /s", `rateLimit: 1MiB`, true},
	{"rate limit in lowercase", `rateLimit: 1mb/s`, true},
	{"rate limit zero", `maxRateLimit: 0 lines/s`, true},
	{"rate limit twice in bytes", `rateLimit: "1MiB/s, 2MiB/s"`, true},
	{"rate limit a number", `rateLimit: 1000`, true},
	{"rate limit above the maximum", "rateLimit: 4MiB/s\nmaxRateLimit: 2MiB/s", true},
	{"rate limit lines above the maximum", "rateLimit: 2MiB/s, 6000 lines/s\nmaxRateLimit: 5000 lines/s, 4MiB/s", true},
	{"rate limit above the maximum by a rounded byte", "rateLimit: 2.5B/s\nmaxRateLimit: 2.2B/s", false},
	{"negative cleanup settle", `cleanupSettle: -1m`, true},
	{"cleanup settle a number", `cleanupSettle: 60`, true},
	{"allowCleanup a string", `allowCleanup: "yes"`, true},

	{"empty", `{}`, false},
	{"addresses of every kind", `upstream: ["10.0.0.1:24224", "[fd00::1]:24224", "Fluentd.Logging:24224", "fluentd.logging.svc.cluster.local.:24224"]`, false},
	{"as many upstreams as maxUpstreams", "upstream: [\"a:1\", \"b:1\"]\nmaxUpstreams: 2", false},
	{"quantities of every form", `resources: {requests: {cpu: 0.05, memory: 32Mi, ephemeral-storage: 1G}, limits: {cpu: "1", memory: 134217728, ephemeral-storage: 2Gi}}`, false},
	{"request equal to limit", `resources: {requests: {memory: 128Mi, cpu: 100m}, limits: {memory: 0.125Gi, cpu: "0.1"}}`, false},
	{"secret references", "upstreamCA: fluentd-ca/ca.crt\nupstreamSharedKey: fluentd\nupstreamUser: fluentd-user/pass_word", false},
	{"Forward mode", "upstreamMode: Forward\nupstreamCompression: none", false},
	{"rate limits", "rateLimit: 1Mi/s\nmaxRateLimit: 4MiB/s, 20000 lines/s", false},
	{"rate limit within a maximum of the other dimension", "rateLimit: 8MiB/s\nmaxRateLimit: 20000 lines/s", false},
	{"rate limit of every unit", "rateLimit: 0.5k/s, 10 lines/s\nmaxRateLimit: 1000 line/s , 1.5GB/s", false},
	{"rate limit none", "rateLimit: none\nmaxRateLimit: none", false},
	{"cleanup", "allowCleanup: true\ncleanupSettle: 90s", false},
	{"the rest", "agentImage: ghcr.io/sidelog/sidelog-agent:0.1.0\nimagePullPolicy: Always\nagentUser: 1000\nagentGroup: 1000\nagentIdentity: platform\nstartupProbe: none\nsidecarMode: legacy\nkubernetesVersion: v1.28.5-eks-5e0fdde\nallowPodOverride: []\nmissingVolume: emptyDir\nmaxGlobs: 4\nmetricsPort: 9102\ndrainTimeout: 1m30s\nagentLimits: {maxFiles: 10, flushInterval: 250ms}", false},
}

// TestChartSchemaRateLimitIsTheInjectors: the schema's grammar of a rate limit is the
// injector's, character for character, so that the cases above cannot be all that agree.
func TestChartSchemaRateLimitIsTheInjectors(t *testing.T) {
	b, err := os.ReadFile(filepath.Join(chartDir, "values.schema.json"))
	if err != nil {
		t.Fatal(err)
	}
	var schema struct {
		Definitions map[string]struct {
			Pattern string `json:"pattern"`
		} `json:"definitions"`
	}
	if err := json.Unmarshal(b, &schema); err != nil {
		t.Fatal(err)
	}
	if got := schema.Definitions["rateLimit"].Pattern; got != injector.RateLimitPattern {
		t.Errorf("values.schema.json definitions.rateLimit.pattern is\n%s\nwant injector.RateLimitPattern\n%s", got, injector.RateLimitPattern)
	}
}

// TestChartSchemaRejectsWhatTheWebhookRejects feeds the same policies to the chart (helm
// template: values.schema.json and the chart's checks across values) and to
// injector.ParsePolicy, as the webhook reads them: each must be refused by both or taken by
// both, so that a policy the webhook would reject fails at helm install, never in a running
// webhook.
func TestChartSchemaRejectsWhatTheWebhookRejects(t *testing.T) {
	h := newHelm(t)
	for _, tt := range policyCases {
		t.Run(tt.name, func(t *testing.T) {
			var policy any
			if err := yaml.Unmarshal([]byte(tt.policy), &policy); err != nil {
				t.Fatalf("test case: %v", err)
			}
			values, err := yaml.Marshal(map[string]any{"policy": policy})
			if err != nil {
				t.Fatal(err)
			}
			file := filepath.Join(t.TempDir(), "values.yaml")
			if err := os.WriteFile(file, values, 0o644); err != nil {
				t.Fatal(err)
			}
			_, parseErr := injector.ParsePolicy([]byte(tt.policy))
			_, helmErr := h.run("template", chartRelease, chartDir, "-n", ownNS, "-f", file)
			if tt.bad {
				if parseErr == nil {
					t.Errorf("injector.ParsePolicy took it: fix the test case")
				}
				if helmErr == nil {
					t.Errorf("the chart took a policy the webhook refuses (%v)", parseErr)
				}
			} else {
				if parseErr != nil {
					t.Errorf("injector.ParsePolicy: %v", parseErr)
				}
				if helmErr != nil {
					t.Errorf("the chart refused a policy the webhook takes: %s", strings.TrimSpace(helmErr.Error()))
				}
			}
		})
	}
}
