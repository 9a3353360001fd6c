package injector

import (
	"errors"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// basePod has app containers "app" (logs on emptyDir "logs" at /var/log/app) and "worker"
// (logs on emptyDir "work" at /work), and an init container "migrate".
func basePod(ann map[string]string) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: "shop", Annotations: ann},
		Spec: corev1.PodSpec{
			InitContainers: []corev1.Container{{Name: "migrate", Image: "example.com/migrate:1"}},
			Containers: []corev1.Container{
				{Name: "app", Image: "example.com/web:1", VolumeMounts: []corev1.VolumeMount{{Name: "logs", MountPath: "/var/log/app"}}},
				{Name: "worker", Image: "example.com/worker:1", VolumeMounts: []corev1.VolumeMount{{Name: "work", MountPath: "/work"}}},
			},
			Volumes: []corev1.Volume{
				{Name: "logs", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}},
				{Name: "work", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}},
			},
		},
	}
}

// tailApp is the least a pod needs to be injected.
func tailApp(more ...string) map[string]string {
	ann := map[string]string{AnnotationTail + ".app": "/var/log/app/*.log", AnnotationUpstream: "fluentd.logging:24224"}
	for i := 0; i+1 < len(more); i += 2 {
		ann[more[i]] = more[i+1]
	}
	return ann
}

func singleContainer(p *corev1.Pod) { p.Spec.Containers = p.Spec.Containers[:1] }

// subPathEnv gives container "app" env and a log mount whose subPathExpr is the last
// variable's name.
func subPathEnv(env ...corev1.EnvVar) func(*corev1.Pod) {
	return func(p *corev1.Pod) {
		p.Spec.Containers[0].Env = env
		p.Spec.Containers[0].VolumeMounts[0].SubPathExpr = "$(" + env[len(env)-1].Name + ")"
	}
}

