package injector

import (
	"os"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	"sigs.k8s.io/yaml"

	"github.com/sidelog/sidelog/sidecar/config"
)

func TestParsePolicyDefaults(t *testing.T) {
	for _, in := range []string{"", "  \n", "{}", "# only a comment\n"} {
		p, err := ParsePolicy([]byte(in))
		if err != nil {
			t.Fatalf("ParsePolicy(%q): %v", in, err)
		}
		if diff := cmp.Diff(DefaultPolicy(), p); diff != "" {
			t.Errorf("ParsePolicy(%q) is not DefaultPolicy (-want +got):\n%s", in, diff)
		}
	}
}

func TestParsePolicyRoundTrip(t *testing.T) {
	want := DefaultPolicy()
	want.AgentImage = "registry.example.com/sidelog-agent:v1.2.3"
	want.Upstream = []string{"fluentd.logging:24224"}
	want.SidecarMode = ModeAuto
	want.KubernetesVersion = "v1.28.3"
	want.AllowPodOverride = []string{}
	want.MissingVolume = MissingVolumeEmptyDir
	want.DrainTimeout = config.Duration(7 * time.Second)
	want.AgentLimits.MaxFiles = 12
	data, err := yaml.Marshal(want)
	if err != nil {
		t.Fatal(err)
	}
	got, err := ParsePolicy(data)
	if err != nil {
		t.Fatalf("ParsePolicy of its own output: %v\n%s", err, data)
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("round trip changed the policy (-want +got):\n%s", diff)
	}
}

func TestParsePolicyFields(t *testing.T) {
	tests := []struct {
		name  string
		in    string
		check func(*Policy) string
	}{
		{"absent allowPodOverride allows all", "agentImage: x:1", func(p *Policy) string {
			return cmp.Diff(policedOptions(), p.AllowPodOverride)
		}},
		{"empty allowPodOverride allows none", "allowPodOverride: []", func(p *Policy) string {
			return cmp.Diff([]string{}, p.AllowPodOverride)
		}},
		{"resources are taken whole", "resources: {requests: {memory: 20Mi}}", func(p *Policy) string {
			return cmp.Diff(corev1.ResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("20Mi")}}, p.Resources)
		}},
		{"durations", "drainTimeout: 1m30s\nagentLimits: {pollInterval: 100ms}", func(p *Policy) string {
			return cmp.Diff([]time.Duration{90 * time.Second, 100 * time.Millisecond}, []time.Duration{p.DrainTimeout.D(), p.AgentLimits.PollInterval.D()})
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := ParsePolicy([]byte(tt.in))
			if err != nil {
				t.Fatal(err)
			}
			if diff := tt.check(p); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		})
	}
}

