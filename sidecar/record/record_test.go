package record

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/sidelog/sidelog/sidecar/config"
	"github.com/sidelog/sidelog/sidecar/msgpack"
	"github.com/sidelog/sidelog/sidecar/parse"
)

var pod = Pod{
	Namespace: "shop",
	Name:      "web-7d9c",
	UID:       "0d6c2b7e-1111-2222-3333-444455556666",
	Node:      "virtual-kubelet-eci",
	Labels:    map[string]string{"app": "web", "tier": "frontend", "pod-template-hash": "7d9c"},
}

func kubernetes(labels map[string]any) map[string]any {
	return map[string]any{
		"namespace_name": "shop",
		"pod_name":       "web-7d9c",
		"pod_id":         "0d6c2b7e-1111-2222-3333-444455556666",
		"container_name": "app",
		"host":           "virtual-kubelet-eci",
		"labels":         labels,
	}
}

var podLabels = map[string]any{"app": "web", "tier": "frontend", "pod-template-hash": "7d9c"}

// entry decodes one [time, record] entry.
func entry(t *testing.T, b []byte) (time.Time, map[string]any, []byte) {
	t.Helper()
	v, rest, err := msgpack.Decode(b)
	if err != nil {
		t.Fatalf("decoding entry: %v", err)
	}
	a, ok := v.([]any)
	if !ok || len(a) != 2 {
		t.Fatalf("entry is %#v, want [time, record]", v)
	}
	ts, ok := a[0].(time.Time)
	if !ok {
		t.Fatalf("entry time is a %T, want an EventTime", a[0])
	}
	rec, ok := a[1].(map[string]any)
	if !ok {
		t.Fatalf("entry record is a %T, want a map", a[1])
	}
	return ts, rec, rest
}

func TestTag(t *testing.T) {
	if got, want := Tag(pod, "app"), "kube.shop.web-7d9c.app"; got != want {
		t.Errorf("Tag = %q, want %q", got, want)
	}
}

func TestAppendLine(t *testing.T) {
	when := time.Date(2024, 5, 1, 10, 0, 0, 123456789, time.UTC)
	tests := []struct {
		name string
		line string
	}{
		{"empty", ""},
		{"short", "GET /healthz 200"},
		{"NUL and invalid UTF-8", "a\x00b\xff\xfe\xed\xa0\x80c"},
		{"31 bytes", strings.Repeat("a", 31)},
		{"32 bytes", strings.Repeat("b", 32)},
		{"255 bytes", strings.Repeat("c", 255)},
		{"256 bytes", strings.Repeat("d", 256)},
		{"65535 bytes", strings.Repeat("e", 65535)},
		{"65536 bytes", strings.Repeat("f", 65536)},
		{"multiline", "Exception in thread \"main\" java.lang.Error\n\tat A.b(A.java:1)\n\tat A.main(A.java:9)"},
	}
	for _, parser := range []string{config.ParserNone, config.ParserJSON, ""} {
		e := NewEncoder(pod, "app", "/var/log/app/app.log", parser)
		for _, tt := range tests {
			b, parsed := e.Append([]byte("prefix"), when, []byte(tt.line))
			if parsed {
				t.Errorf("%s/%s: parsed = true for a plain line", parser, tt.name)
			}
			if !bytes.HasPrefix(b, []byte("prefix")) {
				t.Fatalf("%s/%s: Append overwrote dst", parser, tt.name)
			}
			ts, rec, rest := entry(t, b[len("prefix"):])
			if len(rest) != 0 {
				t.Errorf("%s/%s: %d bytes after the entry", parser, tt.name, len(rest))
			}
			if !ts.Equal(when) {
				t.Errorf("%s/%s: time %v, want %v", parser, tt.name, ts, when)
			}
			want := map[string]any{"log": tt.line, "file": "/var/log/app/app.log", "kubernetes": kubernetes(podLabels)}
			if diff := cmp.Diff(want, rec); diff != "" {
				t.Errorf("%s/%s: record (-want +got):\n%s", parser, tt.name, diff)
			}
		}
	}
}

