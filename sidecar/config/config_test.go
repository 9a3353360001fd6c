package config

import (
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
)

const minimal = `{"version":"sidelog.io/agent/v1","inputs":[{"container":"app","paths":["/var/log/app/*.log"]}],"upstream":{"servers":["fluentd.logging:24224"]}}`

func TestDecodeFillsDefaults(t *testing.T) {
	c, err := Parse([]byte(minimal))
	if err != nil {
		t.Fatal(err)
	}
	want := &Config{
		Version: Version,
		Inputs:  []Input{{Container: "app", Paths: []string{"/var/log/app/*.log"}, Parser: ParserNone, ReadFrom: ReadFromHead}},
		Upstream: Upstream{
			Protocol:    ProtocolForward,
			Servers:     []string{"fluentd.logging:24224"},
			Mode:        ModePackedForward,
			Compression: CompressionNone,
			AckTimeout:  Duration(DefaultAckTimeout),
			DialTimeout: Duration(DefaultDialTimeout),
		},
		Limits:       Defaults,
		DrainTimeout: Duration(DefaultDrainTimeout),
	}
	if diff := cmp.Diff(want, c); diff != "" {
		t.Errorf("Parse(minimal) mismatch (-want +got):\n%s", diff)
	}
}

func TestRoundTrip(t *testing.T) {
	c, err := Parse([]byte(minimal))
	if err != nil {
		t.Fatal(err)
	}
	c.Inputs[0].Multiline = &Multiline{Preset: "java", FlushTimeout: Duration(1500 * time.Millisecond)}
	c.Inputs[0].ReadFrom, c.Inputs[0].IgnoreOlder = ReadFromTail, Duration(72*time.Hour)
	c.Inputs[0].Parser, c.Inputs[0].TimeKey, c.Inputs[0].TimeFormat = ParserJSON, "ts", TimeEpochMillis
	c.Inputs[0].RateLimit = &RateLimit{BytesPerSecond: 1 << 20, LinesPerSecond: 1000}
	b, err := c.Encode()
	if err != nil {
		t.Fatal(err)
	}
	back, err := Parse(b)
	if err != nil {
		t.Fatalf("Parse(Encode()) = %v\n%s", err, b)
	}
	if diff := cmp.Diff(c, back); diff != "" {
		t.Errorf("round trip mismatch (-want +got):\n%s", diff)
	}
}

