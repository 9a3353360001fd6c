// Package record is the agent's enrich stage: it turns a line (or a joined multiline record) into
// a forward-protocol entry that carries the pod's identity, encoded straight into the batch.
//
// An entry is [EventTime, record] with the record
//
//	{"log": line, "file": path, "kubernetes": {"namespace_name", "pod_name", "pod_id",
//	 "container_name", "host", "labels": {...}, "namespace_labels": {...},
//	 "workload_kind", "workload_name"}}
//
// the field names of Fluent Bit's kubernetes filter (namespace_labels is Fluentd's
// kubernetes_metadata filter's), so that aggregator configurations written for node agents keep
// working. namespace_labels is there when the agent was told them, workload_kind and
// workload_name when the pod has a workload (Pod.Owners). Everything but the time and the line is the same for every record of a
// file, so it is encoded once per file and appended as bytes: the per-line work is a few header
// bytes and two copies.
//
// With the json parser, a line that is a JSON object gives the record its top-level fields
// instead of "log" (parse has the details of the conversion). The agent's own "file" and
// "kubernetes" fields always win, because aggregators route and limit tenants on them: the line's
// fields of those names are kept as "app_file" and "app_kubernetes". A "log" field of the line
// stays "log". A line that is not a JSON object is sent as "log", as with no parser.
package record

import (
	"encoding/binary"
	"maps"
	"slices"
	"time"

	"github.com/sidelog/sidelog/sidecar/config"
	"github.com/sidelog/sidelog/sidecar/msgpack"
	"github.com/sidelog/sidelog/sidecar/parse"
)

// Pod is the pod identity: from the downward API, and from the agent's configuration what the
// downward API cannot give.
type Pod struct {
	Namespace, Name, UID, Node string
	Labels                     map[string]string
	// Owners are the pod's controllers, nearest first; the last is its workload
	// (config.Config.Owners).
	Owners []config.Owner
	// NamespaceLabels are its namespace's labels; nil when not known.
	NamespaceLabels map[string]string
}

// Tag returns kube.<namespace>.<pod>.<container>, the default forward-protocol tag.
func Tag(p Pod, container string) string {
	return "kube." + p.Namespace + "." + p.Name + "." + container
}

// Renamed fields: the names that a JSON line's own "file" and "kubernetes" fields take.
const (
	AppFile       = "app_file"
	AppKubernetes = "app_kubernetes"
)

// renames is shared by every Encoder and never written.
var renames = map[string]string{"file": AppFile, "kubernetes": AppKubernetes}

// fixed is the number of fields the agent adds to a parsed record: "file" and "kubernetes".
const fixed = 2

// Encoder appends forward-protocol entries for one file of one container. It is not safe for
// concurrent use: with the json parser it uses the scratch space of a parse.Transcoder.
//
// What an Encoder holds of its own is its file's pre-encoded fields, a few hundred bytes. The
// json parser's scratch grows with the widest line (up to about 12 bytes per byte of line), so
// the Encoders of one input's files share one Transcoder (NewEncoderWith): memory follows the
// number of inputs, not the number of files.
type Encoder struct {
	// meta is the "file" and "kubernetes" key/value pairs, encoded once.
	meta []byte
	json bool
	tr   *parse.Transcoder // nil without the json parser

	// timeFormat, when set, reads a parsed line's event time from its tr.TimeKey member;
	// timeMiss is called for a parsed line without a usable one (SetEventTime).
	timeFormat *parse.TimeFormat
	timeMiss   func()

	// head is the entry header of the time headAt: the records of one poll share their read
	// time, so it is encoded once per poll rather than once per record.
	head   [11]byte
	headAt time.Time
}

// SetEventTime makes e stamp each line that the json parser parsed with the time in its
// top-level member tr.TimeKey (the Transcoder's, set by the caller), read in format f, instead
// of the time Append is given. A parsed line without that member, or whose value is not a time
// in f, keeps the given time and calls miss (which may be nil); a line that is not parsed keeps
// the given time without a call. The time is read by the Transcoder's Scan, which other
// encoders of the same line can ask too (parse.Transcoder.EventTime). No effect without the
// json parser.
func (e *Encoder) SetEventTime(f *parse.TimeFormat, miss func()) {
	e.timeFormat, e.timeMiss = f, miss
}