func TestAppendJSON(t *testing.T) {
	when := time.Unix(1700000000, 1)
	e := NewEncoder(pod, "app", "/var/log/app/audit.json", config.ParserJSON)
	tests := []struct {
		name   string
		line   string
		parsed bool
		want   map[string]any
	}{
		{
			"object", `{"level":"info","msg":"served","status":200,"ctx":{"ms":1.5,"ids":[1,2]}}`, true,
			map[string]any{"level": "info", "msg": "served", "status": int64(200), "ctx": map[string]any{"ms": 1.5, "ids": []any{int64(1), int64(2)}}},
		},
		{
			"own log field stays", `{"log":"the message","n":1}`, true,
			map[string]any{"log": "the message", "n": int64(1)},
		},
		{
			"forged kubernetes and file are renamed", `{"kubernetes":{"namespace_name":"other"},"fil\u0065":"/etc/passwd"}`, true,
			map[string]any{AppKubernetes: map[string]any{"namespace_name": "other"}, AppFile: "/etc/passwd"},
		},
		{"empty object", ` {} `, true, map[string]any{}},
		{"not JSON", `plain text`, false, map[string]any{"log": "plain text"}},
		{"array", `[1,2]`, false, map[string]any{"log": "[1,2]"}},
		{"broken JSON", `{"a":`, false, map[string]any{"log": `{"a":`}},
	}
	for _, tt := range tests {
		b, parsed := e.Append(nil, when, []byte(tt.line))
		if parsed != tt.parsed {
			t.Errorf("%s: parsed = %v, want %v", tt.name, parsed, tt.parsed)
		}
		ts, rec, _ := entry(t, b)
		if !ts.Equal(when) {
			t.Errorf("%s: time %v, want %v", tt.name, ts, when)
		}
		tt.want["file"] = "/var/log/app/audit.json"
		tt.want["kubernetes"] = kubernetes(podLabels)
		if diff := cmp.Diff(tt.want, rec); diff != "" {
			t.Errorf("%s: record (-want +got):\n%s", tt.name, diff)
		}
	}
}

func TestNoLabels(t *testing.T) {
	p := pod
	p.Labels = nil
	b, _ := NewEncoder(p, "app", "/f", config.ParserNone).Append(nil, time.Unix(0, 0), []byte("x"))
	_, rec, _ := entry(t, b)
	if diff := cmp.Diff(kubernetes(map[string]any{}), rec["kubernetes"]); diff != "" {
		t.Errorf("kubernetes (-want +got):\n%s", diff)
	}
}

// TestWorkloadAndNamespaceLabels: what the webhook resolved at admission travels in every
// record's kubernetes map, under the names of the kubernetes filters; the workload is the last
// owner; an empty namespace label map (known, none) is sent, an absent one (not known) is not.
func TestWorkloadAndNamespaceLabels(t *testing.T) {
	for _, tt := range []struct {
		name      string
		owners    []config.Owner
		nsLabels  map[string]string
		wantExtra map[string]any
	}{
		{"deployment", []config.Owner{{Kind: "ReplicaSet", Name: "web-7d9c"}, {Kind: "Deployment", Name: "web"}},
			map[string]string{"team": "payments", "kubernetes.io/metadata.name": "shop"},
			map[string]any{"workload_kind": "Deployment", "workload_name": "web",
				"namespace_labels": map[string]any{"team": "payments", "kubernetes.io/metadata.name": "shop"}}},
		{"cronjob, labels not known", []config.Owner{{Kind: "Job", Name: "nightly-2904"}, {Kind: "CronJob", Name: "nightly"}}, nil,
			map[string]any{"workload_kind": "CronJob", "workload_name": "nightly"}},
		{"bare pod, namespace without labels", nil, map[string]string{},
			map[string]any{"namespace_labels": map[string]any{}}},
	} {
		p := pod
		p.Owners, p.NamespaceLabels = tt.owners, tt.nsLabels
		for _, parser := range []string{config.ParserNone, config.ParserJSON} {
			e := NewEncoder(p, "app", "/f", parser)
			for _, line := range []string{"plain", `{"msg":"parsed"}`} {
				b, _ := e.Append(nil, time.Unix(0, 0), []byte(line))
				_, rec, rest := entry(t, b)
				if len(rest) != 0 {
					t.Errorf("%s/%s: %d bytes after the entry: the map header miscounts", tt.name, parser, len(rest))
				}
				want := kubernetes(podLabels)
				for k, v := range tt.wantExtra {
					want[k] = v
				}
				if diff := cmp.Diff(want, rec["kubernetes"]); diff != "" {
					t.Errorf("%s/%s %q: kubernetes (-want +got):\n%s", tt.name, parser, line, diff)
				}
			}
		}
	}
}

