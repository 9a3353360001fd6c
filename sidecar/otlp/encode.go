package otlp

import (
	"maps"
	"slices"
	"time"
	"unicode/utf8"

	"google.golang.org/protobuf/encoding/protowire"

	"github.com/sidelog/sidelog/sidecar/config"
	"github.com/sidelog/sidelog/sidecar/parse"
	"github.com/sidelog/sidelog/sidecar/record"
)

// Field numbers of the OTLP logs messages (opentelemetry/proto/logs/v1/logs.proto,
// collector/logs/v1/logs_service.proto, resource/v1, common/v1).
const (
	requestResourceLogs = 1  // ExportLogsServiceRequest.resource_logs
	rlResource          = 1  // ResourceLogs.resource
	rlScopeLogs         = 2  // ResourceLogs.scope_logs
	resAttributes       = 1  // Resource.attributes
	slScope             = 1  // ScopeLogs.scope
	slLogRecords        = 2  // ScopeLogs.log_records
	scopeName           = 1  // InstrumentationScope.name
	scopeVersion        = 2  // InstrumentationScope.version
	lrTime              = 1  // LogRecord.time_unix_nano
	lrBody              = 5  // LogRecord.body
	lrAttributes        = 6  // LogRecord.attributes
	lrObservedTime      = 11 // LogRecord.observed_time_unix_nano
	kvKey               = 1  // KeyValue.key
	kvValue             = 2  // KeyValue.value
	anyString           = 1  // AnyValue.string_value
	anyKvlist           = 6  // AnyValue.kvlist_value

	responsePartialSuccess = 1 // ExportLogsServiceResponse.partial_success
	psRejected             = 1 // ExportLogsPartialSuccess.rejected_log_records
	psMessage              = 2 // ExportLogsPartialSuccess.error_message
	statusMessage          = 2 // google.rpc.Status.message
)

// Attribute names of the OpenTelemetry semantic conventions.
const (
	AttrNamespace   = "k8s.namespace.name"
	AttrPodName     = "k8s.pod.name"
	AttrPodUID      = "k8s.pod.uid"
	AttrContainer   = "k8s.container.name"
	AttrNode        = "k8s.node.name"
	AttrLabelPrefix = "k8s.pod.label."
	AttrFilePath    = "log.file.path"

	// AttrNamespaceLabelPrefix prefixes each label of the pod's namespace.
	AttrNamespaceLabelPrefix = "k8s.namespace.label."
	// AttrWorkloadKind and AttrWorkloadName name the pod's workload whatever its kind, for
	// routing on one attribute; the semantic conventions have no such pair yet
	// (open-telemetry/semantic-conventions#3778), hence sidelog's namespace.
	AttrWorkloadKind = "sidelog.workload.kind"
	AttrWorkloadName = "sidelog.workload.name"
)

// OwnerAttrs are the semantic conventions' attributes for the name of each kind of owner a pod
// can have. Other kinds (an Argo Rollout, an OpenKruise CloneSet) have none: they are in
// AttrWorkloadKind and AttrWorkloadName only.
var OwnerAttrs = map[string]string{
	"ReplicaSet":  "k8s.replicaset.name",
	"Deployment":  "k8s.deployment.name",
	"StatefulSet": "k8s.statefulset.name",
	"DaemonSet":   "k8s.daemonset.name",
	"Job":         "k8s.job.name",
	"CronJob":     "k8s.cronjob.name",
}

// ScopeName is the InstrumentationScope.name of every record.
const ScopeName = "sidelog"

// AppendResource appends the content of a Resource message (its attributes) for container of p:
// the Kubernetes attributes of the semantic conventions (the owners' names among them), the
// labels and the namespace's labels sorted by key, and the workload. An empty identity field (a
// pod without a uid, say) is left out.
func AppendResource(dst []byte, p record.Pod, container string) []byte {
	for _, kv := range [][2]string{
		{AttrNamespace, p.Namespace},
		{AttrPodName, p.Name},
		{AttrPodUID, p.UID},
		{AttrContainer, container},
		{AttrNode, p.Node},
	} {
		if kv[1] != "" {
			dst = appendStringAttr(dst, resAttributes, kv[0], kv[1])
		}
	}
	for _, o := range p.Owners {
		if key, ok := OwnerAttrs[o.Kind]; ok {
			dst = appendStringAttr(dst, resAttributes, key, o.Name)
		}
	}
	if w, ok := config.Workload(p.Owners); ok {
		dst = appendStringAttr(dst, resAttributes, AttrWorkloadKind, w.Kind)
		dst = appendStringAttr(dst, resAttributes, AttrWorkloadName, w.Name)
	}
	for _, k := range slices.Sorted(maps.Keys(p.Labels)) {
		dst = appendStringAttr(dst, resAttributes, AttrLabelPrefix+k, p.Labels[k])
	}
	for _, k := range slices.Sorted(maps.Keys(p.NamespaceLabels)) {
		dst = appendStringAttr(dst, resAttributes, AttrNamespaceLabelPrefix+k, p.NamespaceLabels[k])
	}
	return dst
}

