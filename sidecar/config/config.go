// Package config is the agent's configuration: one versioned JSON document that the injector
// writes into the SIDELOG_CONFIG environment variable of the agent container and that
// sidelog-agent reads at start-up.
//
// It is the contract between the two programs, so it imports nothing from k8s.io and is decoded
// strictly: an unknown field or a wrong version is an error that names it.
package config

import (
	"bytes"
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"path"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// Version is the only document version this agent understands. A change that an older agent
// could misread gets a new version.
const Version = "sidelog.io/agent/v1"

// Env is the environment variable that carries the document.
const Env = "SIDELOG_CONFIG"

// Parser values.
const (
	ParserNone = "none" // the line is the record's "log" field
	ParserJSON = "json" // the fields of a JSON object line become record fields
)

// ReadFrom values: where a file that has no checkpoint starts (Input.ReadFrom).
const (
	// ReadFromHead reads such a file from its first byte: right for a volume that is new with the
	// pod (an emptyDir), where every file was written by this pod.
	ReadFromHead = "head"
	// ReadFromTail starts a file that already exists when the agent starts, and has no
	// checkpoint, at its end, as Fluent Bit's read_from_head false and the OpenTelemetry
	// filelog receiver's start_at end do: right for a volume that outlives the pod, whose old
	// files an earlier pod shipped. A file created after the agent started is read from its
	// head whatever this says (it is new, or a rotation's new file).
	ReadFromTail = "tail"
)

// Compression values.
const (
	CompressionNone = "none"
	CompressionGzip = "gzip" // CompressedPackedForward mode
)

// Protocols of the upstream.
const (
	// ProtocolForward is the Fluentd forward protocol: servers are host:port. The default.
	ProtocolForward = "forward"
	// ProtocolOTLP is OTLP/HTTP with protobuf: servers are http:// or https:// URLs.
	ProtocolOTLP = "otlp"
)

// DefaultOTLPPath is the path of an OTLP URL given without one, as in the OTLP specification.
const DefaultOTLPPath = "/v1/logs"

// Message modes of the forward protocol: how a batch's entries travel.
const (
	// ModePackedForward sends the entries as one binary string: the agent writes the batch as
	// it encoded it. The default; Fluentd, Fluent Bit and the OpenTelemetry receiver read it.
	ModePackedForward = "PackedForward"
	// ModeForward sends the entries as an array, for receivers that read only that mode.
	ModeForward = "Forward"
)

// Multiline presets: the first line of a record in each language's usual log and stack-trace
// format. The regexes live with the joiner (sidecar/multiline); these are only the names.
var MultilinePresets = []string{"java", "python", "go", "ruby"}

// Config is the whole agent configuration.
type Config struct {
	// Version must be Version.
	Version string `json:"version"`
	// Inputs are the files to tail, one entry per app container.
	Inputs []Input `json:"inputs"`
	// Upstream is where records go.
	Upstream Upstream `json:"upstream"`
	// Limits bound the agent's work and memory; zero values take the defaults.
	Limits Limits `json:"limits,omitzero"`
	// DrainTimeout is how long the agent may take after SIGTERM to read what is left, send it and
	// wait for the acknowledgements. Default 20s, below Kubernetes' 30s grace period.
	DrainTimeout Duration `json:"drainTimeout,omitzero"`
	// LabelsFile is a downward-API file of the pod's labels (key="value" lines); empty for none.
	LabelsFile string `json:"labelsFile,omitempty"`
	// MetricsAddr is where /healthz and /metrics are served; empty disables them.
	MetricsAddr string `json:"metricsAddr,omitempty"`
	// Owners are the pod's controllers, nearest first, as far as they are known: the webhook
	// resolves them at admission (a ReplicaSet and its Deployment or Rollout, a Job and its
	// CronJob, a StatefulSet, ...); `sidelog inject` knows only the workload it injects. The last
	// is the pod's workload. The downward API cannot give them (kubernetes/kubernetes#116662).
	// Empty: a bare pod, or not known.
	Owners []Owner `json:"owners,omitempty"`
	// NamespaceLabels are the labels of the pod's namespace when it was admitted. Nil: not known
	// (`sidelog inject` without the Namespace); empty: a namespace without labels.
	NamespaceLabels map[string]string `json:"namespaceLabels,omitzero"`
}

// Owner is one controller of a pod: its kind ("ReplicaSet", "Deployment", "Job", "CronJob",
// "StatefulSet", "DaemonSet", "Rollout", or any other controller's) and its name.
type Owner struct {
	Kind string `json:"kind"`
	Name string `json:"name"`
}

// MaxOwners is the most owners a configuration may list: a pod's controller and that
// controller's own are all the webhook resolves.
const MaxOwners = 4

// Input is one app container's files.
type Input struct {
	// Container is the app container whose files these are; it becomes kubernetes.container_name.
	Container string `json:"container"`
	// Paths are absolute globs; "**" matches any number of directories.
	Paths []string `json:"paths"`
	// Exclude are absolute globs of files not to tail even if Paths match them.
	Exclude []string `json:"exclude,omitempty"`
	// Multiline joins the lines of one record (a stack trace); nil for one record per line.
	Multiline *Multiline `json:"multiline,omitempty"`
	// Parser is ParserNone (default) or ParserJSON.
	Parser string `json:"parser,omitempty"`
	// Tag is the forward-protocol tag; default kube.<namespace>.<pod>.<container>.
	Tag string `json:"tag,omitempty"`
	// ReadFrom is where a file without a checkpoint that exists when the agent starts is read
	// from: ReadFromHead (default) or ReadFromTail.
	ReadFrom string `json:"readFrom,omitempty"`
	// IgnoreOlder, when set, leaves files whose modification time is older than this unread;
	// one written again later is read from the size it had when it was ignored. Zero: none.
	IgnoreOlder Duration `json:"ignoreOlder,omitzero"`
	// TimeKey, with ParserJSON, is the top-level field of a line that gives the record's time;
	// the time the line was read is the fallback. Empty: the time the line was read.
	TimeKey string `json:"timeKey,omitempty"`
	// TimeFormat is how TimeKey's value is written: one of TimeFormats, or a Go reference-time
	// layout ("2006-01-02 15:04:05.000"). Default TimeRFC3339. Only with TimeKey.
	TimeFormat string `json:"timeFormat,omitempty"`
	// Cleanup are absolute globs of rotated files that the agent removes once every byte of
	// them was acknowledged and their writer has left them (not modified for CleanupSettle, and
	// a newer file exists). Only files that Paths match too are ever removed. Empty: none is.
	Cleanup []string `json:"cleanup,omitempty"`
	// CleanupSettle is how long a rotated file must have been left unwritten before it is
	// removed. Default DefaultCleanupSettle. Only with Cleanup.
	CleanupSettle Duration `json:"cleanupSettle,omitzero"`
	// RateLimit is the container's reading budget; nil for none.
	RateLimit *RateLimit `json:"rateLimit,omitempty"`
}

// RateLimit is the budget an input's files are read within: the agent reads them no faster,
// so that a container that writes faster falls behind in its own files (sidelog_file_bytes_behind)
// instead of taking the aggregator's capacity from others; nothing is dropped. A zero field is no
// limit on it. Each holds a burst of one second. The drain at SIGTERM is not limited: the
// pod's files go with it.
type RateLimit struct {
	// BytesPerSecond bounds the bytes read per second.
	BytesPerSecond int64 `json:"bytesPerSecond,omitempty"`
	// LinesPerSecond bounds the lines read per second (lines of the file: a multiline record of
	// ten lines takes ten).
	LinesPerSecond int64 `json:"linesPerSecond,omitempty"`
}

// TimeFormat presets (Input.TimeFormat).
const (
	TimeRFC3339      = "rfc3339"     // a string, fractional seconds optional: 2024-05-01T12:00:00.123Z
	TimeRFC3339Nano  = "rfc3339nano" // the same; named for users who look for it
	TimeEpochSeconds = "epoch-seconds"
	TimeEpochMillis  = "epoch-millis"
	TimeEpochMicros  = "epoch-micros"
	TimeEpochNanos   = "epoch-nanos"
)

// TimeFormats are the TimeFormat presets.
var TimeFormats = []string{TimeRFC3339, TimeRFC3339Nano, TimeEpochSeconds, TimeEpochMillis, TimeEpochMicros, TimeEpochNanos}

// CheckTimeFormat reports whether f is a preset or a Go layout that can carry a date and a time
// of day: a layout without a year or an hour would stamp every record with year 0 or midnight.
func CheckTimeFormat(f string) error {
	if slices.Contains(TimeFormats, f) {
		return nil
	}
	if !strings.Contains(f, "2006") && !strings.Contains(f, "06") || !strings.Contains(f, "15") && !strings.Contains(f, "3") {
		return fmt.Errorf("%q is neither a preset (%s) nor a Go time layout with a year and an hour (such as \"2006-01-02 15:04:05.000\")",
			f, strings.Join(TimeFormats, ", "))
	}
	return nil
}

// Multiline says how to find the first line of a record. Exactly one of Preset and FirstLine.
type Multiline struct {
	// Preset is one of MultilinePresets.
	Preset string `json:"preset,omitempty"`
	// FirstLine is a Go regular expression (RE2) that matches the first line of a record.
	FirstLine string `json:"firstLine,omitempty"`
	// FlushTimeout sends a pending record after this long without a new line. Default 1s.
	FlushTimeout Duration `json:"flushTimeout,omitzero"`
}

// Upstream is where records go: an aggregator that speaks the forward protocol (Fluentd, Fluent
// Bit), or an OTLP/HTTP receiver (an OpenTelemetry Collector, a backend).
type Upstream struct {
	// Protocol is ProtocolForward (default) or ProtocolOTLP.
	Protocol string `json:"protocol,omitempty"`
	// Servers are, in failover order (the agent uses the first that answers), host:port addresses
	// for the forward protocol and http://host:port[/path] or https:// URLs for OTLP (path
	// DefaultOTLPPath when there is none).
	Servers []string `json:"servers"`
	// TLS, when set, wraps the connection in TLS. With OTLP it applies to the https URLs, and is
	// refused when there is none.
	TLS *TLS `json:"tls,omitempty"`
	// HeadersDir is a directory whose files are HTTP headers of every OTLP request: a file's name
	// is the header's name, its content (without a trailing newline) the value. Read again for
	// every request, so that a rotated Secret takes effect without a restart. OTLP only.
	HeadersDir string `json:"headersDir,omitempty"`
	// SharedKeyFile is a file holding the forward protocol's shared key (HELO/PING/PONG
	// authentication); empty for none.
	SharedKeyFile string `json:"sharedKeyFile,omitempty"`
	// UsernameFile and PasswordFile hold the user of the forward protocol's user authentication
	// (Fluentd's <user>, Fluent Bit's security.users), which is part of the shared-key handshake:
	// both or neither, and only with SharedKeyFile. Empty: the agent answers a server that asks
	// for a user with an empty username and password, as Fluent Bit's out_forward does.
	UsernameFile string `json:"usernameFile,omitempty"`
	PasswordFile string `json:"passwordFile,omitempty"`
	// Mode is ModePackedForward (default) or ModeForward. Forward protocol only.
	Mode string `json:"mode,omitempty"`
	// Compression is CompressionNone (default) or CompressionGzip, which makes PackedForward
	// CompressedPackedForward.
	Compression string `json:"compression,omitempty"`
	// AckTimeout is how long to wait for a chunk's acknowledgement before resending it on a new
	// connection; with OTLP, for the answer to a request. Default 30s.
	AckTimeout Duration `json:"ackTimeout,omitzero"`
	// DialTimeout bounds one connection attempt. Default 5s.
	DialTimeout Duration `json:"dialTimeout,omitzero"`
}

// TLS configures the upstream connection's TLS.
type TLS struct {
	// CAFile is a PEM bundle of the CAs to trust; empty for the system roots.
	CAFile string `json:"caFile,omitempty"`
	// ServerName is the name expected in the server's certificate; default the host of the address.
	ServerName string `json:"serverName,omitempty"`
	// InsecureSkipVerify turns verification off, for tests only.
	InsecureSkipVerify bool `json:"insecureSkipVerify,omitempty"`
}

// Limits bound the agent's work and memory. See Defaults for the values used when zero.
type Limits struct {
	// MaxLineBytes is the longest record kept whole; longer ones are truncated and counted.
	MaxLineBytes int `json:"maxLineBytes,omitempty"`
	// BatchBytes is the size at which a batch is sent.
	BatchBytes int `json:"batchBytes,omitempty"`
	// MaxInflightBatches is how many batches may wait for acknowledgement; when they are all out,
	// reading stops (the files are the buffer).
	MaxInflightBatches int `json:"maxInflightBatches,omitempty"`
	// FlushInterval sends a batch that is not full after this long.
	FlushInterval Duration `json:"flushInterval,omitzero"`
	// PollInterval is how often globs are expanded and idle files looked at again.
	PollInterval Duration `json:"pollInterval,omitzero"`
	// MaxFiles bounds the number of files open at once; more matches wait their turn.
	MaxFiles int `json:"maxFiles,omitempty"`
}

// Defaults for zero fields.
//
// They are chosen so that the agent's worst case fits the injector's default memory limit of
// 128 Mi, with one tailed container (README, "Memory"):
//
//	batches    (MaxInflightBatches 4 + 1 being filled) × BatchBytes 1 MiB × 9/8    ≈  5.7 MiB
//	read buffer and fingerprint scratch, per container                         ≈  0.25 MiB
//	json scratch, one per container: ~12 B per byte of a 64 KiB line          ≈  0.75 MiB
//	multiline records: MaxFiles 1024 × 4 KiB + a 16 MiB budget for the agent  =  20 MiB
//	unfinished lines: MaxFiles 1024 × (MaxLineBytes 64 KiB + 1)               ≈  64 MiB
//	per-file bookkeeping, ~1 KiB × MaxFiles 1024                              ≈  1 MiB
//	first bytes of open files, 1 KiB × MaxFiles 1024                          ≈  1 MiB
//	heap, worst case                                                          ≈  93 MiB
//
// under the Go memory limit of MemoryLimitShare × 128 Mi = 102.4 MiB that the agent sets, with
// 25.6 MiB for the binary, stacks and what the kernel charges to the container. Raising MaxFiles
// or MaxLineBytes raises the unfinished-lines term (MaxFiles × MaxLineBytes): raise the agent's
// memory limit with them.
var Defaults = Limits{
	MaxLineBytes:       64 << 10,
	BatchBytes:         1 << 20,
	MaxInflightBatches: 4,
	FlushInterval:      Duration(time.Second),
	PollInterval:       Duration(250 * time.Millisecond),
	MaxFiles:           1024,
}

// Default durations for zero fields.
const (
	DefaultDrainTimeout = 20 * time.Second
	DefaultAckTimeout   = 30 * time.Second
	DefaultDialTimeout  = 5 * time.Second
	DefaultFlushTimeout = time.Second
	// DefaultCleanupSettle is Input.CleanupSettle's default: a writer that reopens its log on a
	// signal or a timer after a rotation has long done so, and a rotated file left unwritten
	// that long beside a newer one is left.
	DefaultCleanupSettle = 5 * time.Minute
)

// Decode reads one document strictly, fills in defaults and validates it. Errors name the field.
func Decode(r io.Reader) (*Config, error) {
	data, err := io.ReadAll(r)
	if err != nil {
		return nil, fmt.Errorf("reading agent config: %w", err)
	}
	if err := checkKeys(data); err != nil {
		return nil, fmt.Errorf("decoding agent config: %w", err)
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	var c Config
	if err := dec.Decode(&c); err != nil {
		return nil, fmt.Errorf("decoding agent config: %w", err)
	}
	if dec.More() {
		return nil, errors.New("decoding agent config: more than one JSON document")
	}
	if err := c.Validate(); err != nil {
		return nil, err
	}
	c.setDefaults()
	return &c, nil
}

// Validate reports the first thing wrong with the upstream's servers, mode and compression.
// Config.Validate calls it; the forward client does too, for an Upstream built in code.
func (u *Upstream) Validate() error {
	switch u.Protocol {
	case "", ProtocolForward:
	case ProtocolOTLP:
		return u.validateOTLP()
	default:
		return fmt.Errorf("upstream.protocol: got %q, want %q or %q", u.Protocol, ProtocolForward, ProtocolOTLP)
	}
	if u.HeadersDir != "" {
		return fmt.Errorf("upstream.headersDir: HTTP headers are for protocol %q only", ProtocolOTLP)
	}
	if len(u.Servers) == 0 {
		return errors.New("upstream.servers: at least one host:port is required")
	}
	for i, s := range u.Servers {
		if err := CheckHostPort(s); err != nil {
			return fmt.Errorf("upstream.servers[%d]: %w", i, err)
		}
	}
	if field, err := CheckMessage(u.Mode, u.Compression); err != nil {
		return fmt.Errorf("upstream.%s: %w", field, err)
	}
	switch {
	case (u.UsernameFile == "") != (u.PasswordFile == ""):
		return errors.New("upstream.usernameFile, upstream.passwordFile: set both or neither")
	case u.UsernameFile != "" && u.SharedKeyFile == "":
		return errors.New("upstream.usernameFile: user authentication is part of the shared-key handshake: set upstream.sharedKeyFile too")
	}
	return nil
}

func (u *Upstream) validateOTLP() error {
	if len(u.Servers) == 0 {
		return errors.New("upstream.servers: at least one http:// or https:// URL is required")
	}
	https := false
	for i, s := range u.Servers {
		scheme, err := CheckURL(s)
		if err != nil {
			return fmt.Errorf("upstream.servers[%d]: %w", i, err)
		}
		https = https || scheme == "https"
	}
	switch {
	case u.TLS != nil && !https:
		return errors.New("upstream.tls: set, but no server is an https:// URL")
	case u.Mode != "":
		return fmt.Errorf("upstream.mode: a forward-protocol message mode, not for protocol %q", ProtocolOTLP)
	case u.SharedKeyFile != "":
		return fmt.Errorf("upstream.sharedKeyFile: the forward protocol's handshake, not for protocol %q (use headersDir)", ProtocolOTLP)
	case u.UsernameFile != "" || u.PasswordFile != "":
		return fmt.Errorf("upstream.usernameFile: the forward protocol's handshake, not for protocol %q (use headersDir)", ProtocolOTLP)
	}
	if field, err := CheckMessage("", u.Compression); err != nil {
		return fmt.Errorf("upstream.%s: %w", field, err)
	}
	return nil
}

// CheckURL reports whether s is an OTLP/HTTP URL, http://host:port[/path] or https://, and
// returns its scheme. A query, a fragment and a user are refused: the URL travels in the pod's
// spec, so credentials belong in headers from a Secret.
func CheckURL(s string) (scheme string, err error) {
	const want = "want http://host:port[/path] or https://host:port[/path]"
	u, err := url.Parse(s)
	if err != nil {
		return "", fmt.Errorf("%q is not a URL (%s): %w", s, want, err)
	}
	switch {
	case u.Scheme != "http" && u.Scheme != "https":
		return "", fmt.Errorf("%q: scheme must be http or https; %s", s, want)
	case u.Opaque != "" || u.Host == "":
		return "", fmt.Errorf("%q has no host; %s", s, want)
	case u.User != nil:
		return "", fmt.Errorf("%q: no user in the URL: put credentials in headers from a Secret", s)
	case u.RawQuery != "" || u.ForceQuery || u.Fragment != "":
		return "", fmt.Errorf("%q: no query or fragment; %s", s, want)
	}
	if err := CheckHostPort(u.Host); err != nil {
		return "", fmt.Errorf("%q: %w; %s", s, err, want)
	}
	return u.Scheme, nil
}

// CheckMessage checks a message mode and a compression ("" is the default of each) and names
// the one at fault: "mode" or "compression".
func CheckMessage(mode, compression string) (field string, err error) {
	switch compression {
	case "", CompressionNone, CompressionGzip:
	default:
		return "compression", fmt.Errorf("got %q, want %q or %q", compression, CompressionNone, CompressionGzip)
	}
	switch mode {
	case "", ModePackedForward:
	case ModeForward:
		if compression == CompressionGzip {
			return "mode", fmt.Errorf("%s entries cannot be compressed (gzip is CompressedPackedForward): use mode %s or compression %s",
				ModeForward, ModePackedForward, CompressionNone)
		}
	default:
		return "mode", fmt.Errorf("got %q, want %q or %q", mode, ModePackedForward, ModeForward)
	}
	return "", nil
}

// Parse is Decode of a byte slice.
func Parse(b []byte) (*Config, error) { return Decode(bytes.NewReader(b)) }

// Encode renders c as compact JSON, as the injector puts it in SIDELOG_CONFIG.
func (c *Config) Encode() ([]byte, error) { return json.Marshal(c) }

// SetDefaults fills u's zero protocol, message mode, compression and timeouts. Parse does it;
// the clients do it too, for an Upstream built in code.
func (u *Upstream) SetDefaults() {
	u.Protocol = cmp.Or(u.Protocol, ProtocolForward)
	if u.Protocol == ProtocolForward {
		u.Mode = cmp.Or(u.Mode, ModePackedForward)
	}
	u.Compression = cmp.Or(u.Compression, CompressionNone)
	if u.AckTimeout <= 0 {
		u.AckTimeout = Duration(DefaultAckTimeout)
	}
	if u.DialTimeout <= 0 {
		u.DialTimeout = Duration(DefaultDialTimeout)
	}
}

func (c *Config) setDefaults() {
	l, d := &c.Limits, Defaults
	l.MaxLineBytes = cmp.Or(l.MaxLineBytes, d.MaxLineBytes)
	l.BatchBytes = cmp.Or(l.BatchBytes, d.BatchBytes)
	l.MaxInflightBatches = cmp.Or(l.MaxInflightBatches, d.MaxInflightBatches)
	l.FlushInterval = cmp.Or(l.FlushInterval, d.FlushInterval)
	l.PollInterval = cmp.Or(l.PollInterval, d.PollInterval)
	l.MaxFiles = cmp.Or(l.MaxFiles, d.MaxFiles)
	c.DrainTimeout = cmp.Or(c.DrainTimeout, Duration(DefaultDrainTimeout))
	c.Upstream.SetDefaults()
	for i := range c.Inputs {
		in := &c.Inputs[i]
		in.Parser = cmp.Or(in.Parser, ParserNone)
		in.ReadFrom = cmp.Or(in.ReadFrom, ReadFromHead)
		if in.TimeKey != "" {
			in.TimeFormat = cmp.Or(in.TimeFormat, TimeRFC3339)
		}
		if in.Multiline != nil {
			in.Multiline.FlushTimeout = cmp.Or(in.Multiline.FlushTimeout, Duration(DefaultFlushTimeout))
		}
	}
}

// Validate reports the first thing wrong with c, naming the field.
func (c *Config) Validate() error {
	if c.Version != Version {
		return fmt.Errorf("version: got %q, want %q", c.Version, Version)
	}
	if len(c.Inputs) == 0 {
		return errors.New("inputs: at least one input is required")
	}
	seen := map[string]bool{}
	for i, in := range c.Inputs {
		field := fmt.Sprintf("inputs[%d]", i)
		if in.Container == "" {
			return fmt.Errorf("%s.container: required", field)
		}
		if seen[in.Container] {
			return fmt.Errorf("%s.container: %q appears twice", field, in.Container)
		}
		seen[in.Container] = true
		if len(in.Paths) == 0 {
			return fmt.Errorf("%s.paths: at least one glob is required", field)
		}
		for j, p := range in.Paths {
			if err := CheckGlob(p); err != nil {
				return fmt.Errorf("%s.paths[%d]: %w", field, j, err)
			}
		}
		for j, p := range in.Exclude {
			if err := CheckGlob(p); err != nil {
				return fmt.Errorf("%s.exclude[%d]: %w", field, j, err)
			}
		}
		switch in.Parser {
		case "", ParserNone, ParserJSON:
		default:
			return fmt.Errorf("%s.parser: got %q, want %q or %q", field, in.Parser, ParserNone, ParserJSON)
		}
		switch in.ReadFrom {
		case "", ReadFromHead, ReadFromTail:
		default:
			return fmt.Errorf("%s.readFrom: got %q, want %q or %q", field, in.ReadFrom, ReadFromHead, ReadFromTail)
		}
		if in.IgnoreOlder < 0 {
			return fmt.Errorf("%s.ignoreOlder: must not be negative", field)
		}
		if in.TimeKey != "" && in.Parser != ParserJSON {
			return fmt.Errorf("%s.timeKey: needs parser %q: only a parsed line has fields", field, ParserJSON)
		}
		if in.TimeFormat != "" {
			if in.TimeKey == "" {
				return fmt.Errorf("%s.timeFormat: set timeKey too: it says which field the format is for", field)
			}
			if err := CheckTimeFormat(in.TimeFormat); err != nil {
				return fmt.Errorf("%s.timeFormat: %w", field, err)
			}
		}
		if r := in.RateLimit; r != nil && (r.BytesPerSecond < 0 || r.LinesPerSecond < 0) {
			return fmt.Errorf("%s.rateLimit: must not be negative", field)
		}
		for j, p := range in.Cleanup {
			if err := CheckGlob(p); err != nil {
				return fmt.Errorf("%s.cleanup[%d]: %w", field, j, err)
			}
		}
		if in.CleanupSettle < 0 {
			return fmt.Errorf("%s.cleanupSettle: must not be negative", field)
		}
		if in.CleanupSettle != 0 && len(in.Cleanup) == 0 {
			return fmt.Errorf("%s.cleanupSettle: set cleanup too: it says which files settle", field)
		}
		if m := in.Multiline; m != nil {
			if err := m.check(); err != nil {
				return fmt.Errorf("%s.multiline%w", field, err)
			}
		}
	}
	if err := c.Upstream.Validate(); err != nil {
		return err
	}
	if err := checkOwners(c.Owners); err != nil {
		return err
	}
	for k, v := range c.NamespaceLabels {
		switch {
		case k == "":
			return errors.New("namespaceLabels: a label has an empty key")
		case !utf8.ValidString(k) || !utf8.ValidString(v):
			return fmt.Errorf("namespaceLabels: label %q is not UTF-8", k)
		}
	}
	if field := c.Limits.Negative(); field != "" {
		return fmt.Errorf("limits.%s: must not be negative", field)
	}
	for _, f := range []struct {
		name string
		v    int64
	}{
		{"drainTimeout", int64(c.DrainTimeout)},
		{"upstream.ackTimeout", int64(c.Upstream.AckTimeout)},
		{"upstream.dialTimeout", int64(c.Upstream.DialTimeout)},
	} {
		if f.v < 0 {
			return fmt.Errorf("%s: must not be negative", f.name)
		}
	}
	return nil
}

// checkOwners reports the first owner without a kind or a name, or whose kind is not an
// identifier (kinds are CamelCase words: they become field names and attribute keys).
func checkOwners(owners []Owner) error {
	if len(owners) > MaxOwners {
		return fmt.Errorf("owners: %d of them, at most %d", len(owners), MaxOwners)
	}
	for i, o := range owners {
		switch {
		case !kindPattern.MatchString(o.Kind):
			return fmt.Errorf("owners[%d].kind: got %q, want a kind such as \"Deployment\" (letters and digits, first a letter)", i, o.Kind)
		case o.Name == "":
			return fmt.Errorf("owners[%d].name: required", i)
		case !utf8.ValidString(o.Name):
			return fmt.Errorf("owners[%d].name: %q is not UTF-8", i, o.Name)
		case len(o.Name) > 253:
			return fmt.Errorf("owners[%d].name: %d bytes, longer than a Kubernetes name (253)", i, len(o.Name))
		}
	}
	return nil
}

var kindPattern = regexp.MustCompile(`^[A-Za-z][A-Za-z0-9]{0,62}$`)

// Workload returns the last of owners, the pod's workload, and whether there is one.
func Workload(owners []Owner) (Owner, bool) {
	if len(owners) == 0 {
		return Owner{}, false
	}
	return owners[len(owners)-1], true
}

// Negative returns the JSON name of the first negative limit, or "" when there is none.
func (l Limits) Negative() string {
	for _, f := range []struct {
		name string
		v    int64
	}{
		{"maxLineBytes", int64(l.MaxLineBytes)},
		{"batchBytes", int64(l.BatchBytes)},
		{"maxInflightBatches", int64(l.MaxInflightBatches)},
		{"flushInterval", int64(l.FlushInterval)},
		{"pollInterval", int64(l.PollInterval)},
		{"maxFiles", int64(l.MaxFiles)},
	} {
		if f.v < 0 {
			return f.name
		}
	}
	return ""
}

func (m *Multiline) check() error {
	switch {
	case m.Preset != "" && m.FirstLine != "":
		return errors.New(": set preset or firstLine, not both")
	case m.Preset != "":
		for _, p := range MultilinePresets {
			if p == m.Preset {
				return nil
			}
		}
		return fmt.Errorf(".preset: unknown preset %q, want one of %s", m.Preset, strings.Join(MultilinePresets, ", "))
	case m.FirstLine != "":
		if _, err := regexp.Compile(m.FirstLine); err != nil {
			return fmt.Errorf(".firstLine: %w", err)
		}
		return nil
	default:
		return errors.New(": set preset or firstLine")
	}
}

// CheckGlob reports whether g is an absolute, clean glob that path.Match understands in every
// segment, "**" alone in a segment standing for any number of directories.
func CheckGlob(g string) error {
	if g == "" {
		return errors.New("empty glob")
	}
	if !strings.HasPrefix(g, "/") {
		return fmt.Errorf("%q is not absolute: it must start with /", g)
	}
	if path.Clean(g) != g {
		return fmt.Errorf("%q is not clean (no //, ., .. or trailing /): did you mean %q?", g, path.Clean(g))
	}
	for _, seg := range strings.Split(g[1:], "/") {
		if seg == ".." {
			return fmt.Errorf("%q must not contain ..", g)
		}
		if seg == "**" {
			continue
		}
		if strings.Contains(seg, "**") {
			return fmt.Errorf("%q: ** must be a whole path segment", g)
		}
		if _, err := path.Match(seg, ""); err != nil {
			return fmt.Errorf("%q: bad pattern in %q: %w", g, seg, err)
		}
	}
	return nil
}

// CheckHostPort reports whether s is host:port with a port from 1 to 65535.
func CheckHostPort(s string) error {
	host, port, err := net.SplitHostPort(s)
	if err != nil {
		return fmt.Errorf("%q is not host:port: %w", s, err)
	}
	if host == "" {
		return fmt.Errorf("%q has no host", s)
	}
	n, err := strconv.Atoi(port)
	if err != nil || n < 1 || n > 65535 {
		return fmt.Errorf("%q: port must be a number from 1 to 65535", s)
	}
	return nil
}

// Duration is a time.Duration written as a Go duration string ("1s", "250ms") in JSON.
type Duration time.Duration

// D returns d as a time.Duration.
func (d Duration) D() time.Duration { return time.Duration(d) }

// MarshalJSON writes d as a duration string.
func (d Duration) MarshalJSON() ([]byte, error) {
	return json.Marshal(time.Duration(d).String())
}

// UnmarshalJSON reads a duration string such as "1.5s".
func (d *Duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return fmt.Errorf("duration must be a string such as \"5s\", got %s", b)
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return fmt.Errorf("duration %q: %w", s, err)
	}
	*d = Duration(v)
	return nil
}

// The pod identity the agent reads from its environment; the injector sets each from the
// downward API (fieldRef).
const (
	EnvPodName      = "POD_NAME"      // metadata.name
	EnvPodNamespace = "POD_NAMESPACE" // metadata.namespace
	EnvPodUID       = "POD_UID"       // metadata.uid
	EnvNodeName     = "NODE_NAME"     // spec.nodeName
)

// EnvMemoryLimit is the agent container's memory limit in bytes, a plain number: the injector
// sets it from the downward API (resourceFieldRef limits.memory of the agent container, divisor
// 1). Unless GOMEMLIMIT is set, the agent gives the Go runtime a soft limit of MemoryLimitShare
// of it, so that the garbage collector works harder before the container is killed.
const EnvMemoryLimit = "SIDELOG_MEMORY_LIMIT"

// EnvReceiptFile is the file the agent writes its delivery receipt to when it exits: its
// container's terminationMessagePath, which the injector sets. Unset, no receipt is written. An
// environment variable rather than a flag, so that an older agent image ignores it.
const EnvReceiptFile = "SIDELOG_RECEIPT_FILE"

// EnvReceiptMaxBytes is the most bytes the receipt may take, a plain number: the kubelet keeps at
// most 4096 of one container's termination message, and less in a pod of more than three
// containers (12 KiB shared among them), which the injector counts. Unset or not a positive
// number: 4096.
const EnvReceiptMaxBytes = "SIDELOG_RECEIPT_MAX_BYTES"

// MemoryLimitShare is the share of the container's memory limit that the agent gives the Go
// runtime as its soft limit (GOMEMLIMIT). The rest is for what the runtime does not count and the
// limit does: the binary's text and data (about 5 MiB resident), thread stacks, and the socket
// buffers and page cache that the kernel charges to the container; 20% of 128 MiB is 25.6 MiB.
const MemoryLimitShare = 0.8
