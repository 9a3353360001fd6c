package injector

// Prefix is the domain of every sidelog annotation. A key is sidelog.io/<option> for the whole
// pod or sidelog.io/<option>.<container> for one app container; any other key under the prefix
// is refused, with the nearest known key suggested.
const Prefix = "sidelog.io/"

// The annotations. Unless a comment says otherwise, each may be set on a Pod (or a pod template)
// and on its Namespace: a pod's value wins over its namespace's, the namespace's over the cluster
// policy's. A pod may set only the options that the policy's allowPodOverride lists; a
// namespace may set any option but the tail globs and the status.
const (
	// AnnotationInject set to "false" on a pod opts it out: the injector leaves the pod
	// untouched and validates nothing else. On a namespace, "false" opts its pods out unless a
	// pod says "true". Values: "true" or "false". Default "true". Only pods with tail globs are
	// ever injected; "true" alone asks for nothing.
	AnnotationInject = Prefix + "inject"

	// AnnotationTail is the comma- (or newline-) separated list of absolute globs of the log
	// files of one app container: sidelog.io/tail.<container>, or sidelog.io/tail alone when the
	// pod has exactly one app container. "**" as a whole path segment matches any number of
	// directories. Each path must lie on a volume mounted in that container (see
	// Policy.MissingVolume). Pods only: a namespace cannot know which files a pod writes.
	// No default: a pod without it gets no agent.
	AnnotationTail = Prefix + "tail"

	// AnnotationExclude lists absolute globs of files not to tail even though the tail globs
	// match them, in the same syntax as AnnotationTail: sidelog.io/exclude for every tailed
	// container, sidelog.io/exclude.<container> for one. Default none.
	AnnotationExclude = Prefix + "exclude"

	// AnnotationMultiline joins the lines of one record (a stack trace): a preset (java,
	// python, go, ruby), a Go regular expression (RE2) matching the first line of a record, or
	// "none". Preset names are matched without regard to case ("Java" is java). A value made
	// only of lowercase letters is a preset name, and so is a word near one ("Pyton" is refused
	// as a misspelt preset); anything else is a regex.
	// sidelog.io/multiline for every tailed container, sidelog.io/multiline.<container> for one.
	// Default none: one record per line.
	AnnotationMultiline = Prefix + "multiline"

	// AnnotationParser is "none" (the line is the record's log field) or "json" (the fields of
	// a JSON object line become record fields); sidelog.io/parser for every tailed container,
	// sidelog.io/parser.<container> for one. Default "none".
	AnnotationParser = Prefix + "parser"

	// AnnotationReadFrom is where the agent starts a file that it has no checkpoint for and
	// that already exists when it starts: "head" (its first byte), "tail" (its end: only lines
	// written after the agent started are shipped, as Fluent Bit's read_from_head false and the
	// OpenTelemetry filelog receiver's start_at end) or "auto". A file created while the agent
	// runs -- a new log, a rotation's new file -- is read from its head whatever this says, and
	// a file with a checkpoint resumes at it. So does every file a restarted agent (a crash, an
	// OOM kill) finds without a checkpoint: this pod wrote it, during an outage perhaps.
	//
	// Default "auto" (the policy's readFrom): "head" when every volume the container's globs
	// are on is new with the pod (emptyDir, a generic ephemeral volume), else "tail". An emptyDir
	// holds only what this pod wrote; the agent starts before the app (native sidecar), so
	// its files normally appear after the agent, and any that exist earlier (the app ran
	// before the agent, in legacy mode; the agent restarted before its first checkpoint) hold
	// lines nobody shipped: tail would lose a Job's first lines. A PersistentVolumeClaim, NFS,
	// CSI (EFS, Azure Files) or any other volume outlives the pod: its old files were shipped by
	// the pods before, and head would ship every one of them again with each new pod.
	// sidelog.io/read-from for every tailed container, sidelog.io/read-from.<container> for one.
	AnnotationReadFrom = Prefix + "read-from"

	// AnnotationIgnoreOlder leaves unread the files, found without a checkpoint, that were not
	// modified within this duration: a Go duration ("36h", "90m") or a whole number of days
	// ("7d"), as Fluent Bit's ignore_older and Vector's ignore_older_secs. A file so ignored
	// that is written to again later is read from the size it had when it was ignored: its old
	// content stays unshipped, its new lines are shipped. Files being read, and files with a
	// checkpoint, are never ignored. sidelog.io/ignore-older[.<container>]. Default the policy's
	// ignoreOlder, itself none: every file is read.
	AnnotationIgnoreOlder = Prefix + "ignore-older"

	// AnnotationTimeKey, with sidelog.io/parser json, names the top-level field of a line that
	// gives the record's event time (sidelog.io/time-format says how it is written), so that a
	// backlog shipped after an outage keeps the times its lines were written. The field stays in
	// the record. A line without the field, or whose value does not parse, keeps the time it
	// was read and is counted in sidelog_time_parse_errors_total{container}; it is never
	// dropped. sidelog.io/time-key[.<container>]. Default the policy's timeKey, itself none:
	// the time the line was read. A policy or namespace default applies only to containers
	// whose parser is json; set on the pod for a container without it, it is refused.
	AnnotationTimeKey = Prefix + "time-key"

	// AnnotationTimeFormat is how the field of sidelog.io/time-key is written: rfc3339 (a
	// string such as 2024-05-01T12:00:00.123+02:00, fraction optional), rfc3339nano (the
	// same), epoch-seconds, epoch-millis, epoch-micros, epoch-nanos (a JSON number, a fraction
	// allowed, or a string of one), or a Go reference-time layout ("2006-01-02 15:04:05.000";
	// a layout without a zone is read as UTC). sidelog.io/time-format[.<container>]. Default
	// the policy's timeFormat, itself rfc3339.
	AnnotationTimeFormat = Prefix + "time-format"

	// AnnotationRateLimit is the container's reading budget: the agent reads its files no
	// faster, so that a container that writes faster falls behind in its own files (visible in
	// sidelog_file_bytes_behind) instead of taking the aggregator's capacity from others, and
	// nothing is dropped. Bytes per second ("1MiB/s", "500KB/s": a positive number and a
	// Kubernetes suffix k, K, M, G or Ki, Mi, Gi, with or without B, or B alone), lines per
	// second ("1000 lines/s": lines of the file, so a multiline record of ten lines takes
	// ten), both comma-separated ("2Mi/s, 5000 lines/s"), or "none". Each has a burst of one
	// second; a line longer than a second's budget passes in pieces. The drain at SIGTERM is
	// not limited: the pod's files go with it. sidelog.io/rate-limit[.<container>], one budget
	// per container. Default the policy's rateLimit, itself none; never above the policy's
	// maxRateLimit, whose rates also apply to what a value leaves open.
	AnnotationRateLimit = Prefix + "rate-limit"

	// AnnotationUpstream is one or more comma-separated upstreams in failover order: with the
	// forward protocol host:port addresses of the aggregator (Fluentd, Fluent Bit, anything that
	// speaks it); with OTLP (AnnotationUpstreamProtocol) URLs http://host:port[/path] or
	// https://host:port[/path], the path /v1/logs when there is none. Default the policy's
	// upstream; a pod with none anywhere is refused.
	AnnotationUpstream = Prefix + "upstream"

	// AnnotationUpstreamProtocol is how records leave: "forward" (the Fluentd forward protocol)
	// or "otlp" (OTLP/HTTP with protobuf, to an OpenTelemetry Collector or any backend that
	// takes it). It decides how each entry of AnnotationUpstream is read. Default the policy's
	// upstreamProtocol, itself "forward" by default.
	AnnotationUpstreamProtocol = Prefix + "upstream-protocol"

	// AnnotationUpstreamHeaders is a Secret in the pod's namespace whose every key is an HTTP
	// header of the OTLP requests (a token in Authorization, a tenant in X-Scope-OrgID): the
	// key is the header's name, the value its value. Projected whole, read-only, into the agent
	// alone, at UpstreamHeadersDir; the agent reads it again for every request, so a rotated
	// Secret takes effect without a restart. OTLP only. Default the policy's upstreamHeaders, or
	// else none.
	AnnotationUpstreamHeaders = Prefix + "upstream-headers"

	// AnnotationUpstreamCompression is "none" or "gzip": with the forward protocol
	// CompressedPackedForward (not with the policy's upstreamMode Forward), with OTLP
	// Content-Encoding: gzip. Fewer bytes on the wire for some agent CPU. Default the policy's
	// upstreamCompression, itself "none" by default.
	AnnotationUpstreamCompression = Prefix + "upstream-compression"

	// AnnotationUpstreamTLS set to "true" makes the agent speak TLS to the upstream and verify
	// its certificate, against the CA of AnnotationUpstreamCA or else the system roots. Values:
	// "true" or "false". Default the policy's upstreamTLS (false). With OTLP the URL's scheme
	// says it (https is TLS); "true" with an http:// URL, and "false" with an https:// one, are
	// refused.
	AnnotationUpstreamTLS = Prefix + "upstream-tls"

	// AnnotationUpstreamServerName is the name the upstream's certificate must carry, when it is
	// not the host of the address dialled (a certificate for fluentd.logging.svc reached as
	// fluentd.logging). A DNS name or an IP address. Only with TLS. Default the policy's
	// upstreamServerName, or else the host of each address.
	AnnotationUpstreamServerName = Prefix + "upstream-server-name"

	// AnnotationUpstreamCA is a Secret in the pod's namespace holding the PEM bundle of the CAs
	// that sign the upstream's certificate: <secret> (key ca.crt, as cert-manager writes it) or
	// <secret>/<key>. Mounted read-only into the agent alone. Only with TLS. Default the
	// policy's upstreamCA, or else none: the system roots.
	AnnotationUpstreamCA = Prefix + "upstream-ca"

	// AnnotationUpstreamSharedKey is a Secret in the pod's namespace holding the forward
	// protocol's shared key (Fluentd's <security> shared_key, Fluent Bit's Shared_Key):
	// <secret> (key shared_key) or <secret>/<key>. Mounted read-only into the agent alone.
	// Default the policy's upstreamSharedKey, or else none: no authentication.
	AnnotationUpstreamSharedKey = Prefix + "upstream-shared-key"

	// AnnotationUpstreamUser is a Secret in the pod's namespace holding the user of the forward
	// protocol's user authentication (Fluentd's <user>, Fluent Bit's security.users), which
	// is part of the shared-key handshake and so needs AnnotationUpstreamSharedKey too:
	// <secret> (keys username and password, a kubernetes.io/basic-auth Secret) or
	// <secret>/<key> (the password under <key>, the username under username). Mounted read-only
	// into the agent alone. Default the policy's upstreamUser, or else none: the agent answers a
	// server that asks for a user with an empty one, as Fluent Bit's out_forward does.
	AnnotationUpstreamUser = Prefix + "upstream-user"

	// AnnotationSidecarMode is how the agent is added: "native" (an init container with
	// restartPolicy Always, Kubernetes ≥1.29), "legacy" (a plain container, for older clusters;
	// refused for pods that run to completion, which it would keep running for ever) or "auto"
	// (native unless the policy's kubernetesVersion is older than 1.29). Virtual nodes report
	// kubelet versions that say nothing about what they support, so say it per pod or namespace
	// when in doubt. Default the policy's sidecarMode, itself "native" by default.
	AnnotationSidecarMode = Prefix + "sidecar-mode"

	// AnnotationRequestsCPU is the agent's CPU request, a Kubernetes quantity ("50m").
	// Default the policy's resources.
	AnnotationRequestsCPU = Prefix + "agent-requests-cpu"
	// AnnotationRequestsMemory is the agent's memory request ("32Mi"). Default the policy's.
	AnnotationRequestsMemory = Prefix + "agent-requests-memory"
	// AnnotationLimitsCPU is the agent's CPU limit ("200m"). Default the policy's.
	AnnotationLimitsCPU = Prefix + "agent-limits-cpu"
	// AnnotationLimitsMemory is the agent's memory limit ("128Mi"). Default the policy's.
	AnnotationLimitsMemory = Prefix + "agent-limits-memory"

	// AnnotationMetricsPort is the port, 1 to 65535, on which the agent serves /healthz and
	// /metrics. The containers of a pod share one network namespace, so it must differ from
	// every port the pod's containers declare. Default the policy's metricsPort (2021).
	AnnotationMetricsPort = Prefix + "metrics-port"

	// AnnotationStatus is written by sidelog on the pods it injects, never by users: a JSON
	// Status saying what was done. A pod that has it and the agent container is left as it is,
	// which is what makes the injector idempotent. Not allowed on a namespace.
	AnnotationStatus = Prefix + "status"

	// AnnotationCleanup is the comma-separated list of absolute globs of an app container's
	// rotated log files that the agent removes once it has shipped them:
	// sidelog.io/cleanup.<container>, or sidelog.io/cleanup for every tailed container. Only where
	// the cluster policy's allowCleanup is true; pods only (a namespace cannot know which files a
	// pod rotates). The agent then mounts the volumes those files are on read-write (every other
	// log volume stays read-only), and removes a file that a cleanup glob matches only when it
	// read every byte of it from its first, every byte was acknowledged upstream, nothing was
	// written to it for the policy's cleanupSettle (default 5m), and a newer file that the tail
	// globs find and the cleanup globs do not exists (the live file); each removal is logged and
	// counted in sidelog_files_removed_total{container}. Name the rotated files only, never the
	// file being written: app.log.* or app.log-* (logrotate, Python's RotatingFileHandler),
	// app.*.log (logback, log4j2). Refused: a glob that the container's tail globs do not cover
	// (the agent removes only what it read), one that matches every file a tail glob names or the
	// name a tail glob spells out (app.log of /var/log/app/app.log*) -- unless that tail glob lists
	// the rotations apart from the live file beside them (app.log,app.log.*) --, one whose file name is only
	// wildcards, one longer than 1024 bytes or 64 segments, and compressed rotations (*.gz, ...),
	// which the agent does not read. Default none.
	AnnotationCleanup = Prefix + "cleanup"
)