func TestParsePolicyErrors(t *testing.T) {
	tests := []struct{ in, want string }{
		{"agentImge: x", "cluster policy field agentImge: unknown field; did you mean agentImage?"},
		{"allowOverride: [upstream]", "cluster policy field allowOverride: unknown field; did you mean allowPodOverride?"},
		{"colour: red", "cluster policy field colour: unknown field; known fields: agentImage, imagePullPolicy, agentUser, agentGroup, agentIdentity, startupProbe, upstream, upstreamProtocol, upstreamHeaders, upstreamTLS, upstreamServerName, upstreamCA, upstreamSharedKey, upstreamUser, upstreamMode, upstreamCompression, resources, sidecarMode, kubernetesVersion, allowPodOverride, missingVolume, maxGlobs, maxUpstreams, metricsPort, drainTimeout, agentLimits"},
		{"upstreamProtocol: grpc", `cluster policy field upstreamProtocol: got "grpc", want "forward" or "otlp"`},
		{"upstream: [http://otel:4318]", `cluster policy field upstream: "http://otel:4318" is a URL, but the protocol is forward`},
		{"upstreamProtocol: otlp\nupstream: [fluentd:24224]", `cluster policy field upstream: "fluentd:24224" is not a URL: with protocol otlp`},
		{"upstreamHeaders: a/b", `cluster policy field upstreamHeaders: got "a/b": want the name of a Secret`},
		{"resources: {requets: {cpu: 1}}", "cluster policy field resources.requets: unknown field; did you mean requests?"},
		{"resources: {claims: [{name: a}, {nmae: b}]}", "cluster policy field resources.claims[1].nmae: unknown field; did you mean name?"},
		{"agentLimits: {maxLineByte: 3}", "cluster policy field agentLimits.maxLineByte: unknown field; did you mean maxLineBytes?"},
		{"- a\n- b", "cluster policy: want a YAML mapping of fields, got []interface {}"},
		{"just text", "cluster policy: want a YAML mapping of fields, got string"},
		{"a: [", "cluster policy: error converting YAML to JSON"},
		{"maxGlobs: many", "cluster policy: error unmarshaling JSON"},
		{"drainTimeout: 20", `duration must be a string such as "5s", got 20`},
		{"agentImage: 'a b'", `cluster policy field agentImage: "a b" contains white space`},
		{"imagePullPolicy: Sometimes", `cluster policy field imagePullPolicy: got "Sometimes", want Always, IfNotPresent or Never`},
		{"agentIdentity: root", `cluster policy field agentIdentity: got "root", want "app", "fixed" or "platform"`},
		{"startupProbe: httpGet", `cluster policy field startupProbe: got "httpGet", want "exec" or "none"`},
		{"agentUser: -1", "cluster policy field agentUser: got -1, want a uid above 0: the agent never runs as root"},
		{"upstream: [fluentd]", `cluster policy field upstream: "fluentd" is not host:port`},
		{"upstreamServerName: 'fluentd logging'", `cluster policy field upstreamServerName: got "fluentd logging", want a DNS name such as fluentd.logging.svc or an IP address`},
		{"upstreamCA: fluentd-ca/", `cluster policy field upstreamCA: got "fluentd-ca/": "" is not a Secret key`},
		{"upstreamUser: a/b/c", `cluster policy field upstreamUser: got "a/b/c"`},
		{"upstreamSharedKey: Forward", `cluster policy field upstreamSharedKey: got "Forward": "Forward" is not a Secret name; want <secret> (key shared_key) or <secret>/<key>`},
		{"upstreamTLS: yes please", "cluster policy: error unmarshaling JSON"},
		{"upstreamMode: Message", `cluster policy field upstreamMode: got "Message", want "PackedForward" or "Forward"`},
		{"upstreamCompression: zstd", `cluster policy field upstreamCompression: got "zstd", want "none" or "gzip"`},
		{"upstreamMode: Forward\nupstreamCompression: gzip", "cluster policy field upstreamMode: Forward entries cannot be compressed (gzip is CompressedPackedForward): use mode PackedForward or compression none"},
		{"resources: {limits: {gpu: 1}}", "cluster policy field resources.limits.gpu: unknown resource: want cpu, memory or ephemeral-storage"},
		{"resources: {requests: {cpu: 0}}", "cluster policy field resources.requests.cpu: got 0, want more than zero"},
		{"resources: {requests: {cpu: 2}, limits: {cpu: 1}}", "cluster policy field resources.requests.cpu: 2 is more than the limit 1"},
		{"resources: {claims: [{name: x}]}", "cluster policy field resources.claims: the agent claims no dynamic resources; remove it"},
		{"sidecarMode: sidecar", `cluster policy field sidecarMode: got "sidecar", want "native", "legacy" or "auto"`},
		{"kubernetesVersion: latest", `cluster policy field kubernetesVersion: got "latest", want a Kubernetes version such as v1.29.3`},
		{"allowPodOverride: [upstrem]", `cluster policy field allowPodOverride: unknown option "upstrem" (did you mean upstream?): want names from exclude, multiline, parser, read-from, ignore-older, time-key, time-format, rate-limit, upstream, upstream-protocol, upstream-headers, upstream-compression, upstream-tls, upstream-server-name, upstream-ca, upstream-shared-key, upstream-user, sidecar-mode, agent-requests-cpu, agent-requests-memory, agent-limits-cpu, agent-limits-memory, metrics-port`},
		{"missingVolume: create", `cluster policy field missingVolume: got "create", want "refuse" or "emptyDir"`},
		{"maxGlobs: -1", "cluster policy field maxGlobs: got -1, want a positive number"},
		{"metricsPort: 70000", "cluster policy field metricsPort: got 70000, want a port number from 1 to 65535"},
		{"drainTimeout: -5s", "cluster policy field drainTimeout: got -5s, want a positive duration such as 20s"},
		{"agentLimits: {batchBytes: -1}", "cluster policy field agentLimits.batchBytes: must not be negative"},
		{"readFrom: end", `cluster policy field readFrom: got "end", want "head", "tail" or "auto"`},
		{"ignoreOlder: -1h", "cluster policy field ignoreOlder: got -1h0m0s, want a positive duration such as 168h"},
		{"cleanupSettle: -1m", "cluster policy field cleanupSettle: got -1m0s, want a positive duration such as 5m"},
		{"allowCleanup: sometimes", "cluster policy: error unmarshaling JSON"},
		{"timeFormat: iso", `cluster policy field timeFormat: "iso" is neither a preset`},
		{"timeFormat: RFC3339", `cluster policy field timeFormat: got "RFC3339", want "rfc3339"`},
		{"rateLimit: 1 MB per second", `cluster policy field rateLimit: got "1 MB per second", want bytes and/or lines per second`},
		{"maxRateLimit: 0 lines/s", `cluster policy field maxRateLimit: got "0 lines/s", want bytes and/or lines per second such as "1MiB/s", "500KB/s", "1000 lines/s" or "2Mi/s, 5000 lines/s", or none (a rate must be more than zero; none is no limit)`},
		{"{rateLimit: 4MiB/s, maxRateLimit: 2MiB/s}", `cluster policy field rateLimit: 4MiB/s reads 4194304 bytes a second, more than the cluster policy's maxRateLimit 2MiB/s (2097152)`},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			p, err := ParsePolicy([]byte(tt.in))
			if err == nil {
				t.Fatalf("ParsePolicy succeeded (%+v), want an error containing %q", p, tt.want)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error:\n got %s\nwant it to contain %s", err, tt.want)
			}
		})
	}
}