// appendStringAttr appends field num holding KeyValue{key, AnyValue{string_value: value}}.
func appendStringAttr(dst []byte, num protowire.Number, key, value string) []byte {
	v := 1 + protowire.SizeBytes(len(value))
	kv := 1 + protowire.SizeBytes(len(key)) + 1 + protowire.SizeBytes(v)
	dst = protowire.AppendTag(dst, num, protowire.BytesType)
	dst = protowire.AppendVarint(dst, uint64(kv))
	dst = protowire.AppendTag(dst, kvKey, protowire.BytesType)
	dst = protowire.AppendString(dst, key)
	dst = protowire.AppendTag(dst, kvValue, protowire.BytesType)
	dst = protowire.AppendVarint(dst, uint64(v))
	dst = protowire.AppendTag(dst, anyString, protowire.BytesType)
	return protowire.AppendString(dst, value)
}

// Encoder appends OTLP LogRecords for one file. It is not safe for concurrent use: with the json
// parser it keeps scratch space between lines.
type Encoder struct {
	// attrs is the record's attributes field (log.file.path), encoded once.
	attrs []byte
	json  bool
	tr    *parse.Transcoder

	// timeFormat, when set, reads a parsed line's event time from its tr.TimeKey member;
	// timeMiss is called for a parsed line without a usable one (SetEventTime).
	timeFormat *parse.TimeFormat
	timeMiss   func()
}

// SetEventTime makes e give each line that the json parser parsed the time in its top-level
// member tr.TimeKey (the Transcoder's, set by the caller), read in format f, as its
// time_unix_nano. A parsed line without that member, or whose value is not a time in f, has no
// time_unix_nano (unknown: receivers use the observed time) and calls miss (which may be nil).
// No effect without the json parser.
func (e *Encoder) SetEventTime(f *parse.TimeFormat, miss func()) {
	e.timeFormat, e.timeMiss = f, miss
}

// NewEncoder pre-encodes what is the same for every record of file. parser is config.ParserJSON
// or config.ParserNone (anything else is taken as ParserNone).
func NewEncoder(file, parser string) *Encoder {
	return NewEncoderWith(file, parser, nil)
}

// NewEncoderWith is NewEncoder with the json parser's scratch space in tr, which Encoders used by
// the same goroutine may share (nil: one of its own), so that a file keeps no scratch of its own.
func NewEncoderWith(file, parser string, tr *parse.Transcoder) *Encoder {
	if tr == nil {
		tr = new(parse.Transcoder)
	}
	return &Encoder{attrs: appendStringAttr(nil, lrAttributes, AttrFilePath, file), json: parser == config.ParserJSON, tr: tr}
}

// Append appends one ScopeLogs.log_records field to dst: a LogRecord with observed_time_unix_nano
// t, the attribute log.file.path, and the line as the body: a string_value, or with the json
// parser a line that is a JSON object as a kvlist_value (parsed is then true). A protobuf string
// must be UTF-8, so invalid bytes in a line become U+FFFD, as encoding/json and the Collector's
// filelog receiver make them. time_unix_nano is set only for a parsed line whose time SetEventTime
// asked for; otherwise it is left unset (unknown).
func (e *Encoder) Append(dst []byte, t time.Time, line []byte) (out []byte, parsed bool) {
	dst = protowire.AppendTag(dst, slLogRecords, protowire.BytesType)
	if e.json && mayBeObject(line) {
		if _, err := e.tr.Scan(line); err == nil {
			var rec int
			dst, rec = parse.BeginLen(dst)
			if e.timeFormat != nil {
				if et, ok := e.tr.EventTime(e.timeFormat); ok {
					dst = protowire.AppendTag(dst, lrTime, protowire.Fixed64Type)
					dst = protowire.AppendFixed64(dst, uint64(et.UnixNano()))
				} else if e.timeMiss != nil {
					e.timeMiss()
				}
			}
			dst = appendObserved(dst, t)
			dst = protowire.AppendTag(dst, lrBody, protowire.BytesType)
			var body int
			dst, body = parse.BeginLen(dst)
			dst = protowire.AppendTag(dst, anyKvlist, protowire.BytesType)
			var list int
			dst, list = parse.BeginLen(dst)
			dst = e.tr.AppendKeyValues(dst)
			dst = parse.EndLen(dst, list)
			dst = parse.EndLen(dst, body)
			dst = append(dst, e.attrs...)
			return parse.EndLen(dst, rec), true
		}
	}
	if !utf8.Valid(line) {
		var rec int
		dst, rec = parse.BeginLen(dst)
		dst = appendObserved(dst, t)
		dst = protowire.AppendTag(dst, lrBody, protowire.BytesType)
		var body int
		dst, body = parse.BeginLen(dst)
		dst = protowire.AppendTag(dst, anyString, protowire.BytesType)
		var s int
		dst, s = parse.BeginLen(dst)
		dst = appendValidUTF8(dst, line)
		dst = parse.EndLen(dst, s)
		dst = parse.EndLen(dst, body)
		dst = append(dst, e.attrs...)
		return parse.EndLen(dst, rec), false
	}
	// The common case: every size is known, so each length is written before its content.
	v := 1 + protowire.SizeBytes(len(line))
	n := 1 + 8 + 1 + protowire.SizeBytes(v) + len(e.attrs)
	dst = protowire.AppendVarint(dst, uint64(n))
	dst = appendObserved(dst, t)
	dst = protowire.AppendTag(dst, lrBody, protowire.BytesType)
	dst = protowire.AppendVarint(dst, uint64(v))
	dst = protowire.AppendTag(dst, anyString, protowire.BytesType)
	dst = protowire.AppendBytes(dst, line)
	return append(dst, e.attrs...), false
}