func TestDecodeErrorsNameTheField(t *testing.T) {
	tests := []struct {
		name, doc, want string
	}{
		{"unknown field", `{"version":"sidelog.io/agent/v1","bogus":1}`, `unknown field "bogus"`},
		{"wrong version", `{"version":"v0"}`, `version: got "v0"`},
		{"no inputs", `{"version":"sidelog.io/agent/v1","upstream":{"servers":["a:1"]}}`, "inputs: at least one"},
		{"relative path", strings.Replace(minimal, "/var/log/app/*.log", "var/log/*.log", 1), "inputs[0].paths[0]: \"var/log/*.log\" is not absolute"},
		{"dotdot", strings.Replace(minimal, "/var/log/app/*.log", "/var/log/../etc/*", 1), "is not clean"},
		{"bad glob", strings.Replace(minimal, "/var/log/app/*.log", "/var/log/[a.log", 1), "bad pattern"},
		{"bad double star", strings.Replace(minimal, "/var/log/app/*.log", "/var/log/a**/x", 1), "** must be a whole path segment"},
		{"bad upstream", strings.Replace(minimal, "fluentd.logging:24224", "fluentd", 1), "upstream.servers[0]"},
		{"bad port", strings.Replace(minimal, "fluentd.logging:24224", "fluentd:99999", 1), "port must be a number"},
		{"bad parser", strings.Replace(minimal, `"container":"app"`, `"container":"app","parser":"xml"`, 1), `inputs[0].parser: got "xml"`},
		{"bad preset", strings.Replace(minimal, `"container":"app"`, `"container":"app","multiline":{"preset":"cobol"}`, 1), `inputs[0].multiline.preset: unknown preset "cobol"`},
		{"bad regex", strings.Replace(minimal, `"container":"app"`, `"container":"app","multiline":{"firstLine":"("}`, 1), `inputs[0].multiline.firstLine`},
		{"both", strings.Replace(minimal, `"container":"app"`, `"container":"app","multiline":{"preset":"go","firstLine":"x"}`, 1), "not both"},
		{"bad duration", strings.Replace(minimal, `"version"`, `"drainTimeout":"soon","version"`, 1), `duration "soon"`},
		{"numeric duration", strings.Replace(minimal, `"version"`, `"drainTimeout":5,"version"`, 1), `duration must be a string`},
		{"negative", strings.Replace(minimal, `"version"`, `"limits":{"batchBytes":-1},"version"`, 1), "limits.batchBytes: must not be negative"},
		{"two documents", minimal + minimal, "more than one JSON document"},
		{"other capitals", strings.Replace(minimal, `"version"`, `"Version"`, 1), "Version: unknown field; did you mean version? (names are case-sensitive)"},
		{"other capitals, nested", strings.Replace(minimal, `"container":"app"`, `"container":"app","multiline":{"Preset":"go"}`, 1), "inputs[0].multiline.Preset: unknown field; did you mean inputs[0].multiline.preset?"},
		{"key twice", strings.Replace(minimal, `"version"`, `"upstream":{"servers":["a:1"]},"version"`, 1), "upstream: appears twice in one object"},
		{"key twice, nested", strings.Replace(minimal, `"container":"app"`, `"container":"app","container":"api"`, 1), "inputs[0].container: appears twice in one object"},
		{"user without password", strings.Replace(minimal, `"servers"`, `"sharedKeyFile":"/k","usernameFile":"/u","servers"`, 1), "upstream.usernameFile, upstream.passwordFile: set both or neither"},
		{"user without shared key", strings.Replace(minimal, `"servers"`, `"usernameFile":"/u","passwordFile":"/p","servers"`, 1), "upstream.usernameFile: user authentication is part of the shared-key handshake: set upstream.sharedKeyFile too"},
		{"bad protocol", strings.Replace(minimal, `"servers"`, `"protocol":"grpc","servers"`, 1), `upstream.protocol: got "grpc", want "forward" or "otlp"`},
		{"otlp with host:port", strings.Replace(minimal, `"servers"`, `"protocol":"otlp","servers"`, 1), `upstream.servers[0]: "fluentd.logging:24224": scheme must be http or https`},
		{"otlp without port", otlp(`"servers":["http://collector/v1/logs"]`), `upstream.servers[0]: "http://collector/v1/logs": "collector" is not host:port`},
		{"otlp with a query", otlp(`"servers":["http://c:4318/v1/logs?x=1"]`), `upstream.servers[0]: "http://c:4318/v1/logs?x=1": no query or fragment`},
		{"otlp with a user", otlp(`"servers":["https://u:p@c:4318"]`), `no user in the URL`},
		{"otlp tls without https", otlp(`"servers":["http://c:4318"],"tls":{}`), `upstream.tls: set, but no server is an https:// URL`},
		{"otlp mode", otlp(`"servers":["http://c:4318"],"mode":"Forward"`), `upstream.mode: a forward-protocol message mode`},
		{"otlp shared key", otlp(`"servers":["http://c:4318"],"sharedKeyFile":"/k"`), `upstream.sharedKeyFile: the forward protocol's handshake`},
		{"otlp bad compression", otlp(`"servers":["http://c:4318"],"compression":"zstd"`), `upstream.compression: got "zstd"`},
		{"headers with forward", strings.Replace(minimal, `"servers"`, `"headersDir":"/h","servers"`, 1), `upstream.headersDir: HTTP headers are for protocol "otlp" only`},
		{"bad readFrom", strings.Replace(minimal, `"container":"app"`, `"container":"app","readFrom":"end"`, 1), `inputs[0].readFrom: got "end", want "head" or "tail"`},
		{"negative ignoreOlder", strings.Replace(minimal, `"container":"app"`, `"container":"app","ignoreOlder":"-1h"`, 1), `inputs[0].ignoreOlder: must not be negative`},
		{"negative rateLimit", strings.Replace(minimal, `"container":"app"`, `"container":"app","rateLimit":{"linesPerSecond":-1}`, 1), `inputs[0].rateLimit: must not be negative`},
		{"rateLimit misspelt", strings.Replace(minimal, `"container":"app"`, `"container":"app","rateLimit":{"bytesPerSec":1}`, 1), `bytesPerSec`},
		{"timeKey without json", strings.Replace(minimal, `"container":"app"`, `"container":"app","timeKey":"ts"`, 1), `inputs[0].timeKey: needs parser "json"`},
		{"relative cleanup glob", strings.Replace(minimal, `"container":"app"`, `"container":"app","cleanup":["app.log.*"]`, 1), `inputs[0].cleanup[0]: "app.log.*" is not absolute`},
		{"negative cleanupSettle", strings.Replace(minimal, `"container":"app"`, `"container":"app","cleanup":["/l/a.log.*"],"cleanupSettle":"-1s"`, 1), `inputs[0].cleanupSettle: must not be negative`},
		{"cleanupSettle without cleanup", strings.Replace(minimal, `"container":"app"`, `"container":"app","cleanupSettle":"1m"`, 1), `inputs[0].cleanupSettle: set cleanup too`},
		{"timeFormat without timeKey", strings.Replace(minimal, `"container":"app"`, `"container":"app","parser":"json","timeFormat":"rfc3339"`, 1), `inputs[0].timeFormat: set timeKey too`},
		{"bad timeFormat", strings.Replace(minimal, `"container":"app"`, `"container":"app","parser":"json","timeKey":"ts","timeFormat":"iso"`, 1), `inputs[0].timeFormat: "iso" is neither a preset`},
		{"owner without kind", strings.Replace(minimal, `"version"`, `"owners":[{"kind":"","name":"web"}],"version"`, 1), `owners[0].kind: got "", want a kind such as "Deployment"`},
		{"owner kind not a word", strings.Replace(minimal, `"version"`, `"owners":[{"kind":"apps/Deployment","name":"web"}],"version"`, 1), `owners[0].kind: got "apps/Deployment"`},
		{"owner without name", strings.Replace(minimal, `"version"`, `"owners":[{"kind":"ReplicaSet","name":"web-1"},{"kind":"Deployment"}],"version"`, 1), `owners[1].name: required`},
		{"too many owners", strings.Replace(minimal, `"version"`, `"owners":[{"kind":"A","name":"a"},{"kind":"B","name":"b"},{"kind":"C","name":"c"},{"kind":"D","name":"d"},{"kind":"E","name":"e"}],"version"`, 1), `owners: 5 of them, at most 4`},
		{"owner unknown field", strings.Replace(minimal, `"version"`, `"owners":[{"kind":"Job","name":"j","uid":"x"}],"version"`, 1), `unknown field "uid"`},
		{"namespace label without key", strings.Replace(minimal, `"version"`, `"namespaceLabels":{"":"x"},"version"`, 1), `namespaceLabels: a label has an empty key`},
		{"namespace label not a string", strings.Replace(minimal, `"version"`, `"namespaceLabels":{"team":1},"version"`, 1), `namespaceLabels`},
		{"duplicate container", strings.Replace(minimal, `]}],`, `]},{"container":"app","paths":["/x"]}],`, 1), `inputs[1].container: "app" appears twice`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse([]byte(tt.doc))
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("Parse() error = %v, want it to contain %q", err, tt.want)
			}
		})
	}
}