// NewEncoder pre-encodes everything that is the same for every record of this file once: the
// "file" field and the "kubernetes" map. parser is config.ParserJSON or config.ParserNone; any
// other value (the config package rejects them) is taken as ParserNone. Labels are written sorted
// by key, and "labels" is there (empty) when the pod has none, so that aggregators can rely on it.
// With the json parser the Encoder has a Transcoder of its own; NewEncoderWith shares one.
func NewEncoder(p Pod, container, file, parser string) *Encoder {
	return NewEncoderWith(p, container, file, parser, nil)
}

// NewEncoderWith is NewEncoder with the json parser's scratch space in tr, which Encoders used
// by the same goroutine may share (nil: one of its own). tr's Rename is set.
func NewEncoderWith(p Pod, container, file, parser string, tr *parse.Transcoder) *Encoder {
	b := msgpack.AppendString(nil, "file")
	b = msgpack.AppendString(b, file)
	workload, hasWorkload := config.Workload(p.Owners)
	fields := 6
	if p.NamespaceLabels != nil {
		fields++
	}
	if hasWorkload {
		fields += 2
	}
	b = msgpack.AppendString(b, "kubernetes")
	b = msgpack.AppendMapHeader(b, fields)
	for _, kv := range [][2]string{
		{"namespace_name", p.Namespace},
		{"pod_name", p.Name},
		{"pod_id", p.UID},
		{"container_name", container},
		{"host", p.Node},
	} {
		b = msgpack.AppendString(b, kv[0])
		b = msgpack.AppendString(b, kv[1])
	}
	b = appendLabels(b, "labels", p.Labels)
	if p.NamespaceLabels != nil {
		b = appendLabels(b, "namespace_labels", p.NamespaceLabels)
	}
	if hasWorkload {
		b = msgpack.AppendString(b, "workload_kind")
		b = msgpack.AppendString(b, workload.Kind)
		b = msgpack.AppendString(b, "workload_name")
		b = msgpack.AppendString(b, workload.Name)
	}
	e := &Encoder{meta: b, json: parser == config.ParserJSON}
	if e.json {
		if tr == nil {
			tr = new(parse.Transcoder)
		}
		tr.Rename = renames
		e.tr = tr
	}
	return e
}

// appendLabels appends the key name and the map labels, sorted by key.
func appendLabels(b []byte, name string, labels map[string]string) []byte {
	b = msgpack.AppendString(b, name)
	b = msgpack.AppendMapHeader(b, len(labels))
	for _, k := range slices.Sorted(maps.Keys(labels)) {
		b = msgpack.AppendString(b, k)
		b = msgpack.AppendString(b, labels[k])
	}
	return b
}

// Append appends one entry [EventTime(t), {"log": line, "file": ..., "kubernetes": {...}}] to dst.
// The line's bytes are sent as they are, NUL bytes and invalid UTF-8 included, as a MessagePack
// str, as Fluent Bit does. With the json parser, a line that is a JSON object has its top-level
// fields become the record's instead of "log" (see the package documentation), and parsed is true;
// parsed is false for a line sent as "log", and always with ParserNone.
func (e *Encoder) Append(dst []byte, t time.Time, line []byte) (out []byte, parsed bool) {
	// Lines that cannot be an object are not scanned: the error would be allocated for nothing.
	if e.json && mayBeObject(line) {
		if n, err := e.tr.Scan(line); err == nil {
			if e.timeFormat != nil {
				if et, ok := e.tr.EventTime(e.timeFormat); ok {
					t = et
				} else if e.timeMiss != nil {
					e.timeMiss()
				}
			}
			dst = e.appendHead(dst, t)
			dst = msgpack.AppendMapHeader(dst, n+fixed)
			dst = e.tr.AppendMembers(dst)
			return append(dst, e.meta...), true
		}
	}
	dst = e.appendHead(dst, t)
	// A map of three: "log", then the two fields of meta.
	dst = append(dst, 0x83, 0xa3, 'l', 'o', 'g')
	dst = msgpack.AppendStringHeader(dst, len(line))
	dst = append(dst, line...)
	return append(dst, e.meta...), false
}

// appendHead appends the entry's array header and its EventTime.
func (e *Encoder) appendHead(dst []byte, t time.Time) []byte {
	if t != e.headAt || e.head[0] == 0 {
		h := &e.head
		h[0], h[1], h[2] = 0x92, 0xd7, msgpack.EventTimeType
		binary.BigEndian.PutUint32(h[3:], uint32(t.Unix()))
		binary.BigEndian.PutUint32(h[7:], uint32(t.Nanosecond()))
		e.headAt = t
	}
	return append(dst, e.head[:]...)
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