func appendObserved(dst []byte, t time.Time) []byte {
	dst = protowire.AppendTag(dst, lrObservedTime, protowire.Fixed64Type)
	return protowire.AppendFixed64(dst, uint64(t.UnixNano()))
}

// appendValidUTF8 appends s with each invalid byte sequence replaced by U+FFFD.
func appendValidUTF8(dst, s []byte) []byte {
	for i := 0; i < len(s); {
		r, size := utf8.DecodeRune(s[i:])
		if r == utf8.RuneError && size == 1 {
			dst = utf8.AppendRune(dst, utf8.RuneError)
		} else {
			dst = append(dst, s[i:i+size]...)
		}
		i += size
	}
	return dst
}

// mayBeObject reports whether the first byte that is not JSON white space is '{'.
func mayBeObject(line []byte) bool {
	for _, c := range line {
		switch c {
		case ' ', '\t', '\n', '\r':
			continue
		}
		return c == '{'
	}
	return false
}

// appendRequestHead appends everything of an ExportLogsServiceRequest that comes before the
// log records of a batch: one ResourceLogs with the resource, and the head of its one ScopeLogs
// (the scope naming sidelog at version). records is the size of the records that follow.
func appendRequestHead(dst, resource []byte, version string, records int) []byte {
	scope := 1 + protowire.SizeBytes(len(ScopeName))
	if version != "" {
		scope += 1 + protowire.SizeBytes(len(version))
	}
	sl := 1 + protowire.SizeBytes(scope) + records
	rl := 1 + protowire.SizeBytes(len(resource)) + 1 + protowire.SizeBytes(sl)
	dst = protowire.AppendTag(dst, requestResourceLogs, protowire.BytesType)
	dst = protowire.AppendVarint(dst, uint64(rl))
	dst = protowire.AppendTag(dst, rlResource, protowire.BytesType)
	dst = protowire.AppendBytes(dst, resource)
	dst = protowire.AppendTag(dst, rlScopeLogs, protowire.BytesType)
	dst = protowire.AppendVarint(dst, uint64(sl))
	dst = protowire.AppendTag(dst, slScope, protowire.BytesType)
	dst = protowire.AppendVarint(dst, uint64(scope))
	dst = protowire.AppendTag(dst, scopeName, protowire.BytesType)
	dst = protowire.AppendString(dst, ScopeName)
	if version != "" {
		dst = protowire.AppendTag(dst, scopeVersion, protowire.BytesType)
		dst = protowire.AppendString(dst, version)
	}
	return dst
}

// partialSuccess decodes an ExportLogsServiceResponse and returns its partial_success. A body
// that is not one (an empty body, JSON from a misconfigured server) reports nothing rejected.
func partialSuccess(b []byte) (rejected int64, msg string) {
	ps := field(b, responsePartialSuccess)
	for len(ps) > 0 {
		num, typ, n := protowire.ConsumeTag(ps)
		if n < 0 {
			return rejected, msg
		}
		ps = ps[n:]
		switch {
		case num == psRejected && typ == protowire.VarintType:
			v, m := protowire.ConsumeVarint(ps)
			if m < 0 {
				return rejected, msg
			}
			rejected, ps = int64(v), ps[m:]
			continue
		case num == psMessage && typ == protowire.BytesType:
			v, m := protowire.ConsumeBytes(ps)
			if m < 0 {
				return rejected, msg
			}
			msg, ps = string(v), ps[m:]
			continue
		}
		m := protowire.ConsumeFieldValue(num, typ, ps)
		if m < 0 {
			return rejected, msg
		}
		ps = ps[m:]
	}
	return rejected, msg
}

// statusText returns the message of a google.rpc.Status body (what an OTLP/HTTP server answers
// with an error), or "" if b is not one.
func statusText(b []byte) string {
	m := field(b, statusMessage)
	if m == nil || !utf8.Valid(m) {
		return ""
	}
	return string(m)
}

// field returns the bytes of the last length-delimited field num of message b, or nil.
func field(b []byte, num protowire.Number) []byte {
	var out []byte
	for len(b) > 0 {
		n, typ, k := protowire.ConsumeTag(b)
		if k < 0 {
			return nil
		}
		b = b[k:]
		if n == num && typ == protowire.BytesType {
			v, m := protowire.ConsumeBytes(b)
			if m < 0 {
				return nil
			}
			out, b = v, b[m:]
			continue
		}
		m := protowire.ConsumeFieldValue(n, typ, b)
		if m < 0 {
			return nil
		}
		b = b[m:]
	}
	return out
}