// DefaultContainerAnnotation is kubectl's annotation naming the container that `kubectl logs`
// and `kubectl exec` use when none is given. In legacy mode the agent becomes a second regular
// container, so the injector sets it to the app container of a single-container pod if unset.
const DefaultContainerAnnotation = "kubectl.kubernetes.io/default-container"

// Sidecar modes: the values of AnnotationSidecarMode and Policy.SidecarMode.
const (
	ModeNative = "native"
	ModeLegacy = "legacy"
	ModeAuto   = "auto"
)

// option describes one annotation: its name after Prefix and where it may appear.
type option struct {
	name string
	// perContainer: the key may carry a .<container> suffix.
	perContainer bool
	// podOnly: refused on a namespace.
	podOnly bool
	// policed: a pod may set it only when Policy.AllowPodOverride lists it.
	policed bool
}

// options lists every annotation by name, in the order of the constants above.
var options = []option{
	{name: "inject"},
	{name: "tail", perContainer: true, podOnly: true},
	{name: "exclude", perContainer: true, policed: true},
	{name: "multiline", perContainer: true, policed: true},
	{name: "parser", perContainer: true, policed: true},
	{name: "read-from", perContainer: true, policed: true},
	{name: "ignore-older", perContainer: true, policed: true},
	{name: "time-key", perContainer: true, policed: true},
	{name: "time-format", perContainer: true, policed: true},
	{name: "rate-limit", perContainer: true, policed: true},
	{name: "upstream", policed: true},
	{name: "upstream-protocol", policed: true},
	{name: "upstream-headers", policed: true},
	{name: "upstream-compression", policed: true},
	{name: "upstream-tls", policed: true},
	{name: "upstream-server-name", policed: true},
	{name: "upstream-ca", policed: true},
	{name: "upstream-shared-key", policed: true},
	{name: "upstream-user", policed: true},
	{name: "sidecar-mode", policed: true},
	{name: "agent-requests-cpu", policed: true},
	{name: "agent-requests-memory", policed: true},
	{name: "agent-limits-cpu", policed: true},
	{name: "agent-limits-memory", policed: true},
	{name: "metrics-port", policed: true},
	{name: "status", podOnly: true},
	{name: "cleanup", perContainer: true, podOnly: true},
}

