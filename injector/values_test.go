package injector

import (
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"

	"github.com/sidelog/sidelog/sidecar/config"
)

func TestSplitList(t *testing.T) {
	tests := []struct {
		in   string
		want []string
	}{
		{"", nil},
		{"a", []string{"a"}},
		{" a , b ,c", []string{"a", "b", "c"}},
		{"a\nb\n", []string{"a", "b"}},
		{"a,\n b,,c , ", []string{"a", "b", "c"}},
		{"/my logs/a b.log", []string{"/my logs/a b.log"}},
	}
	for _, tt := range tests {
		if diff := cmp.Diff(tt.want, splitList(tt.in)); diff != "" {
			t.Errorf("splitList(%q) (-want +got):\n%s", tt.in, diff)
		}
	}
}

func TestParseGlobs(t *testing.T) {
	got, err := parseGlobs("/a/*.log, /b/**/x, /a/*.log", 2)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{"/a/*.log", "/b/**/x"}, got); diff != "" {
		t.Errorf("duplicates are dropped before counting (-want +got):\n%s", diff)
	}
}

func TestParseMultiline(t *testing.T) {
	tests := []struct {
		in   string
		want *config.Multiline
	}{
		{"java", &config.Multiline{Preset: "java"}},
		{" go ", &config.Multiline{Preset: "go"}},
		{"none", nil},
		{"Java", &config.Multiline{Preset: "java"}},
		{"PYTHON", &config.Multiline{Preset: "python"}},
		{"None", nil},
		{"ERROR", &config.Multiline{FirstLine: "ERROR"}},
		{`^\d{4}-`, &config.Multiline{FirstLine: `^\d{4}-`}},
		{"Exception", &config.Multiline{FirstLine: "Exception"}},
		{"^error", &config.Multiline{FirstLine: "^error"}},
	}
	for _, tt := range tests {
		got, err := parseMultiline(tt.in)
		if err != nil {
			t.Errorf("parseMultiline(%q): %v", tt.in, err)
			continue
		}
		if diff := cmp.Diff(tt.want, got); diff != "" {
			t.Errorf("parseMultiline(%q) (-want +got):\n%s", tt.in, diff)
		}
	}
}

func TestParseUpstream(t *testing.T) {
	got, err := parseUpstream("fluentd.logging:24224, 10.1.2.3:24224,[fd00::1]:24224,fluentd.logging.svc.cluster.local.:1", 8)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"fluentd.logging:24224", "10.1.2.3:24224", "[fd00::1]:24224", "fluentd.logging.svc.cluster.local.:1"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
}

func TestStaticPrefix(t *testing.T) {
	tests := []struct{ glob, want string }{
		{"/var/log/app/*.log", "/var/log/app"},
		{"/var/log/app/current.log", "/var/log/app/current.log"},
		{"/var/log/**/x.log", "/var/log"},
		{"/*.log", "/"},
		{"/data/[ab]/x", "/data"},
		{"/data/a?/x", "/data"},
		{`/data/\*/x`, "/data"},
	}
	for _, tt := range tests {
		if got := staticPrefix(tt.glob); got != tt.want {
			t.Errorf("staticPrefix(%q) = %q, want %q", tt.glob, got, tt.want)
		}
	}
}

func TestCoveringMount(t *testing.T) {
	mounts := []corev1.VolumeMount{
		{Name: "var", MountPath: "/var"},
		{Name: "log", MountPath: "/var/log/"},
		{Name: "logfile", MountPath: "/var/log/app.log", SubPath: "app.log"},
		{Name: "lo", MountPath: "/var/lo"},
	}
	tests := []struct{ path, want string }{
		{"/var/log/app", "log"},
		{"/var/log", "log"},
		{"/var/logs", "var"},
		{"/var/log/app.log", "logfile"},
		{"/var/lo/x", "lo"},
		{"/varx", ""},
		{"/", ""},
	}
	for _, tt := range tests {
		got, ok := coveringMount(mounts, tt.path)
		if (tt.want == "") == ok || got.Name != tt.want {
			t.Errorf("coveringMount(%q) = %q, %v; want %q", tt.path, got.Name, ok, tt.want)
		}
	}
}