// otlp returns minimal with an OTLP upstream whose other fields are upstream.
func otlp(upstream string) string {
	return strings.Replace(minimal, `{"servers":["fluentd.logging:24224"]}`, `{"protocol":"otlp",`+upstream+`}`, 1)
}

// TestOwnersAndNamespaceLabels: the identity the webhook resolves survives a round trip, an
// empty namespace label map (known, none) stays apart from an absent one (not known), and a
// document written before these fields existed still decodes.
func TestOwnersAndNamespaceLabels(t *testing.T) {
	c, err := Parse([]byte(minimal))
	if err != nil {
		t.Fatal(err)
	}
	if c.Owners != nil || c.NamespaceLabels != nil {
		t.Fatalf("minimal document: owners %v, namespace labels %v, want none", c.Owners, c.NamespaceLabels)
	}
	c.Owners = []Owner{{Kind: "ReplicaSet", Name: "web-5d8f7c"}, {Kind: "Deployment", Name: "web"}}
	c.NamespaceLabels = map[string]string{"team": "payments", "kubernetes.io/metadata.name": "shop"}
	b, err := c.Encode()
	if err != nil {
		t.Fatal(err)
	}
	back, err := Parse(b)
	if err != nil {
		t.Fatalf("Parse(Encode()) = %v\n%s", err, b)
	}
	if diff := cmp.Diff(c, back); diff != "" {
		t.Errorf("round trip mismatch (-want +got):\n%s", diff)
	}
	if w, ok := Workload(back.Owners); !ok || w != (Owner{Kind: "Deployment", Name: "web"}) {
		t.Errorf("Workload = %v, %v, want the Deployment", w, ok)
	}
	c.NamespaceLabels = map[string]string{}
	if b, err = c.Encode(); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(b), `"namespaceLabels":{}`) {
		t.Errorf("an empty label map is left out, so it would read back as not known:\n%s", b)
	}
	if back, err = Parse(b); err != nil || back.NamespaceLabels == nil {
		t.Errorf("Parse: namespace labels %#v, %v, want an empty map", back.NamespaceLabels, err)
	}
	if _, ok := Workload(nil); ok {
		t.Error("Workload(nil) says there is one")
	}
}