// TestDeterministic checks that labels are encoded in a fixed order, so the same pod gives the
// same bytes.
func TestDeterministic(t *testing.T) {
	first, _ := NewEncoder(pod, "app", "/f", config.ParserNone).Append(nil, time.Unix(5, 6), []byte("x"))
	for range 20 {
		again, _ := NewEncoder(pod, "app", "/f", config.ParserNone).Append(nil, time.Unix(5, 6), []byte("x"))
		if !bytes.Equal(first, again) {
			t.Fatalf("encodings differ:\n%x\n%x", first, again)
		}
	}
}

func TestConcatenated(t *testing.T) {
	e := NewEncoder(pod, "app", "/f", config.ParserJSON)
	var b []byte
	lines := []string{"one", `{"two":2}`, "three"}
	for i, l := range lines {
		b, _ = e.Append(b, time.Unix(int64(i), 0), []byte(l))
	}
	for i := range lines {
		ts, _, rest := entry(t, b)
		if ts.Unix() != int64(i) {
			t.Errorf("entry %d has time %v", i, ts)
		}
		b = rest
	}
	if len(b) != 0 {
		t.Errorf("%d bytes after %d entries", len(b), len(lines))
	}
}

func TestNoAllocs(t *testing.T) {
	line := []byte(strings.Repeat("x", 200))
	jsonLine := []byte(`{"level":"info","msg":"served","status":200}`)
	for _, parser := range []string{config.ParserNone, config.ParserJSON} {
		e := NewEncoder(pod, "app", "/var/log/app/app.log", parser)
		dst := make([]byte, 0, 4096)
		now := time.Now()
		allocs := testing.AllocsPerRun(100, func() {
			dst, _ = e.Append(dst[:0], now, line)
			dst, _ = e.Append(dst, now, jsonLine)
		})
		if allocs != 0 {
			t.Errorf("%s: %v allocations per Append, want 0", parser, allocs)
		}
	}
}

// BenchmarkAppend measures the hot path: 200-byte lines with no parser, into a batch buffer that
// is reused as the agent reuses acknowledged batches.
func BenchmarkAppend(b *testing.B) {
	// The json line of make bench's JSON workload: 15 fields, three of them objects.
	const wide = `{"time":"2026-11-25T08:22:04.123Z","level":"info","logger":"com.example.shop.checkout.CheckoutController","thread":"http-nio-8080-exec-4","msg":"request served","seq":123456,"trace_id":"4bf92f3577b34da6a3ce929d0e0e4736","span_id":"00f067aa0ba902b7","http":{"method":"POST","path":"/cart/checkout","status":200,"duration_ms":3.25},"user":{"id":4711,"tier":"gold","country":"DE"},"cart":{"items":3,"total":129.95,"currency":"EUR"},"region":"eu-west-1","cache_hit":false,"attempt":1,"tags":["web","checkout"]}`
	for _, bc := range []struct {
		name, parser, line, timeKey string
	}{
		{"none/200B", config.ParserNone, strings.Repeat("x", 200), ""},
		{"json/200B", config.ParserJSON, `{"level":"info","ts":"2024-05-01T10:00:00.123Z","caller":"api/handler.go:88","msg":"request served","method":"GET","path":"/api/v1/orders/12345","status":200,"latency_ms":12.75}`, ""},
		{"json/506B-15-fields", config.ParserJSON, wide, ""},
		{"json/506B-15-fields-time", config.ParserJSON, wide, "time"},
		{"none/200B-workload", config.ParserNone, strings.Repeat("x", 200), ""},
	} {
		b.Run(bc.name, func(b *testing.B) {
			tr := &parse.Transcoder{TimeKey: bc.timeKey}
			p := pod
			if strings.HasSuffix(bc.name, "-workload") {
				// What the webhook adds: the owners and a namespace's usual labels.
				p.Owners = []config.Owner{{Kind: "ReplicaSet", Name: "web-7d9c"}, {Kind: "Deployment", Name: "web"}}
				p.NamespaceLabels = map[string]string{"kubernetes.io/metadata.name": "shop", "team": "payments", "sidelog.io/inject": "enabled"}
			}
			e := NewEncoderWith(p, "app", "/var/log/app/app.log", bc.parser, tr)
			if bc.timeKey != "" {
				f, err := parse.NewTimeFormat(config.TimeRFC3339)
				if err != nil {
					b.Fatal(err)
				}
				e.SetEventTime(f, func() { b.Fatal("no time") })
			}
			line := []byte(bc.line)
			buf := make([]byte, 0, 1<<20)
			now := time.Now()
			b.SetBytes(int64(len(line)))
			b.ReportAllocs()
			for b.Loop() {
				if len(buf) > cap(buf)-4096 {
					buf = buf[:0]
				}
				buf, _ = e.Append(buf, now, line)
			}
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "entries/s")
		})
	}
}