func TestBelow(t *testing.T) {
	tests := []struct {
		p, dir string
		want   bool
	}{
		{"/a/b", "/a", true},
		{"/a", "/a", false},
		{"/ab", "/a", false},
		{"/a", "/", true},
		{"/", "/", false},
	}
	for _, tt := range tests {
		if got := below(tt.p, tt.dir); got != tt.want {
			t.Errorf("below(%q, %q) = %v, want %v", tt.p, tt.dir, got, tt.want)
		}
	}
}

func TestDistance(t *testing.T) {
	tests := []struct {
		a, b string
		want int
	}{
		{"", "", 0},
		{"tail", "tail", 0},
		{"tial", "tail", 1},
		{"tai", "tail", 1},
		{"tails", "tail", 1},
		{"upstram", "upstream", 1},
		{"", "abc", 3},
		{"kitten", "sitting", 3},
	}
	for _, tt := range tests {
		if got := distance(tt.a, tt.b); got != tt.want {
			t.Errorf("distance(%q, %q) = %d, want %d", tt.a, tt.b, got, tt.want)
		}
		if got := distance(tt.b, tt.a); got != tt.want {
			t.Errorf("distance(%q, %q) = %d, want %d", tt.b, tt.a, got, tt.want)
		}
	}
}

func TestAnnotationTable(t *testing.T) {
	consts := []string{AnnotationInject, AnnotationTail, AnnotationExclude, AnnotationMultiline, AnnotationParser,
		AnnotationReadFrom, AnnotationIgnoreOlder, AnnotationTimeKey, AnnotationTimeFormat, AnnotationRateLimit,
		AnnotationUpstream, AnnotationUpstreamProtocol, AnnotationUpstreamHeaders, AnnotationUpstreamCompression, AnnotationUpstreamTLS, AnnotationUpstreamServerName, AnnotationUpstreamCA,
		AnnotationUpstreamSharedKey, AnnotationUpstreamUser, AnnotationSidecarMode, AnnotationRequestsCPU, AnnotationRequestsMemory, AnnotationLimitsCPU,
		AnnotationLimitsMemory, AnnotationMetricsPort, AnnotationStatus, AnnotationCleanup}
	if len(consts) != len(options) {
		t.Fatalf("%d annotation constants, %d options", len(consts), len(options))
	}
	for i, c := range consts {
		if c != Prefix+options[i].name {
			t.Errorf("option %d is %q, constant is %q", i, options[i].name, c)
		}
	}
}

func TestNearPrefix(t *testing.T) {
	for _, d := range []string{"sidlog.io", "Sidelog.io", "sidelog.com", "sidelog", "sidelog.dev", "sidelogio"} {
		if !nearPrefix(d) {
			t.Errorf("nearPrefix(%q) = false, want true", d)
		}
	}
	for _, d := range []string{"sidelog.io", "sidecar.io", "sidekiq.io", "sidelogger.example.com", "kubernetes.io", "prometheus.io"} {
		if nearPrefix(d) {
			t.Errorf("nearPrefix(%q) = true, want false", d)
		}
	}
}

func TestParseReading(t *testing.T) {
	for _, tt := range []struct {
		v    string
		want time.Duration
	}{{"7d", 7 * 24 * time.Hour}, {"36h", 36 * time.Hour}, {" 90m ", 90 * time.Minute}, {"1d", 24 * time.Hour}} {
		got, err := parseIgnoreOlder(tt.v)
		if err != nil || got.D() != tt.want {
			t.Errorf("parseIgnoreOlder(%q) = %v, %v; want %v", tt.v, got.D(), err, tt.want)
		}
	}
	for _, v := range []string{"", "0d", "-1h", "7 days", "1.5d", "d"} {
		if _, err := parseIgnoreOlder(v); err == nil {
			t.Errorf("parseIgnoreOlder(%q) accepted", v)
		}
	}
	for v, want := range map[string]string{"head": "head", "Tail": "tail", " AUTO ": "auto"} {
		if got, err := parseReadFrom(v); err != nil || got != want {
			t.Errorf("parseReadFrom(%q) = %q, %v; want %q", v, got, err, want)
		}
	}
	for v, want := range map[string]string{"RFC3339": "rfc3339", "epoch-millis": "epoch-millis", "2006-01-02 15:04:05": "2006-01-02 15:04:05"} {
		if got, err := parseTimeFormat(v); err != nil || got != want {
			t.Errorf("parseTimeFormat(%q) = %q, %v; want %q", v, got, err, want)
		}
	}
}