// TestInjectRefuses pins the message of every mistake a user can make: each names the
// annotation (or policy field) and says what was expected.
func TestInjectRefuses(t *testing.T) {
	tests := []struct {
		name   string
		ann    map[string]string
		ns     map[string]string
		policy string
		pod    func(*corev1.Pod)
		want   string
	}{
		// Globs.
		{name: "relative path", ann: tailApp(AnnotationTail+".app", "var/log/app/*.log"),
			want: `sidelog.io/tail.app: "var/log/app/*.log" is not absolute: it must start with /`},
		{name: "dot dot", ann: tailApp(AnnotationTail+".app", "/var/log/app/../../etc/*"),
			want: `sidelog.io/tail.app: "/var/log/app/../../etc/*" is not clean (no //, ., .. or trailing /): did you mean "/var/etc/*"?`},
		{name: "dot dot at root", ann: tailApp(AnnotationTail+".app", "/../x"),
			want: `sidelog.io/tail.app: "/../x" is not clean (no //, ., .. or trailing /): did you mean "/x"?`},
		{name: "bad glob", ann: tailApp(AnnotationTail+".app", "/var/log/app/[a-.log"),
			want: `sidelog.io/tail.app: "/var/log/app/[a-.log": bad pattern in "[a-.log": syntax error in pattern`},
		{name: "value too long", ann: tailApp(AnnotationTail+".app", "/var/log/app/"+strings.Repeat("x", 20000)+".log"),
			want: `sidelog.io/tail.app: value of 20017 bytes, more than the 16384 a sidelog annotation may hold`},
		{name: "partial double star", ann: tailApp(AnnotationTail+".app", "/var/log/app/**.log"),
			want: `sidelog.io/tail.app: "/var/log/app/**.log": ** must be a whole path segment`},
		{name: "empty tail", ann: tailApp(AnnotationTail+".app", " , "),
			want: `sidelog.io/tail.app: no globs: want a comma-separated list of absolute paths such as /var/log/app/*.log`},
		{name: "too many globs", ann: tailApp(AnnotationTail+".app", "/var/log/app/a,/var/log/app/b,/var/log/app/c"), policy: "maxGlobs: 2",
			want: `sidelog.io/tail.app: 3 globs, more than the 2 the cluster policy allows (maxGlobs)`},
		{name: "bad exclude", ann: tailApp(AnnotationExclude+".app", "*.gz"),
			want: `sidelog.io/exclude.app: "*.gz" is not absolute: it must start with /`},

		// Containers.
		{name: "unknown container", ann: tailApp(AnnotationTail+".api", "/var/log/api/*.log"),
			want: `sidelog.io/tail.api: the pod has no app container "api"; its app containers are app, worker`},
		{name: "init container", ann: tailApp(AnnotationTail+".migrate", "/var/log/*.log"),
			want: `sidelog.io/tail.migrate: "migrate" is an init container; only app containers (app, worker) can be tailed`},
		{name: "tail without container in a two-container pod", ann: map[string]string{AnnotationTail: "/var/log/app/*.log"},
			want: `sidelog.io/tail: this shorthand is for a pod with one app container, and this pod has 2 (app, worker): use sidelog.io/tail.<container>`},
		{name: "tail twice", ann: tailApp(AnnotationTail, "/var/log/app/*.log"), pod: singleContainer,
			want: `sidelog.io/tail: set either sidelog.io/tail or sidelog.io/tail.app, not both`},
		{name: "option for an untailed container", ann: tailApp(AnnotationMultiline+".worker", "java"),
			want: `sidelog.io/multiline.worker: container "worker" has no tail globs (sidelog.io/tail.worker), so this has no effect`},
		{name: "option for an unknown container", ann: tailApp(AnnotationParser+".db", "json"),
			want: `sidelog.io/parser.db: the pod has no app container "db"; its app containers are app, worker`},
		{name: "options without tail", ann: map[string]string{AnnotationMultiline + ".app": "java", AnnotationUpstream: "fluentd:24224"},
			want: `sidelog.io/multiline.app: the pod has no sidelog.io/tail or sidelog.io/tail.<container> annotation, so nothing is tailed and this has no effect`},
		{name: "same glob twice", ann: tailApp(AnnotationTail+".worker", "/var/log/app/*.log"),
			pod: func(p *corev1.Pod) {
				p.Spec.Containers[1].VolumeMounts[0].MountPath = "/var/log/app"
				p.Spec.Containers[1].VolumeMounts[0].Name = "logs"
			},
			want: `sidelog.io/tail.worker: /var/log/app/*.log is tailed for container "app" too (sidelog.io/tail.app): the agent would ship every line twice`},
		{name: "windows", ann: tailApp(), pod: func(p *corev1.Pod) { p.Spec.OS = &corev1.PodOS{Name: corev1.Windows} },
			want: `sidelog.io/tail: the agent runs on Linux only, and the pod's spec.os.name is "windows"; remove the sidelog.io/ annotations from pods for Windows nodes, or set sidelog.io/inject: "false"`},
		{name: "windows by nodeSelector", ann: tailApp(),
			pod:  func(p *corev1.Pod) { p.Spec.NodeSelector = map[string]string{corev1.LabelOSStable: "windows"} },
			want: `sidelog.io/tail: the agent runs on Linux only, and the pod's spec.nodeSelector kubernetes.io/os: windows places it on other nodes; remove the sidelog.io/ annotations from pods for Windows nodes, or set sidelog.io/inject: "false"`},
		{name: "windows by node affinity", ann: tailApp(),
			pod: func(p *corev1.Pod) {
				p.Spec.Affinity = &corev1.Affinity{NodeAffinity: &corev1.NodeAffinity{RequiredDuringSchedulingIgnoredDuringExecution: &corev1.NodeSelector{
					NodeSelectorTerms: []corev1.NodeSelectorTerm{
						{MatchExpressions: []corev1.NodeSelectorRequirement{{Key: corev1.LabelOSStable, Operator: corev1.NodeSelectorOpIn, Values: []string{"windows"}}}},
						{MatchExpressions: []corev1.NodeSelectorRequirement{
							{Key: "pool", Operator: corev1.NodeSelectorOpExists},
							{Key: corev1.LabelOSStable, Operator: corev1.NodeSelectorOpNotIn, Values: []string{"linux"}},
						}},
					},
				}}}
			},
			want: `sidelog.io/tail: the agent runs on Linux only, and the pod's spec.affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution (kubernetes.io/os NotIn [linux]) places it on other nodes; remove the sidelog.io/ annotations from pods for Windows nodes, or set sidelog.io/inject: "false"`},

		// Multiline and parser.
		{name: "bad regex", ann: tailApp(AnnotationMultiline+".app", `^(\d{4}`),
			want: "sidelog.io/multiline.app: bad regular expression for the first line of a record: error parsing regexp: missing closing ): `^(\\d{4}`"},
		{name: "unknown preset", ann: tailApp(AnnotationMultiline+".app", "javascript"),
			want: `sidelog.io/multiline.app: unknown preset "javascript": want one of java, python, go, ruby, none, or a regular expression for the first line of a record (a lowercase word alone is read as a preset name; anchor a word regex as ^word)`},
		{name: "misspelt preset", ann: tailApp(AnnotationMultiline, "pyton"),
			want: `sidelog.io/multiline: unknown preset "pyton" (did you mean python?): want one of java, python, go, ruby, none, or a regular expression for the first line of a record (a lowercase word alone is read as a preset name; anchor a word regex as ^word)`},
		{name: "misspelt capitalised preset", ann: tailApp(AnnotationMultiline, "Pyton"),
			want: `sidelog.io/multiline: unknown preset "Pyton" (did you mean python?): want one of java, python, go, ruby, none, or a regular expression for the first line of a record (a lowercase word alone is read as a preset name; anchor a word regex as ^word)`},
		{name: "a bad inject value and the rest at once", ann: tailApp(AnnotationInject, "maybe", Prefix+"tial.app", "/x"),
			want: `sidelog.io/inject: got "maybe", want "true" or "false"
sidelog.io/tial.app: unknown annotation; did you mean sidelog.io/tail.app?`},
		{name: "every mistake at once", ann: tailApp(AnnotationMultiline, "pyton", AnnotationParser+".app", "logfmt", Prefix+"tial.app", "/x"),
			want: `sidelog.io/multiline: unknown preset "pyton" (did you mean python?): want one of java, python, go, ruby, none, or a regular expression for the first line of a record (a lowercase word alone is read as a preset name; anchor a word regex as ^word)
sidelog.io/parser.app: got "logfmt", want "none" or "json"
sidelog.io/tial.app: unknown annotation; did you mean sidelog.io/tail.app?`},
		{name: "empty multiline", ann: tailApp(AnnotationMultiline, ""),
			want: `sidelog.io/multiline: empty: want a preset (java, python, go, ruby), a regular expression matching the first line of a record, or none`},
		{name: "bad parser", ann: tailApp(AnnotationParser+".app", "logfmt"),
			want: `sidelog.io/parser.app: got "logfmt", want "none" or "json"`},

		// Reading: start position, age limit, event time.
		{name: "bad read-from", ann: tailApp(AnnotationReadFrom+".app", "end"),
			want: `sidelog.io/read-from.app: got "end", want "head", "tail" or "auto"`},
		{name: "bad ignore-older", ann: tailApp(AnnotationIgnoreOlder, "a week"),
			want: `sidelog.io/ignore-older: got "a week", want a positive duration such as "36h" or a number of days such as "7d"`},
		{name: "zero ignore-older", ann: tailApp(AnnotationIgnoreOlder+".app", "0s"),
			want: `sidelog.io/ignore-older.app: got "0s", want a positive duration such as "36h" or a number of days such as "7d"`},
		{name: "rate-limit without a unit", ann: tailApp(AnnotationRateLimit+".app", "1000/s"),
			want: `sidelog.io/rate-limit.app: got "1000/s", want bytes and/or lines per second such as "1MiB/s", "500KB/s", "1000 lines/s" or "2Mi/s, 5000 lines/s", or none (say what is counted: B/s for bytes, lines/s for lines)`},
		{name: "rate-limit in lowercase", ann: tailApp(AnnotationRateLimit, "1mb/s"),
			want: `sidelog.io/rate-limit: got "1mb/s", want bytes and/or lines per second such as "1MiB/s", "500KB/s", "1000 lines/s" or "2Mi/s, 5000 lines/s", or none (units are case-sensitive, as in Kubernetes quantities: k, K, M, G, Ki, Mi, Gi, with or without B)`},
		{name: "rate-limit without /s", ann: tailApp(AnnotationRateLimit, "1MiB"),
			want: `sidelog.io/rate-limit: got "1MiB", want bytes and/or lines per second such as "1MiB/s", "500KB/s", "1000 lines/s" or "2Mi/s, 5000 lines/s", or none (a rate per second ends in /s)`},
		{name: "rate-limit zero", ann: tailApp(AnnotationRateLimit, "0MiB/s"),
			want: `sidelog.io/rate-limit: got "0MiB/s", want bytes and/or lines per second such as "1MiB/s", "500KB/s", "1000 lines/s" or "2Mi/s, 5000 lines/s", or none (a rate must be more than zero; none is no limit)`},
		{name: "rate-limit twice in bytes", ann: tailApp(AnnotationRateLimit, "1MiB/s, 2MiB/s"),
			want: `sidelog.io/rate-limit: got "1MiB/s, 2MiB/s", want bytes and/or lines per second such as "1MiB/s", "500KB/s", "1000 lines/s" or "2Mi/s, 5000 lines/s", or none (at most one byte rate and one line rate)`},
		{name: "rate-limit above the maximum", ann: tailApp(AnnotationRateLimit+".app", "4MiB/s"), policy: "maxRateLimit: 2MiB/s, 5000 lines/s",
			want: `sidelog.io/rate-limit.app: 4MiB/s reads 4194304 bytes a second, more than the cluster policy's maxRateLimit 2MiB/s, 5000 lines/s (2097152)`},
		{name: "namespace rate-limit above the maximum", ann: tailApp(), ns: map[string]string{AnnotationRateLimit: "10000 lines/s"}, policy: "maxRateLimit: 2MiB/s, 5000 lines/s",
			want: `namespace annotation sidelog.io/rate-limit: 10000 lines/s reads 10000 lines a second, more than the cluster policy's maxRateLimit 2MiB/s, 5000 lines/s (5000)`},
		{name: "rate-limit none under a maximum", ann: tailApp(AnnotationRateLimit, "none"), policy: "maxRateLimit: 2MiB/s",
			want: `sidelog.io/rate-limit: the cluster policy's maxRateLimit is 2MiB/s: a container cannot be read without a limit; set a rate within it`},
		{name: "rate-limit of a container without tail globs", ann: tailApp(AnnotationRateLimit+".worker", "1MiB/s"),
			want: `sidelog.io/rate-limit.worker: container "worker" has no tail globs (sidelog.io/tail.worker), so this has no effect`},
		{name: "rate-limit not allowed by the policy", ann: tailApp(AnnotationRateLimit, "1MiB/s"), policy: "allowPodOverride: [upstream]",
			want: `sidelog.io/rate-limit: the cluster policy does not let pods set sidelog.io/rate-limit (allowPodOverride: [upstream]); set it on the namespace, or ask the cluster admin to allow it`},
		{name: "empty time-key", ann: tailApp(AnnotationParser, "json", AnnotationTimeKey, " "),
			want: `sidelog.io/time-key: empty: want the name of a top-level field of the JSON lines, such as time or ts`},
		{name: "bad time-format", ann: tailApp(AnnotationParser, "json", AnnotationTimeKey, "ts", AnnotationTimeFormat, "iso8601"),
			want: `sidelog.io/time-format: "iso8601" is neither a preset (rfc3339, rfc3339nano, epoch-seconds, epoch-millis, epoch-micros, epoch-nanos) nor a Go time layout with a year and an hour (such as "2006-01-02 15:04:05.000")`},
		{name: "time-key without the json parser", ann: tailApp(AnnotationTimeKey+".app", "ts"),
			want: `sidelog.io/time-key.app: container "app" has parser "none": only a JSON line has fields to take the time from; set sidelog.io/parser.app: json too`},
		{name: "time-format without time-key", ann: tailApp(AnnotationParser, "json", AnnotationTimeFormat, "epoch-seconds"),
			want: `sidelog.io/time-format: no sidelog.io/time-key for container "app": set it to the field whose value this format reads`},
		{name: "read-from for a container not tailed", ann: tailApp(AnnotationReadFrom+".worker", "tail"),
			want: `sidelog.io/read-from.worker: container "worker" has no tail globs (sidelog.io/tail.worker), so this has no effect`},
		{name: "time-key not allowed by the policy", ann: tailApp(AnnotationParser, "json", AnnotationTimeKey, "ts"), policy: "allowPodOverride: [parser, upstream]",
			want: `sidelog.io/time-key: the cluster policy does not let pods set sidelog.io/time-key (allowPodOverride: [parser, upstream]); set it on the namespace, or ask the cluster admin to allow it`},

		// Upstream.
		{name: "upstream without port", ann: tailApp(AnnotationUpstream, "fluentd.logging"),
			want: `sidelog.io/upstream: "fluentd.logging" is not host:port: address fluentd.logging: missing port in address (want host:port such as fluentd.logging:24224)`},
		{name: "upstream port out of range", ann: tailApp(AnnotationUpstream, "fluentd:70000"),
			want: `sidelog.io/upstream: "fluentd:70000": port must be a number from 1 to 65535 (want host:port such as fluentd.logging:24224)`},
		{name: "upstream bad host", ann: tailApp(AnnotationUpstream, "fluent_d:24224"),
			want: `sidelog.io/upstream: "fluent_d:24224": host "fluent_d" is neither an IP address nor a DNS name`},
		{name: "upstream no host", ann: tailApp(AnnotationUpstream, ":24224"),
			want: `sidelog.io/upstream: ":24224" has no host (want host:port such as fluentd.logging:24224)`},
		{name: "upstream twice", ann: tailApp(AnnotationUpstream, "a:1,b:2,a:1"),
			want: `sidelog.io/upstream: "a:1" is listed twice`},
		{name: "upstream empty", ann: tailApp(AnnotationUpstream, ","),
			want: `sidelog.io/upstream: no address: want host:port[,host:port...] such as fluentd.logging:24224, or with protocol otlp http(s)://host:port[/path]`},
		{name: "too many upstreams", ann: tailApp(AnnotationUpstream, "a:1,b:1,c:1"), policy: "maxUpstreams: 2",
			want: `sidelog.io/upstream: 3 addresses, more than the 2 the cluster policy allows (maxUpstreams)`},
		{name: "tls not a boolean", ann: tailApp(AnnotationUpstreamTLS, "on"),
			want: `sidelog.io/upstream-tls: got "on", want "true" or "false"`},
		{name: "server name with port", ann: tailApp(AnnotationUpstreamTLS, "true", AnnotationUpstreamServerName, "fluentd.logging:24224"),
			want: `sidelog.io/upstream-server-name: got "fluentd.logging:24224", want a DNS name such as fluentd.logging.svc or an IP address`},
		{name: "ca not a secret name", ns: map[string]string{AnnotationUpstreamCA: "Fluentd_CA"}, ann: tailApp(),
			want: `namespace annotation sidelog.io/upstream-ca: got "Fluentd_CA": "Fluentd_CA" is not a Secret name; want <secret> (key ca.crt) or <secret>/<key>, naming a Secret in the pod's namespace`},
		{name: "ca bad key", ann: tailApp(AnnotationUpstreamCA, "fluentd-ca/ca crt"),
			want: `sidelog.io/upstream-ca: got "fluentd-ca/ca crt": "ca crt" is not a Secret key (letters, digits, '-', '_' and '.'); want <secret> (key ca.crt) or <secret>/<key>, naming a Secret in the pod's namespace`},
		{name: "shared key empty key", ann: tailApp(AnnotationUpstreamSharedKey, "fluentd-forward/"),
			want: `sidelog.io/upstream-shared-key: got "fluentd-forward/": "" is not a Secret key (letters, digits, '-', '_' and '.'); want <secret> (key shared_key) or <secret>/<key>, naming a Secret in the pod's namespace`},
		{name: "user without a shared key", ann: tailApp(AnnotationUpstreamUser, "fluentd-user"),
			want: `sidelog.io/upstream-user: user authentication is part of the forward protocol's shared-key handshake: set sidelog.io/upstream-shared-key too`},
		{name: "user bad secret", ann: tailApp(AnnotationUpstreamUser, "Fluentd"),
			want: `sidelog.io/upstream-user: got "Fluentd": "Fluentd" is not a Secret name; want <secret> (keys username and password, a kubernetes.io/basic-auth Secret) or <secret>/<key> (the password under <key>), naming a Secret in the pod's namespace`},
		{name: "policy user without a shared key", ann: tailApp(), policy: "upstreamUser: fluentd-user",
			want: `cluster policy field upstreamUser: user authentication is part of the forward protocol's shared-key handshake: set sidelog.io/upstream-shared-key too`},
		{name: "shared key not allowed on pods", ann: tailApp(AnnotationUpstreamSharedKey, "mine"), policy: "allowPodOverride: [upstream]",
			want: `sidelog.io/upstream-shared-key: the cluster policy does not let pods set sidelog.io/upstream-shared-key (allowPodOverride: [upstream]); set it on the namespace, or ask the cluster admin to allow it`},
		{name: "no upstream anywhere", ann: map[string]string{AnnotationTail + ".app": "/var/log/app/*.log"},
			want: `sidelog.io/upstream: no upstream: set it on the pod or its namespace to the aggregator's host:port, or set upstream in the cluster policy`},
		{name: "bad namespace upstream", ann: map[string]string{AnnotationTail + ".app": "/var/log/app/*.log"}, ns: map[string]string{AnnotationUpstream: "fluentd"},
			want: `namespace annotation sidelog.io/upstream: "fluentd" is not host:port: address fluentd: missing port in address (want host:port such as fluentd.logging:24224)`},

		// OTLP.
		{name: "protocol unknown", ann: tailApp(AnnotationUpstreamProtocol, "grpc"),
			want: `sidelog.io/upstream-protocol: got "grpc", want "forward" or "otlp"`},
		{name: "otlp with host:port", ann: tailApp(AnnotationUpstreamProtocol, "otlp"),
			want: `sidelog.io/upstream: "fluentd.logging:24224" is not a URL: with protocol otlp each upstream is http://host:port[/path] or https://host:port[/path] (path /v1/logs by default) (protocol otlp: sidelog.io/upstream-protocol)`},
		{name: "url with forward", ann: tailApp(AnnotationUpstream, "http://otel:4318"),
			want: `sidelog.io/upstream: "http://otel:4318" is a URL, but the protocol is forward, whose upstreams are host:port: set sidelog.io/upstream-protocol: otlp to send OTLP/HTTP (protocol forward: the default)`},
		{name: "otlp namespace url with pod host:port", ns: map[string]string{AnnotationUpstreamProtocol: "otlp"}, ann: tailApp(),
			want: `sidelog.io/upstream: "fluentd.logging:24224" is not a URL: with protocol otlp each upstream is http://host:port[/path] or https://host:port[/path] (path /v1/logs by default) (protocol otlp: namespace annotation sidelog.io/upstream-protocol)`},
		{name: "otlp url without port", ann: tailApp(AnnotationUpstreamProtocol, "otlp", AnnotationUpstream, "http://otel/v1/logs"),
			want: `sidelog.io/upstream: "http://otel/v1/logs": "otel" is not host:port: address otel: missing port in address; want http://host:port[/path] or https://host:port[/path]`},
		{name: "otlp url scheme", ann: tailApp(AnnotationUpstreamProtocol, "otlp", AnnotationUpstream, "grpc://otel:4317"),
			want: `sidelog.io/upstream: "grpc://otel:4317": scheme must be http or https; want http://host:port[/path] or https://host:port[/path]`},
		{name: "otlp url with a user", ann: tailApp(AnnotationUpstreamProtocol, "otlp", AnnotationUpstream, "https://me:pw@otel:4318"),
			want: `sidelog.io/upstream: "https://me:pw@otel:4318": no user in the URL: put credentials in headers from a Secret`},
		{name: "otlp url bad host", ann: tailApp(AnnotationUpstreamProtocol, "otlp", AnnotationUpstream, "http://otel_gw:4318"),
			want: `sidelog.io/upstream: "http://otel_gw:4318": host "otel_gw" is neither an IP address nor a DNS name`},
		{name: "otlp tls true with http", ann: tailApp(AnnotationUpstreamProtocol, "otlp", AnnotationUpstream, "http://otel:4318", AnnotationUpstreamTLS, "true"),
			want: `sidelog.io/upstream: "http://otel:4318" is plain http, but sidelog.io/upstream-tls asks for TLS: write https://`},
		{name: "otlp tls false with https", ann: tailApp(AnnotationUpstreamProtocol, "otlp", AnnotationUpstream, "https://otel:4318", AnnotationUpstreamTLS, "false"),
			want: `sidelog.io/upstream-tls: "false", but the upstream "https://otel:4318" is https:// (with protocol otlp the URL's scheme says whether TLS is on): drop this annotation or write http://`},
		{name: "otlp policy tls with http", ann: tailApp(AnnotationUpstreamProtocol, "otlp", AnnotationUpstream, "http://otel:4318"), policy: "upstreamTLS: true",
			want: `sidelog.io/upstream: "http://otel:4318" is plain http, but the cluster policy's upstreamTLS requires TLS: write https://`},
		{name: "otlp shared key", ann: tailApp(AnnotationUpstreamProtocol, "otlp", AnnotationUpstream, "http://otel:4318", AnnotationUpstreamSharedKey, "fluentd-forward"),
			want: `sidelog.io/upstream-shared-key: the forward protocol's handshake, and the protocol is otlp (sidelog.io/upstream-protocol): put credentials in a Secret named by sidelog.io/upstream-headers`},
		{name: "headers with forward", ann: tailApp(AnnotationUpstreamHeaders, "otel-token"),
			want: `sidelog.io/upstream-headers: HTTP headers are for protocol otlp, and the protocol is forward (the default): set sidelog.io/upstream-protocol: otlp, or drop this annotation`},
		{name: "headers with a key", ann: tailApp(AnnotationUpstreamProtocol, "otlp", AnnotationUpstream, "http://otel:4318", AnnotationUpstreamHeaders, "otel-token/token"),
			want: `sidelog.io/upstream-headers: got "otel-token/token": want the name of a Secret in the pod's namespace, whose every key is a header (no /<key>)`},
		{name: "compression unknown", ann: tailApp(AnnotationUpstreamCompression, "zstd"),
			want: `sidelog.io/upstream-compression: got "zstd", want "none" or "gzip"`},
		{name: "gzip with forward mode Forward", ann: tailApp(AnnotationUpstreamCompression, "gzip"), policy: "upstreamMode: Forward",
			want: `sidelog.io/upstream-compression: gzip is CompressedPackedForward, and the cluster policy's upstreamMode is Forward, whose entries cannot be compressed`},
		{name: "headers volume name taken", ann: tailApp(), pod: func(p *corev1.Pod) {
			p.Spec.Volumes = append(p.Spec.Volumes, corev1.Volume{Name: UpstreamHeadersVolume})
		}, want: `the pod has a volume named "sidelog-upstream-headers": names sidelog-state, sidelog-podinfo, sidelog-no-token, sidelog-upstream-ca, sidelog-shared-key, sidelog-upstream-user, sidelog-upstream-headers and sidelog-logs-* are reserved for the volumes that sidelog.io/tail adds; rename the volume`},
		{name: "log volume over the headers mount", ann: tailApp(AnnotationUpstreamProtocol, "otlp", AnnotationUpstream, "http://otel:4318", AnnotationUpstreamHeaders, "otel-token",
			AnnotationTail+".app", "/etc/sidelog/upstream-headers/logs/*.log"), pod: func(p *corev1.Pod) {
			p.Spec.Containers[0].VolumeMounts = append(p.Spec.Containers[0].VolumeMounts, corev1.VolumeMount{Name: "logs", MountPath: "/etc/sidelog/upstream-headers/logs"})
		}, want: `sidelog.io/tail.app: /etc/sidelog/upstream-headers/logs/*.log is on volume "logs" mounted at /etc/sidelog/upstream-headers/logs, which overlaps the agent's own mount of the upstream headers (sidelog.io/upstream-headers) at /etc/sidelog/upstream-headers; write the logs elsewhere`},

		// Misspelt and misplaced keys.
		{name: "misspelt option", ann: tailApp("sidelog.io/multilne.app", "java"),
			want: `sidelog.io/multilne.app: unknown annotation; did you mean sidelog.io/multiline.app?`},
		{name: "transposed letters", ann: map[string]string{"sidelog.io/tial.app": "/var/log/app/*.log"},
			want: `sidelog.io/tial.app: unknown annotation; did you mean sidelog.io/tail.app?`},
		{name: "dash for dot", ann: map[string]string{"sidelog.io/tail-app": "/var/log/app/*.log"},
			want: `sidelog.io/tail-app: unknown annotation; did you mean sidelog.io/tail.app?`},
		{name: "capitalised", ann: tailApp("sidelog.io/Upstream", "a:1"),
			want: `sidelog.io/Upstream: unknown annotation; did you mean sidelog.io/upstream?`},
		{name: "resource key", ann: tailApp("sidelog.io/agent-request-cpu", "1"),
			want: `sidelog.io/agent-request-cpu: unknown annotation; did you mean sidelog.io/agent-requests-cpu?`},
		{name: "unknown option", ann: tailApp("sidelog.io/colour", "red"),
			want: `sidelog.io/colour: unknown annotation; known: sidelog.io/inject, sidelog.io/tail[.<container>], sidelog.io/exclude[.<container>], sidelog.io/multiline[.<container>], sidelog.io/parser[.<container>], sidelog.io/read-from[.<container>], sidelog.io/ignore-older[.<container>], sidelog.io/time-key[.<container>], sidelog.io/time-format[.<container>], sidelog.io/rate-limit[.<container>], sidelog.io/upstream, sidelog.io/upstream-protocol, sidelog.io/upstream-headers, sidelog.io/upstream-compression, sidelog.io/upstream-tls, sidelog.io/upstream-server-name, sidelog.io/upstream-ca, sidelog.io/upstream-shared-key, sidelog.io/upstream-user, sidelog.io/sidecar-mode, sidelog.io/agent-requests-cpu, sidelog.io/agent-requests-memory, sidelog.io/agent-limits-cpu, sidelog.io/agent-limits-memory, sidelog.io/metrics-port, sidelog.io/status, sidelog.io/cleanup[.<container>]`},
		{name: "misspelt prefix", ann: map[string]string{"sidlog.io/tail.app": "/var/log/app/*.log"},
			want: `sidlog.io/tail.app: unknown annotation prefix "sidlog.io/"; did you mean sidelog.io/tail.app?`},
		{name: "other domain", ann: map[string]string{"sidelog.dev/tail": "/var/log/app/*.log"},
			want: `sidelog.dev/tail: unknown annotation prefix "sidelog.dev/"; did you mean sidelog.io/tail?`},
		{name: "suffix on a pod option", ann: tailApp("sidelog.io/upstream.app", "a:1"),
			want: `sidelog.io/upstream.app: sidelog.io/upstream applies to the whole pod and takes no .<container> suffix`},
		{name: "empty suffix", ann: tailApp("sidelog.io/parser.", "json"),
			want: `sidelog.io/parser.: missing container name: want sidelog.io/parser.<container>`},
		{name: "misspelt namespace key", ann: tailApp(), ns: map[string]string{"sidelog.io/upstraem": "a:1"},
			want: `namespace annotation sidelog.io/upstraem: unknown annotation; did you mean sidelog.io/upstream?`},
		{name: "tail on namespace", ann: tailApp(), ns: map[string]string{AnnotationTail + ".app": "/var/log/*.log"},
			want: `namespace annotation sidelog.io/tail.app: tail globs are set on pods, not namespaces: only a pod knows which files it writes`},
		{name: "status on namespace", ann: tailApp(), ns: map[string]string{AnnotationStatus: "{}"},
			want: `namespace annotation sidelog.io/status: written by sidelog on pods, not set on namespaces; remove it`},
		{name: "bad inject", ann: tailApp(AnnotationInject, "no"),
			want: `sidelog.io/inject: got "no", want "true" or "false"`},
		{name: "inject annotation for the label", ann: tailApp(), ns: map[string]string{AnnotationInject: "enabled"},
			want: `namespace annotation sidelog.io/inject: got "enabled", want "true" or "false" (the namespace opt-in is the label sidelog.io/inject=enabled, not an annotation)`},
		{name: "bad namespace inject", ann: tailApp(), ns: map[string]string{AnnotationInject: "off"},
			want: `namespace annotation sidelog.io/inject: got "off", want "true" or "false"`},

		// Policy restrictions.
		{name: "override not allowed", ann: tailApp(AnnotationUpstream, "elsewhere:24224"), policy: "allowPodOverride: [multiline, parser]",
			want: `sidelog.io/upstream: the cluster policy does not let pods set sidelog.io/upstream (allowPodOverride: [multiline, parser]); set it on the namespace, or ask the cluster admin to allow it`},
		{name: "nothing may be overridden", ann: tailApp(AnnotationExclude+".app", "/var/log/app/x"), policy: "{allowPodOverride: [], upstream: [a:1]}",
			want: `sidelog.io/exclude.app: the cluster policy does not let pods set sidelog.io/exclude (allowPodOverride: []); set it on the namespace, or ask the cluster admin to allow it
sidelog.io/upstream: the cluster policy does not let pods set sidelog.io/upstream (allowPodOverride: []); set it on the namespace, or ask the cluster admin to allow it`},

		// Sidecar mode.
		{name: "bad mode", ann: tailApp(AnnotationSidecarMode, "sidecar"),
			want: `sidelog.io/sidecar-mode: got "sidecar", want "native", "legacy" or "auto"`},
		{name: "legacy for a Job's pod", ann: tailApp(AnnotationSidecarMode, "legacy"),
			pod: func(p *corev1.Pod) {
				p.OwnerReferences = []metav1.OwnerReference{{APIVersion: "batch/v1", Kind: "Job", Name: "report"}}
			},
			want: `sidelog.io/sidecar-mode: legacy mode adds the agent as a regular container, which keeps running after the app finishes, so Job "report" would never complete; set sidelog.io/sidecar-mode: native (needs Kubernetes 1.29 or later)`},
		{name: "legacy for a pod that runs once", ann: tailApp(), ns: map[string]string{AnnotationSidecarMode: "legacy"},
			pod:  func(p *corev1.Pod) { p.Spec.RestartPolicy = corev1.RestartPolicyOnFailure },
			want: `namespace annotation sidelog.io/sidecar-mode: legacy mode adds the agent as a regular container, which keeps running after the app finishes, so a pod with restartPolicy OnFailure would never complete; set sidelog.io/sidecar-mode: native (needs Kubernetes 1.29 or later)`},
		{name: "auto chose legacy for a Job", ann: tailApp(), policy: "{sidecarMode: auto, kubernetesVersion: v1.27.4}",
			pod: func(p *corev1.Pod) {
				p.OwnerReferences = []metav1.OwnerReference{{APIVersion: "batch/v1", Kind: "Job", Name: "report"}}
			},
			want: `cluster policy field sidecarMode: legacy mode (auto chose it: the cluster policy's kubernetesVersion v1.27.4 is older than 1.29) adds the agent as a regular container, which keeps running after the app finishes, so Job "report" would never complete; set sidelog.io/sidecar-mode: native (needs Kubernetes 1.29 or later)`},

		// Resources and port.
		{name: "bad quantity", ann: tailApp(AnnotationLimitsMemory, "128MB!"),
			want: `sidelog.io/agent-limits-memory: "128MB!" is not a quantity such as "100m" or "64Mi"`},
		{name: "zero quantity", ann: tailApp(AnnotationRequestsCPU, "0"),
			want: `sidelog.io/agent-requests-cpu: "0": must be more than zero`},
		{name: "request above policy limit", ann: tailApp(AnnotationRequestsMemory, "1Gi"),
			want: `sidelog.io/agent-requests-memory: the agent's memory request 1Gi would be more than its limit 128Mi (cluster policy field resources.limits.memory)`},
		{name: "limit below namespace request", ann: tailApp(AnnotationLimitsCPU, "10m"), ns: map[string]string{AnnotationRequestsCPU: "100m"},
			want: `sidelog.io/agent-limits-cpu: the agent's cpu limit 10m would be less than its request 100m (namespace annotation sidelog.io/agent-requests-cpu)`},
		{name: "bad port", ann: tailApp(AnnotationMetricsPort, "http"),
			want: `sidelog.io/metrics-port: got "http", want a port number from 1 to 65535`},
		{name: "port taken", ann: tailApp(AnnotationMetricsPort, "8080"),
			pod:  func(p *corev1.Pod) { p.Spec.Containers[1].Ports = []corev1.ContainerPort{{ContainerPort: 8080}} },
			want: `sidelog.io/metrics-port: port 8080 is also container "worker"'s port; choose a port that no container of the pod uses`},
		{name: "default port taken", ann: tailApp(),
			pod:  func(p *corev1.Pod) { p.Spec.Containers[0].Ports = []corev1.ContainerPort{{ContainerPort: 2021}} },
			want: `sidelog.io/metrics-port: the agent's metrics port 2021 (the cluster policy's metricsPort) is also container "app"'s port; set sidelog.io/metrics-port to a port that no container of the pod uses`},
		{name: "port of a native sidecar", ann: tailApp(),
			pod: func(p *corev1.Pod) {
				p.Spec.InitContainers[0].RestartPolicy = ptr(corev1.ContainerRestartPolicyAlways)
				p.Spec.InitContainers[0].Ports = []corev1.ContainerPort{{ContainerPort: 2021}}
			},
			want: `sidelog.io/metrics-port: the agent's metrics port 2021 (the cluster policy's metricsPort) is also container "migrate"'s port; set sidelog.io/metrics-port to a port that no container of the pod uses`},

		// Volumes.
		{name: "path on no volume", ann: tailApp(AnnotationTail+".app", "/srv/app/logs/*.log"),
			want: `sidelog.io/tail.app: /srv/app/logs/*.log is on no volume of container "app", so the agent cannot see it; mount a volume at /srv/app/logs in "app" (an emptyDir volume will do: volumes: [{name: logs, emptyDir: {}}], volumeMounts: [{name: logs, mountPath: /srv/app/logs}]), or ask the cluster admin for missingVolume: emptyDir in the sidelog policy`},
		{name: "emptyDir over a system directory", ann: tailApp(AnnotationTail+".app", "/var/*.log"), policy: "missingVolume: emptyDir",
			want: `sidelog.io/tail.app: /var/*.log is on no volume of container "app", and an emptyDir at /var would hide the image's own files there; mount a volume at the directory the logs are written to`},
		{name: "emptyDir in proc", ann: tailApp(AnnotationTail+".app", "/proc/1/fd/*"), policy: "missingVolume: emptyDir",
			want: `sidelog.io/tail.app: /proc/1/fd/* is on no volume of container "app", and an emptyDir at /proc/1/fd would hide the image's own files there; mount a volume at the directory the logs are written to`},
		{name: "glob above the volume", ann: tailApp(AnnotationTail+".app", "/var/**/*.log"),
			want: `sidelog.io/tail.app: /var/**/*.log is on no volume of container "app", so the agent cannot see it; mount a volume at /var in "app" (an emptyDir volume will do: volumes: [{name: logs, emptyDir: {}}], volumeMounts: [{name: logs, mountPath: /var}]), or ask the cluster admin for missingVolume: emptyDir in the sidelog policy`},
		{name: "logs on a secret", ann: tailApp(),
			pod: func(p *corev1.Pod) {
				p.Spec.Volumes[0].VolumeSource = corev1.VolumeSource{Secret: &corev1.SecretVolumeSource{SecretName: "s"}}
			},
			want: `sidelog.io/tail.app: /var/log/app/*.log is on the secret volume "logs" of container "app", which is read-only and holds no logs; write the logs to a volume such as an emptyDir`},
		{name: "undefined volume", ann: tailApp(), pod: func(p *corev1.Pod) { p.Spec.Volumes = p.Spec.Volumes[1:] },
			want: `sidelog.io/tail.app: /var/log/app/*.log is on volume "logs" of container "app", which the pod does not define`},
		{name: "overlaps the agent's state", ann: tailApp(AnnotationTail+".app", "/var/lib/app/*.log"),
			pod:  func(p *corev1.Pod) { p.Spec.Containers[0].VolumeMounts[0].MountPath = "/var/lib" },
			want: `sidelog.io/tail.app: /var/lib/app/*.log is on volume "logs" mounted at /var/lib, which overlaps the agent's own checkpoint directory /var/lib/sidelog; write the logs elsewhere`},
		{name: "log volume at the shared key's mount", ann: tailApp(AnnotationTail+".app", "/etc/sidelog/shared-key/*.log", AnnotationUpstreamSharedKey, "fluentd-forward"),
			pod:  func(p *corev1.Pod) { p.Spec.Containers[0].VolumeMounts[0].MountPath = SharedKeyDir },
			want: `sidelog.io/tail.app: /etc/sidelog/shared-key/*.log is on volume "logs" mounted at /etc/sidelog/shared-key, which overlaps the agent's own mount of the shared key (sidelog.io/upstream-shared-key) at /etc/sidelog/shared-key; write the logs elsewhere`},
		{name: "log volume at the user's mount", ann: tailApp(AnnotationTail+".app", "/etc/sidelog/upstream-user/*.log", AnnotationUpstreamSharedKey, "fluentd-forward", AnnotationUpstreamUser, "fluentd-user"),
			pod:  func(p *corev1.Pod) { p.Spec.Containers[0].VolumeMounts[0].MountPath = UserDir },
			want: `sidelog.io/tail.app: /etc/sidelog/upstream-user/*.log is on volume "logs" mounted at /etc/sidelog/upstream-user, which overlaps the agent's own mount of the upstream user (sidelog.io/upstream-user) at /etc/sidelog/upstream-user; write the logs elsewhere`},
		{name: "log volume over the token directory", ann: tailApp(AnnotationTail+".app", "/var/run/app/*.log"),
			pod:  func(p *corev1.Pod) { p.Spec.Containers[0].VolumeMounts[0].MountPath = "/var/run" },
			want: `sidelog.io/tail.app: /var/run/app/*.log is on volume "logs" mounted at /var/run, which overlaps the agent's own empty service-account token directory /var/run/secrets/kubernetes.io/serviceaccount (not mounted when the pod sets automountServiceAccountToken: false); write the logs elsewhere`},
		{name: "two volumes at one path", ann: tailApp(AnnotationTail+".worker", "/var/log/app/worker-*.log"),
			pod:  func(p *corev1.Pod) { p.Spec.Containers[1].VolumeMounts[0].MountPath = "/var/log/app" },
			want: `sidelog.io/tail.worker: /var/log/app is volume "work" in container "worker", but container "app" (sidelog.io/tail.app) mounts volume "logs" there; the agent has one file system, so write these logs to different paths`},
		{name: "subPathExpr from envFrom", ann: tailApp(),
			pod: func(p *corev1.Pod) {
				p.Spec.Containers[0].VolumeMounts[0].SubPathExpr = "$(SHARD)"
				p.Spec.Containers[0].EnvFrom = []corev1.EnvFromSource{{ConfigMapRef: &corev1.ConfigMapEnvSource{LocalObjectReference: corev1.LocalObjectReference{Name: "env"}}}}
			},
			want: `sidelog.io/tail.app: the subPathExpr "$(SHARD)" of container "app" refers to $(SHARD), and the container does not define it in env (envFrom cannot be shared with the agent); the agent could not find the same directory`},
		{name: "subPathExpr with the agent's variable defined otherwise", ann: tailApp(),
			pod: func(p *corev1.Pod) {
				p.Spec.Containers[0].VolumeMounts[0].SubPathExpr = "$(POD_NAME)"
				p.Spec.Containers[0].Env = []corev1.EnvVar{{Name: "POD_NAME", Value: "fixed"}}
			},
			want: `sidelog.io/tail.app: the subPathExpr "$(POD_NAME)" of container "app" refers to $(POD_NAME), which the container defines differently from the agent's own POD_NAME`},
		{name: "subPathExpr variable defined differently by two tailed containers",
			ann: tailApp(AnnotationTail+".worker", "/work/*.log"),
			pod: func(p *corev1.Pod) {
				for i, shard := range []string{"a", "b"} {
					p.Spec.Containers[i].VolumeMounts[0].SubPathExpr = "$(SHARD)"
					p.Spec.Containers[i].Env = []corev1.EnvVar{{Name: "SHARD", Value: shard}}
				}
			},
			want: `sidelog.io/tail.worker: the subPathExpr "$(SHARD)" of container "worker" refers to $(SHARD), which another tailed container defines differently`},
		{name: "subPathExpr with GODEBUG", ann: tailApp(), pod: subPathEnv(corev1.EnvVar{Name: "GODEBUG", Value: "x509sha1=1"}),
			want: `sidelog.io/tail.app: the subPathExpr "$(GODEBUG)" of container "app" refers to $(GODEBUG), a name that would change the agent's runtime, trust roots or loader if the agent had it; use a plain value or a fieldRef under another name`},
		{name: "subPathExpr with SSL_CERT_FILE", ann: tailApp(), pod: subPathEnv(corev1.EnvVar{Name: "SSL_CERT_FILE", Value: "/var/log/app/ca.pem"}),
			want: `sidelog.io/tail.app: the subPathExpr "$(SSL_CERT_FILE)" of container "app" refers to $(SSL_CERT_FILE), a name that would change the agent's runtime, trust roots or loader if the agent had it; use a plain value or a fieldRef under another name`},
		{name: "subPathExpr with the loader's variable", ann: tailApp(), pod: subPathEnv(corev1.EnvVar{Name: "LD_PRELOAD", Value: "/var/log/app/x.so"}),
			want: `sidelog.io/tail.app: the subPathExpr "$(LD_PRELOAD)" of container "app" refers to $(LD_PRELOAD), a name that would change the agent's runtime, trust roots or loader if the agent had it; use a plain value or a fieldRef under another name`},
		{name: "subPathExpr with a lowercase proxy", ann: tailApp(), pod: subPathEnv(corev1.EnvVar{Name: "https_proxy", Value: "evil:3128"}),
			want: `sidelog.io/tail.app: the subPathExpr "$(https_proxy)" of container "app" refers to $(https_proxy), a name that would change the agent's runtime, trust roots or loader if the agent had it; use a plain value or a fieldRef under another name`},
		{name: "subPathExpr with a Secret", ann: tailApp(),
			pod:  subPathEnv(corev1.EnvVar{Name: "SHARD", ValueFrom: &corev1.EnvVarSource{SecretKeyRef: &corev1.SecretKeySelector{LocalObjectReference: corev1.LocalObjectReference{Name: "s"}, Key: "k"}}}),
			want: `sidelog.io/tail.app: the subPathExpr "$(SHARD)" of container "app" refers to $(SHARD), which the container takes from a secretKeyRef: the agent gets only plain values and fieldRefs; use a plain value or a fieldRef under another name`},
		{name: "subPathExpr with a resource", ann: tailApp(),
			pod:  subPathEnv(corev1.EnvVar{Name: "SHARD", ValueFrom: &corev1.EnvVarSource{ResourceFieldRef: &corev1.ResourceFieldSelector{Resource: "limits.memory"}}}),
			want: `sidelog.io/tail.app: the subPathExpr "$(SHARD)" of container "app" refers to $(SHARD), which the container takes from a resourceFieldRef: the agent gets only plain values and fieldRefs; use a plain value or a fieldRef under another name`},
		{name: "subPathExpr through a plain value to a ConfigMap", ann: tailApp(),
			pod: subPathEnv(
				corev1.EnvVar{Name: "BASE", ValueFrom: &corev1.EnvVarSource{ConfigMapKeyRef: &corev1.ConfigMapKeySelector{LocalObjectReference: corev1.LocalObjectReference{Name: "c"}, Key: "k"}}},
				corev1.EnvVar{Name: "SHARD", Value: "$(BASE)-1"}),
			want: `sidelog.io/tail.app: the subPathExpr "$(SHARD)" of container "app" refers to $(BASE), which the container takes from a configMapKeyRef: the agent gets only plain values and fieldRefs; use a plain value or a fieldRef under another name`},

		// Names the injector owns.
		{name: "container named like the agent", ann: tailApp(),
			pod:  func(p *corev1.Pod) { p.Spec.Containers[1].Name = AgentContainer },
			want: `the pod has a container named "sidelog-agent" but no sidelog.io/status annotation: that name is reserved for the agent that sidelog.io/tail adds; rename the container`},
		{name: "volume named like the shared key's", ann: tailApp(), pod: func(p *corev1.Pod) { p.Spec.Volumes[1].Name = SharedKeyVolume },
			want: `the pod has a volume named "sidelog-shared-key": names sidelog-state, sidelog-podinfo, sidelog-no-token, sidelog-upstream-ca, sidelog-shared-key, sidelog-upstream-user, sidelog-upstream-headers and sidelog-logs-* are reserved for the volumes that sidelog.io/tail adds; rename the volume`},
		{name: "volume named like the agent's", ann: tailApp(),
			pod: func(p *corev1.Pod) {
				p.Spec.Volumes[1].Name = StateVolume
				p.Spec.Containers[1].VolumeMounts[0].Name = StateVolume
			},
			want: `the pod has a volume named "sidelog-state": names sidelog-state, sidelog-podinfo, sidelog-no-token, sidelog-upstream-ca, sidelog-shared-key, sidelog-upstream-user, sidelog-upstream-headers and sidelog-logs-* are reserved for the volumes that sidelog.io/tail adds; rename the volume`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			pod := basePod(tt.ann)
			if tt.pod != nil {
				tt.pod(pod)
			}
			p := DefaultPolicy()
			if tt.policy != "" {
				var err error
				if p, err = ParsePolicy([]byte(tt.policy)); err != nil {
					t.Fatalf("ParsePolicy: %v", err)
				}
			}
			before := pod.DeepCopy()
			out, _, err := Inject(pod, tt.ns, p)
			if err == nil {
				t.Fatalf("Inject succeeded, want error %q", tt.want)
			}
			if got := err.Error(); got != tt.want {
				t.Errorf("error:\n got %s\nwant %s", got, tt.want)
			}
			if out != nil {
				t.Errorf("Inject returned a pod with its error")
			}
			var e *Error
			if !errors.As(err, &e) {
				t.Errorf("error is %T, want *Error", err)
			}
			if !strings.Contains(err.Error(), Prefix) && !strings.Contains(err.Error(), "cluster policy") {
				t.Errorf("error names neither an annotation nor a policy field")
			}
			if pod.String() != before.String() {
				t.Errorf("Inject modified its input")
			}
		})
	}
}