// TestInjectValidatesPolicy: a Policy built in code is completed and checked like a parsed one.
func TestInjectValidatesPolicy(t *testing.T) {
	pod := basePod(tailApp())
	_, _, err := Inject(pod, nil, &Policy{SidecarMode: "sometimes"})
	if err == nil || !strings.HasPrefix(err.Error(), "cluster policy field sidecarMode:") {
		t.Errorf("Inject with a bad policy: err = %v, want a cluster policy error", err)
	}
	out, o, err := Inject(pod, nil, nil)
	if err != nil || !o.Injected || agentOf(out) == nil {
		t.Errorf("Inject with a nil policy: injected %v, err %v; want the default policy used", o.Injected, err)
	}
	if got := agentOf(out).Image; got != DefaultAgentImage {
		t.Errorf("agent image %q, want %q", got, DefaultAgentImage)
	}
}

func TestExamplePolicy(t *testing.T) {
	data, err := os.ReadFile("../examples/policy.yaml")
	if err != nil {
		t.Fatal(err)
	}
	p, err := ParsePolicy(data)
	if err != nil {
		t.Fatalf("examples/policy.yaml: %v", err)
	}
	if p.AgentImage == DefaultAgentImage || len(p.Upstream) == 0 {
		t.Errorf("examples/policy.yaml should pin the image and name an upstream: %+v", p)
	}
}

func TestNativeSupported(t *testing.T) {
	tests := []struct {
		v    string
		want bool
	}{
		{"", true},
		{"v1.29.0", true},
		{"1.29", true},
		{"v1.30.2-gke.1587003", true},
		{"v1.31.1+k3s1", true},
		{"v2.0.0", true},
		{"v1.28.9-eks-036c24b", false},
		{"1.9", false},
		{"v1.27", false},
	}
	for _, tt := range tests {
		got, err := nativeSupported(tt.v)
		if err != nil || got != tt.want {
			t.Errorf("nativeSupported(%q) = %v, %v; want %v", tt.v, got, err, tt.want)
		}
	}
	for _, v := range []string{"latest", "v1", "1.x", "v.1.29"} {
		if _, err := nativeSupported(v); err == nil {
			t.Errorf("nativeSupported(%q) accepted it", v)
		}
	}
}

func TestDrainTimeout(t *testing.T) {
	secs := func(n int64) *int64 { return &n }
	tests := []struct {
		grace     *int64
		want      time.Duration
		shortened bool
	}{
		{nil, 20 * time.Second, false},
		{secs(30), 20 * time.Second, false},
		{secs(20), 10 * time.Second, true},
		{secs(5), 2500 * time.Millisecond, true},
		{secs(1), time.Second, true},
		{secs(0), time.Second, true},
	}
	for _, tt := range tests {
		got, shortened := drainTimeout(20*time.Second, tt.grace)
		if got != tt.want || shortened != tt.shortened {
			t.Errorf("drainTimeout(20s, %v) = %v, %v; want %v, %v", deref(tt.grace), got, shortened, tt.want, tt.shortened)
		}
	}
}