func TestParseRateLimit(t *testing.T) {
	for _, tt := range []struct {
		v            string
		bytes, lines int64
	}{
		{"1MiB/s", 1 << 20, 0},
		{"1Mi/s", 1 << 20, 0},
		{"500KB/s", 500_000, 0},
		{"500k/s", 500_000, 0},
		{"1.5GiB/s", 3 << 29, 0},
		{"0.5B/s", 1, 0}, // rounded up: more than zero stays so
		{"100 B/s", 100, 0},
		{"1000 lines/s", 0, 1000},
		{"1 line/s", 0, 1},
		{" 2Mi/s , 5000 lines/s ", 2 << 20, 5000},
		{"5000 lines/s,2MB/s", 2_000_000, 5000},
		{"none", 0, 0},
		{"999999999GiB/s", 999_999_999 << 30, 0},
	} {
		got, err := parseRateLimit(tt.v)
		if err != nil || got.BytesPerSecond != tt.bytes || got.LinesPerSecond != tt.lines {
			t.Errorf("parseRateLimit(%q) = %+v, %v; want %d B/s, %d lines/s", tt.v, got.RateLimit, err, tt.bytes, tt.lines)
		}
	}
	for _, v := range []string{"", "1MiB", "1mib/s", "1 MIB/s", "1000/s", "0B/s", "0.0 lines/s", "-1MiB/s", "1.5 lines/s",
		"1MiB/s,2MiB/s", "1 lines/s, 2 lines/s", "1MiB/s 1000 lines/s", "1TiB/s", "1MiB/sec", "1MiB/s,", "1m/s", "1e6B/s",
		"1000000000GiB/s", "NONE", "none, 1MiB/s"} {
		if r, err := parseRateLimit(v); err == nil {
			t.Errorf("parseRateLimit(%q) = %+v, want an error", v, r.RateLimit)
		}
	}
}

// TestRateLimitFromPolicy: the policy's default applies to every tailed container, the pod's
// own value replaces it, and the maximum fills what a value leaves open.
func TestRateLimitFromPolicy(t *testing.T) {
	for _, tt := range []struct {
		name, policy string
		ann          []string
		want         map[string]*config.RateLimit
	}{
		{"none anywhere", "", nil, map[string]*config.RateLimit{"app": nil, "worker": nil}},
		{"policy default", "rateLimit: 1MiB/s", nil,
			map[string]*config.RateLimit{"app": {BytesPerSecond: 1 << 20}, "worker": {BytesPerSecond: 1 << 20}}},
		{"pod per container", "rateLimit: 1MiB/s", []string{AnnotationRateLimit + ".worker", "none"},
			map[string]*config.RateLimit{"app": {BytesPerSecond: 1 << 20}, "worker": nil}},
		{"maximum alone is the default", "maxRateLimit: 2MiB/s, 5000 lines/s", nil,
			map[string]*config.RateLimit{"app": {BytesPerSecond: 2 << 20, LinesPerSecond: 5000}, "worker": {BytesPerSecond: 2 << 20, LinesPerSecond: 5000}}},
		{"maximum fills the open dimension", "maxRateLimit: 2MiB/s, 5000 lines/s", []string{AnnotationRateLimit + ".app", "100 lines/s"},
			map[string]*config.RateLimit{"app": {BytesPerSecond: 2 << 20, LinesPerSecond: 100}, "worker": {BytesPerSecond: 2 << 20, LinesPerSecond: 5000}}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			p, err := ParsePolicy([]byte(tt.policy))
			if err != nil {
				t.Fatal(err)
			}
			ann := tailApp(append([]string{AnnotationTail + ".worker", "/work/*.log"}, tt.ann...)...)
			out, _, err := Inject(basePod(ann), nil, p)
			if err != nil {
				t.Fatal(err)
			}
			cfg := agentConfigOf(t, agentOf(out))
			got := map[string]*config.RateLimit{}
			for _, in := range cfg.Inputs {
				got[in.Container] = in.RateLimit
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("rate limits (-want +got):\n%s", diff)
			}
		})
	}
}