// TestInjectRefusesConfigTooLong: values each within maxValueBytes that together make an agent
// configuration too long for an environment variable, which Linux would refuse to start the
// agent with, are refused as a whole.
func TestInjectRefusesConfigTooLong(t *testing.T) {
	long := func(dir, ext string) string { return dir + "/" + strings.Repeat("x", 16000) + ext }
	ann := tailApp(
		AnnotationTail+".app", long("/var/log/app", ".log"), AnnotationExclude+".app", long("/var/log/app", ".gz"),
		AnnotationTail+".worker", long("/work", ".log"), AnnotationExclude+".worker", long("/work", ".gz"),
		AnnotationMultiline+".app", "^"+strings.Repeat("y", 16000),
	)
	_, _, err := Inject(basePod(ann), nil, nil)
	var uerr *Error
	if !errors.As(err, &uerr) || !strings.Contains(err.Error(), "more than the 65536 an environment variable can safely carry") {
		t.Fatalf("Inject = %.300v, want a user error saying the configuration is too long", err)
	}
	// Four of the five make a configuration that fits.
	delete(ann, AnnotationMultiline+".app")
	if _, out, err := Inject(basePod(ann), nil, nil); err != nil || !out.Injected {
		t.Errorf("Inject = %+v, %.300v; want the pod injected", out, err)
	}
}