// Option names, as in Policy.AllowPodOverride and in keys after Prefix.
const (
	optInject         = "inject"
	optTail           = "tail"
	optExclude        = "exclude"
	optMultiline      = "multiline"
	optParser         = "parser"
	optReadFrom       = "read-from"
	optIgnoreOlder    = "ignore-older"
	optTimeKey        = "time-key"
	optTimeFormat     = "time-format"
	optRateLimit      = "rate-limit"
	optUpstream       = "upstream"
	optProtocol       = "upstream-protocol"
	optHeaders        = "upstream-headers"
	optCompression    = "upstream-compression"
	optTLS            = "upstream-tls"
	optServerName     = "upstream-server-name"
	optCA             = "upstream-ca"
	optSharedKey      = "upstream-shared-key"
	optUser           = "upstream-user"
	optSidecarMode    = "sidecar-mode"
	optRequestsCPU    = "agent-requests-cpu"
	optRequestsMemory = "agent-requests-memory"
	optLimitsCPU      = "agent-limits-cpu"
	optLimitsMemory   = "agent-limits-memory"
	optMetricsPort    = "metrics-port"
	optStatus         = "status"
	optCleanup        = "cleanup"
)

func lookupOption(name string) (option, bool) {
	for _, o := range options {
		if o.name == name {
			return o, true
		}
	}
	return option{}, false
}

// policedOptions returns the names a policy may list in AllowPodOverride, in table order.
func policedOptions() []string {
	var names []string
	for _, o := range options {
		if o.policed {
			names = append(names, o.name)
		}
	}
	return names
}