// TestSharedScratch: the encoders of two files share one Transcoder, each record keeps its own
// file, and the scratch a wide line grew is let go after small lines.
func TestSharedScratch(t *testing.T) {
	var tr parse.Transcoder
	a := NewEncoderWith(pod, "app", "/var/log/a.json", config.ParserJSON, &tr)
	b := NewEncoderWith(pod, "app", "/var/log/b.json", config.ParserJSON, &tr)
	wide := []byte(`{"n":[` + strings.Repeat("1,", 30<<10) + `1]}`)
	if _, parsed := a.Append(nil, time.Unix(1, 0), wide); !parsed {
		t.Fatal("the wide line was not parsed")
	}
	if tr.Retained() < 60<<10*10 {
		t.Fatalf("the shared scratch is %d bytes after a 60 KiB line of numbers; the wide line did not use it", tr.Retained())
	}
	for i := range parse.ShrinkAfter + 1 {
		e := []*Encoder{a, b}[i%2]
		out, parsed := e.Append(nil, time.Unix(1, 0), []byte(`{"msg":"small","i":1}`))
		if !parsed {
			t.Fatal("a small line was not parsed")
		}
		_, rec, _ := entry(t, out)
		if want := []string{"/var/log/a.json", "/var/log/b.json"}[i%2]; rec["file"] != want {
			t.Fatalf("record of %s has file %v", want, rec["file"])
		}
	}
	if held := tr.Retained(); held > parse.KeepScratch {
		t.Errorf("after small lines the shared scratch is %d bytes, want at most %d", held, parse.KeepScratch)
	}
}

func TestEventTime(t *testing.T) {
	read := time.Unix(1800000000, 5)
	tr := &parse.Transcoder{TimeKey: "ts"}
	e := NewEncoderWith(pod, "app", "/var/log/app/audit.json", config.ParserJSON, tr)
	f, err := parse.NewTimeFormat(config.TimeEpochMillis)
	if err != nil {
		t.Fatal(err)
	}
	misses := 0
	e.SetEventTime(f, func() { misses++ })
	for _, tt := range []struct {
		name, line string
		want       time.Time
		miss       bool
	}{
		{"time from the line", `{"ts":1714566645123,"msg":"a"}`, time.Unix(1714566645, 123e6), false},
		{"string of a number", `{"msg":"a","ts":"1714566645123"}`, time.Unix(1714566645, 123e6), false},
		{"unparsable: the read time, counted", `{"ts":"soon","msg":"a"}`, read, true},
		{"missing: the read time, counted", `{"msg":"a"}`, read, true},
		{"not JSON: the read time, not counted here", `plain`, read, false},
	} {
		before := misses
		b, _ := e.Append(nil, read, []byte(tt.line))
		ts, rec, _ := entry(t, b)
		if !ts.Equal(tt.want) {
			t.Errorf("%s: time %v, want %v", tt.name, ts, tt.want)
		}
		if got := misses > before; got != tt.miss {
			t.Errorf("%s: counted %v, want %v", tt.name, got, tt.miss)
		}
		if strings.HasPrefix(tt.line, "{") && rec["msg"] != "a" {
			t.Errorf("%s: record %v lost its fields", tt.name, rec)
		}
		if tt.name == "time from the line" && rec["ts"] != int64(1714566645123) {
			t.Errorf("%s: the time field is kept in the record: %v", tt.name, rec["ts"])
		}
	}
	line, dst := []byte(`{"ts":1714566645123,"msg":"a"}`), make([]byte, 0, 1024)
	if n := testing.AllocsPerRun(100, func() { e.Append(dst, read, line) }); n != 0 {
		t.Errorf("%v allocations per line with an event time, want 0", n)
	}
}