func TestDecodeOTLP(t *testing.T) {
	c, err := Parse([]byte(otlp(`"servers":["https://otel.example:4318","http://[::1]:4318/custom/logs"],"tls":{"caFile":"/ca"},"headersDir":"/h","compression":"gzip"`)))
	if err != nil {
		t.Fatal(err)
	}
	want := Upstream{
		Protocol:    ProtocolOTLP,
		Servers:     []string{"https://otel.example:4318", "http://[::1]:4318/custom/logs"},
		TLS:         &TLS{CAFile: "/ca"},
		HeadersDir:  "/h",
		Compression: CompressionGzip,
		AckTimeout:  Duration(DefaultAckTimeout),
		DialTimeout: Duration(DefaultDialTimeout),
	}
	if diff := cmp.Diff(want, c.Upstream); diff != "" {
		t.Errorf("upstream mismatch (-want +got):\n%s", diff)
	}
}

func TestCheckGlobAcceptsDoubleStar(t *testing.T) {
	for _, g := range []string{"/var/log/**/*.log", "/a/**", "/var/log/app-?.log", "/x/[ab]*.json"} {
		if err := CheckGlob(g); err != nil {
			t.Errorf("CheckGlob(%q) = %v, want nil", g, err)
		}
	}
}

// FuzzParse checks that no document makes the decoder panic, and that whatever it accepts
// survives an encode/decode round trip unchanged.
func FuzzParse(f *testing.F) {
	f.Add([]byte(minimal))
	f.Add([]byte(`{"version":"sidelog.io/agent/v1","inputs":[{"container":"a","paths":["/**"],"multiline":{"firstLine":"^\\d"}}],"upstream":{"servers":["[::1]:1"],"tls":{}},"limits":{"maxLineBytes":1}}`))
	f.Add([]byte(`{"version":"sidelog.io/agent/v1","drainTimeout":"1h"}`))
	f.Add([]byte(strings.Replace(minimal, `"version"`, `"owners":[{"kind":"Job","name":"nightly-29"},{"kind":"CronJob","name":"nightly"}],"namespaceLabels":{"team":"a","empty":""},"version"`, 1)))
	f.Add([]byte(otlp(`"servers":["https://otel.example:4318/v1/logs"],"tls":{"serverName":"otel"},"headersDir":"/h","compression":"gzip"`)))
	f.Fuzz(func(t *testing.T, b []byte) {
		c, err := Parse(b)
		if err != nil {
			return
		}
		out, err := c.Encode()
		if err != nil {
			t.Fatalf("Encode of an accepted config: %v", err)
		}
		back, err := Parse(out)
		if err != nil {
			t.Fatalf("Parse(Encode(c)) = %v\n%s", err, out)
		}
		// An empty list and an absent one mean the same; Encode omits both.
		if diff := cmp.Diff(c, back, cmpopts.EquateEmpty()); diff != "" {
			t.Fatalf("round trip mismatch (-want +got):\n%s", diff)
		}
	})
}
